"""Donations' use cases: what is pledged and what arrives (lots, each with a numbered
receipt), what leaves them (allocations, write-offs, transfers between warehouses).

Event handlers take the :class:`~services.common.uow.UnitOfWork` of the event's transaction
(``receive``, ``allocate``); commands from the gateway (``write_off``, ``transfer``,
``make_pledge``, ``receive_pledge``) take a :class:`Context` (a
:class:`~services.common.uow.Scope` with the two services they ask), run their writes in a unit
of work of their own and raise the typed errors of ``services.common.errors`` when they refuse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from marshmallow import ValidationError, fields

from services.common import contract, listing, money, units
from services.common.contract import Event
from services.common.deps import RpcTimeout
from services.common.errors import Conflict, Invalid, NoAnswer, NotFound
from services.common.reference import Reference
from services.common.uow import Scope, UnitOfWork
from services.donations import pledges, receipts
from services.donations.store import DonationsStore

log = logging.getLogger(__name__)

PERSON_DONOR = "个人捐赠者"  # what other services see of a private person who donated


Unit = UnitOfWork[DonationsStore]


@dataclass(frozen=True)
class Context(Scope[DonationsStore]):
    """What a command works with: the store, the reference data, the settings, and the two
    services it asks (each may raise :class:`RpcTimeout`). Its writes run in
    :meth:`~services.common.uow.Scope.atomically`, after any question to another service:
    no transaction is held open across a call."""

    withdraw: Callable[..., dict[str, Any]]  # matching: (lot_id, quantity, unit, ref, reason)
    submit: Callable[[dict[str, Any]], dict[str, Any]]  # intake: (envelope)


@dataclass(frozen=True)
class Withdrawal:
    """Stock asked out of a lot; the same ``request_id`` again is answered, not repeated."""

    request_id: str
    lot_id: str
    quantity: float
    unit: str

    @property
    def write_off_id(self) -> str:
        return f"WO-{self.request_id}"

    @property
    def transfer_id(self) -> str:
        """Also the id of the lot the transfer makes at its destination."""
        return f"TR-{self.request_id}"


# -- stock leaving a lot -----------------------------------------------------------------
def write_off(ctx: Context, take: Withdrawal, reason: str, note: str | None) -> dict[str, Any]:
    """Write off stock (expired, damaged, lost). Matching first takes it out of reach of
    allocation; then it leaves the lot here. Idempotent by ``request_id``."""
    store = ctx.store
    write_off_id = take.write_off_id
    done = store.movement(write_off_id)
    if done is not None:
        return {"write_off_id": write_off_id, "repeated": True,
                **lot_view(store.lot(done["lot_id"]))}
    lot_in(store, take.lot_id, take.unit)
    fen = withdraw(ctx, take, write_off_id, f"written_off:{reason}")
    lot = ctx.atomically(lambda u: record_write_off(u, take, reason, note, fen))
    return {"write_off_id": write_off_id, "repeated": False, **lot_view(lot)}


def transfer(ctx: Context, take: Withdrawal, to_location_id: str) -> dict[str, Any]:
    """Move stock to another warehouse: matching first takes it out of reach of
    allocation, then one transaction takes it from the lot and makes a lot at the
    destination (same category, unit, expiry; its share of the value). Idempotent by
    ``request_id``."""
    store = ctx.store
    transfer_id = take.transfer_id
    done = store.movement(transfer_id)
    if done is not None:
        return {"transfer_id": transfer_id, "repeated": True, "to_lot_id": done["to_lot_id"],
                **lot_view(store.lot(done["lot_id"]))}
    lot = lot_in(store, take.lot_id, take.unit)
    if to_location_id not in ctx.ref.areas:
        raise Invalid("unknown warehouse",
                      {"to_location_id": f"unknown area {to_location_id!r}"})
    if to_location_id == lot["location_id"]:
        raise Invalid("the lot is already there", {"to_location_id": "the lot's own warehouse"})
    if store.lot(transfer_id) is not None:
        raise Conflict(f"lot id {transfer_id!r} is taken; choose another request_id")
    fen = withdraw(ctx, take, transfer_id, "transferred")
    lot = ctx.atomically(lambda u: record_transfer(u, take, to_location_id, fen))
    return {"transfer_id": transfer_id, "repeated": False, "to_lot_id": transfer_id,
            **lot_view(lot)}


def lot_in(store: DonationsStore, lot_id: str, unit: str) -> dict[str, Any]:
    """The lot; :class:`NotFound` for an unknown lot, :class:`Invalid` for a unit that does
    not measure it."""
    lot = store.lot(lot_id)
    if lot is None:
        raise NotFound(f"unknown lot {lot_id!r}")
    if not units.compatible(unit, lot["unit"]):
        raise Invalid(f"{unit} does not measure lot {lot_id} ({lot['unit']})",
                      {"unit": "incompatible with the lot's unit"})
    return lot


def withdraw(ctx: Context, take: Withdrawal, reference: str, reason: str) -> int | None:
    """Take the stock out of matching's reach first (never both allocated and moved).
    Returns the value in fen it took; :class:`Conflict` when matching refuses (not enough
    unallocated stock), :class:`NoAnswer` when it does not answer. Matching sees every take
    of a lot in order, so the value it gives is the stock's share by the same rule as its
    allocations (None from a matching that gives none)."""
    try:
        answer = ctx.withdraw(take.lot_id, take.quantity, take.unit, reference, reason)
    except RpcTimeout as exc:
        raise NoAnswer(str(exc)) from exc
    if not answer.get("ok"):
        raise Conflict(answer.get("error") or "refused")
    return answer.get("value_fen")


# -- pledges ------------------------------------------------------------------------------
def make_pledge(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    """Record a pledge (``pledge_made``); the same ``pledge_id`` again is harmless."""
    try:
        pledge = contract.PledgeMade().load(data)
    except ValidationError as exc:
        raise Invalid("invalid pledge", contract.flatten_errors(exc.messages)) from exc
    problems = check_goods(ctx.ref, pledge["category"], pledge["unit"],
                           pledge.get("location_id"))
    if problems:
        raise Invalid("invalid pledge", problems)
    created = ctx.atomically(lambda u: record_pledge(u, pledge))
    return {**pledges.view(ctx.store.pledge(pledge["pledge_id"]), contract.now().date()),
            "created": created}


def receive_pledge(ctx: Context, pledge_id: str, part: dict[str, Any]) -> dict[str, Any]:
    """A part of a pledge arrived: it becomes a donation through intake like any other
    (``donation_received`` with ``pledge_id``); the pledge counts it when its lot is
    recorded. Idempotent by the part's ``donation_id``."""
    pledge = ctx.store.pledge(pledge_id)
    if pledge is None:
        raise NotFound(f"no pledge {pledge_id!r}")
    unit = part.get("unit") or pledge["unit"]
    location_id = part.get("location_id") or pledge.get("location_id")
    fields_: dict[str, str] = {}
    if not units.compatible(unit, pledge["unit"]):
        fields_["unit"] = f"does not measure the pledge ({pledge['unit']})"
    if not location_id:
        fields_["location_id"] = "required: the pledge names no warehouse"
    value = part.get("value_yuan")
    if value is None and not fields_:
        value = pledges.part_value(pledge, part["quantity"], unit)
        if value is None:
            fields_["value_yuan"] = "required: the pledge promised no value"
    if fields_:
        raise Invalid("invalid part", fields_)
    data = {"donation_id": part["donation_id"], "donor": pledge["donor"],
            "location_id": location_id, "category": pledge["category"],
            "quantity": part["quantity"], "unit": unit, "value_yuan": value,
            "value_method": part.get("value_method"),
            "expires_at": _when(part.get("expires_at")),
            "programme": pledge.get("programme"),
            "pledge_id": pledge_id}
    event_id = contract.derived_id("donations", "pledge_part", pledge_id, part["donation_id"])
    try:
        envelope = contract.build("donation_received", data, source="donations",
                                  event_id=event_id)
        answer = ctx.submit(envelope)
    except contract.ContractError as exc:
        raise Invalid(exc.reason, exc.fields) from exc
    except Conflict:  # this part's donation id was given before with other figures
        raise Conflict(f"donation_id {part['donation_id']!r} was recorded before with other "
                       "content; the first stands", {"donation_id": "already used"}) from None
    except RpcTimeout as exc:
        raise NoAnswer(str(exc)) from exc
    return {"pledge_id": pledge_id, "donation_id": part["donation_id"],
            "event_id": answer["event_id"], "duplicate": answer["duplicate"],
            "status_url": f"/api/pledges/{pledge_id}"}


def pledge_views(store: DonationsStore, open_only: bool) -> list[dict[str, Any]]:
    """Pledges by expected date; ``open_only``: those not (fully) received yet."""
    today = contract.now().date()
    views = [pledges.view(p, today) for p in store.pledges()]
    views.sort(key=lambda v: (v["expected_at"], v["pledge_id"]))
    return [v for v in views if not open_only or v["status"] != "received"]


def pledge_view(store: DonationsStore, pledge_id: str) -> dict[str, Any]:
    doc = store.pledge(pledge_id)
    if doc is None:
        raise NotFound(f"no pledge {pledge_id!r}")
    return pledges.view(doc, contract.now().date())


def receipt(store: DonationsStore, ref: Reference, donation_id: str,
            lang: str) -> dict[str, Any]:
    """The donor's numbered receipt as printable HTML."""
    donation = store.donation(donation_id)
    if donation is None:
        raise NotFound(f"no donation {donation_id!r} (it may still be on its way)")
    # whose and where it is, so that the gateway shows an organisation its own receipts only
    return {"receipt_no": donation["receipt_no"], "donation_id": donation_id,
            "donor_id": (donation.get("donor") or {}).get("donor_id"),
            "location_id": donation.get("location_id"),
            "html": receipts.render(donation, ref, lang)}


def check_goods(ref: Reference, category: str, unit: str,
                location_id: str | None) -> dict[str, str]:
    """The failing fields of a pledge of goods: an unknown category, a unit that does not
    measure it, an unknown warehouse."""
    problems = {}
    cat = ref.catalogue.get(category)
    if cat is None or cat.kind != "goods":
        problems["category"] = f"unknown goods category {category!r}"
    elif not units.compatible(unit, cat.unit):
        problems["unit"] = f"{unit!r} does not measure {category!r} (counted in {cat.unit})"
    if location_id and location_id not in ref.areas:
        problems["location_id"] = f"unknown area {location_id!r}"
    return problems


def _when(value: Any) -> Any:
    """An ISO time from a JSON body (the gateway passes bodies as they came)."""
    if isinstance(value, str):
        return fields.AwareDateTime(default_timezone=UTC).deserialize(value)
    return value


def record_pledge(u: Unit, pledge: dict[str, Any]) -> bool:
    """Store a pledge and emit ``pledge_made``; False when it was recorded before."""
    doc = {"_id": pledge["pledge_id"], **pledge,
           "expected_at": pledge["expected_at"].isoformat(),
           "quantity_milli": units.to_milli(pledge["quantity"], pledge["unit"]),
           "received_milli": 0, "received_fen": 0, "parts": [], "made_at": u.now}
    if not u.store.insert_pledge(u.tx, doc):
        return False
    u.emit("pledge_made", {**pledge, "donor": public_donor(pledge["donor"])},
           event_id=contract.derived_id("donations", "pledge_made", pledge["pledge_id"]))
    return True


def count_pledge_part(u: Unit, data: dict[str, Any]) -> None:
    """A donation naming a pledge counts towards it when it is the pledged category."""
    store, tx = u.store, u.tx
    pledge = store.pledge(data["pledge_id"], tx)
    if pledge is None or pledge["category"] != data["category"] or not units.compatible(
            data["unit"], pledge["unit"]):
        log.warning("donation %s names pledge %s, which it cannot fulfil (unknown pledge, or "
                    "another category or unit); kept as a donation", data["donation_id"],
                    data["pledge_id"])
        return
    milli = units.to_milli(units.convert(data["quantity"], data["unit"], pledge["unit"]),
                           pledge["unit"])
    store.add_pledge_part(tx, pledge["_id"], {"donation_id": data["donation_id"],
                                              "milli": milli,
                                              "fen": round(data["value_yuan"] * 100)})


# -- what events record, inside the event's transaction ----------------------------------
def counted_in_contents(data: dict[str, Any], ref: Reference) -> dict[str, Any]:
    """Boxes whose category is counted in what they hold (masks in pieces, vegetables in kg)
    become a lot in that unit: 10 boxes of 50 pieces -> 500 pieces, ``boxes`` 10."""
    if data.get("box_size") is None or units.dimension(data["unit"]) != "box":
        return data
    category = ref.catalogue.get(data["category"])
    if category is None or units.dimension(category.unit) == "box":
        return data  # counted in boxes: what a box holds is kept as information
    return {**data, "boxes": data["quantity"], "unit": data["box_unit"],
            "quantity": round(data["quantity"] * data["box_size"], 6)}


# what donations adds to a donation as it records it (not what the donation said)
RECORDED = ("_id", "received_at", "event_id", "receipt_no")


def receive(u: Unit, event: Event) -> None:
    store, tx = u.store, u.tx
    # a transfer, and counting boxes in what they hold, are this service's own doing, never
    # something an outsider declares
    data = {k: v for k, v in event.data.items() if k not in ("transfer_of", "boxes")}
    data = counted_in_contents(data, u.ref)
    if units.dimension(data["unit"]) == "money":
        # cash: its value is its amount, whatever was declared beside it
        data["value_yuan"] = units.convert(data["quantity"], data["unit"], "yuan")
    elif data.get("value_yuan") is None:
        # nobody stated a value: the lot counts at 0 yuan, and says so to every consumer
        data["value_yuan"], data["value_known"] = 0.0, False
    milli = units.to_milli(data["quantity"], data["unit"])
    lot_id = data["donation_id"]
    year = event.occurred_at.year
    donation = {"_id": data["donation_id"], "received_at": event.occurred_at,
                "event_id": event.event_id, **{k: v for k, v in data.items() if k != "lot_id"}}
    lot = {
        "_id": lot_id,
        "donation_id": data["donation_id"],
        "category": data["category"],
        "location_id": data["location_id"],
        "unit": data["unit"],
        "quantity": milli,
        "available": milli,
        "allocated": 0,
        "written_off": 0,
        "value_yuan": data["value_yuan"],
        "value_method": data.get("value_method") or "declared",
        "value_known": data.get("value_known", True),
        "acquisition": data.get("acquisition") or "donated",
        "face_value_yuan": data.get("face_value_yuan"),
        "programme": data.get("programme"),
        "expires_at": data.get("expires_at"),
        "received_at": event.occurred_at,
        "pledge_id": data.get("pledge_id"),
        "packing": ({k: data[k] for k in ("boxes", "box_size", "box_unit")}
                    if data.get("boxes") else None),
    }
    first = store.insert_donation(tx, donation, lot)
    if first is not None:
        # the id is taken: the same donation again is harmless, another one is refused
        names = sorted((set(first) | set(donation)) - set(RECORDED))
        differs = contract.differences(first, donation, names)
        if differs:
            raise contract.IdReused("donation_id", donation["_id"], differs)
    else:
        if data.get("pledge_id"):
            count_pledge_part(u, data)
        number = store.next_number(tx, f"receipt:{year}")
        store.set_receipt_no(tx, donation["_id"], receipts.receipt_number(year, number))
        u.emit("donation_received", {**data, "donor": public_donor(data["donor"]),
                                     "lot_id": lot_id},
               event_id=contract.derived_id("donations", "donation_received", lot_id),
               occurred_at=event.occurred_at)


def public_donor(donor: dict[str, Any]) -> dict[str, Any]:
    """The donor as other services see it: never a contact, and a private person's name
    stays here (it appears only on their own receipt)."""
    out = {k: v for k, v in donor.items() if k != "contact"}
    if donor["kind"] == "person":
        out["name"] = PERSON_DONOR
    return out


def allocate(u: Unit, data: dict[str, Any]) -> None:
    store, tx = u.store, u.tx
    if store.recorded(tx, data["assignment_id"]):
        return  # this assignment was taken from its lot already (handled again)
    milli = units.to_milli(data["lot_quantity"], data["lot_unit"])
    lot = store.take(tx, data["lot_id"], milli, fen=money.to_fen(data["value_yuan"]))
    store.record_movement(tx, {
        "_id": data["assignment_id"], "lot_id": data["lot_id"], "kind": "allocated",
        "quantity": -milli, "need_id": data["need_id"], "at": u.now,
    })
    u.emit("stock_changed", {
        "lot_id": lot["_id"], "category": lot["category"], "location_id": lot["location_id"],
        "delta": -data["lot_quantity"],
        "available": units.from_milli(lot["available"], lot["unit"]),
        "unit": lot["unit"], "reason": "allocated", "assignment_id": data["assignment_id"],
    }, event_id=contract.derived_id("stock_changed", data["assignment_id"]))


TAKEN = ("allocated", "written_off", "transferred")


def share_fen(lot: dict[str, Any], milli: int) -> int:
    """The part of the lot's intake value (fen) that taking ``milli`` out of it carries, by
    the one rule (:func:`money.share_fen`) over what this service has seen leave the lot.
    Only for when matching gave no value: it sees every take in order, this service may
    see an allocation after a write-off that came later."""
    return money.share_fen(lot["quantity"], money.to_fen(lot["value_yuan"]),
                           sum(lot.get(k, 0) for k in TAKEN),
                           sum(lot.get(f"{k}_fen", 0) for k in TAKEN), milli)


def share_of_value(lot: dict[str, Any], milli: int) -> float:
    """:func:`share_fen` in yuan."""
    return money.to_yuan(share_fen(lot, milli))


def record_write_off(u: Unit, take: Withdrawal, reason: str, note: str | None,
                     fen: int | None = None) -> dict[str, Any]:
    """Book a write-off matching has withdrawn; ``fen`` is the value matching gave it."""
    store, tx = u.store, u.tx
    write_off_id, lot_id, quantity, unit = (take.write_off_id, take.lot_id, take.quantity,
                                            take.unit)
    if store.recorded(tx, write_off_id):
        return store.lot(lot_id, tx)
    before = store.lot(lot_id, tx)
    milli = units.to_milli(units.convert(quantity, unit, before["unit"]), before["unit"])
    if fen is None:
        fen = share_fen(before, milli)
    value = money.to_yuan(fen)
    lot = store.write_off(tx, lot_id, milli, fen=fen)
    store.record_movement(tx, {
        "_id": write_off_id, "lot_id": lot_id, "kind": "written_off", "quantity": -milli,
        "reason": reason, "note": note, "value_yuan": value, "at": u.now,
        "lot": {"category": lot["category"], "location_id": lot["location_id"],
                "unit": lot["unit"], "quantity": lot["quantity"], "available": lot["available"],
                "value_yuan": lot["value_yuan"]},
    })
    u.emit("stock_changed", {
        "lot_id": lot_id, "category": lot["category"], "location_id": lot["location_id"],
        "delta": -units.from_milli(milli, lot["unit"]),
        "available": units.from_milli(lot["available"], lot["unit"]), "unit": lot["unit"],
        "reason": "written_off", "write_off_id": write_off_id, "write_off_reason": reason,
        "value_yuan": value, "programme": lot.get("programme"),
    }, event_id=contract.derived_id("stock_changed", write_off_id))
    return lot


def record_transfer(u: Unit, take: Withdrawal, to_location_id: str,
                    fen: int | None = None) -> dict[str, Any]:
    """Book a transfer matching has withdrawn; ``fen`` is the value matching gave it, which
    the new lot carries."""
    store, tx = u.store, u.tx
    transfer_id, lot_id, quantity, unit = (take.transfer_id, take.lot_id, take.quantity,
                                           take.unit)
    if store.recorded(tx, transfer_id):
        return store.lot(lot_id, tx)
    before = store.lot(lot_id, tx)
    milli = units.to_milli(units.convert(quantity, unit, before["unit"]), before["unit"])
    if fen is None:
        fen = share_fen(before, milli)
    value = money.to_yuan(fen)
    lot = store.transfer_out(tx, lot_id, milli, fen)
    now = u.now
    moved = {
        "_id": transfer_id, "donation_id": lot["donation_id"], "category": lot["category"],
        "location_id": to_location_id, "unit": lot["unit"], "quantity": milli,
        "available": milli, "allocated": 0, "written_off": 0, "value_yuan": value,
        "value_method": lot.get("value_method"), "programme": lot.get("programme"),
        "expires_at": lot.get("expires_at"), "received_at": now, "transfer_of": lot_id,
        **{k: lot[k] for k in ("value_known", "acquisition", "face_value_yuan") if k in lot},
    }
    store.insert_lot(tx, moved)
    store.record_movement(tx, {
        "_id": transfer_id, "lot_id": lot_id, "kind": "transferred", "quantity": -milli,
        "to_lot_id": transfer_id, "to_location_id": to_location_id, "value_yuan": value,
        "at": now})
    delta = units.from_milli(milli, lot["unit"])
    u.emit("stock_changed", {
        "lot_id": lot_id, "category": lot["category"], "location_id": lot["location_id"],
        "delta": -delta, "available": units.from_milli(lot["available"], lot["unit"]),
        "unit": lot["unit"], "reason": "transferred", "transfer_id": transfer_id,
        "to_location_id": to_location_id, "value_yuan": value,
        "programme": lot.get("programme"),
    }, event_id=contract.derived_id("stock_changed", transfer_id))
    # matching adds lots only from donation_received: the new lot travels as one, marked
    # as a transfer so accounting books a movement, not goods in (see the contract)
    donation = store.donation(lot["donation_id"]) or {}
    donor = donation.get("donor") or {"name": "-", "kind": "company"}
    u.emit("donation_received", {
        "donation_id": lot["donation_id"], "donor": public_donor(donor),
        "location_id": to_location_id, "category": lot["category"], "quantity": delta,
        "unit": lot["unit"], "value_yuan": value, "value_method": lot.get("value_method"),
        "expires_at": lot.get("expires_at"), "programme": lot.get("programme"),
        "lot_id": transfer_id, "transfer_of": lot_id,
        "value_known": None if lot.get("value_known", True) else False,
        "acquisition": lot.get("acquisition"), "face_value_yuan": lot.get("face_value_yuan"),
    }, event_id=contract.derived_id("donations", "donation_received", transfer_id))
    return lot


def summarise(lots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per category and warehouse, in milli-units, and (for lots that carry a value) in fen:
    received (first arrival), transferred in and out, allocated, written off, available."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for lot in lots:
        cell = cells.setdefault((lot["category"], lot["location_id"]), {
            "category": lot["category"], "location_id": lot["location_id"],
            "dimension": units.dimension(lot["unit"]), "received_milli": 0,
            "available_milli": 0, "allocated_milli": 0, "written_off_milli": 0,
            "transferred_in_milli": 0, "transferred_out_milli": 0, "lots": 0})
        arrived = "transferred_in" if lot.get("transfer_of") else "received"
        cell[f"{arrived}_milli"] += lot["quantity"]
        cell["available_milli"] += lot["available"]
        cell["allocated_milli"] += lot.get("allocated", 0)
        cell["written_off_milli"] += lot.get("written_off", 0)
        cell["transferred_out_milli"] += lot.get("transferred", 0)
        if "value_yuan" in lot:
            value = money.to_fen(lot["value_yuan"])
            left = sum(lot.get(f"{k}_fen", 0) for k in ("allocated", "written_off",
                                                        "transferred"))
            cell[f"{arrived}_fen"] = cell.get(f"{arrived}_fen", 0) + value
            cell["in_stock_fen"] = cell.get("in_stock_fen", 0) + value - left
        cell["lots"] += 1
    return [cells[k] for k in sorted(cells)]


def donation_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A donation as lists show it: the donor as other services see them, never a
    contact; ``value_yuan`` null when no value was stated."""
    return {
        "donation_id": doc["_id"], "receipt_no": doc.get("receipt_no"),
        "donor": public_donor(doc["donor"]), "category": doc["category"],
        "quantity": doc["quantity"], "unit": doc["unit"],
        "value_yuan": doc.get("value_yuan") if doc.get("value_known", True) else None,
        "value_method": doc.get("value_method"),
        "acquisition": doc.get("acquisition") or "donated",
        "face_value_yuan": doc.get("face_value_yuan"), "location_id": doc["location_id"],
        "programme": doc.get("programme"), "pledge_id": doc.get("pledge_id"),
        "expires_at": doc.get("expires_at"), "received_at": doc.get("received_at"),
    }


def _common_filters(ref: Reference, filters: dict[str, Any]) -> Callable[[dict], bool]:
    within = listing.areas_within(ref, filters["area"]) if filters.get("area") else None

    def keep(d: dict[str, Any]) -> bool:
        return ((within is None or d["location_id"] in within)
                and all(d.get(k) == filters[k] for k in ("category", "programme")
                        if filters.get(k))
                and (not filters.get("acquisition")
                     or (d.get("acquisition") or "donated") == filters["acquisition"])
                and listing.in_period(d.get("received_at"), filters.get("from"),
                                      filters.get("to")))
    return keep


def donation_list(store: DonationsStore, ref: Reference, filters: dict[str, Any],
                  after: str | None, limit: int) -> dict[str, Any]:
    """A page of donations (``GET /api/donations``): by warehouse area, category,
    programme, acquisition (donated, purchased) and day received."""
    return listing.page(store.donation_candidates(filters.get("category")),
                        _common_filters(ref, filters), donation_view, after, limit)


LOT_STATUSES = ("available", "empty")


def lot_list(store: DonationsStore, ref: Reference, filters: dict[str, Any],
             after: str | None, limit: int) -> dict[str, Any]:
    """A page of lots (``GET /api/lots``): the donation filters, and ``status`` available
    (something left) or empty."""
    common = _common_filters(ref, filters)
    status = filters.get("status")

    def keep(d: dict[str, Any]) -> bool:
        return common(d) and (not status or (d["available"] > 0) == (status == "available"))

    return listing.page(store.lots(filters.get("category")), keep, lot_view, after, limit)


def lot_view(doc: dict[str, Any]) -> dict[str, Any]:
    unit = doc["unit"]
    return {
        "lot_id": doc["_id"],
        "category": doc["category"],
        "location_id": doc["location_id"],
        "unit": unit,
        "quantity": units.from_milli(doc["quantity"], unit),
        "available": units.from_milli(doc["available"], unit),
        "allocated": units.from_milli(doc.get("allocated", 0), unit),
        "written_off": units.from_milli(doc.get("written_off", 0), unit),
        "transferred": units.from_milli(doc.get("transferred", 0), unit),
        "transfer_of": doc.get("transfer_of"),
        "packing": doc.get("packing"),  # received as boxes: how many, and what one held
        "value_yuan": doc["value_yuan"] if doc.get("value_known", True) else None,
        "value_method": doc.get("value_method"),
        "acquisition": doc.get("acquisition") or "donated",
        "face_value_yuan": doc.get("face_value_yuan"),
        "programme": doc.get("programme"),
        "expires_at": doc.get("expires_at"),
        "received_at": doc.get("received_at"),
    }
