"""Volunteers: registrations, daily health checks (which gate dispatch), logged hours and
their approval, organisations of the coalition and training sessions.

Entrypoints only; the use cases are in ``handlers``."""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc
from nameko.timer import Timer

from services.common.config import settings
from services.common.contract import Event
from services.common.deps import ReferenceProvider
from services.common.errors import Conflict, Invalid, NotFound
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider
from services.common.uow import Scope
from services.volunteers import handlers, status
from services.volunteers.store import VolunteersStore


class ReportCheckTimer(Timer):
    """Runs every ``RELIEF.status_report_check_seconds`` (a setting of this service only)."""

    def setup(self) -> None:
        self.interval = status.check_seconds_of(settings(self.container.config).extra)
        super().setup()


class VolunteersService(ServiceEndpoints):
    name = "volunteers"

    store: VolunteersStore = StoreProvider(VolunteersStore)
    reference = ReferenceProvider()

    @property
    def scope(self) -> Scope[VolunteersStore]:
        """This worker's store (a batch's view of it in a batch), reference and settings."""
        return Scope(self.store, self.reference, self.store.cfg)

    @on_event("intake", "volunteer_registered", batch=True)
    def on_volunteer_registered(self, event: Event) -> None:
        self.scope.atomically(lambda u: handlers.register(u, event),
                              event=event)

    @on_event("intake", "health_check_reported", batch=True)
    def on_health_check_reported(self, event: Event) -> None:
        self.scope.atomically(lambda u: handlers.health_check(u, event),
                              event=event)

    @on_event("intake", "hours_logged", batch=True)
    def on_hours_logged(self, event: Event) -> None:
        self.scope.atomically(lambda u: handlers.log_hours(u, event),
                              event=event)

    # -- coordinators' commands (from the gateway) -------------------------------------------
    @rpc
    def hours(self, status: str | None = None,
              volunteer_id: str | None = None) -> list[dict[str, Any]]:
        return [handlers.hours_view(d) for d in self.store.hours(status, volunteer_id)]

    @rpc
    def list_volunteers(self, filters: dict[str, Any], after: str | None = None,
                        limit: int = 50) -> dict[str, Any]:
        return handlers.volunteer_list(self.store, self.reference, filters, after, limit)

    @rpc
    def volunteer_scopes(self, volunteer_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each known volunteer's home community and organisation (no contact): what the
        gateway checks a coordinator's area and an organisation's own records against."""
        return self.store.volunteer_scopes(list(volunteer_ids)[:1000])

    @rpc
    def hours_entry(self, hours_id: str) -> dict[str, Any] | None:
        doc = self.store.hours_entry(hours_id)
        return handlers.hours_view(doc) if doc else None

    @rpc(expected_exceptions=(NotFound, Conflict))
    def decide_hours(self, hours_id: str, approve: bool, note: str | None = None
                     ) -> dict[str, Any]:
        """Approve or reject pending hours; changing a decision is refused."""
        return handlers.decide_hours(self.scope, hours_id, approve, note)

    @rpc
    def hours_volunteers(self, hours_ids: list[str]) -> dict[str, str]:
        """Whose hours each is (hours id -> volunteer id), at most 1,000 at a time."""
        return self.store.hours_volunteers(list(hours_ids)[:1000])

    @rpc
    def decide_many_hours(self, hours_ids: list[str], approve: bool,
                          note: str | None = None) -> dict[str, Any]:
        """Approve or reject many pending hours; each refusal is named, not raised."""
        return handlers.decide_many_hours(self.scope, hours_ids, approve, note)

    @rpc(expected_exceptions=Invalid)
    def register_organisation(self, data: dict[str, Any]) -> dict[str, Any]:
        return handlers.register_organisation(self.scope, data)

    @rpc
    def organisations(self) -> list[dict[str, Any]]:
        return handlers.organisation_views(self.store)

    @rpc(expected_exceptions=Invalid)
    def record_training(self, data: dict[str, Any]) -> dict[str, Any]:
        return handlers.record_training(self.scope, data)

    @rpc(expected_exceptions=Invalid)
    def record_delivery(self, data: dict[str, Any]) -> dict[str, Any]:
        return handlers.record_delivery(self.scope, data)

    @rpc(expected_exceptions=Invalid)
    def record_programme(self, data: dict[str, Any]) -> dict[str, Any]:
        return handlers.record_programme(self.scope, data)

    @rpc
    def programmes(self) -> list[dict[str, Any]]:
        return handlers.programme_views(self.store)

    # -- organisations' periodic status reports ----------------------------------------------
    @rpc(expected_exceptions=(Invalid, NotFound, Conflict))
    def report_status(self, organisation_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Record a status report (idempotent by ``report_id``)."""
        return handlers.report_status(self.scope, organisation_id, data)

    @rpc
    def status_reports(self, organisation_id: str) -> list[dict[str, Any]]:
        return [handlers.report_view(d) for d in self.store.reports(organisation_id)]

    @rpc
    def reporting(self, overdue: bool | None = None) -> list[dict[str, Any]]:
        """Every organisation's last report, next due time and whether it is overdue."""
        return handlers.reporting(self.store, overdue)

    @ReportCheckTimer.decorator(interval=status.DEFAULT_CHECK_SECONDS)
    def check_reports(self) -> int:
        """Alert (``status_report_missing``) once per organisation and missed period."""
        return handlers.check_reports(self.scope)
