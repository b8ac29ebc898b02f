"""Volunteers: registrations, daily health checks (which gate dispatch), logged hours and
their approval, organisations of the coalition and training sessions."""

from __future__ import annotations

from datetime import date
from typing import Any

from marshmallow import ValidationError
from nameko.rpc import rpc

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
        # logged hours wait for a coordinator; only approved ones are counted anywhere
        doc = {"_id": d["hours_id"], **d, "date": d["date"].isoformat(), "status": "pending",
               "logged_at": event.occurred_at}
        self.store.atomically(lambda tx: self.store.add(tx, "hours", doc),
                              event=event, consumer="on_hours_logged")

    # -- coordinators' commands (from the gateway) -------------------------------------------
    @rpc
    def hours(self, status: str | None = None,
              volunteer_id: str | None = None) -> list[dict[str, Any]]:
        return [hours_view(d) for d in self.store.hours(status, volunteer_id)]

    @rpc
    def decide_hours(self, hours_id: str, approve: bool, note: str | None = None
                     ) -> dict[str, Any]:
        """Approve or reject pending hours (emits ``hours_approved`` / ``hours_rejected``).
        Deciding the same way again is harmless; changing a decision is refused."""
        return self.store.atomically(
            lambda tx: decide_hours(self.store, tx, hours_id, approve, note))

    @rpc
    def register_organisation(self, data: dict[str, Any]) -> dict[str, Any]:
        try:
            org = contract.OrganisationRegistered().load(
                {k: v for k, v in data.items() if k != "contacts"})
        except ValidationError as exc:
            return {"error": "invalid organisation", "status": 400,
                    "fields": contract.flatten_errors(exc.messages)}
        doc = {"_id": org["organisation_id"], **org, "contacts": data.get("contacts") or [],
               "registered_at": contract.now()}
        created = self.store.atomically(lambda tx: add_organisation(self.store, tx, doc, org))
        return {"organisation_id": org["organisation_id"], "created": created}

    @rpc
    def organisations(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in d.items() if k not in ("_id", "contacts")}
                for d in self.store.all("organisations")]

    @rpc
    def record_training(self, data: dict[str, Any]) -> dict[str, Any]:
        try:
            session = contract.TrainingHeld().load(data)
        except ValidationError as exc:
            return {"error": "invalid training session", "status": 400,
                    "fields": contract.flatten_errors(exc.messages)}
        doc = {"_id": session["session_id"], **session, "date": session["date"].isoformat()}

        def work(tx: Tx) -> bool:
            if not self.store.add(tx, "training", doc):
                return False
            tx.emit("training_held", session,
                    event_id=contract.derived_id("volunteers", "training", doc["_id"]))
            return True

        created = self.store.atomically(work)
        return {"session_id": session["session_id"], "created": created}


def hours_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


def decide_hours(store: VolunteersStore, tx: Tx, hours_id: str, approve: bool,
                 note: str | None) -> dict[str, Any]:
    doc = store.get(tx, "hours", hours_id)
    if doc is None:
        return {"error": f"no hours {hours_id!r} (they may still be on their way)",
                "status": 404}
    wanted = "approved" if approve else "rejected"
    if doc["status"] == wanted:
        return {**hours_view(doc), "repeated": True}
    if doc["status"] != "pending":
        return {"error": f"hours {hours_id!r} are already {doc['status']}", "status": 409}
    store.set_status(tx, hours_id, wanted, note, contract.now())
    data = {"hours_id": hours_id, "volunteer_id": doc["volunteer_id"], "hours": doc["hours"],
            "date": date.fromisoformat(doc["date"]), "activity": doc.get("activity"),
            "programme": doc.get("programme")}
    if approve:
        volunteer = store.get(tx, "volunteers", doc["volunteer_id"]) or {}
        data.update(assignment_id=doc.get("assignment_id"),
                    organisation_id=volunteer.get("organisation_id"))
    tx.emit(f"hours_{wanted}", data,
            event_id=contract.derived_id("volunteers", f"hours_{wanted}", hours_id))
    return {**hours_view(doc), "status": wanted, "repeated": False}


def add_organisation(store: VolunteersStore, tx: Tx, doc: dict[str, Any],
                     org: dict[str, Any]) -> bool:
    if not store.add(tx, "organisations", doc):
        return False
    # contacts stay here: the event carries what the coalition's figures need
    tx.emit("organisation_registered", org,
            event_id=contract.derived_id("volunteers", "organisation", doc["_id"]))
    return True


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
