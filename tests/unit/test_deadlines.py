"""Escalation, expiry and lapsed offers are a pure function of the clock (no waiting)."""

from datetime import UTC, datetime, timedelta

from services.matching import engine

NOW = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_a_need_open_past_its_timeout_escalates_and_not_before():
    need = engine.Deadlines("N", "community", escalate_at=NOW + 15 * MINUTE)
    assert engine.due([need], NOW + 14 * MINUTE).escalate == []
    assert engine.due([need], NOW + 15 * MINUTE).escalate == ["N"]


def test_a_need_at_the_district_has_nowhere_to_escalate():
    need = engine.Deadlines("N", "district", escalate_at=NOW - MINUTE)
    assert engine.due([need], NOW).escalate == []
    street = engine.Deadlines("S", "street", escalate_at=NOW - MINUTE)
    assert engine.due([street], NOW).escalate == ["S"]


def test_a_need_past_its_deadline_expires_instead_of_escalating():
    need = engine.Deadlines("N", "community", escalate_at=NOW - MINUTE,
                            needed_by=NOW - MINUTE, offer_expires_at=NOW - MINUTE)
    due = engine.due([need], NOW)
    assert (due.expire, due.escalate, due.lapsed) == (["N"], [], [])


def test_an_offer_lapses_at_its_expiry():
    need = engine.Deadlines("N", "community", escalate_at=NOW + 60 * MINUTE,
                            offer_expires_at=NOW)
    assert engine.due([need], NOW - MINUTE).lapsed == []
    assert engine.due([need], NOW).lapsed == ["N"]


def test_hours_count_in_the_iso_week():
    assert engine.week_of(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-W01"
    assert engine.week_of(datetime(2027, 1, 1, tzinfo=UTC)) == "2026-W53"
