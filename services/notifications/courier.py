"""The courier: delivers what the handlers queued, outside any event transaction.

Every ``poll_seconds`` it finds the recipients with a message due (one indexed equality on
the state of messages: only what is still to be sent is read) and takes them ``CHUNK`` at a
time; for each chunk, a few requests however many recipients it holds:

1. **claims** their mailboxes together (``store.claim_mailboxes``: one conditional
   ``update_many`` on the free ones, carrying a token of the claim, read back by id): of two
   instances, one wins each mailbox, the other moves on;
2. reads their pending messages afresh by id once the mailboxes are held (one request), and
   their addresses (one or two), then delivers to each in parallel: *all* the recipient's
   pending messages that may go now (not waiting for a retry, not held by quiet hours unless
   critical, not expired) go as **one** delivery: the message itself, or a digest
   summarising them within what the channel carries (an SMS in at most
   ``sms_max_segments`` segments: counts by kind, the most urgent items by name, a signed
   link to the full list; an email or WeChat message grouped by need, as much as fits:
   ``texts.compose_digest``). A message is due at the end of its recipient's window, so
   what arrives within a window leaves together;
3. records every outcome and releases the mailboxes in one transaction (two bulk requests;
   a single message needs no transaction): sent; failed and due again after a back-off; or
   dead after ``max_attempts`` (at once when retrying cannot help), with the reason.
   Outcomes are counted in ``/metrics`` and kept with each message
   (``GET /api/notifications``); no event is published for them, since nothing consumes
   one (an event nobody is bound for would only fill ``relief.unroutable``).

Once a minute it also gives up on messages whose recipient never became known, reading
only the ``awaiting`` records (one per subject something waits for), never every message.

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
from typing import Any, NamedTuple
from urllib.parse import quote

import eventlet
from eventlet.greenpool import GreenPool

from services.common import contract, links
from services.common.metrics import REGISTRY
from services.common.store import Tx
from services.notifications import policy, texts
from services.notifications.channels import (
    Channel,
    DeliveryError,
    Outgoing,
    Permanent,
    sms_fits,
)
from services.notifications.settings import NotifySettings
from services.notifications.store import PENDING, NotificationsStore

log = logging.getLogger(__name__)

ORPHAN_SWEEP_SECONDS = 60.0
# recipients taken at a time: their mailboxes claimed, their messages read and their
# outcomes recorded together (a crash before the record makes at most these again)
CHUNK = 32


class Attempt(NamedTuple):
    """One try at a delivery: the channel chosen (None when there was none), what was sent
    (None when nothing could be composed) and the error (None when it went out)."""

    channel: str | None
    out: Outgoing | None
    error: DeliveryError | None


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
        """One pass: deliver to every recipient with a message due, ``CHUNK`` recipients at
        a time. Returns how many deliveries were made (sent or failed)."""
        now = contract.now()
        self.sweep_orphans(store, now)
        due = store.due_mailboxes(now)
        made = 0
        recipients = list(due)
        for i in range(0, len(recipients), CHUNK):
            made += self.deliver_many(store, reference,
                                      {r: due[r] for r in recipients[i:i + CHUNK]})
        return made

    def deliver_many(self, store: NotificationsStore, reference: Any,
                     pending: dict[str, list[str]]) -> int:
        """Deliver to these recipients (``{recipient: ids of its pending messages}``): their
        mailboxes claimed together, their messages and addresses read together, the
        deliveries made in parallel, their outcomes recorded together. Returns how many
        deliveries were made."""
        now = contract.now()
        lease = now + timedelta(seconds=self.cfg.lease_seconds)
        held = store.claim_mailboxes(list(pending), now, lease, self.owner)
        if not held:
            return 0  # another instance is delivering to each of them
        outcomes: dict[str, tuple[list[dict[str, Any]], Attempt] | None] = {}
        try:
            messages: dict[str, list[dict[str, Any]]] = {r: [] for r in held}
            for message in store.pending_of([m for r in held for m in pending[r]]):
                if message.get("recipient") in messages:
                    messages[message["recipient"]].append(message)
            people = store.recipients_of(list(held))
            pool = GreenPool(max(1, self.cfg.concurrency))

            def attempt(recipient_id: str) -> None:
                try:
                    outcomes[recipient_id] = self._attempt(
                        store, reference, recipient_id, people, messages[recipient_id])
                except Exception:  # noqa: BLE001 - one recipient must not stop the others
                    log.exception("delivery to %s failed unexpectedly", recipient_id)
                    outcomes[recipient_id] = None

            for recipient_id in held:
                pool.spawn_n(attempt, recipient_id)
            pool.waitall()
        finally:
            # a recipient with no outcome (nothing ready, or a failure) is released as it was
            self.record_all(store, {r: outcomes.get(r) for r in held})
        return sum(1 for o in outcomes.values() if o is not None)

    def _attempt(self, store: NotificationsStore, reference: Any, recipient_id: str,
                 people: dict[str, dict[str, Any]], pending: list[dict[str, Any]]
                 ) -> tuple[list[dict[str, Any]], Attempt] | None:
        """One delivery to a recipient whose mailbox this instance holds: what it carried
        and how it went, or None when nothing was ready to go."""
        now = contract.now()
        recipient = people.get(recipient_id)
        person = effective(people.get, recipient)
        tz = person.get("timezone") or self.cfg.default_timezone
        ready, expired = [], []
        for message in sorted(pending, key=lambda m: m["created_at"]):
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
            return None

        if recipient is None:
            return ready, Attempt(None, None, Permanent("the recipient was deleted"))
        channel, address = policy.choose_channel(person, set(self.channels))
        if channel is None:
            return ready, Attempt(None, None, Permanent(address))
        try:
            out = self.compose(reference, recipient_id, person, ready, address, channel)
        except Exception as exc:  # noqa: BLE001 - a template bug: dead, not retried forever
            log.exception("could not compose a message for %s", recipient_id)
            problem = Permanent(f"could not compose the message: {type(exc).__name__}: {exc}")
            return ready, Attempt(channel, None, problem)
        try:
            self.channels[channel].send(out)
            error = None
        except DeliveryError as exc:
            error = exc
        return ready, Attempt(channel, out, error)

    # -- composing ----------------------------------------------------------------------
    def compose(self, reference: Any, recipient_id: str, person: dict[str, Any],
                messages: list[dict[str, Any]], address: str,
                channel: str | None = None) -> Outgoing:
        """One message, or a digest of several, in the recipient's language, within what
        ``channel`` carries (``NOTIFICATIONS``: ``sms_max_segments``, ``email_max_chars``,
        ``wechat_max_chars``). A digest summarises: counts by kind, the most urgent items by
        name, and a signed link to the full list on the gateway."""
        language = texts.language_of(person.get("language") or self.cfg.default_language)
        tz = person.get("timezone") or self.cfg.default_timezone
        name = person.get("name")
        updates = [texts.Update(m["template"], m["params"], m.get("priority", policy.NORMAL),
                                texts.render(m["template"], language, m["params"], reference,
                                             tz, name))
                   for m in messages]
        link = self.digest_link(messages[0]["_id"])
        budget = texts.Budget(
            sms_segments=self.cfg.sms_max_segments,
            body_chars=(self.cfg.wechat_max_chars if channel == "wechat"
                        else self.cfg.email_max_chars),
            urgent_items=self.cfg.digest_urgent_items)
        if len(updates) == 1:
            text = updates[0].text
            text = texts.Rendered(text.subject, text.line,
                                  texts.fit_chars(text.body, link, budget.body_chars,
                                                  language))
            short = (text.line if sms_fits(text.line, budget.sms_segments)
                     else texts.fit_sms(text.line, link, budget.sms_segments))
        else:
            reader = texts.Reader(language, reference, tz, name)
            text, short = texts.compose_digest(reader, updates,
                                               window_start=messages[0]["created_at"],
                                               link=link, budget=budget)
        delivery_id = contract.derived_id("delivery", recipient_id,
                                          *sorted(m["_id"] for m in messages))
        return Outgoing(delivery_id=delivery_id, address=address, subject=text.subject,
                        body=text.body, short=short, language=language)

    def digest_link(self, message_id: str) -> str | None:
        """The gateway's ``/digest/<message id>?sig=``: the full list of the delivery that
        message went in (the first of a digest), signed so that it opens without an account.
        None without a link secret (the gateway could not check it)."""
        if not self.link_secret:
            return None
        return (f"{self.cfg.public_url.rstrip('/')}/digest/{quote(message_id, safe='')}"
                f"?sig={links.sign_digest(message_id, self.link_secret)}")

    # -- recording ----------------------------------------------------------------------
    def record_all(self, store: NotificationsStore,
                   outcomes: dict[str, tuple[list[dict[str, Any]], Attempt] | None]) -> None:
        """The outcomes of deliveries (``{recipient: (messages, attempt)}``, None for a
        mailbox to give back as it was), each message's and the mailboxes released.

        All in one transaction when it covers several messages (all or nothing: a delivery
        made again after a crash carries the same messages and the same delivery id), the
        messages with the same outcome in one delivery updated by one conditional op, every
        op in one bulk request. A single message needs no transaction: its update is atomic
        by itself, and the release follows it. If the record fails, the mailboxes are
        given back so that the deliveries are made again (same delivery ids)."""
        now = contract.now()
        updates: list[tuple[list[str], dict[str, Any]]] = []
        releases: dict[str, dict[str, Any] | None] = {}
        counted: list[tuple[str, str | None, int]] = []
        for recipient_id, outcome in outcomes.items():
            releases[recipient_id] = None
            if outcome is None:
                continue
            messages, (channel, out, error) = outcome
            groups: dict[Any, tuple[str, dict[str, Any], list[str]]] = {}
            for message in messages:
                result, update, key = self._outcome(message, channel, out, error, now)
                groups.setdefault(key, (result, update, []))[2].append(message["_id"])
            updates.extend((ids, update) for _, update, ids in groups.values())
            counted.extend((result, channel, len(ids)) for result, _, ids in groups.values())
            if error is None:
                releases[recipient_id] = {"last_sent_at": now}

        def work(tx: Tx | None) -> None:
            store.record_deliveries(tx, updates, self.owner, releases)

        try:
            if sum(len(ids) for ids, _ in updates) <= 1:
                work(None)
            else:
                store.atomically(work)
        except Exception:
            log.exception("could not record %d deliveries; they will be made again",
                          len(outcomes))
            try:
                store.release_mailboxes(None, self.owner, dict.fromkeys(outcomes))
            except Exception:  # noqa: BLE001 - the leases expire by themselves
                log.warning("could not release %d mailboxes", len(outcomes))
            return
        for result, channel, n in counted:
            REGISTRY.inc("relief_notifications_total",
                         {"outcome": result, "channel": channel or "none"}, n,
                         doc="messages delivered (sent), to be retried (failed) or given up "
                             "(dead), by channel")
        for recipient_id, outcome in outcomes.items():
            if outcome is not None:
                self._log_delivery(recipient_id, *outcome)

    @staticmethod
    def _log_delivery(recipient_id: str, messages: list[dict[str, Any]],
                      attempt: Attempt) -> None:
        channel, out, error = attempt
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

    def _outcome(self, message: dict[str, Any], channel: str | None, out: Outgoing | None,
                 error: DeliveryError | None, now: datetime
                 ) -> tuple[str, dict[str, Any], Any]:
        """What becomes of a message after a delivery: ``(outcome, update, key)``; messages
        with the same key get the same update."""
        if error is None:
            assert out is not None
            return "sent", {
                "$set": {"state": "sent", "sent_at": now, "updated_at": now,
                         "channel": channel, "delivery_id": out.delivery_id,
                         "language": out.language, "delivered_subject": out.subject},
                "$inc": {"attempts": 1},
                "$unset": {"next_attempt_at": "", "reason": "", "due_at": ""}}, None
        attempts = message.get("attempts", 0) + 1
        reason = str(error)
        if error.transient and attempts < self.cfg.max_attempts:
            wait = policy.backoff(attempts, self.cfg.retry_backoff_seconds,
                                  self.cfg.retry_backoff_max_seconds)
            retry_at = now + timedelta(seconds=wait)
            return "failed", {"$set": {
                "state": "failed", "attempts": attempts, "reason": reason,
                "channel": channel, "next_attempt_at": retry_at, "due_at": retry_at,
                "updated_at": now}}, attempts
        if error.transient:
            reason = f"gave up after {attempts} attempts: {reason}"
        return "dead", {
            "$set": {"state": "dead", "attempts": attempts, "reason": reason,
                     "channel": channel, "dead_at": now, "updated_at": now},
            "$unset": {"next_attempt_at": "", "due_at": ""}}, attempts

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
        """Messages waiting longer than ``orphan_timeout_seconds`` for a subject that never
        became known are dead, with the reason. Reads the ``awaiting`` records only (and
        the messages they name); returns how many messages were given up."""
        if self._last_orphan_sweep and (now - self._last_orphan_sweep).total_seconds() < \
                ORPHAN_SWEEP_SECONDS:
            return 0
        self._last_orphan_sweep = now
        cutoff = now - timedelta(seconds=self.cfg.orphan_timeout_seconds)
        swept = 0
        for record in store.awaiting_records():
            if record.get("since") is not None and record["since"] >= cutoff:
                continue  # nothing in it is old enough yet
            swept += store.atomically(
                lambda tx, key=record["_id"]: self._give_up(store, tx, key, cutoff, now))
            eventlet.sleep(0)
        return swept

    @staticmethod
    def _give_up(store: NotificationsStore, tx: Tx, subject_key: str, cutoff: datetime,
                 now: datetime) -> int:
        record = store.awaiting_record(tx, subject_key)  # afresh, inside the transaction
        if record is None:
            return 0  # the subject became known meanwhile
        reason = f"its recipient never became known (nothing arrived for {subject_key})"
        given_up, younger, since = 0, [], None
        for message_id in record.get("messages") or []:
            message = store.message(message_id, tx)
            if message is None or message["state"] not in PENDING or \
                    not message.get("awaiting"):
                continue
            if message["created_at"] >= cutoff:
                younger.append(message_id)
                since = min(since or message["created_at"], message["created_at"])
                continue
            if store.update_message(tx, message_id, {
                    "$set": {"state": "dead", "reason": reason, "dead_at": now,
                             "updated_at": now},
                    "$unset": {"awaiting": "", "due_at": ""}}, expect_state=PENDING):
                given_up += 1
        store.set_awaiting(tx, subject_key, younger, since)
        return given_up


def effective(lookup: Any, recipient: dict[str, Any] | None) -> dict[str, Any]:
    """The preferences and addresses that apply: a contact known from events who is also a
    managed recipient (same phone: the contact names it in ``managed_by``) is reached as the
    managed one chose. ``lookup(recipient_id)``: a recipient as stored, or None."""
    if recipient is None:
        return {}
    if not recipient.get("managed") and recipient.get("managed_by"):
        managed = lookup(recipient["managed_by"])
        if managed:
            return managed
    return recipient
