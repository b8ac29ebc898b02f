"""Notifications: people hear what concerns them, once, in their language, at a decent hour.

Entrypoints only. Event handlers store messages inside the event's transaction
(``handlers``); the courier delivers them on a timer, outside it (``courier``); the RPCs
serve the gateway (recipients, on-call views) and the tests.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import Timer

from services.common import contract
from services.common.config import settings
from services.common.contract import Event
from services.common.deps import ReferenceProvider
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider
from services.notifications import channels, handlers, policy, schemas
from services.notifications.courier import Courier
from services.notifications.settings import notify_settings
from services.notifications.store import NotificationsStore


class CourierProvider(DependencyProvider):
    """The courier with its configured channels, one per service process."""

    def setup(self) -> None:
        config = self.container.config
        cfg = notify_settings(config)
        self.courier = Courier(cfg, channels.build(cfg),
                               link_secret=cfg.link_secret or settings(config).links_secret)

    def get_dependency(self, worker_ctx: Any) -> Courier:
        return self.courier


class DeliveryTimer(Timer):
    """A timer whose interval is ``NOTIFICATIONS.poll_seconds`` from the config."""

    def __init__(self, **kwargs: Any):
        super().__init__(interval=1.0, eager=True, **kwargs)

    def setup(self) -> None:
        self.interval = notify_settings(self.container.config).poll_seconds


every_poll = DeliveryTimer.decorator


class NotificationsService(ServiceEndpoints):
    name = "notifications"

    store: NotificationsStore = StoreProvider(NotificationsStore)
    reference = ReferenceProvider()
    courier: Courier = CourierProvider()

    def _context(self) -> handlers.Context:
        return handlers.Context(self.store, self.courier.cfg, self.reference, contract.now(),
                                self.courier.link_secret)

    def _handle(self, use_case: Any, event: Event, consumer: str) -> None:
        ctx = self._context()
        self.store.atomically(lambda tx: use_case(ctx, tx, event), event=event,
                              consumer=consumer)

    # -- people ---------------------------------------------------------------------------
    @on_event("intake", "need_posted")
    def on_need_posted(self, event: Event) -> None:
        self._handle(handlers.on_need_posted, event, "on_need_posted")

    @on_event("intake", "donation_received")
    def on_donation_received(self, event: Event) -> None:
        self._handle(handlers.on_donation_received, event, "on_donation_received")

    @on_event("intake", "volunteer_registered")
    def on_volunteer_registered(self, event: Event) -> None:
        self._handle(handlers.on_volunteer_registered, event, "on_volunteer_registered")

    # -- what they hear of ----------------------------------------------------------------
    @on_event("matching", "assignment_made")
    def on_assignment_made(self, event: Event) -> None:
        self._handle(handlers.on_assignment_made, event, "on_assignment_made")

    @on_event("matching", "need_fulfilled")
    def on_need_fulfilled(self, event: Event) -> None:
        self._handle(handlers.on_need_fulfilled, event, "on_need_fulfilled")

    @on_event("matching", "need_expired")
    def on_need_expired(self, event: Event) -> None:
        self._handle(handlers.on_need_expired, event, "on_need_expired")

    @on_event("matching", "need_escalated")
    def on_need_escalated(self, event: Event) -> None:
        self._handle(handlers.on_need_escalated, event, "on_need_escalated")

    @on_event("matching", "offer_made")
    def on_offer_made(self, event: Event) -> None:
        self._handle(handlers.on_offer_made, event, "on_offer_made")

    @on_event("matching", "offer_released")
    def on_offer_released(self, event: Event) -> None:
        self._handle(handlers.on_offer_answered, event, "on_offer_released")

    @on_event("matching", "offer_accepted")
    def on_offer_accepted(self, event: Event) -> None:
        self._handle(handlers.on_offer_answered, event, "on_offer_accepted")

    @on_event("donations", "stock_changed")
    def on_stock_changed(self, event: Event) -> None:
        self._handle(handlers.on_stock_changed, event, "on_stock_changed")

    @on_event("volunteers", "status_report_missing")
    def on_status_report_missing(self, event: Event) -> None:
        self._handle(handlers.on_status_report_missing, event, "on_status_report_missing")

    # -- delivery -------------------------------------------------------------------------
    @every_poll()
    def deliver_due(self) -> int:
        return self.courier.run(self.store, self.reference)

    # -- recipients (coordinators, organisation contacts) ---------------------------------
    @rpc
    def put_recipient(self, recipient_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a managed recipient. Answers ``{"recipient": view, "created"}``
        or ``{"error", "fields"}``."""
        problem = _check_recipient_id(recipient_id)
        if problem:
            return {"error": problem, "fields": {"recipient_id": problem}}
        try:
            data = schemas.RecipientBody().load(body or {})
        except ValidationError as exc:
            return {"error": "invalid recipient", "fields": contract.flatten_errors(
                exc.messages)}
        unknown = [a for a in data["areas"] if a not in self.reference.areas]
        if unknown:
            return {"error": "invalid recipient",
                    "fields": {"areas": f"unknown area(s): {', '.join(unknown)}"}}
        existed = self.store.recipient(recipient_id) is not None
        doc = {"_id": recipient_id, "managed": True, "kind": "managed",
               **{k: v for k, v in data.items() if v is not None},
               "updated_at": contract.now()}
        if data.get("phone"):
            doc["phone_key"] = policy.phone_key(data["phone"])
        self.store.save_recipient(doc)
        return {"recipient": schemas.recipient_view(doc), "created": not existed}

    @rpc
    def get_recipient(self, recipient_id: str) -> dict[str, Any] | None:
        doc = self.store.recipient(recipient_id)
        return schemas.recipient_view(doc) if doc else None

    @rpc
    def delete_recipient(self, recipient_id: str) -> bool:
        return self.store.delete_recipient(recipient_id)

    # -- messages -------------------------------------------------------------------------
    @rpc
    def messages_for_need(self, need_id: str) -> list[dict[str, Any]]:
        """Every message about a need (to its poster, to coordinators): template, state,
        text. No addresses."""
        docs = sorted(self.store.messages_for_need(need_id), key=lambda m: m["created_at"])
        return [schemas.message_view(m) for m in docs]

    @rpc
    def list_messages(self, state: str | None = None, recipient: str | None = None,
                      need_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """For on-call: e.g. ``state="dead"`` lists what never arrived, with the reason."""
        docs = self.store.messages(state=state, recipient=recipient, need_id=need_id,
                                   limit=limit)
        docs.sort(key=lambda m: m["created_at"], reverse=True)
        return [schemas.message_view(m) for m in docs]

    @rpc
    def get_message(self, message_id: str) -> dict[str, Any] | None:
        doc = self.store.message(message_id)
        return schemas.message_view(doc) if doc else None

    @rpc
    def retry_message(self, message_id: str) -> dict[str, Any]:
        """Queue a dead message again. ``{"queued": [ids]}`` or ``{"error"}``."""
        ctx = self._context()
        try:
            queued = self.store.atomically(lambda tx: handlers.retry_dead(ctx, tx, message_id))
        except handlers.RetryRefused as exc:
            return {"error": str(exc)}
        return {"queued": queued}


def _check_recipient_id(recipient_id: str) -> str | None:
    if not isinstance(recipient_id, str) or not re.match(schemas.RECIPIENT_ID, recipient_id):
        return "a recipient id is 1-128 letters, digits and . _ : @ -"
    if recipient_id.startswith(schemas.RESERVED_PREFIXES):
        return "ids starting with 'contact:' are reserved for contacts known from events"
    return None
