"""The courier: delivers what the handlers queued, outside any event transaction.

Every ``poll_seconds`` it finds the recipients with a message due and, for each, in parallel:

1. **claims** the recipient's mailbox with a conditional ``update_one`` (no live lease) and
   checks ``modified_count``: of two instances, one wins, the other moves on;
2. takes *all* the recipient's pending messages that may go now (not waiting for a retry,
   not held by quiet hours unless critical, not expired) and sends them as **one**
   delivery: the message itself, or a digest summarising them. A message is due at the end
   of its recipient's window, so what arrives within a window leaves together;
3. records the outcome in one transaction with its events (``notification_sent``, or
   ``notification_failed`` for a dead message): sent; failed and due again after a
   back-off; or dead after ``max_attempts`` (at once when retrying cannot help), with the
   reason; then releases the mailbox.

A courier that dies mid-delivery leaves a lease that expires after ``lease_seconds``; the
delivery is then made again with the same delivery id (``X-Relief-Delivery`` header,
``Message-ID``), so the receiving end can drop the repeat.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

import eventlet
from eventlet.greenpool import GreenPool

from services.common import contract
from services.common.metrics import REGISTRY
from services.common.store import Tx
from services.notifications import policy, texts
from services.notifications.channels import Channel, DeliveryError, Outgoing, Permanent
from services.notifications.settings import NotifySettings
from services.notifications.store import PENDING, NotificationsStore

log = logging.getLogger(__name__)

SMS_LIMIT = 500
ORPHAN_SWEEP_SECONDS = 60.0


class Courier:
    def __init__(self, cfg: NotifySettings, channels: dict[str, Channel],
                 owner: str | None = None, link_secret: str = ""):
        self.cfg = cfg
        self.channels = channels
        self.link_secret = link_secret
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._last_orphan_sweep: datetime | None = None

    # -- the loop -----------------------------------------------------------------------
    def run(self, store: NotificationsStore, reference: Any = None) -> int:
        """One pass: deliver to every recipient with a message due. Returns how many
        deliveries were made (sent or failed)."""
        now = contract.now()
        self.sweep_orphans(store, now)
        recipients: list[str] = []
        for message in store.due_messages(now):
            if message.get("recipient") and message["recipient"] not in recipients:
                recipients.append(message["recipient"])
        if not recipients:
            return 0
        pool = GreenPool(max(1, self.cfg.concurrency))
        results = list(pool.imap(lambda r: self.deliver(store, reference, r), recipients))
        return sum(1 for r in results if r)

    def deliver(self, store: NotificationsStore, reference: Any, recipient_id: str) -> bool:
        now = contract.now()
        lease = now + timedelta(seconds=self.cfg.lease_seconds)
        if not store.claim_mailbox(recipient_id, now, lease, self.owner):
            return False  # another instance is delivering to this recipient
        try:
            return self._deliver(store, reference, recipient_id)
        except Exception:  # noqa: BLE001 - one recipient must not stop the others
            log.exception("delivery to %s failed unexpectedly", recipient_id)
            return False
        finally:
            try:
                store.release_mailbox(None, recipient_id, self.owner)
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.warning("could not release mailbox %s", recipient_id)

    def _deliver(self, store: NotificationsStore, reference: Any, recipient_id: str) -> bool:
        now = contract.now()
        recipient = store.recipient(recipient_id)
        person = effective(store, recipient)
        tz = person.get("timezone") or self.cfg.default_timezone
        ready, expired = [], []
        for message in sorted(store.pending_for(recipient_id), key=lambda m: m["created_at"]):
            if message.get("expires_at") and message["expires_at"] <= now:
                expired.append(message)
            elif message["state"] == "failed" and message.get("next_attempt_at", now) > now:
                continue  # waiting for its retry; it is due then
            else:
                # not only the due ones: whatever else is pending goes in the same delivery
                ready.append(message)
        if expired:
            store.atomically(lambda tx: self._cancel(store, tx, expired, now))
        quiet_end = policy.quiet_until(now, person.get("quiet_hours"), tz)
        if quiet_end:
            held = [m for m in ready if m["priority"] != policy.CRITICAL]
            ready = [m for m in ready if m["priority"] == policy.CRITICAL]
            if held:
                store.atomically(lambda tx: self._hold(store, tx, held, quiet_end))
        if not ready:
            return False

        if recipient is None:
            self.record(store, recipient_id, ready, None, None,
                        Permanent("the recipient was deleted"))
            return True
        channel, address = policy.choose_channel(person, set(self.channels))
        if channel is None:
            self.record(store, recipient_id, ready, None, None, Permanent(address))
            return True
        try:
            out = self.compose(reference, recipient_id, person, ready, address)
        except Exception as exc:  # noqa: BLE001 - a template bug: dead, not retried forever
            log.exception("could not compose a message for %s", recipient_id)
            self.record(store, recipient_id, ready, channel, None,
                        Permanent(f"could not compose the message: {type(exc).__name__}: "
                                  f"{exc}"))
            return True
        try:
            self.channels[channel].send(out)
            error = None
        except DeliveryError as exc:
            error = exc
        self.record(store, recipient_id, ready, channel, out, error)
        return True

    # -- composing ----------------------------------------------------------------------
    def compose(self, reference: Any, recipient_id: str, person: dict[str, Any],
                messages: list[dict[str, Any]], address: str) -> Outgoing:
        """One message, or a digest of several, in the recipient's language."""
        language = texts.language_of(person.get("language") or self.cfg.default_language)
        tz = person.get("timezone") or self.cfg.default_timezone
        name = person.get("name")
        parts = [texts.render(m["template"], language, m["params"], reference, tz, name)
                 for m in messages]
        if len(parts) == 1:
            text = parts[0]
            short = text.line
        else:
            text = texts.render_digest(language, parts, reference, tz, name,
                                       window_start=messages[0]["created_at"])
            short = f"{text.subject}: " + " ".join(p.line for p in parts)
        if len(short) > SMS_LIMIT:
            short = short[:SMS_LIMIT - 1] + "…"
        delivery_id = contract.derived_id("delivery", recipient_id,
                                          *sorted(m["_id"] for m in messages))
        return Outgoing(delivery_id=delivery_id, address=address, subject=text.subject,
                        body=text.body, short=short, language=language)

    # -- recording ----------------------------------------------------------------------
    def record(self, store: NotificationsStore, recipient_id: str,
               messages: list[dict[str, Any]], channel: str | None, out: Outgoing | None,
               error: DeliveryError | None) -> None:
        """The outcome of one delivery and its events, in one transaction."""

        outcomes: list[str] = []

        def work(tx: Tx) -> None:
            now = contract.now()
            outcomes.clear()
            for message in messages:
                if error is None:
                    self._sent(store, tx, message, channel, out, now)
                    outcomes.append("sent")
                else:
                    outcomes.append(self._failed(store, tx, message, channel, error, now))
            if error is None:
                store.set_mailbox(tx, recipient_id, {"last_sent_at": now})

        store.atomically(work)
        for outcome in outcomes:
            REGISTRY.inc("relief_notifications_total",
                         {"outcome": outcome, "channel": channel or "none"},
                         doc="messages delivered (sent), to be retried (failed) or given up "
                             "(dead), by channel")
        REGISTRY.inc("relief_notification_deliveries_total",
                     {"outcome": "sent" if error is None else "failed",
                      "channel": channel or "none"},
                     doc="deliveries (one message or a digest) attempted, by outcome")
        what = f"{len(messages)} message(s)" if len(messages) > 1 else messages[0]["template"]
        if error is None:
            log.info("sent %s to %s by %s (delivery %s)", what, recipient_id, channel,
                     out.delivery_id if out else "-")
        else:
            log.warning("delivery of %s to %s by %s failed: %s", what, recipient_id,
                        channel or "-", error)

    def _sent(self, store: NotificationsStore, tx: Tx, message: dict[str, Any],
              channel: str | None, out: Outgoing | None, now: datetime) -> None:
        assert out is not None
        changed = store.update_message(tx, message["_id"], {
            "$set": {"state": "sent", "sent_at": now, "updated_at": now, "channel": channel,
                     "delivery_id": out.delivery_id, "language": out.language,
                     "delivered_subject": out.subject},
            "$inc": {"attempts": 1},
            "$unset": {"next_attempt_at": "", "reason": "", "due_at": ""}},
            expect_state=PENDING)
        if changed:
            tx.emit("notification_sent", {"notification_id": message["_id"],
                                          "channel": channel, "template": message["template"]},
                    event_id=contract.derived_id("notification_sent", message["_id"],
                                                 str(message.get("generation", 0))))

    def _failed(self, store: NotificationsStore, tx: Tx, message: dict[str, Any],
                channel: str | None, error: DeliveryError, now: datetime) -> str:
        attempts = message.get("attempts", 0) + 1
        reason = str(error)
        if error.transient and attempts < self.cfg.max_attempts:
            wait = policy.backoff(attempts, self.cfg.retry_backoff_seconds,
                                  self.cfg.retry_backoff_max_seconds)
            retry_at = now + timedelta(seconds=wait)
            store.update_message(tx, message["_id"], {"$set": {
                "state": "failed", "attempts": attempts, "reason": reason, "channel": channel,
                "next_attempt_at": retry_at, "due_at": retry_at, "updated_at": now}},
                expect_state=PENDING)
            return "failed"
        if error.transient:
            reason = f"gave up after {attempts} attempts: {reason}"
        changed = store.update_message(tx, message["_id"], {
            "$set": {"state": "dead", "attempts": attempts, "reason": reason,
                     "channel": channel, "dead_at": now, "updated_at": now},
            "$unset": {"next_attempt_at": "", "due_at": ""}}, expect_state=PENDING)
        if changed:
            self._emit_failed(tx, message, channel, reason)
        return "dead"

    @staticmethod
    def _emit_failed(tx: Tx, message: dict[str, Any], channel: str | None,
                     reason: str) -> None:
        tx.emit("notification_failed", {"notification_id": message["_id"],
                                        "channel": channel or "none",
                                        "template": message["template"], "reason": reason},
                event_id=contract.derived_id("notification_failed", message["_id"],
                                             str(message.get("generation", 0) + 1)))

    @staticmethod
    def _cancel(store: NotificationsStore, tx: Tx, messages: list[dict[str, Any]],
                now: datetime) -> None:
        for message in messages:
            store.update_message(tx, message["_id"], {
                "$set": {"state": "cancelled", "reason": "expired before it could be sent",
                         "updated_at": now},
                "$unset": {"due_at": ""}}, expect_state=PENDING)

    @staticmethod
    def _hold(store: NotificationsStore, tx: Tx, messages: list[dict[str, Any]],
              until: datetime) -> None:
        """Quiet hours: due again when they end (the recipient may have set them after the
        message was queued)."""
        for message in messages:
            if message.get("due_at") is None or message["due_at"] < until:
                store.update_message(tx, message["_id"], {"$set": {"due_at": until}},
                                     expect_state=PENDING)

    # -- messages whose recipient never became known ------------------------------------
    def sweep_orphans(self, store: NotificationsStore, now: datetime) -> int:
        if self._last_orphan_sweep and (now - self._last_orphan_sweep).total_seconds() < \
                ORPHAN_SWEEP_SECONDS:
            return 0
        self._last_orphan_sweep = now
        cutoff = now - timedelta(seconds=self.cfg.orphan_timeout_seconds)
        orphans = store.orphans(cutoff)
        for message in orphans:
            reason = (f"its recipient never became known (nothing arrived for "
                      f"{message['awaiting']})")

            def work(tx: Tx, message: dict[str, Any] = message, reason: str = reason) -> None:
                if store.update_message(tx, message["_id"], {
                        "$set": {"state": "dead", "reason": reason, "dead_at": now,
                                 "updated_at": now},
                        "$unset": {"awaiting": ""}}, expect_state=PENDING):
                    self._emit_failed(tx, message, None, reason)

            store.atomically(work)
            eventlet.sleep(0)
        return len(orphans)


def effective(store: NotificationsStore, recipient: dict[str, Any] | None) -> dict[str, Any]:
    """The preferences and addresses that apply: a contact known from events who is also a
    managed recipient (same phone) is reached as the managed one chose."""
    if recipient is None:
        return {}
    if not recipient.get("managed") and recipient.get("phone_key"):
        managed = store.managed_by_phone(recipient["phone_key"])
        if managed:
            return managed
    return recipient
