"""Volunteers: registrations, daily health checks (which gate dispatch) and logged hours."""

from __future__ import annotations

from typing import Any

from services.common import contract
from services.common.contract import Event
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider, Tx
from services.volunteers.store import VolunteersStore

FEVER_C = 37.3


class VolunteersService(ServiceEndpoints):
    name = "volunteers"

    store: VolunteersStore = StoreProvider(VolunteersStore)

    @on_event("intake", "volunteer_registered")
    def on_volunteer_registered(self, event: Event) -> None:
        self.store.atomically(lambda tx: register(self.store, tx, event),
                              event=event, consumer="on_volunteer_registered")

    @on_event("intake", "health_check_reported")
    def on_health_check_reported(self, event: Event) -> None:
        self.store.atomically(lambda tx: health_check(self.store, tx, event),
                              event=event, consumer="on_health_check_reported")

    @on_event("intake", "hours_logged")
    def on_hours_logged(self, event: Event) -> None:
        d = event.data
        doc = {"_id": d["hours_id"], **d, "date": d["date"].isoformat(), "status": "pending",
               "logged_at": event.occurred_at}
        self.store.atomically(lambda tx: self.store.add(tx, "hours", doc),
                              event=event, consumer="on_hours_logged")


def register(store: VolunteersStore, tx: Tx, event: Event) -> None:
    d = event.data
    volunteer: dict[str, Any] = {"_id": d["volunteer_id"], **d, "registered_at": event.occurred_at}
    if store.upsert_volunteer(tx, volunteer):
        # matching needs skills and home community, never the contact
        public = {k: v for k, v in d.items() if k != "contact"}
        tx.emit("volunteer_registered", public,
                event_id=contract.derived_id("volunteers", "registered", d["volunteer_id"]))


def health_check(store: VolunteersStore, tx: Tx, event: Event) -> None:
    d = event.data
    passing = d["temperature_c"] < FEVER_C and not d["in_quarantine"]
    check_id = f"{d['volunteer_id']}@{d['checked_at'].isoformat()}"
    if store.add(tx, "health_checks", {"_id": check_id, **d, "passing": passing}):
        store.set_fields(tx, d["volunteer_id"], {"last_check": {
            "checked_at": d["checked_at"], "passing": passing}})
        # dispatch is gated on it: matching keeps its own view from this event
        tx.emit("volunteer_availability_changed", {
            "volunteer_id": d["volunteer_id"], "available": passing,
            "reason": "health check passed" if passing else
            ("in quarantine" if d["in_quarantine"] else "fever"),
            "checked_at": d["checked_at"],
        }, event_id=contract.derived_id("volunteers", "availability", check_id))
