"""Donations: records what is pledged and what arrives (lots, each with a numbered receipt),
what leaves them (allocations, write-offs, transfers between warehouses) and the stock by
category and location.

Entrypoints only; the use cases are in ``handlers``."""

from __future__ import annotations

from functools import partial
from typing import Any

from nameko.rpc import RpcProxy, rpc

from services.common.contract import Event
from services.common.deps import ReferenceProvider, call
from services.common.errors import Conflict, Invalid, NoAnswer, NotFound
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider
from services.donations import handlers
from services.donations.handlers import (  # noqa: F401 - their home before handlers.py
    public_donor,
    share_fen,
    share_of_value,
    summarise,
)
from services.donations.store import DonationsStore


class DonationsService(ServiceEndpoints):
    name = "donations"
    # a batch waits this long for more events (handler.Batcher):
    # stock figures and donors' receipts; a lot's arrival is passed on to matching
    batch_linger_seconds = 0.05

    store: DonationsStore = StoreProvider(DonationsStore)
    reference = ReferenceProvider()
    matching = RpcProxy("matching")
    intake = RpcProxy("intake")

    def _context(self) -> handlers.Context:
        return handlers.Context(self.store, self.reference, self.store.cfg,
                                withdraw=partial(call, self.matching, "withdraw"),
                                submit=partial(call, self.intake, "submit"))

    @on_event("intake", "donation_received", batch=True)
    def on_donation_received(self, event: Event) -> None:
        self._context().atomically(lambda u: handlers.receive(u, event),
                                   event=event)

    # an allocation is taken once per assignment: its movement (keyed by the assignment)
    # is looked for first, so the same assignment again changes nothing, with no marker
    @on_event("matching", "assignment_made", batch=True, keyed_by_cause=True)
    def on_assignment_made(self, event: Event) -> None:
        self._context().atomically(lambda u: handlers.allocate(u, event.data),
                                   event=event)

    # -- stock -------------------------------------------------------------------------------
    @rpc
    def stock(self, category: str | None = None,
              location_id: str | None = None) -> list[dict[str, Any]]:
        return [handlers.lot_view(doc) for doc in self.store.lots(category, location_id)]

    @rpc
    def list_donations(self, filters: dict[str, Any], after: str | None = None,
                       limit: int = 50) -> dict[str, Any]:
        return handlers.donation_list(self.store, self.reference, filters, after, limit)

    @rpc
    def list_lots(self, filters: dict[str, Any], after: str | None = None,
                  limit: int = 50) -> dict[str, Any]:
        return handlers.lot_list(self.store, self.reference, filters, after, limit)

    @rpc
    def stock_summary(self) -> list[dict[str, Any]]:
        """Per category and warehouse, in milli-units: received, available, allocated and
        written off (what accounting reconciles its ledger against)."""
        return handlers.summarise(self.store.lots())

    @rpc(expected_exceptions=NotFound)
    def receipt(self, donation_id: str, lang: str = "zh-CN") -> dict[str, Any]:
        return handlers.receipt(self.store, self.reference, donation_id, lang)

    @rpc(expected_exceptions=(NotFound, Invalid, Conflict, NoAnswer))
    def write_off(self, request_id: str, lot_id: str, quantity: float, unit: str,
                  reason: str, note: str | None = None) -> dict[str, Any]:
        """Write off stock (expired, damaged, lost); idempotent by ``request_id``."""
        take = handlers.Withdrawal(request_id, lot_id, quantity, unit)
        return handlers.write_off(self._context(), take, reason, note)

    @rpc(expected_exceptions=(NotFound, Invalid, Conflict, NoAnswer))
    def transfer(self, request_id: str, lot_id: str, quantity: float, unit: str,
                 to_location_id: str) -> dict[str, Any]:
        """Move stock to another warehouse (a new lot there); idempotent by ``request_id``."""
        take = handlers.Withdrawal(request_id, lot_id, quantity, unit)
        return handlers.transfer(self._context(), take, to_location_id)

    # -- pledges -----------------------------------------------------------------------------
    @rpc(expected_exceptions=Invalid)
    def make_pledge(self, data: dict[str, Any]) -> dict[str, Any]:
        """Record a pledge (``pledge_made``); the same ``pledge_id`` again is harmless."""
        return handlers.make_pledge(self._context(), data)

    @rpc
    def pledges(self, open_only: bool = False) -> list[dict[str, Any]]:
        return handlers.pledge_views(self.store, open_only)

    @rpc(expected_exceptions=NotFound)
    def pledge(self, pledge_id: str) -> dict[str, Any]:
        return handlers.pledge_view(self.store, pledge_id)

    @rpc(expected_exceptions=(NotFound, Invalid, Conflict, NoAnswer))
    def receive_pledge(self, pledge_id: str, part: dict[str, Any]) -> dict[str, Any]:
        """A part of a pledge arrived: it becomes a donation through intake (idempotent by
        the part's ``donation_id``)."""
        return handlers.receive_pledge(self._context(), pledge_id, part)
