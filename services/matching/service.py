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
from services.common.store import StoreProvider
from services.common.timers import every
from services.matching import handlers, overview
from services.matching.store import MatchingStore

log = logging.getLogger(__name__)


class MatchingService:
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
        expire_ids, escalate_ids = handlers.due(self.store.open_index(), now)
        for need_id in expire_ids:
            self._guarded(partial(handlers.expire, self.store, need_id=need_id), need_id)
        for need_id in escalate_ids:
            self._guarded(partial(self._escalate, need_id, now), need_id)

    def _guarded(self, work: Any, need_id: str) -> None:
        try:
            self.store.atomically(work)
        except Exception:  # noqa: BLE001 - one need must not stop the others; next tick retries
            log.exception("timer work failed", extra={"need_id": need_id})

    def _escalate(self, need_id: str, now: Any, tx: Any) -> Any:
        return handlers.escalate(self.store, tx, self.reference, need_id, self.store.cfg, now)

    @rpc
    def get_need(self, need_id: str) -> dict[str, Any] | None:
        doc = self.store.get_need(need_id)
        return handlers.need_view(doc) if doc else None

    @rpc
    def needs_overview(self) -> dict[str, Any]:
        return overview.needs_overview(self.store, self.reference, contract.now())
