"""Volunteers' use cases against an in-memory store: registrations, health checks that gate
dispatch, hours logged and decided, organisations and their status reports, training,
deliveries and programmes, read from the store's documents and the outbox."""

from datetime import UTC, date, datetime, timedelta

import pytest

from services.common.errors import Conflict, Invalid, NotFound
from services.volunteers import handlers
from tests.unit.fakes import FakeVolunteersStore, event

AT = datetime(2020, 2, 10, 9, 0, tzinfo=UTC)
HOME = "QY-S01-C01"


@pytest.fixture
def store():
    return FakeVolunteersStore()


def consume(store, type_, data, handler, consumer, at=AT):
    evt = event(type_, data, at=at)
    return store.scope().atomically(lambda u: handler(u, evt), event=evt, consumer=consumer)


def register(store, volunteer_id="V1", **extra):
    return consume(store, "volunteer_registered", {
        "volunteer_id": volunteer_id, "home_community_id": HOME, "skills": ["screening"],
        "organisation_id": "ORG1", "contact": {"name": "李娜", "phone": "13800000000"},
        **extra}, handlers.register, "on_volunteer_registered")


def test_a_volunteer_is_announced_once_without_their_contact(store):
    register(store)
    register(store, weekly_hours_cap=10)  # registered again: updated, not announced again

    [sent] = store.emitted("volunteer_registered")
    assert sent["volunteer_id"] == "V1" and "contact" not in sent
    doc = store.volunteers.get("V1")
    assert doc["contact"]["phone"] == "13800000000" and doc["weekly_hours_cap"] == 10
    assert handlers.volunteer_view(doc)["contact"]["phone"] != "13800000000"  # masked


def test_health_checks_gate_dispatch_once_per_check(store):
    register(store)

    def check(minutes, temperature, quarantine=False):
        return consume(store, "health_check_reported", {
            "volunteer_id": "V1", "checked_at": AT + timedelta(minutes=minutes),
            "temperature_c": temperature, "in_quarantine": quarantine},
            handlers.health_check, "on_health_check_reported")

    check(0, 36.5)
    check(0, 36.5)  # the same check again (a new event id): nothing new
    check(60, 37.5)
    check(120, 36.4, quarantine=True)

    assert [(e["available"], e["reason"]) for e in
            store.emitted("volunteer_availability_changed")] == [
        (True, "health check passed"), (False, "fever"), (False, "in quarantine")]
    assert store.volunteers.get("V1")["last_check"]["passing"] is False
    assert len(store.health_checks.find()) == 3


def log(store, hours_id="H1", hours=3.5):
    return consume(store, "hours_logged", {
        "hours_id": hours_id, "volunteer_id": "V1", "hours": hours,
        "date": date(2020, 2, 9), "activity": "screening",
        "assignment_id": "S1#1"}, handlers.log_hours, "on_hours_logged")


def test_hours_wait_for_a_decision_that_is_not_changed_afterwards(store):
    register(store)
    log(store, "H1")
    log(store, "H2", hours=2)
    assert [d["status"] for d in store.hours.find()] == ["pending", "pending"]
    assert store.outbox[1:] == []  # logged hours announce nothing until decided

    approved = handlers.decide_hours(store.scope(), "H1", True, None)
    again = handlers.decide_hours(store.scope(), "H1", True, None)
    rejected = handlers.decide_hours(store.scope(), "H2", False, "not on the roster")

    assert (approved["status"], approved["repeated"], again["repeated"]) == (
        "approved", False, True)
    assert rejected["status"] == "rejected"
    [sent] = store.emitted("hours_approved")
    assert (sent["hours_id"], sent["hours"], sent["organisation_id"],
            sent["assignment_id"]) == ("H1", 3.5, "ORG1", "S1#1")
    assert [e["hours_id"] for e in store.emitted("hours_rejected")] == ["H2"]
    with pytest.raises(Conflict):
        handlers.decide_hours(store.scope(), "H1", False, None)
    with pytest.raises(NotFound):
        handlers.decide_hours(store.scope(), "H9", True, None)
    assert store.hours.get("H1")["status"] == "approved"
    assert len(store.emitted("hours_approved")) == 1


def test_a_season_of_hours_is_approved_at_once_and_each_refusal_is_named(store):
    register(store)
    for i in range(250):
        log(store, f"H{i}", hours=1)
    handlers.decide_hours(store.scope(), "H7", False, "not on the roster")
    handlers.decide_hours(store.scope(), "H8", True, None)

    ids = [f"H{i}" for i in range(250)] + ["H8", "H999"]  # one twice, one unknown
    result = handlers.decide_many_hours(store.scope(), ids, True, "season sheet")

    assert result["counts"] == {"approved": 248, "repeated": 1, "refused": 2}
    assert set(result["refused"]) == {"H7", "H999"}
    assert "already rejected" in result["refused"]["H7"]
    statuses = [d["status"] for d in store.hours.find()]
    assert statuses.count("approved") == 249 and statuses.count("rejected") == 1
    approved = [e["hours_id"] for e in store.emitted("hours_approved")]
    assert len(approved) == len(set(approved)) == 249  # each announced once
    again = handlers.decide_many_hours(store.scope(), ids[:250], True, None)
    assert again["counts"] == {"repeated": 249, "refused": 1}
    assert len(store.emitted("hours_approved")) == 249


def organisation(store, organisation_id="ORG1"):
    return handlers.register_organisation(store.scope(), {
        "organisation_id": organisation_id, "name": "青羊社工中心", "role": "member",
        "kind": "social_organisation", "area_id": HOME,
        "contacts": [{"name": "张伟", "phone": "13700000000"}]})


def report(store, report_id, organisation_id="ORG1", areas=(HOME,)):
    return handlers.report_status(store.scope(), organisation_id, {
        "report_id": report_id, "activities": "入户排查", "area_ids": list(areas),
        "staff": {"total": 10, "healthy": 10}, "resumption": "partial"})


def test_organisations_register_once_and_report_their_status(store):
    assert organisation(store)["created"] is True
    assert organisation(store)["created"] is False
    [sent] = store.emitted("organisation_registered")
    assert sent["organisation_id"] == "ORG1" and "contacts" not in sent
    assert "contacts" not in handlers.organisation_views(store)[0]

    first = report(store, "R1")
    again = report(store, "R1")

    assert (first["repeated"], again["repeated"]) == (False, True)
    assert [e["report_id"] for e in store.emitted("status_reported")] == ["R1"]
    assert store.organisations.get("ORG1")["last_report"]["report_id"] == "R1"
    organisation(store, "ORG2")
    with pytest.raises(Conflict):  # another organisation's report id
        report(store, "R1", organisation_id="ORG2")
    with pytest.raises(NotFound):
        report(store, "R2", organisation_id="ORG9")
    with pytest.raises(Invalid):
        report(store, "R3", areas=("QY-X99",))
    with pytest.raises(Invalid):
        organisation(store, "")


def test_a_missed_report_is_alerted_once_per_period(store):
    organisation(store)
    period = timedelta(days=float(store.cfg.extra.get("status_report_days") or 7))
    registered = store.organisations.get("ORG1")["registered_at"]
    due = registered + period
    org = store.organisations.get("ORG1")

    def alert(now):
        return store.scope().atomically(
            lambda u: handlers.alert_missing(u, "ORG1", due.replace(microsecond=0), period),
            now=now)

    assert alert(due - timedelta(hours=1)) is False  # not due yet
    assert alert(due + timedelta(hours=1)) is True
    assert alert(due + timedelta(hours=2)) is False  # once
    [sent] = store.emitted("status_report_missing")
    assert sent["organisation_id"] == org["organisation_id"]


def test_training_deliveries_and_programmes_are_recorded_once_and_revised(store):
    training = {"session_id": "T1", "title": "防护培训", "date": "2020-02-08",
                "attendances": 40}
    assert handlers.record_training(store.scope(), training)["created"] is True
    assert handlers.record_training(store.scope(), training)["created"] is False
    delivery = {"delivery_id": "DL1", "programme": "社区理发", "category": "haircut",
                "date": "2020-02-09", "sessions": 12, "people_served": 12, "providers": 2}
    assert handlers.record_delivery(store.scope(), delivery)["created"] is True
    assert handlers.record_delivery(store.scope(), delivery)["created"] is False
    programme = {"programme_id": "PG1", "name": "邻里守望", "activities": 3,
                 "recorded_at": AT.isoformat()}

    first = handlers.record_programme(store.scope(), programme)
    same = handlers.record_programme(store.scope(), {**programme,
                                                     "recorded_at": (AT + timedelta(hours=1))
                                                     .isoformat()})
    revised = handlers.record_programme(store.scope(), {**programme, "activities": 5})

    assert [(a["revision"], a["created"]) for a in (first, same, revised)] == [
        (1, True), (1, False), (2, True)]
    assert [e["attendances"] for e in store.emitted("training_held")] == [40]
    assert [e["sessions"] for e in store.emitted("service_delivered")] == [12]
    assert [e["activities"] for e in store.emitted("programme_recorded")] == [3, 5]
    assert [(p["programme_id"], p["revision"], p["activities"]) for p in
            handlers.programme_views(store)] == [("PG1", 2, 5)]
    with pytest.raises(Invalid):
        handlers.record_training(store.scope(), {**training, "attendances": -1})
