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
from services.matching import handlers, overview
from services.matching.store import MatchingStore

log = logging.getLogger(__name__)


class MatchingService(ServiceEndpoints):
    name = "matching"

    store: MatchingStore = StoreProvider(MatchingStore)
    reference = ReferenceProvider()

    @on_event("intake", "need_posted")
    def on_need_posted(self, event: Event) -> None:
        self.store.atomically(
            lambda tx: handlers.post_need(self.store, tx, self.reference, event.data,
                                          event.occurred_at, self.store.cfg),
            event=event, consumer="on_need_posted")

    @on_event("donations", "donation_received")
    def on_donation_received(self, event: Event) -> None:
        self.store.atomically(
            partial(self._add_lot, event.data), event=event, consumer="on_donation_received")

    def _add_lot(self, data: dict[str, Any], tx: Any) -> int:
        return handlers.add_lot(self.store, tx, self.reference, data)

    @every("timer_seconds")
    def tick(self) -> None:
        """Expire needs past their deadline, escalate needs open too long (each in its own
        transaction; safe with several instances: the updates are conditional)."""
        now = contract.now()
        expire_ids, escalate_ids, lapsed = handlers.due(self.store.open_index(), now)
        for need_id in lapsed:
            offer_id = (self.store.get_need(need_id) or {}).get("offer", {}) or {}
            if offer_id.get("offer_id"):
                self._guarded(partial(self._answer, offer_id["offer_id"], False, now,
                                      "lapsed"), need_id)
        for need_id in expire_ids:
            self._guarded(partial(handlers.expire, self.store, need_id=need_id), need_id)
        for need_id in escalate_ids:
            self._guarded(partial(self._escalate, need_id, now), need_id)

    def _guarded(self, work: Any, need_id: str) -> None:
        try:
            self.store.atomically(work)
        except Exception:  # noqa: BLE001 - one need must not stop the others; next tick retries
            log.exception("timer work failed", extra={"need_id": need_id})

    def _answer(self, offer_id: str, accept: bool, now: Any, outcome: str, tx: Any) -> Any:
        return handlers.answer_offer(self.store, tx, self.reference, offer_id, accept,
                                     self.store.cfg, now, outcome)

    @on_event("volunteers", "volunteer_registered")
    def on_volunteer_registered(self, event: Event) -> None:
        d = event.data
        values = {"home_community_id": d["home_community_id"], "skills": d.get("skills", []),
                  "weekly_hours_cap": d.get("weekly_hours_cap")}
        self.store.atomically(partial(self._volunteer, d["volunteer_id"], values),
                              event=event, consumer="on_volunteer_registered")

    @on_event("volunteers", "volunteer_availability_changed")
    def on_volunteer_availability_changed(self, event: Event) -> None:
        d = event.data
        values = {"check_passing": d["available"], "checked_at": d.get("checked_at")}
        self.store.atomically(partial(self._volunteer, d["volunteer_id"], values),
                              event=event, consumer="on_volunteer_availability_changed")

    def _volunteer(self, volunteer_id: str, values: dict[str, Any], tx: Any) -> int:
        return handlers.volunteer_changed(self.store, tx, self.reference, volunteer_id, values,
                                          self.store.cfg, contract.now())

    @rpc
    def answer_offer(self, offer_id: str, accept: bool) -> dict[str, Any] | None:
        """A volunteer's answer; None if the offer is not open (answered, lapsed, unknown)."""
        try:
            return self.store.atomically(partial(self._answer, offer_id, accept,
                                                 contract.now(), "declined"))
        except handlers.OfferNotOpen:
            return None

    @rpc
    def withdraw(self, lot_id: str, quantity: float, unit: str, reference: str,
                 reason: str) -> dict[str, Any]:
        """Reserve unallocated stock of a lot for a write-off or transfer (idempotent)."""
        return self.store.atomically(lambda tx: handlers.withdraw(
            self.store, tx, lot_id, quantity, unit, reference, reason))

    def _escalate(self, need_id: str, now: Any, tx: Any) -> Any:
        return handlers.escalate(self.store, tx, self.reference, need_id, self.store.cfg, now)

    @rpc
    def get_need(self, need_id: str) -> dict[str, Any] | None:
        doc = self.store.get_need(need_id)
        return handlers.need_view(doc) if doc else None

    @rpc
    def needs_overview(self) -> dict[str, Any]:
        return overview.needs_overview(self.store, self.reference, contract.now())
