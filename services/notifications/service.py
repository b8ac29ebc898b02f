"""Notifications: people hear what concerns them, once, in their language, at a decent hour.

Entrypoints only. Event handlers store messages inside the event's transaction
(``handlers``); the courier delivers them on a timer, outside it (``courier``); the RPCs
serve the gateway (recipients, on-call views) and the tests. It publishes no events: what
became of each message is kept with it and counted in ``/metrics``.
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
from services.common.errors import Conflict, Invalid, NotFound
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider
from services.notifications import channels, handlers, policy, schemas, texts
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
    # a batch waits this long for more events (handler.Batcher):
    # messages wait for their recipient's window anyway
    batch_linger_seconds = 0.2

    # no outbox relay: nothing consumes a delivery outcome, so none is published
    store: NotificationsStore = StoreProvider(NotificationsStore, emits=False)
    reference = ReferenceProvider()
    courier: Courier = CourierProvider()

    def _context(self) -> handlers.Context:
        return handlers.Context(self.store, self.courier.cfg, self.reference, contract.now(),
                                self.courier.link_secret)

    def _handle(self, use_case: Any, event: Event) -> None:
        if handlers.changes_nothing(self.store, event):
            return
        ctx = self._context()

        def work(tx: Any) -> Any:
            # run once it committed, with the batch it may be part of (a retried
            # transaction starts a new list)
            ctx.after_commit = tx.after_commit
            return use_case(ctx, tx, event)

        self.store.atomically(work, event=event)  # marked as this worker's consumer

    # Handlers ``keyed_by_cause`` write no processed marker: a message's id is its cause and
    # its recipient, written only if new, and a subject is set to what its posting says
    # (the same posting again changes nothing). The others keep markers: a registration
    # redelivered after a newer one must not undo it; escalations, offers and reminders
    # read who is registered now, and are few.

    # -- people ---------------------------------------------------------------------------
    @on_event("intake", "need_posted", batch=True, keyed_by_cause=True)
    def on_need_posted(self, event: Event) -> None:
        self._handle(handlers.on_need_posted, event)

    @on_event("intake", "donation_received", batch=True, keyed_by_cause=True)
    def on_donation_received(self, event: Event) -> None:
        self._handle(handlers.on_donation_received, event)

    @on_event("intake", "volunteer_registered", batch=True)
    def on_volunteer_registered(self, event: Event) -> None:
        self._handle(handlers.on_volunteer_registered, event)

    # -- what they hear of ----------------------------------------------------------------
    @on_event("matching", "assignment_made", batch=True, keyed_by_cause=True)
    def on_assignment_made(self, event: Event) -> None:
        self._handle(handlers.on_assignment_made, event)

    @on_event("matching", "need_fulfilled", batch=True, keyed_by_cause=True)
    def on_need_fulfilled(self, event: Event) -> None:
        self._handle(handlers.on_need_fulfilled, event)

    @on_event("matching", "need_expired", batch=True, keyed_by_cause=True)
    def on_need_expired(self, event: Event) -> None:
        self._handle(handlers.on_need_expired, event)

    @on_event("matching", "need_escalated", batch=True)
    def on_need_escalated(self, event: Event) -> None:
        self._handle(handlers.on_need_escalated, event)

    @on_event("matching", "offer_made", batch=True)
    def on_offer_made(self, event: Event) -> None:
        self._handle(handlers.on_offer_made, event)

    @on_event("matching", "offer_released", batch=True)
    def on_offer_released(self, event: Event) -> None:
        self._handle(handlers.on_offer_answered, event)

    @on_event("matching", "offer_accepted", batch=True)
    def on_offer_accepted(self, event: Event) -> None:
        self._handle(handlers.on_offer_answered, event)

    @on_event("donations", "stock_changed", batch=True, keyed_by_cause=True)
    def on_stock_changed(self, event: Event) -> None:
        self._handle(handlers.on_stock_changed, event)

    @on_event("volunteers", "status_report_missing", batch=True)
    def on_status_report_missing(self, event: Event) -> None:
        self._handle(handlers.on_status_report_missing, event)

    # -- delivery -------------------------------------------------------------------------
    @every_poll()
    def deliver_due(self) -> int:
        return self.courier.run(self.store, self.reference)

    # -- recipients (coordinators, organisation contacts) ---------------------------------
    @rpc(expected_exceptions=Invalid)
    def put_recipient(self, recipient_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a managed recipient. Answers ``{"recipient": view, "created"}``;
        :class:`Invalid` names the failing fields."""
        problem = _check_recipient_id(recipient_id)
        if problem:
            raise Invalid(problem, {"recipient_id": problem})
        try:
            data = schemas.RecipientBody().load(body or {})
        except ValidationError as exc:
            raise Invalid("invalid recipient", contract.flatten_errors(exc.messages)) from exc
        unknown = [a for a in data["areas"] if a not in self.reference.areas]
        if unknown:
            raise Invalid("invalid recipient",
                          {"areas": f"unknown area(s): {', '.join(unknown)}"})
        doc = {"_id": recipient_id, "managed": True, "kind": "managed",
               **{k: v for k, v in data.items() if v is not None},
               "updated_at": contract.now()}
        if data.get("phone"):
            doc["phone_key"] = policy.phone_key(data["phone"])

        def save(tx: Any) -> bool:
            before = self.store.recipient(recipient_id, tx)
            self.store.save_recipient(doc, tx)
            handlers.relink_phones(self.store, tx, recipient_id, before, doc)
            return before is not None

        existed = self.store.atomically(save)
        return {"recipient": schemas.recipient_view(doc), "created": not existed}

    @rpc
    def get_recipient(self, recipient_id: str) -> dict[str, Any] | None:
        doc = self.store.recipient(recipient_id)
        return schemas.recipient_view(doc) if doc else None

    @rpc
    def delete_recipient(self, recipient_id: str) -> bool:
        def delete(tx: Any) -> bool:
            before = self.store.recipient(recipient_id, tx)
            if before is None:
                return False
            self.store.delete_recipient(recipient_id, tx)
            handlers.relink_phones(self.store, tx, recipient_id, before, None)
            return True

        return self.store.atomically(delete)

    # -- invitations ----------------------------------------------------------------------
    @rpc(expected_exceptions=Invalid)
    def send_invitation(self, invitation_id: str, contact: dict[str, Any], language: str,
                        link: str, role: str, area_id: str | None) -> dict[str, Any]:
        """Invite a new coordinator (the gateway asks, once it stored the invitation): one
        message to ``contact`` (an email or a phone, and a name) with ``link``, due at once.
        Asked twice with the same ``invitation_id``, it sends once. Answers
        ``{"notification_id"}``; :class:`Invalid` when the contact has no address."""
        ctx = self._context()
        person = {k: contact[k] for k in ("email", "phone", "name") if contact.get(k)}
        person["language"] = texts.language_of(language)
        params = {"role": role, "area_id": area_id, "invite_url": link}
        message_id = self.store.atomically(
            lambda tx: handlers.invite(ctx, tx, invitation_id, person, params))
        if message_id is None:
            raise Invalid("an invitation needs an email or a phone to go to",
                          {"contact": "give an email or a phone"})
        return {"notification_id": message_id}

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
    def delivery(self, message_id: str) -> dict[str, Any] | None:
        """The full list behind a digest's link: every message of the delivery that
        ``message_id`` went out in, grouped by need, most urgent first, in the language it
        was sent in; None if that message was not sent (yet). No names, no addresses.

        Read by ``_id`` and the delivery's messages (an indexed equality)."""
        anchor = self.store.message(message_id)
        if anchor is None or anchor.get("state") != "sent" or not anchor.get("delivery_id") \
                or not anchor.get("recipient"):
            return None
        same = sorted((m for m in self.store.messages_of_delivery(anchor["delivery_id"])
                       if m.get("state") == "sent"),
                      key=lambda m: m["created_at"]) or [anchor]
        cfg = self.courier.cfg
        language = texts.language_of(anchor.get("language") or cfg.default_language)
        recipient = self.store.recipient(anchor["recipient"]) or {}
        tz = recipient.get("timezone") or cfg.default_timezone
        updates = [texts.Update(m["template"], m["params"], m.get("priority", policy.NORMAL),
                                texts.render(m["template"], language,
                                             texts.masked(m["params"]), self.reference, tz))
                   for m in same]
        items = texts.digest_items(language, updates, texts.Names(language, self.reference, tz))
        return schemas.DeliveryView().dump({
            "language": language, "sent_at": anchor.get("sent_at"), "count": len(same),
            "counts": texts.count_text(language, items),
            "groups": [{"title": i.title, "lines": i.lines} for i in items]})

    # -- on-call ------------------------------------------------------------------------
    @rpc
    def on_call_summary(self) -> dict[str, Any]:
        """What on-call must act on, for the gateway's status report: escalations that
        reached nobody, per area (``handlers.unaddressed_escalations``)."""
        return {"unaddressed_escalations": handlers.unaddressed_escalations(self.store)}

    def metric_gauges(self) -> dict[str, tuple[str, float]]:
        escalations = handlers.unaddressed_escalations(self.store)
        return {"relief_escalations_unaddressed": (
            "need escalations recorded dead because no coordinator is registered for their "
            "area, not retried yet", float(sum(row["count"] for row in escalations)))}

    @rpc(expected_exceptions=(NotFound, Conflict))
    def retry_message(self, message_id: str) -> dict[str, Any]:
        """Queue a dead message again: ``{"queued": [ids]}``; :class:`NotFound` for an
        unknown message, :class:`Conflict` for one that is not dead or still has nobody to
        go to."""
        ctx = self._context()
        try:
            queued = self.store.atomically(lambda tx: handlers.retry_dead(ctx, tx, message_id))
        except handlers.RetryRefused as exc:
            if self.store.message(message_id) is None:
                raise NotFound(str(exc)) from exc
            raise Conflict(str(exc)) from exc
        return {"queued": queued}


def _check_recipient_id(recipient_id: str) -> str | None:
    if not isinstance(recipient_id, str) or not re.match(schemas.RECIPIENT_ID, recipient_id):
        return "a recipient id is 1-128 letters, digits and . _ : @ -"
    if recipient_id.startswith(schemas.RESERVED_PREFIXES):
        return "ids starting with 'contact:' are reserved for contacts known from events"
    return None
