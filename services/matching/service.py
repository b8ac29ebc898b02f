"""Matching: needs in, allocations out. Entrypoints only; the work is in ``handlers``."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from nameko.rpc import rpc

from services.common import contract
from services.common.contract import Event
from services.common.deps import ReferenceProvider
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider
from services.common.timers import every
from services.common.uow import Scope
from services.matching import engine, handlers, overview
from services.matching.store import MatchingStore

log = logging.getLogger(__name__)


class MatchingService(ServiceEndpoints):
    name = "matching"

    store: MatchingStore = StoreProvider(MatchingStore)
    reference = ReferenceProvider()

    @property
    def scope(self) -> Scope[MatchingStore]:
        """This worker's store (a batch's view of it in a batch), reference and settings."""
        return Scope(self.store, self.reference, self.store.cfg)

    # A need and a lot are inserted only if absent, and everything else a posting or a lot
    # does follows from that insert: an event handled again (or the same need under a new
    # event id) finds its need or lot and changes nothing, so no processed marker is kept.
    @on_event("intake", "need_posted", batch=True, keyed_by_cause=True)
    def on_need_posted(self, event: Event) -> None:
        with self.store.category_turn(event.data["category"]):
            self.scope.atomically(
                lambda u: handlers.post_need(u, event.data, event.occurred_at),
                event=event)

    @on_event("donations", "donation_received", batch=True, keyed_by_cause=True)
    def on_donation_received(self, event: Event) -> None:
        with self.store.category_turn(event.data["category"]):
            self.scope.atomically(lambda u: handlers.add_lot(u, event.data), event=event)

    @every("timer_seconds")
    def tick(self) -> None:
        """Expire needs past their deadline, escalate needs open too long (each in its own
        transaction; safe with several instances: the updates are conditional)."""
        now = contract.now()
        due = engine.due(self.store.open_deadlines(), now)
        expire_ids, escalate_ids, lapsed = due.expire, due.escalate, due.lapsed
        for need_id in lapsed:
            offer_id = (self.store.get_need(need_id) or {}).get("offer", {}) or {}
            if offer_id.get("offer_id"):
                self._guarded(partial(handlers.answer_offer, offer_id=offer_id["offer_id"],
                                      accept=False, outcome="lapsed"), need_id, now)
        for need_id in expire_ids:
            self._guarded(partial(handlers.expire, need_id=need_id), need_id, now)
        for need_id in escalate_ids:
            self._guarded(partial(handlers.escalate, need_id=need_id), need_id, now)

    def _guarded(self, work: Any, need_id: str, now: Any) -> None:
        try:
            self.scope.atomically(work, now=now)
        except Exception:  # noqa: BLE001 - one need must not stop the others; next tick retries
            log.exception("timer work failed", extra={"need_id": need_id})

    @on_event("volunteers", "volunteer_registered", batch=True)
    def on_volunteer_registered(self, event: Event) -> None:
        d = event.data
        values = {"home_community_id": d["home_community_id"], "skills": d.get("skills", []),
                  "weekly_hours_cap": d.get("weekly_hours_cap")}
        self.scope.atomically(partial(self._volunteer, d["volunteer_id"], values),
                              event=event)

    @on_event("volunteers", "volunteer_availability_changed", batch=True)
    def on_volunteer_availability_changed(self, event: Event) -> None:
        d = event.data
        values = {"check_passing": d["available"], "checked_at": d.get("checked_at")}
        self.scope.atomically(partial(self._volunteer, d["volunteer_id"], values),
                              event=event)

    @staticmethod
    def _volunteer(volunteer_id: str, values: dict[str, Any], u: handlers.Unit) -> int:
        return handlers.volunteer_changed(u, volunteer_id, values)

    @rpc
    def answer_offer(self, offer_id: str, accept: bool) -> dict[str, Any] | None:
        """A volunteer's answer; None if the offer is not open (answered, lapsed, unknown)."""
        try:
            return self.scope.atomically(
                lambda u: handlers.answer_offer(u, offer_id, accept, "declined"))
        except handlers.OfferNotOpen:
            return None

    @rpc
    def withdraw(self, lot_id: str, quantity: float, unit: str, reference: str,
                 reason: str) -> dict[str, Any]:
        """Reserve unallocated stock of a lot for a write-off or transfer (idempotent)."""
        return self.scope.atomically(lambda u: handlers.withdraw(
            u, lot_id, quantity, unit, reference, reason))

    @rpc
    def get_need(self, need_id: str) -> dict[str, Any] | None:
        doc = self.store.get_need(need_id)
        return handlers.need_view(doc) if doc else None

    @rpc
    def list_needs(self, filters: dict[str, Any], after: str | None = None,
                   limit: int = 50) -> dict[str, Any]:
        return handlers.need_list(self.store, self.reference, filters, after, limit)

    @rpc
    def needs_overview(self) -> dict[str, Any]:
        """The overview as computed at most ``OVERVIEW_SECONDS`` ago: status pages, the
        dashboard and ``relief-ops status`` polled by many people during a backlog share one
        read of the open needs instead of each making its own."""
        return self.store.overview.get(
            lambda: overview.needs_overview(self.store, self.reference, contract.now()))
