"""Donations: records what arrives (lots) and what leaves them (stock movements)."""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from services.common import contract, units
from services.common.contract import Event
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider, Tx
from services.donations.store import DonationsStore


class DonationsService(ServiceEndpoints):
    name = "donations"

    store: DonationsStore = StoreProvider(DonationsStore)

    @on_event("intake", "donation_received")
    def on_donation_received(self, event: Event) -> None:
        self.store.atomically(lambda tx: receive(self.store, tx, event),
                              event=event, consumer="on_donation_received")

    @on_event("matching", "assignment_made")
    def on_assignment_made(self, event: Event) -> None:
        self.store.atomically(lambda tx: allocate(self.store, tx, event.data),
                              event=event, consumer="on_assignment_made")

    @rpc
    def stock(self, category: str | None = None) -> list[dict[str, Any]]:
        return [lot_view(doc) for doc in self.store.lots(category)]


def receive(store: DonationsStore, tx: Tx, event: Event) -> None:
    data = event.data
    milli = units.to_milli(data["quantity"], data["unit"])
    lot_id = data["donation_id"]
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
        "value_yuan": data["value_yuan"],
        "expires_at": data.get("expires_at"),
        "received_at": event.occurred_at,
    }
    if store.insert_donation(tx, donation, lot):
        # the donor's contact stays here: no other service needs it
        donor = {k: v for k, v in data["donor"].items() if k != "contact"}
        tx.emit("donation_received", {**data, "donor": donor, "lot_id": lot_id},
                event_id=contract.derived_id("donations", "donation_received", lot_id))


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
        "value_yuan": doc["value_yuan"],
        "expires_at": doc.get("expires_at"),
        "received_at": doc.get("received_at"),
    }
