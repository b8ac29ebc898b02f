"""Donations: records what arrives (lots, each with a numbered receipt), what leaves them
(allocations, write-offs) and the stock by category and location."""

from __future__ import annotations

from typing import Any

from nameko.rpc import RpcProxy, rpc

from services.common import contract, units
from services.common.contract import Event
from services.common.deps import ReferenceProvider, RpcTimeout, call
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider, Tx
from services.donations import receipts
from services.donations.store import DonationsStore

PERSON_DONOR = "个人捐赠者"  # what other services see of a private person who donated


class DonationsService(ServiceEndpoints):
    name = "donations"

    store: DonationsStore = StoreProvider(DonationsStore)
    reference = ReferenceProvider()
    matching = RpcProxy("matching")

    @on_event("intake", "donation_received")
    def on_donation_received(self, event: Event) -> None:
        self.store.atomically(lambda tx: receive(self.store, tx, event),
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
        lot = self.store.lot(lot_id)
        if lot is None:
            return {"error": f"unknown lot {lot_id!r}", "status": 404}
        if not units.compatible(unit, lot["unit"]):
            return {"error": f"{unit} does not measure lot {lot_id} ({lot['unit']})",
                    "status": 400, "fields": {"unit": "incompatible with the lot's unit"}}
        try:
            answer = call(self.matching, "withdraw", lot_id, quantity, unit, write_off_id,
                          f"written_off:{reason}")
        except RpcTimeout as exc:
            return {"error": str(exc), "status": 504}
        if not answer.get("ok"):
            return {"error": answer.get("error") or "refused", "status": 409,
                    "available": answer.get("available")}
        lot = self.store.atomically(lambda tx: record_write_off(
            self.store, tx, write_off_id, lot_id, quantity, unit, reason, note))
        return {"write_off_id": write_off_id, "repeated": False, **lot_view(lot)}


def receive(store: DonationsStore, tx: Tx, event: Event) -> None:
    data = event.data
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
    }
    if store.insert_donation(tx, donation, lot):
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
    lot = store.take(tx, data["lot_id"], milli)
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
    lot = store.write_off(tx, lot_id, milli)
    value = share_of_value(lot, milli)
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


def summarise(lots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for lot in lots:
        cell = cells.setdefault((lot["category"], lot["location_id"]), {
            "category": lot["category"], "location_id": lot["location_id"],
            "dimension": units.dimension(lot["unit"]), "received_milli": 0,
            "available_milli": 0, "allocated_milli": 0, "written_off_milli": 0, "lots": 0})
        cell["received_milli"] += lot["quantity"]
        cell["available_milli"] += lot["available"]
        cell["allocated_milli"] += lot.get("allocated", 0)
        cell["written_off_milli"] += lot.get("written_off", 0)
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
        "value_yuan": doc["value_yuan"],
        "value_method": doc.get("value_method"),
        "expires_at": doc.get("expires_at"),
        "received_at": doc.get("received_at"),
    }
