"""Intake: the door for outside systems (exchange ``relief.intake``) and for the gateway.

A valid event is republished on ``intake.events`` with the same event id and data; a
duplicate event id is dropped silently; anything invalid is dead-lettered to
``relief.intake.dlq`` with the reason in ``x-relief-error`` (by the handler base).
"""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from services.common import contract
from services.common.deps import ReferenceProvider
from services.common.handler import on_intake
from services.common.metrics import ServiceEndpoints
from services.common.store import DUPLICATE, StoreProvider, Tx
from services.intake.checks import check_references
from services.intake.store import IntakeStore

CONSUMER = "intake"  # one dedupe log for the exchange and the gateway alike


class IntakeService(ServiceEndpoints):
    name = "intake"

    store: IntakeStore = StoreProvider(IntakeStore)
    reference = ReferenceProvider()

    @on_intake()
    def accept(self, event: contract.Event) -> None:
        self._accept(event)

    @rpc
    def submit(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """Accept an event from the gateway. Returns ``{"event_id", "duplicate"}`` or
        ``{"error", "fields"}`` for an invalid one (nothing is stored then)."""
        try:
            event = contract.parse(envelope)
            if event.type not in contract.INTAKE_TYPES:
                raise contract.ContractError(f"event type {event.type!r} is not accepted")
            duplicate = self._accept(event)
        except contract.ContractError as exc:
            return {"error": exc.reason, "fields": exc.fields}
        return {"event_id": event.event_id, "duplicate": duplicate}

    def _accept(self, event: contract.Event) -> bool:
        check_references(event, self.reference)

        def republish(tx: Tx) -> None:
            tx.emit(event.type, event.data, event_id=event.event_id,
                    occurred_at=event.occurred_at)

        return self.store.atomically(republish, event=event, consumer=CONSUMER) is DUPLICATE
