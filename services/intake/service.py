"""Intake: the door for outside systems (exchange ``relief.intake``) and for the gateway.

A valid event is republished on ``intake.events`` with the same event id and data; a
duplicate event id is dropped silently; anything invalid is dead-lettered to
``relief.intake.dlq`` with the reason in ``x-relief-error`` (by the handler base).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pymongo
from nameko.rpc import rpc

from services.common import contract, errors
from services.common.config import settings
from services.common.deps import Config, ReferenceProvider
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
    config = Config()

    @on_intake(batch=True, marker=CONSUMER)  # the markers the gateway's submissions use
    def accept(self, event: contract.Event) -> None:
        self._accept(event)

    @rpc(expected_exceptions=(errors.Invalid, errors.Conflict))
    def submit(self, envelope: dict[str, Any], publisher: str | None = None
               ) -> dict[str, Any]:
        """Accept an event from the gateway (``publisher``: who it authenticated). Returns
        ``{"event_id", "duplicate"}``; raises :class:`errors.Invalid` naming the fields for
        an invalid one, and :class:`errors.Conflict` for an event id accepted before with
        other content (nothing is stored)."""
        try:
            event = contract.parse(envelope)
            if publisher:
                event = dataclasses.replace(event, publisher=str(publisher)[:128])
            if event.type not in contract.INTAKE_TYPES:
                raise contract.ContractError(f"event type {event.type!r} is not accepted")
            # answer before the caller gives up: with the database down the gateway says 503
            # instead of waiting out the driver's transaction retries
            with pymongo.timeout(settings(self.config).request_db_seconds):
                duplicate = self._accept(event)
        except EventIdReused as exc:
            raise errors.Conflict(exc.reason, {"event_id": "already used"}) from None
        except contract.ContractError as exc:
            raise errors.Invalid(exc.reason, contract.flatten_errors(exc.fields)) from None
        return {"event_id": event.event_id, "duplicate": duplicate}

    def _accept(self, event: contract.Event) -> bool:
        check_references(event, self.reference)

        def republish(tx: Tx) -> None:
            tx.emit(event.type, event.data, event_id=event.event_id,
                    occurred_at=event.occurred_at)

        if self.store.atomically(republish, event=event, consumer=CONSUMER) is not DUPLICATE:
            return False
        # the same event again is harmless; other content under its id is refused (the
        # consumers would take it for the first one and ignore it)
        if self.store.accepted_otherwise(f"{CONSUMER}:{event.event_id}", event):
            raise EventIdReused(f"event_id {event.event_id!r} was accepted before with other "
                                "content; the first stands (give a new event its own id)")
        return True


class EventIdReused(contract.ContractError):
    """An event id accepted before, now with another type or other data."""
