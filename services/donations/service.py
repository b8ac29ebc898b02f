"""Donations: records what is pledged and what arrives (lots, each with a numbered receipt),
what leaves them (allocations, write-offs, transfers between warehouses) and the stock by
category and location."""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from marshmallow import ValidationError, fields
from nameko.rpc import RpcProxy, rpc

from services.common import contract, units
from services.common.contract import Event
from services.common.deps import ReferenceProvider, RpcTimeout, call
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.reference import Reference
from services.common.store import StoreProvider, Tx
from services.donations import pledges, receipts
from services.donations.store import DonationsStore

log = logging.getLogger(__name__)

PERSON_DONOR = "个人捐赠者"  # what other services see of a private person who donated


class DonationsService(ServiceEndpoints):
    name = "donations"

    store: DonationsStore = StoreProvider(DonationsStore)
    reference = ReferenceProvider()
    matching = RpcProxy("matching")
    intake = RpcProxy("intake")

    @on_event("intake", "donation_received")
    def on_donation_received(self, event: Event) -> None:
        self.store.atomically(lambda tx: receive(self.store, tx, event, self.reference),
                              event=event, consumer="on_donation_received")

    @on_event("matching", "assignment_made")
    def on_assignment_made(self, event: Event) -> None:
        self.store.atomically(lambda tx: allocate(self.store, tx, event.data),
                              event=event, consumer="on_assignment_made")

    @rpc
    def stock(self, category: str | None = None,
              location_id: str | None = None) -> list[dict[str, Any]]:
        return [lot_view(doc) for doc in self.store.lots(category, location_id)]

    @rpc
    def stock_summary(self) -> list[dict[str, Any]]:
        """Per category and warehouse, in milli-units: received, available, allocated and
        written off (what accounting reconciles its ledger against)."""
        return summarise(self.store.lots())

    @rpc
    def receipt(self, donation_id: str, lang: str = "zh-CN") -> dict[str, Any] | None:
        donation = self.store.donation(donation_id)
        if donation is None:
            return None
        return {"receipt_no": donation["receipt_no"], "donation_id": donation_id,
                "html": receipts.render(donation, self.reference, lang)}

    @rpc
    def write_off(self, request_id: str, lot_id: str, quantity: float, unit: str,
                  reason: str, note: str | None = None) -> dict[str, Any]:
        """Write off stock (expired, damaged, lost). Matching first takes it out of reach of
        allocation; then it leaves the lot here. Idempotent by ``request_id``."""
        write_off_id = f"WO-{request_id}"
        done = self.store.movement(write_off_id)
        if done is not None:
            return {"write_off_id": write_off_id, "repeated": True,
                    **lot_view(self.store.lot(done["lot_id"]))}
        lot, problem = self._lot_in(lot_id, unit)
        if problem:
            return problem
        problem = self._withdraw(lot_id, quantity, unit, write_off_id, f"written_off:{reason}")
        if problem:
            return problem
        lot = self.store.atomically(lambda tx: record_write_off(
            self.store, tx, write_off_id, lot_id, quantity, unit, reason, note))
        return {"write_off_id": write_off_id, "repeated": False, **lot_view(lot)}

    @rpc
    def transfer(self, request_id: str, lot_id: str, quantity: float, unit: str,
                 to_location_id: str) -> dict[str, Any]:
        """Move stock to another warehouse: matching first takes it out of reach of
        allocation, then one transaction takes it from the lot and makes a lot at the
        destination (same category, unit, expiry; its share of the value). Idempotent by
        ``request_id``."""
        transfer_id = f"TR-{request_id}"
        done = self.store.movement(transfer_id)
        if done is not None:
            return {"transfer_id": transfer_id, "repeated": True, "to_lot_id": done["to_lot_id"],
                    **lot_view(self.store.lot(done["lot_id"]))}
        lot, problem = self._lot_in(lot_id, unit)
        if problem:
            return problem
        if to_location_id not in self.reference.areas:
            return {"error": "unknown warehouse", "status": 400,
                    "fields": {"to_location_id": f"unknown area {to_location_id!r}"}}
        if to_location_id == lot["location_id"]:
            return {"error": "the lot is already there", "status": 400,
                    "fields": {"to_location_id": "the lot's own warehouse"}}
        if self.store.lot(transfer_id) is not None:
            return {"error": f"lot id {transfer_id!r} is taken; choose another request_id",
                    "status": 409}
        problem = self._withdraw(lot_id, quantity, unit, transfer_id, "transferred")
        if problem:
            return problem
        lot = self.store.atomically(lambda tx: record_transfer(
            self.store, tx, transfer_id, lot_id, quantity, unit, to_location_id))
        return {"transfer_id": transfer_id, "repeated": False, "to_lot_id": transfer_id,
                **lot_view(lot)}

    def _lot_in(self, lot_id: str, unit: str) -> tuple[dict[str, Any] | None, dict | None]:
        """The lot, or the answer for an unknown lot or a unit that does not measure it."""
        lot = self.store.lot(lot_id)
        if lot is None:
            return None, {"error": f"unknown lot {lot_id!r}", "status": 404}
        if not units.compatible(unit, lot["unit"]):
            return None, {"error": f"{unit} does not measure lot {lot_id} ({lot['unit']})",
                          "status": 400, "fields": {"unit": "incompatible with the lot's unit"}}
        return lot, None

    def _withdraw(self, lot_id: str, quantity: float, unit: str, reference: str,
                  reason: str) -> dict | None:
        """Take the stock out of matching's reach first (never both allocated and moved);
        None when done, else the answer to give."""
        try:
            answer = call(self.matching, "withdraw", lot_id, quantity, unit, reference, reason)
        except RpcTimeout as exc:
            return {"error": str(exc), "status": 504}
        if not answer.get("ok"):
            return {"error": answer.get("error") or "refused", "status": 409,
                    "available": answer.get("available")}
        return None

    # -- pledges -----------------------------------------------------------------------------
    @rpc
    def make_pledge(self, data: dict[str, Any]) -> dict[str, Any]:
        """Record a pledge (``pledge_made``); the same ``pledge_id`` again is harmless."""
        try:
            pledge = contract.PledgeMade().load(data)
        except ValidationError as exc:
            return {"error": "invalid pledge", "status": 400,
                    "fields": contract.flatten_errors(exc.messages)}
        problems = self._check_goods(pledge["category"], pledge["unit"],
                                     pledge.get("location_id"))
        if problems:
            return {"error": "invalid pledge", "status": 400, "fields": problems}
        created = self.store.atomically(lambda tx: make_pledge(self.store, tx, pledge))
        return {**pledges.view(self.store.pledge(pledge["pledge_id"]), contract.now().date()),
                "created": created}

    @rpc
    def pledges(self, open_only: bool = False) -> list[dict[str, Any]]:
        today = contract.now().date()
        views = [pledges.view(p, today) for p in self.store.pledges()]
        views.sort(key=lambda v: (v["expected_at"], v["pledge_id"]))
        return [v for v in views if not open_only or v["status"] != "received"]

    @rpc
    def pledge(self, pledge_id: str) -> dict[str, Any] | None:
        doc = self.store.pledge(pledge_id)
        return pledges.view(doc, contract.now().date()) if doc else None

    @rpc
    def receive_pledge(self, pledge_id: str, part: dict[str, Any]) -> dict[str, Any]:
        """A part of a pledge arrived: it becomes a donation through intake like any other
        (``donation_received`` with ``pledge_id``); the pledge counts it when its lot is
        recorded. Idempotent by the part's ``donation_id``."""
        pledge = self.store.pledge(pledge_id)
        if pledge is None:
            return {"error": f"no pledge {pledge_id!r}", "status": 404}
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
            return {"error": "invalid part", "status": 400, "fields": fields_}
        data = {"donation_id": part["donation_id"], "donor": pledge["donor"],
                "location_id": location_id, "category": pledge["category"],
                "quantity": part["quantity"], "unit": unit, "value_yuan": value,
                "value_method": part.get("value_method"),
                "expires_at": _when(part.get("expires_at")),
                "programme": pledge.get("programme"),
                "pledge_id": pledge_id}
        event_id = contract.derived_id("donations", "pledge_part", pledge_id,
                                       part["donation_id"])
        try:
            envelope = contract.build("donation_received", data, source="donations",
                                      event_id=event_id)
            answer = call(self.intake, "submit", envelope)
        except contract.ContractError as exc:
            return {"error": exc.reason, "status": 400, "fields": exc.fields}
        except RpcTimeout as exc:
            return {"error": str(exc), "status": 504}
        if "error" in answer:
            return {"error": answer["error"], "status": 400, "fields": answer.get("fields")}
        return {"pledge_id": pledge_id, "donation_id": part["donation_id"],
                "event_id": answer["event_id"], "duplicate": answer["duplicate"],
                "status_url": f"/api/pledges/{pledge_id}"}

    def _check_goods(self, category: str, unit: str,
                     location_id: str | None) -> dict[str, str]:
        problems = {}
        cat = self.reference.catalogue.get(category)
        if cat is None or cat.kind != "goods":
            problems["category"] = f"unknown goods category {category!r}"
        elif not units.compatible(unit, cat.unit):
            problems["unit"] = f"{unit!r} does not measure {category!r} (counted in {cat.unit})"
        if location_id and location_id not in self.reference.areas:
            problems["location_id"] = f"unknown area {location_id!r}"
        return problems


def _when(value: Any) -> Any:
    """An ISO time from a JSON body (the gateway passes bodies as they came)."""
    if isinstance(value, str):
        return fields.AwareDateTime(default_timezone=UTC).deserialize(value)
    return value


def make_pledge(store: DonationsStore, tx: Tx, pledge: dict[str, Any]) -> bool:
    doc = {"_id": pledge["pledge_id"], **pledge,
           "expected_at": pledge["expected_at"].isoformat(),
           "quantity_milli": units.to_milli(pledge["quantity"], pledge["unit"]),
           "received_milli": 0, "received_fen": 0, "parts": [], "made_at": contract.now()}
    if not store.insert_pledge(tx, doc):
        return False
    tx.emit("pledge_made", {**pledge, "donor": public_donor(pledge["donor"])},
            event_id=contract.derived_id("donations", "pledge_made", pledge["pledge_id"]))
    return True


def count_pledge_part(store: DonationsStore, tx: Tx, data: dict[str, Any]) -> None:
    """A donation naming a pledge counts towards it when it is the pledged category."""
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


def receive(store: DonationsStore, tx: Tx, event: Event, ref: Reference) -> None:
    # a transfer, and counting boxes in what they hold, are this service's own doing, never
    # something an outsider declares
    data = {k: v for k, v in event.data.items() if k not in ("transfer_of", "boxes")}
    data = counted_in_contents(data, ref)
    if units.dimension(data["unit"]) == "money":
        # cash: its value is its amount, whatever was declared beside it
        data["value_yuan"] = units.convert(data["quantity"], data["unit"], "yuan")
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
        "programme": data.get("programme"),
        "expires_at": data.get("expires_at"),
        "received_at": event.occurred_at,
        "pledge_id": data.get("pledge_id"),
        "packing": ({k: data[k] for k in ("boxes", "box_size", "box_unit")}
                    if data.get("boxes") else None),
    }
    if store.insert_donation(tx, donation, lot):
        if data.get("pledge_id"):
            count_pledge_part(store, tx, data)
        number = store.next_number(tx, f"receipt:{year}")
        tx.db.donations.update_one(
            {"_id": donation["_id"]},
            {"$set": {"receipt_no": receipts.receipt_number(year, number)}},
            session=tx.session)
        tx.emit("donation_received", {**data, "donor": public_donor(data["donor"]),
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


def allocate(store: DonationsStore, tx: Tx, data: dict[str, Any]) -> None:
    milli = units.to_milli(data["lot_quantity"], data["lot_unit"])
    lot = store.take(tx, data["lot_id"], milli, fen=round(data["value_yuan"] * 100))
    store.record_movement(tx, {
        "_id": data["assignment_id"], "lot_id": data["lot_id"], "kind": "allocated",
        "quantity": -milli, "need_id": data["need_id"], "at": contract.now(),
    })
    tx.emit("stock_changed", {
        "lot_id": lot["_id"], "category": lot["category"], "location_id": lot["location_id"],
        "delta": -data["lot_quantity"],
        "available": units.from_milli(lot["available"], lot["unit"]),
        "unit": lot["unit"], "reason": "allocated", "assignment_id": data["assignment_id"],
    }, event_id=contract.derived_id("stock_changed", data["assignment_id"]))


def share_of_value(lot: dict[str, Any], milli: int) -> float:
    """The part of the lot's intake value that ``milli`` of it carries (to the fen)."""
    if not lot["quantity"]:
        return 0.0
    return round(lot["value_yuan"] * milli / lot["quantity"], 2)


def record_write_off(store: DonationsStore, tx: Tx, write_off_id: str, lot_id: str,
                     quantity: float, unit: str, reason: str,
                     note: str | None) -> dict[str, Any]:
    if store.movement(write_off_id, tx) is not None:
        return store.db.lots.find_one({"_id": lot_id}, session=tx.session)
    before = store.db.lots.find_one({"_id": lot_id}, session=tx.session)
    milli = units.to_milli(units.convert(quantity, unit, before["unit"]), before["unit"])
    value = share_of_value(before, milli)
    lot = store.write_off(tx, lot_id, milli, fen=round(value * 100))
    store.record_movement(tx, {
        "_id": write_off_id, "lot_id": lot_id, "kind": "written_off", "quantity": -milli,
        "reason": reason, "note": note, "value_yuan": value, "at": contract.now(),
        "lot": {"category": lot["category"], "location_id": lot["location_id"],
                "unit": lot["unit"], "quantity": lot["quantity"], "available": lot["available"],
                "value_yuan": lot["value_yuan"]},
    })
    tx.emit("stock_changed", {
        "lot_id": lot_id, "category": lot["category"], "location_id": lot["location_id"],
        "delta": -units.from_milli(milli, lot["unit"]),
        "available": units.from_milli(lot["available"], lot["unit"]), "unit": lot["unit"],
        "reason": "written_off", "write_off_id": write_off_id, "write_off_reason": reason,
        "value_yuan": value, "programme": lot.get("programme"),
    }, event_id=contract.derived_id("stock_changed", write_off_id))
    return lot


def record_transfer(store: DonationsStore, tx: Tx, transfer_id: str, lot_id: str,
                    quantity: float, unit: str, to_location_id: str) -> dict[str, Any]:
    if store.movement(transfer_id, tx) is not None:
        return store.lot(lot_id, tx)
    before = store.lot(lot_id, tx)
    milli = units.to_milli(units.convert(quantity, unit, before["unit"]), before["unit"])
    value = share_of_value(before, milli)
    lot = store.transfer_out(tx, lot_id, milli, round(value * 100))
    now = contract.now()
    moved = {
        "_id": transfer_id, "donation_id": lot["donation_id"], "category": lot["category"],
        "location_id": to_location_id, "unit": lot["unit"], "quantity": milli,
        "available": milli, "allocated": 0, "written_off": 0, "value_yuan": value,
        "value_method": lot.get("value_method"), "programme": lot.get("programme"),
        "expires_at": lot.get("expires_at"), "received_at": now, "transfer_of": lot_id,
    }
    store.insert_lot(tx, moved)
    store.record_movement(tx, {
        "_id": transfer_id, "lot_id": lot_id, "kind": "transferred", "quantity": -milli,
        "to_lot_id": transfer_id, "to_location_id": to_location_id, "value_yuan": value,
        "at": now})
    delta = units.from_milli(milli, lot["unit"])
    tx.emit("stock_changed", {
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
    tx.emit("donation_received", {
        "donation_id": lot["donation_id"], "donor": public_donor(donor),
        "location_id": to_location_id, "category": lot["category"], "quantity": delta,
        "unit": lot["unit"], "value_yuan": value, "value_method": lot.get("value_method"),
        "expires_at": lot.get("expires_at"), "programme": lot.get("programme"),
        "lot_id": transfer_id, "transfer_of": lot_id,
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
            value = round(lot["value_yuan"] * 100)
            left = sum(lot.get(f"{k}_fen", 0) for k in ("allocated", "written_off",
                                                        "transferred"))
            cell[f"{arrived}_fen"] = cell.get(f"{arrived}_fen", 0) + value
            cell["in_stock_fen"] = cell.get("in_stock_fen", 0) + value - left
        cell["lots"] += 1
    return [cells[k] for k in sorted(cells)]


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
        "value_yuan": doc["value_yuan"],
        "value_method": doc.get("value_method"),
        "expires_at": doc.get("expires_at"),
        "received_at": doc.get("received_at"),
    }
