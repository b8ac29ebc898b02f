"""Volunteers: registrations, daily health checks (which gate dispatch), logged hours and
their approval, organisations of the coalition and training sessions."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from marshmallow import ValidationError
from nameko.rpc import rpc
from nameko.timer import Timer

from services.common import contract
from services.common.config import settings
from services.common.contract import Event
from services.common.deps import ReferenceProvider
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider, Tx
from services.volunteers import status
from services.volunteers.store import VolunteersStore

log = logging.getLogger(__name__)

FEVER_C = 37.3


class ReportCheckTimer(Timer):
    """Runs every ``RELIEF.status_report_check_seconds`` (a setting of this service only)."""

    def setup(self) -> None:
        self.interval = status.check_seconds_of(settings(self.container.config).extra)
        super().setup()


class VolunteersService(ServiceEndpoints):
    name = "volunteers"

    store: VolunteersStore = StoreProvider(VolunteersStore)
    reference = ReferenceProvider()

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


    # -- organisations' periodic status reports ----------------------------------------------
    @rpc
    def report_status(self, organisation_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Record a status report (idempotent by ``report_id``); the next one is due a
        period later."""
        try:
            report = contract.StatusReported().load(
                {**data, "organisation_id": organisation_id,
                 "reported_at": contract.now().isoformat()})
        except ValidationError as exc:
            return {"error": "invalid status report", "status": 400,
                    "fields": contract.flatten_errors(exc.messages)}
        unknown = [a for a in report["area_ids"] if a not in self.reference.areas]
        if unknown:
            return {"error": "unknown area", "status": 400,
                    "fields": {"area_ids": f"unknown area(s): {', '.join(unknown)}"}}
        return self.store.atomically(lambda tx: record_report(self.store, tx, report))

    @rpc
    def status_reports(self, organisation_id: str) -> list[dict[str, Any]]:
        return [report_view(d) for d in self.store.reports(organisation_id)]

    @rpc
    def reporting(self, overdue: bool | None = None) -> list[dict[str, Any]]:
        """Every organisation's last report, next due time and whether it is overdue."""
        period = status.period_of(self.store.cfg.extra)
        now = contract.now()
        rows = [status.view(o, period, now) for o in self.store.all("organisations")]
        return [r for r in rows if overdue is None or r["overdue"] == overdue]

    @ReportCheckTimer.decorator(interval=status.DEFAULT_CHECK_SECONDS)
    def check_reports(self) -> int:
        """Alert (``status_report_missing``) once per organisation and missed period. Safe
        with several instances: the alert is a conditional update of ``alerted_for`` in the
        transaction that emits it, and its id is derived from organisation and due time."""
        period = status.period_of(self.store.cfg.extra)
        due = status.to_alert(self.store.all("organisations"), period, contract.now())
        raised = 0
        for organisation_id, due_at in due:
            try:
                raised += bool(self.store.atomically(
                    lambda tx, o=organisation_id, d=due_at: alert_missing(
                        self.store, tx, o, d, period)))
            except Exception:  # noqa: BLE001 - one organisation must not stop the others
                log.exception("status report check failed for %s", organisation_id)
        return raised


def record_report(store: VolunteersStore, tx: Tx, report: dict[str, Any]) -> dict[str, Any]:
    organisation = store.get(tx, "organisations", report["organisation_id"])
    if organisation is None:
        return {"error": f"no organisation {report['organisation_id']!r}", "status": 404}
    known = store.get(tx, "status_reports", report["report_id"])
    if known is not None:
        if known["organisation_id"] != report["organisation_id"]:
            return {"error": f"report {report['report_id']!r} belongs to another "
                             "organisation", "status": 409}
        return {**report_view(known), "repeated": True}
    doc = {"_id": report["report_id"], **report,
           "resumed_on": report["resumed_on"].isoformat() if report.get("resumed_on") else None}
    store.add(tx, "status_reports", doc)
    store.report_received(tx, report["organisation_id"], report["reported_at"], {
        "report_id": report["report_id"], "resumption": report["resumption"],
        "staff": report["staff"], "area_ids": report["area_ids"]})
    tx.emit("status_reported", report,
            event_id=contract.derived_id("volunteers", "status_reported", report["report_id"]))
    return {**report_view(doc), "repeated": False}


def alert_missing(store: VolunteersStore, tx: Tx, organisation_id: str, due_at: Any,
                  period: Any) -> bool:
    organisation = store.get(tx, "organisations", organisation_id)
    if organisation is None or status.missed_due(organisation, period,
                                                 contract.now()) != due_at:
        return False  # a report came in meanwhile
    if not store.mark_alerted(tx, organisation_id, due_at):
        return False  # another instance alerted for this due time, or a report came in
    tx.emit("status_report_missing", {"organisation_id": organisation_id, "due_at": due_at},
            event_id=contract.derived_id("volunteers", "status_report_missing",
                                         organisation_id, due_at.isoformat()))
    return True


def report_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


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
