"""Periodic status reports of member organisations: when one is due, when it is missed.

Pure. An organisation reports every ``period``, counted from its last report (or from its
registration before the first one). A report not in by its due time is *missed*; the alert
names that due time, so it is raised once per organisation and missed period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

DEFAULT_PERIOD_DAYS = 7.0
DEFAULT_CHECK_SECONDS = 300.0


def period_of(extra: dict[str, Any]) -> timedelta:
    """The reporting period from the ``RELIEF`` section (``status_report_days``)."""
    return timedelta(days=float(extra.get("status_report_days") or DEFAULT_PERIOD_DAYS))


def check_seconds_of(extra: dict[str, Any]) -> float:
    """How often the timer looks for missed reports (``status_report_check_seconds``)."""
    return float(extra.get("status_report_check_seconds") or DEFAULT_CHECK_SECONDS)


def anchor_of(organisation: dict[str, Any]) -> datetime:
    return organisation.get("last_report_at") or organisation["registered_at"]


def next_due(organisation: dict[str, Any], period: timedelta) -> datetime:
    return _whole_seconds(anchor_of(organisation) + period)


def missed_due(organisation: dict[str, Any], period: timedelta,
               now: datetime) -> datetime | None:
    """The latest due time that passed without a report, or None when none did.

    Several periods missed in a row (the service was down) give one alert, for the latest;
    the due time is whole seconds so that the alert's id is stable across instances."""
    anchor = anchor_of(organisation)
    if period <= timedelta(0) or now < anchor + period:
        return None
    missed = (now - anchor) // period
    return _whole_seconds(anchor + missed * period)


def to_alert(organisations: list[dict[str, Any]], period: timedelta,
             now: datetime) -> list[tuple[str, datetime]]:
    """(organisation id, due time) for each organisation with a missed report not yet
    alerted for."""
    out = []
    for org in organisations:
        due = missed_due(org, period, now)
        if due is not None and org.get("alerted_for") != due:
            out.append((org["_id"], due))
    return out


def view(organisation: dict[str, Any], period: timedelta, now: datetime) -> dict[str, Any]:
    """Where an organisation stands with its reports (no contacts)."""
    due = next_due(organisation, period)
    return {"organisation_id": organisation["_id"], "name": organisation.get("name"),
            "role": organisation.get("role"),
            "last_report_at": organisation.get("last_report_at"),
            "last_report": organisation.get("last_report"),
            "next_due_at": due, "overdue": now >= due,
            "alerted_for": organisation.get("alerted_for")}


def _whole_seconds(at: datetime) -> datetime:
    return at.replace(microsecond=0)
