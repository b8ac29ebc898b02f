"""Volunteers' use cases: registrations, daily health checks (which gate dispatch), logged
hours and their approval, organisations of the coalition, their periodic status reports and
training sessions.

Event handlers take the :class:`~services.common.uow.UnitOfWork` of the event's transaction;
commands from the gateway take a :class:`~services.common.uow.Scope`, run their work in a unit
of work of their own and raise the typed errors of ``services.common.errors`` when they
refuse."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from marshmallow import ValidationError

from services.common import contract, listing
from services.common.contract import Event
from services.common.errors import Conflict, Invalid, NotFound
from services.common.logs import mask_name, mask_phone
from services.common.reference import Reference
from services.common.uow import Scope, UnitOfWork
from services.volunteers import status
from services.volunteers.store import VolunteersStore

log = logging.getLogger(__name__)

Unit = UnitOfWork[VolunteersStore]
Commands = Scope[VolunteersStore]

FEVER_C = 37.3


# -- hours ---------------------------------------------------------------------------------
def log_hours(u: Unit, event: Event) -> None:
    d = event.data
    # logged hours wait for a coordinator; only approved ones are counted anywhere
    doc = {"_id": d["hours_id"], **d, "date": d["date"].isoformat(), "status": "pending",
           "logged_at": event.occurred_at}
    u.store.add(u.tx, "hours", doc)


def decide_hours(scope: Commands, hours_id: str, approve: bool,
                 note: str | None) -> dict[str, Any]:
    """Approve or reject pending hours (emits ``hours_approved`` / ``hours_rejected``).
    Deciding the same way again is harmless; changing a decision is :class:`Conflict`."""
    return scope.atomically(lambda u: _decide(u, hours_id, approve, note))


DECISIONS_PER_TRANSACTION = 100  # a bulk decision commits in parts of this many


def decide_many_hours(scope: Commands, hours_ids: list[str], approve: bool,
                      note: str | None) -> dict[str, Any]:
    """Approve or reject many pending hours at once (a season's imported sheet): each is
    decided as :func:`decide_hours` decides it, in transactions of
    :data:`DECISIONS_PER_TRANSACTION`. Hours that are unknown or already decided the other
    way are named with the reason and change nothing; the others are decided."""
    outcomes: dict[str, dict[str, Any]] = {}
    ids = list(dict.fromkeys(hours_ids))  # each once, in the order given

    def part(u: Unit, chunk: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for hours_id in chunk:
            try:
                view = _decide(u, hours_id, approve, note)
            except (NotFound, Conflict) as exc:
                out[hours_id] = {"outcome": "refused", "reason": exc.message}
            else:
                out[hours_id] = {"outcome": "repeated" if view["repeated"] else view["status"]}
        return out

    for start in range(0, len(ids), DECISIONS_PER_TRANSACTION):
        chunk = ids[start:start + DECISIONS_PER_TRANSACTION]
        outcomes.update(scope.atomically(lambda u, chunk=chunk: part(u, chunk)))
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
    return {"decision": "approve" if approve else "reject", "counts": counts,
            "refused": {k: o["reason"] for k, o in outcomes.items()
                        if o["outcome"] == "refused"}}


# -- organisations and training ------------------------------------------------------------
def register_organisation(scope: Commands, data: dict[str, Any]) -> dict[str, Any]:
    """Register a member organisation (``organisation_registered``); its contacts stay
    here. The same ``organisation_id`` again is harmless."""
    try:
        org = contract.OrganisationRegistered().load(
            {k: v for k, v in data.items() if k != "contacts"})
    except ValidationError as exc:
        raise Invalid("invalid organisation", contract.flatten_errors(exc.messages)) from exc
    doc = {"_id": org["organisation_id"], **org, "contacts": data.get("contacts") or [],
           "registered_at": contract.now()}
    created = scope.atomically(lambda u: add_organisation(u, doc, org))
    return {"organisation_id": org["organisation_id"], "created": created}


def organisation_views(store: VolunteersStore) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k not in ("_id", "contacts")}
            for d in store.all("organisations")]


def record_training(scope: Commands, data: dict[str, Any]) -> dict[str, Any]:
    """Record a training session (``training_held``); the same ``session_id`` again is
    harmless."""
    try:
        session = contract.TrainingHeld().load(data)
    except ValidationError as exc:
        raise Invalid("invalid training session",
                      contract.flatten_errors(exc.messages)) from exc
    doc = {"_id": session["session_id"], **session, "date": session["date"].isoformat()}

    def work(u: Unit) -> bool:
        if not u.store.add(u.tx, "training", doc):
            return False
        u.emit("training_held", session,
               event_id=contract.derived_id("volunteers", "training", doc["_id"]))
        return True

    created = scope.atomically(work)
    return {"session_id": session["session_id"], "created": created}


def record_delivery(scope: Commands, data: dict[str, Any]) -> dict[str, Any]:
    """Record services a programme delivered (``service_delivered``); the same
    ``delivery_id`` again is harmless."""
    try:
        delivery = contract.ServiceDelivered().load(data)
    except ValidationError as exc:
        raise Invalid("invalid service delivery",
                      contract.flatten_errors(exc.messages)) from exc
    doc = {"_id": delivery["delivery_id"], **delivery, "date": delivery["date"].isoformat()}

    def work(u: Unit) -> bool:
        if not u.store.add(u.tx, "deliveries", doc):
            return False
        u.emit("service_delivered", delivery,
               event_id=contract.derived_id("volunteers", "delivery", doc["_id"]))
        return True

    created = scope.atomically(work)
    return {"delivery_id": delivery["delivery_id"], "created": created}


def record_programme(scope: Commands, data: dict[str, Any]) -> dict[str, Any]:
    """Record a programme's activities, participants and reach (``programme_recorded``).
    The same figures again are harmless; new figures replace the old ones (a new event,
    whose id is derived from the programme and its revision)."""
    data = {**data, "recorded_at": data.get("recorded_at") or contract.now().isoformat()}
    try:
        programme = contract.ProgrammeRecorded().load(data)
    except ValidationError as exc:
        raise Invalid("invalid programme", contract.flatten_errors(exc.messages)) from exc
    figures = contract.ProgrammeRecorded().dump(programme)
    same = {k: v for k, v in figures.items() if k != "recorded_at"}

    def work(u: Unit) -> dict[str, Any]:
        known = u.store.get(u.tx, "programmes", programme["programme_id"])
        if known is not None and known["figures"] == same:
            return {"revision": known["revision"], "created": False}
        revision = (known or {}).get("revision", 0) + 1
        u.store.put(u.tx, "programmes", {"_id": programme["programme_id"], "figures": same,
                                         "revision": revision,
                                         "recorded_at": programme["recorded_at"]})
        u.emit("programme_recorded", programme, event_id=contract.derived_id(
            "volunteers", "programme", programme["programme_id"], str(revision)))
        return {"revision": revision, "created": True}

    answer = scope.atomically(work)
    return {"programme_id": programme["programme_id"], **answer}


def programme_views(store: VolunteersStore) -> list[dict[str, Any]]:
    return [{"programme_id": d["_id"], "revision": d["revision"],
             "recorded_at": d["recorded_at"], **d["figures"]}
            for d in store.all("programmes")]


# -- organisations' periodic status reports ------------------------------------------------
def report_status(scope: Commands, organisation_id: str,
                  data: dict[str, Any]) -> dict[str, Any]:
    """Record a status report (idempotent by ``report_id``); the next one is due a period
    later."""
    try:
        report = contract.StatusReported().load(
            {**data, "organisation_id": organisation_id,
             "reported_at": contract.now().isoformat()})
    except ValidationError as exc:
        raise Invalid("invalid status report", contract.flatten_errors(exc.messages)) from exc
    unknown = [a for a in report["area_ids"] if a not in scope.ref.areas]
    if unknown:
        raise Invalid("unknown area", {"area_ids": f"unknown area(s): {', '.join(unknown)}"})
    return scope.atomically(lambda u: record_report(u, report))


def reporting(store: VolunteersStore, overdue: bool | None) -> list[dict[str, Any]]:
    """Every organisation's last report, next due time and whether it is overdue."""
    period = status.period_of(store.cfg.extra)
    now = contract.now()
    rows = [status.view(o, period, now) for o in store.all("organisations")]
    return [r for r in rows if overdue is None or r["overdue"] == overdue]


def check_reports(scope: Commands) -> int:
    """Alert (``status_report_missing``) once per organisation and missed period. Safe with
    several instances: the alert is a conditional update of ``alerted_for`` in the
    transaction that emits it, and its id is derived from organisation and due time."""
    period = status.period_of(scope.cfg.extra)
    due = status.to_alert(scope.store.all("organisations"), period, contract.now())
    raised = 0
    for organisation_id, due_at in due:
        try:
            raised += bool(scope.atomically(
                lambda u, o=organisation_id, d=due_at: alert_missing(u, o, d, period)))
        except Exception:  # noqa: BLE001 - one organisation must not stop the others
            log.exception("status report check failed for %s", organisation_id)
    return raised


def record_report(u: Unit, report: dict[str, Any]) -> dict[str, Any]:
    store, tx = u.store, u.tx
    organisation = store.get(tx, "organisations", report["organisation_id"])
    if organisation is None:
        raise NotFound(f"no organisation {report['organisation_id']!r}")
    known = store.get(tx, "status_reports", report["report_id"])
    if known is not None:
        if known["organisation_id"] != report["organisation_id"]:
            raise Conflict(f"report {report['report_id']!r} belongs to another organisation")
        return {**report_view(known), "repeated": True}
    doc = {"_id": report["report_id"], **report,
           "resumed_on": report["resumed_on"].isoformat() if report.get("resumed_on") else None}
    store.add(tx, "status_reports", doc)
    store.report_received(tx, report["organisation_id"], report["reported_at"], {
        "report_id": report["report_id"], "resumption": report["resumption"],
        "staff": report["staff"], "area_ids": report["area_ids"]})
    u.emit("status_reported", report,
           event_id=contract.derived_id("volunteers", "status_reported", report["report_id"]))
    return {**report_view(doc), "repeated": False}


def alert_missing(u: Unit, organisation_id: str, due_at: Any, period: Any) -> bool:
    store, tx = u.store, u.tx
    organisation = store.get(tx, "organisations", organisation_id)
    if organisation is None or status.missed_due(organisation, period, u.now) != due_at:
        return False  # a report came in meanwhile
    if not store.mark_alerted(tx, organisation_id, due_at):
        return False  # another instance alerted for this due time, or a report came in
    u.emit("status_report_missing", {"organisation_id": organisation_id, "due_at": due_at},
           event_id=contract.derived_id("volunteers", "status_report_missing",
                                        organisation_id, due_at.isoformat()))
    return True


def report_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


def hours_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


def _decide(u: Unit, hours_id: str, approve: bool, note: str | None) -> dict[str, Any]:
    store, tx = u.store, u.tx
    doc = store.get(tx, "hours", hours_id)
    if doc is None:
        raise NotFound(f"no hours {hours_id!r} (they may still be on their way)")
    wanted = "approved" if approve else "rejected"
    if doc["status"] == wanted:
        return {**hours_view(doc), "repeated": True}
    if doc["status"] != "pending":
        raise Conflict(f"hours {hours_id!r} are already {doc['status']}")
    store.set_status(tx, hours_id, wanted, note, u.now)
    data = {"hours_id": hours_id, "volunteer_id": doc["volunteer_id"], "hours": doc["hours"],
            "date": date.fromisoformat(doc["date"]), "activity": doc.get("activity"),
            "programme": doc.get("programme")}
    if approve:
        volunteer = store.get(tx, "volunteers", doc["volunteer_id"]) or {}
        data.update(assignment_id=doc.get("assignment_id"),
                    organisation_id=volunteer.get("organisation_id"))
    u.emit(f"hours_{wanted}", data,
           event_id=contract.derived_id("volunteers", f"hours_{wanted}", hours_id))
    return {**hours_view(doc), "status": wanted, "repeated": False}


def add_organisation(u: Unit, doc: dict[str, Any], org: dict[str, Any]) -> bool:
    if not u.store.add(u.tx, "organisations", doc):
        return False
    # contacts stay here: the event carries what the coalition's figures need
    u.emit("organisation_registered", org,
           event_id=contract.derived_id("volunteers", "organisation", doc["_id"]))
    return True


def register(u: Unit, event: Event) -> None:
    d = event.data
    volunteer: dict[str, Any] = {"_id": d["volunteer_id"], **d, "registered_at": event.occurred_at}
    if u.store.upsert_volunteer(u.tx, volunteer):
        # matching needs skills and home community, never the contact
        public = {k: v for k, v in d.items() if k != "contact"}
        u.emit("volunteer_registered", public,
               event_id=contract.derived_id("volunteers", "registered", d["volunteer_id"]))


def volunteer_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A volunteer as lists show them: the contact masked (personal data stays here)."""
    contact = doc.get("contact") or {}
    check = doc.get("last_check") or {}
    return {"volunteer_id": doc["_id"], "home_community_id": doc["home_community_id"],
            "skills": doc.get("skills", []), "organisation_id": doc.get("organisation_id"),
            "weekly_hours_cap": doc.get("weekly_hours_cap"),
            "registered_at": doc.get("registered_at"),
            "health_check": {"checked_at": check.get("checked_at"),
                             "passing": check.get("passing")} if check else None,
            "contact": {"name": mask_name(contact.get("name")),
                        "phone": mask_phone(contact.get("phone"))} if contact else None}


def volunteer_list(store: VolunteersStore, ref: Reference, filters: dict[str, Any],
                   after: str | None, limit: int) -> dict[str, Any]:
    """A page of volunteers (``GET /api/volunteers``): by home area, skill (``category``),
    organisation, health (``status`` passing, failing, unchecked) and day registered."""
    area = filters.get("area")
    community = area if area and ref.areas.is_community(area) else None
    within = listing.areas_within(ref, area) if area else None
    status = filters.get("status")

    def health(d: dict[str, Any]) -> str:
        check = d.get("last_check")
        return "unchecked" if not check else ("passing" if check.get("passing") else "failing")

    def keep(d: dict[str, Any]) -> bool:
        return ((within is None or d["home_community_id"] in within)
                and (not filters.get("category") or filters["category"] in d.get("skills", []))
                and (not filters.get("organisation_id")
                     or d.get("organisation_id") == filters["organisation_id"])
                and (not status or health(d) == status)
                and listing.in_period(d.get("registered_at"), filters.get("from"),
                                      filters.get("to")))

    return listing.page(store.volunteer_candidates(community), keep, volunteer_view, after,
                        limit)


def health_check(u: Unit, event: Event) -> None:
    store, tx, d = u.store, u.tx, event.data
    passing = d["temperature_c"] < FEVER_C and not d["in_quarantine"]
    check_id = f"{d['volunteer_id']}@{d['checked_at'].isoformat()}"
    if store.add(tx, "health_checks", {"_id": check_id, **d, "passing": passing}):
        store.set_fields(tx, d["volunteer_id"], {"last_check": {
            "checked_at": d["checked_at"], "passing": passing}})
        # dispatch is gated on it: matching keeps its own view from this event
        u.emit("volunteer_availability_changed", {
            "volunteer_id": d["volunteer_id"], "available": passing,
            "reason": "health check passed" if passing else
            ("in quarantine" if d["in_quarantine"] else "fever"),
            "checked_at": d["checked_at"],
        }, event_id=contract.derived_id("volunteers", "availability", check_id))
