"""In-memory stores for unit tests of the use cases: the queries of matching's, donations'
and volunteers' stores, with the same conditions (a claim never takes a lot below zero, an
insert keeps the first document), and a transaction that commits its events to an outbox or
rolls everything back. Documents go in and come out as copies, as from a database.

Only what the use cases call is here; each method says which store method it stands for by
its name and arguments."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from services.common import contract, reference
from services.common.config import Settings, settings
from services.common.store import DUPLICATE, Tx
from services.common.uow import Scope
from services.donations.store import LotNotRecorded, StockInconsistent
from services.matching import engine
from services.matching.store import (
    LotChanged,
    _expired,
    as_engine_need,
    bin_entry,
    bin_order,
)

REF = reference.load("deploy/reference")


class Collection:
    """Documents by ``_id``."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def get(self, doc_id: str) -> dict[str, Any] | None:
        doc = self.docs.get(doc_id)
        return copy.deepcopy(doc) if doc is not None else None

    def insert(self, doc: dict[str, Any]) -> bool:
        """Insert unless one with its id exists. True if inserted."""
        if doc["_id"] in self.docs:
            return False
        self.docs[doc["_id"]] = copy.deepcopy(doc)
        return True

    def put(self, doc: dict[str, Any]) -> None:
        self.docs[doc["_id"]] = copy.deepcopy(doc)

    def find(self, keep: Callable[[dict[str, Any]], bool] = lambda d: True
             ) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self.docs.values() if keep(d)]

    def update(self, doc_id: str, change: Callable[[dict[str, Any]], None]) -> bool:
        doc = self.docs.get(doc_id)
        if doc is None:
            return False
        change(doc)
        return True

    def delete(self, doc_id: str) -> None:
        self.docs.pop(doc_id, None)


class FakeStore:
    """A store's transactions: ``atomically`` runs ``work(tx)`` and either commits (the events
    into :attr:`outbox`, the processed marker kept) or, on an exception, restores every
    collection as it was. A batch is not modelled: each call is its own transaction."""

    names: tuple[str, ...] = ()

    def __init__(self, source: str, cfg: Settings | None = None):
        self.source = source
        self.cfg = cfg or settings({})
        self.outbox: list[dict[str, Any]] = []
        self.processed: set[str] = set()
        for name in self.names:
            setattr(self, name, Collection())

    def _collections(self) -> Iterator[Collection]:
        return (getattr(self, name) for name in self.names)

    def atomically(self, work: Callable[[Tx], Any], *, event: contract.Event | None = None,
                   consumer: str | None = None) -> Any:
        key = f"{consumer}:{event.event_id}" if event is not None and consumer else None
        if key in self.processed:
            return DUPLICATE
        before = [copy.deepcopy(c.docs) for c in self._collections()]
        tx = Tx(None, None, self.source)  # type: ignore[arg-type]
        try:
            result = work(tx)
            tx.flush()
        except BaseException:
            for collection, docs in zip(self._collections(), before, strict=True):
                collection.docs = docs
            raise
        if key:
            self.processed.add(key)
        self.outbox.extend(tx.events)
        for remember in tx.after_commit:
            remember()
        return result

    def emitted(self, type_: str) -> list[dict[str, Any]]:
        """The data of the committed events of a type, in order."""
        return [e["data"] for e in self.outbox if e["type"] == type_]

    def scope(self) -> Scope[Any]:
        return Scope(self, REF, self.cfg)


def event(type_: str, data: dict[str, Any], at: datetime | None = None,
          source: str = "test") -> contract.Event:
    """An event as a consumer gets it: built and parsed through the contract."""
    envelope = contract.build(type_, data, source,
                              occurred_at=at or datetime(2020, 2, 10, 9, 0, tzinfo=UTC))
    return contract.parse(envelope)


# -- matching ---------------------------------------------------------------------------------
class FakeMatchingStore(FakeStore):
    names = ("needs", "supply", "bins", "open_index", "withdrawals", "volunteers")

    def __init__(self, cfg: Settings | None = None):
        super().__init__("matching", cfg)
        self.serialised: list[str] = []
        self.assignments_per_hour: dict[tuple[str, str], int] = {}

    def serialise(self, tx: Tx, category: str) -> None:
        self.serialised.append(category)

    # needs
    def get_need(self, need_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return self.needs.get(need_id)

    def insert_need(self, tx: Tx, need: dict[str, Any]) -> bool:
        return self.needs.insert(need)

    def posted_need(self, tx: Tx, need_id: str) -> dict[str, Any] | None:
        return self.needs.get(need_id)

    def open_needs(self, tx: Tx, category: str) -> list[dict[str, Any]]:
        return self.needs.find(lambda d: d.get("open_category") == category)

    def open_needs_reaching(self, tx: Tx, category: str,
                            locations: list[str]) -> list[dict[str, Any]]:
        wanted = set(locations)
        return [d for d in self.open_needs(tx, category)
                if wanted & set(engine.reach(as_engine_need(d), REF.areas))]

    def record_allocations(self, tx: Tx, need_id: str, fulfilled: int, status: str,
                           assignments: list[dict[str, Any]]) -> None:
        def change(d: dict[str, Any]) -> None:
            d.update(fulfilled_milli=fulfilled, status=status)
            d["assignments"] = d.get("assignments", []) + copy.deepcopy(assignments)
            if status == "fulfilled":
                d.pop("open_category", None)
        self.needs.update(need_id, change)
        if status == "fulfilled":
            self.open_index.delete(need_id)

    def index_open(self, tx: Tx, need: dict[str, Any], escalate_at: Any) -> None:
        self.open_index.put({"_id": need["_id"], "category": need["category"],
                             "tier": need.get("tier", "community"), "escalate_at": escalate_at,
                             "needed_by": need.get("needed_by"), "urgency": need["urgency"],
                             "posted_at": need["posted_at"],
                             "community_id": need["community_id"]})

    def count_assignments(self, tx: Tx, category: str, hour: str, made: int) -> None:
        key = (category, hour)
        self.assignments_per_hour[key] = self.assignments_per_hour.get(key, 0) + made

    def open_deadlines(self) -> list[engine.Deadlines]:
        return [engine.Deadlines(e["_id"], e.get("tier", "community"), e.get("escalate_at"),
                                 e.get("needed_by"), e.get("offer_expires_at"))
                for e in self.open_index.find()]

    def escalate(self, tx: Tx, need_id: str, from_tier: str, to_tier: str,
                 escalate_at: Any) -> bool:
        doc = self.needs.docs.get(need_id)
        if doc is None or doc.get("tier") != from_tier or "open_category" not in doc:
            return False
        doc["tier"] = to_tier
        doc.setdefault("escalations", []).append({"from_tier": from_tier, "to_tier": to_tier})
        self.open_index.update(need_id, lambda e: e.update(tier=to_tier,
                                                           escalate_at=escalate_at))
        return True

    def close(self, tx: Tx, need_id: str, status: str) -> bool:
        doc = self.needs.docs.get(need_id)
        self.open_index.delete(need_id)
        if doc is None or "open_category" not in doc:
            return False
        doc["status"] = status
        del doc["open_category"]
        return True

    # supply
    def insert_lot(self, tx: Tx, lot: dict[str, Any]) -> bool:
        if not self.supply.insert(lot):
            return False
        if lot["available"] > 0:
            bin_id = f"{lot['category']}|{lot['location_id']}"
            entries = (self.bins.get(bin_id) or {}).get("lots", []) + [bin_entry(lot)]
            self.save_bin(tx, bin_id, entries, contract.now())
        return True

    def load_bins(self, tx: Tx, category: str, locations: list[str]
                  ) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for location in locations:
            doc = self.bins.get(f"{category}|{location}")
            if doc and doc.get("lots"):
                out[doc["_id"]] = doc["lots"]
        return out

    def save_bin(self, tx: Tx, bin_id: str, entries: list[dict[str, Any]], now: Any) -> None:
        live = sorted((e for e in entries if e["available"] > 0 and not _expired(e, now)),
                      key=bin_order)
        self.bins.put({"_id": bin_id, "lots": live})

    def claim(self, tx: Tx, lot_id: str, quantity: int, taken_fen: int | None = None) -> None:
        lot = self.supply.docs.get(lot_id)
        if lot is None or lot["available"] < quantity:
            raise LotChanged(f"lot {lot_id} has less than {quantity} available")
        lot["available"] -= quantity
        if taken_fen is not None:
            lot["taken_fen"] = taken_fen

    def get_lot(self, tx: Tx, lot_id: str) -> dict[str, Any] | None:
        return self.supply.get(lot_id)

    def get_withdrawal(self, tx: Tx, reference: str) -> dict[str, Any] | None:
        return self.withdrawals.get(reference)

    def record_withdrawal(self, tx: Tx, withdrawal: dict[str, Any]) -> None:
        if not self.withdrawals.insert(withdrawal):
            raise ValueError(f"duplicate withdrawal {withdrawal['_id']}")  # a unique _id

    # volunteers view
    def upsert_volunteer(self, tx: Tx, volunteer_id: str, values: dict[str, Any]) -> None:
        doc = self.volunteers.get(volunteer_id) or {"_id": volunteer_id}
        self.volunteers.put({**doc, **copy.deepcopy(values)})

    def get_volunteer(self, tx: Tx, volunteer_id: str) -> dict[str, Any] | None:
        return self.volunteers.get(volunteer_id)

    def volunteers_with_skill(self, tx: Tx, skill: str) -> list[dict[str, Any]]:
        return self.volunteers.find(lambda d: skill in d.get("skills", []))

    def take_hours(self, tx: Tx, volunteer_id: str, week: str, hours: float,
                   cap: float | None) -> None:
        doc = self.volunteers.docs.get(volunteer_id)
        load = (doc or {}).get("load", {}).get(week, 0.0)
        if doc is None or (cap is not None and load > cap - hours):
            raise LotChanged(f"volunteer {volunteer_id} has no room for {hours} h")
        doc.setdefault("load", {})[week] = load + hours

    def give_back_hours(self, tx: Tx, volunteer_id: str, week: str, hours: float) -> None:
        doc = self.volunteers.docs[volunteer_id]
        doc.setdefault("load", {})[week] = doc["load"].get(week, 0.0) - hours

    def set_offer(self, tx: Tx, need_id: str, offer: dict[str, Any] | None,
                  status: str, offered_to: str | None = None) -> None:
        def change(d: dict[str, Any]) -> None:
            d.update(offer=copy.deepcopy(offer), status=status)
            if offered_to:
                d["offered_to"] = d.get("offered_to", []) + [offered_to]
        self.needs.update(need_id, change)
        self.open_index.update(need_id, lambda e: e.update(
            offer_expires_at=offer["expires_at"] if offer else None))

    def fulfil_service(self, tx: Tx, need_id: str, offer_id: str, fulfilled_milli: int,
                       assignment: dict[str, Any]) -> bool:
        doc = self.needs.docs.get(need_id)
        if (doc is None or (doc.get("offer") or {}).get("offer_id") != offer_id
                or doc.get("status") != "offered"):
            return False
        doc.update(status="fulfilled", offer=None, fulfilled_milli=fulfilled_milli)
        doc.pop("open_category", None)
        doc["assignments"] = doc.get("assignments", []) + [copy.deepcopy(assignment)]
        self.open_index.delete(need_id)
        return True


# -- donations --------------------------------------------------------------------------------
class FakeDonationsStore(FakeStore):
    names = ("donations", "lots", "movements", "counters", "pledges")

    def __init__(self, cfg: Settings | None = None):
        super().__init__("donations", cfg)

    def insert_donation(self, tx: Tx, donation: dict[str, Any],
                        lot: dict[str, Any]) -> dict[str, Any] | None:
        if not self.donations.insert(donation):
            return self.donations.get(donation["_id"])
        self.lots.put(lot)
        return None

    def next_number(self, tx: Tx, counter: str) -> int:
        n = (self.counters.get(counter) or {"n": 0})["n"] + 1
        self.counters.put({"_id": counter, "n": n})
        return n

    def set_receipt_no(self, tx: Tx, donation_id: str, receipt_no: str) -> None:
        self.donations.update(donation_id, lambda d: d.update(receipt_no=receipt_no))

    def take(self, tx: Tx, lot_id: str, milli: int, fen: int = 0) -> dict[str, Any]:
        return self._move(lot_id, milli, "allocated", fen)

    def write_off(self, tx: Tx, lot_id: str, milli: int, fen: int = 0) -> dict[str, Any]:
        return self._move(lot_id, milli, "written_off", fen)

    def transfer_out(self, tx: Tx, lot_id: str, milli: int, fen: int) -> dict[str, Any]:
        return self._move(lot_id, milli, "transferred", fen)

    def _move(self, lot_id: str, milli: int, to: str, fen: int) -> dict[str, Any]:
        lot = self.lots.docs.get(lot_id)
        if lot is None:
            raise LotNotRecorded(f"lot {lot_id} is not recorded (yet)")
        if lot["available"] < milli:
            raise StockInconsistent(f"lot {lot_id} does not hold {milli} milli-units")
        lot["available"] -= milli
        lot[to] = lot.get(to, 0) + milli
        lot[f"{to}_fen"] = lot.get(f"{to}_fen", 0) + fen
        return copy.deepcopy(lot)

    def record_movement(self, tx: Tx, movement: dict[str, Any]) -> None:
        if not self.movements.insert(movement):
            raise ValueError(f"duplicate movement {movement['_id']}")  # a unique _id

    def movement(self, movement_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return self.movements.get(movement_id)

    def recorded(self, tx: Tx, movement_id: str) -> bool:
        return self.movements.get(movement_id) is not None

    def lot(self, lot_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return self.lots.get(lot_id)

    def insert_lot(self, tx: Tx, lot: dict[str, Any]) -> None:
        if not self.lots.insert(lot):
            raise ValueError(f"duplicate lot {lot['_id']}")

    def insert_pledge(self, tx: Tx, pledge: dict[str, Any]) -> bool:
        return self.pledges.insert(pledge)

    def pledge(self, pledge_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return self.pledges.get(pledge_id)

    def add_pledge_part(self, tx: Tx, pledge_id: str, part: dict[str, Any]) -> None:
        def change(p: dict[str, Any]) -> None:
            p["received_milli"] += part["milli"]
            p["received_fen"] += part["fen"]
            p["parts"].append(copy.deepcopy(part))
        self.pledges.update(pledge_id, change)

    def donation(self, donation_id: str) -> dict[str, Any] | None:
        return self.donations.get(donation_id)

    def lots_of(self, category: str | None = None) -> list[dict[str, Any]]:
        return self.lots.find(lambda d: category is None or d["category"] == category)


# -- volunteers -------------------------------------------------------------------------------
class FakeVolunteersStore(FakeStore):
    names = ("volunteers", "health_checks", "hours", "organisations", "training",
             "status_reports", "deliveries", "programmes")

    def __init__(self, cfg: Settings | None = None):
        super().__init__("volunteers", cfg)

    def upsert_volunteer(self, tx: Tx, volunteer: dict[str, Any]) -> bool:
        known = self.volunteers.get(volunteer["_id"])
        self.volunteers.put({**(known or {}), **volunteer})
        return known is None

    def add(self, tx: Tx, collection: str, doc: dict[str, Any]) -> bool:
        return getattr(self, collection).insert(doc)

    def put(self, tx: Tx, collection: str, doc: dict[str, Any]) -> None:
        getattr(self, collection).put(doc)

    def get(self, tx: Tx, collection: str, doc_id: str) -> dict[str, Any] | None:
        return getattr(self, collection).get(doc_id)

    def set_fields(self, tx: Tx, volunteer_id: str, values: dict[str, Any]) -> None:
        self.volunteers.update(volunteer_id, lambda d: d.update(copy.deepcopy(values)))

    def set_status(self, tx: Tx, hours_id: str, status: str, note: str | None,
                   at: datetime) -> None:
        doc = self.hours.docs.get(hours_id)
        if doc is None or doc["status"] != "pending":
            raise RuntimeError(f"hours {hours_id} were decided concurrently")
        doc.update(status=status, decided_at=at, note=note)

    def all(self, collection: str) -> list[dict[str, Any]]:
        return getattr(self, collection).find()

    def report_received(self, tx: Tx, organisation_id: str, at: datetime,
                        summary: dict[str, Any]) -> None:
        self.organisations.update(organisation_id, lambda d: d.update(
            last_report_at=at, last_report=copy.deepcopy(summary)))

    def mark_alerted(self, tx: Tx, organisation_id: str, due_at: datetime) -> bool:
        doc = self.organisations.docs.get(organisation_id)
        if doc is None or doc.get("alerted_for") == due_at:
            return False
        doc["alerted_for"] = due_at
        return True
