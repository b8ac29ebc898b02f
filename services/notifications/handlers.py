"""Who hears what: one function per event, each run inside the event's transaction.

A handler only *stores* messages (state ``queued``, with the time they are due: the end of
the recipient's coalescing window, past quiet hours, or at once when critical); the courier
(``courier.py``) delivers them later, outside any event transaction. A message's id is
derived from its cause and its recipient, so the same fact told twice (a redelivered or
re-emitted event) adds nothing.

Contacts come with the events that introduce a person (a need's poster, a donor, a
volunteer); coordinators and organisation contacts are recipients managed through the API.
When a message's recipient is not known yet (``assignment_made`` overtook ``need_posted``),
the message waits with ``awaiting`` set (and an ``awaiting`` record for its subject) and is
adopted when the contact arrives.

Requests are the budget (DESIGN.md): a handler reads a document by ``_id`` at most once,
writes a new message with one upsert that says whether it existed, and takes recipients and
known subjects read in the last few seconds from the store's cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from services.common import contract, links
from services.common.contract import Event
from services.common.logs import mask_phone
from services.common.store import Tx
from services.notifications import policy, texts
from services.notifications.keys import (
    INTRODUCES,
    TOLD_ABOUT,
    TOLD_CAUSE,
    contact_id,
    contact_key,
    message_id_for,
)
from services.notifications.settings import NotifySettings
from services.notifications.store import PENDING, NotificationsStore, PostedOtherwise

log = logging.getLogger(__name__)

EPSILON = 1e-9


@dataclass(frozen=True)
class Notice:
    """What to tell: the event that caused it, the template and its parameters, the cause
    (one message per cause and recipient) and what the message is about. ``urgency`` None
    takes the subject's own."""

    event: Any  # an Event, or the stored cause of a message retried (event_id and type)
    template: str
    cause: str
    params: dict[str, Any]
    urgency: str | None = None
    need_id: str | None = None
    topic: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Addressee:
    """To whom one message goes: its audience (a recipient id, a subject waiting for its
    contact, or a group with nobody in it) and, when known, the recipient."""

    audience: str
    recipient_id: str | None
    recipient: dict[str, Any] | None = None
    awaiting: str | None = None  # the subject whose contact has not arrived yet
    dead_reason: str | None = None  # why it cannot be delivered (stored dead)
    group: str | None = None  # the group it was meant for (retried to its members later)


@dataclass
class Context:
    store: NotificationsStore
    cfg: NotifySettings
    reference: Any
    now: datetime
    link_secret: str = ""  # the gateway checks accept/decline links with the same secret
    # run once the transaction committed (what may then be cached); cleared on a retry
    after_commit: list[Callable[[], None]] = field(default_factory=list)


# -- people introduced by events -----------------------------------------------------------
def remember_contact(ctx: Context, tx: Tx, contact: dict[str, Any] | None) -> str | None:
    """The recipient id for a contact from an event, or None when it cannot be reached.

    A contact is identified by its phone number (a key of it): the same person posting ten
    needs is one recipient, so their messages coalesce. A managed recipient with the same
    phone (a station's coordinator registered through the API) *is* that person, and their
    preferences win."""
    contact = contact or {}
    key = policy.phone_key(contact.get("phone"))
    # an email is not in the contract yet; used when it is
    recipient_id = contact_key(contact)
    if recipient_id is None:
        return None
    # one read (none for a poster seen lately): the contact as stored, which names the
    # managed recipient with this phone
    current = ctx.store.recent_recipient(recipient_id, tx)
    if current and current.get("managed_by"):
        return current["managed_by"]
    fields: dict[str, Any] = {"kind": "contact", "updated_at": ctx.now}
    for name in ("name", "phone", "language", "email"):
        if contact.get(name):
            fields[name] = contact[name]
    if key:
        fields["phone_key"] = key
    ctx.store.update_contact(tx, recipient_id, fields, current)
    stored = {"managed": False, **(current or {}), **fields, "_id": recipient_id}
    ctx.after_commit.append(lambda: ctx.store.recent_recipients.put(recipient_id, stored))
    log.info("contact %s known as %s", mask_phone(contact.get("phone")), recipient_id)
    return recipient_id


def relink_phones(store: NotificationsStore, tx: Tx, recipient_id: str,
                  before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    """A managed recipient was saved (``after``) or deleted (``after`` None): the contact
    with its phone points at it, and a phone it no longer has points at whichever other
    managed recipient has that phone, if any."""
    old_key = (before or {}).get("phone_key")
    new_key = (after or {}).get("phone_key")
    if new_key:
        store.link_contact(tx, contact_id(new_key), recipient_id, new_key)
    if old_key and old_key != new_key:
        other = store.managed_by_phone(old_key, tx, other_than=recipient_id)
        store.link_contact(tx, contact_id(old_key), other["_id"] if other else None, old_key)


def introduce(ctx: Context, tx: Tx, subject_key: str, contact: dict[str, Any] | None,
              posting: tuple[str, str, str] | None = None, **facts: Any) -> None:
    """Record who to tell about a need, donation or volunteer; adopt waiting messages.

    The subject is written in any case (``known`` is a real change): a transaction telling
    the subject concurrently writes it too, so one of the two retries and sees the other.
    A subject that did not exist has nothing waiting for it: no more is read.

    A need or a donation is posted once. ``posting`` (the id's name, the id, the fingerprint
    of what was posted) makes the same posting again change nothing, and refuses another
    one under the same id (:class:`~services.common.contract.IdReused`): a second publisher
    never changes who hears about the first one's need."""
    if posting is not None:
        first = ctx.store.posting_of(tx, subject_key)
        if first is not None and first != posting[2]:
            raise contract.IdReused(posting[0], posting[1], [])
        if first is not None:
            return  # the same posting again
    recipient_id = remember_contact(ctx, tx, contact)
    known = {"recipient": recipient_id, "known": True, **facts}
    if posting is not None:
        known["posting"] = posting[2]
    try:
        created = ctx.store.set_subject(tx, subject_key, known)
    except PostedOtherwise:
        raise contract.IdReused(posting[0], posting[1], []) from None
    ctx.after_commit.append(lambda: ctx.store.recent_subjects.put(
        subject_key, {"_id": subject_key, **known}))
    if created:
        return
    record = ctx.store.awaiting_record(tx, subject_key)
    if record is None:
        return
    # the contact may have been written just now, in this transaction: not remembered
    recipient = ctx.store.recent_recipient(recipient_id, tx, remember=False) \
        if recipient_id else None
    for message_id in record.get("messages") or []:
        message = ctx.store.message(message_id, tx)
        if message is None or message["state"] not in PENDING or not message.get("awaiting"):
            continue
        if recipient_id is None:
            ctx.store.adopt_message(tx, message["_id"], {
                "$set": {"state": "skipped", "reason": "no contact was given",
                         "updated_at": ctx.now},
                "$unset": {"awaiting": ""}})
            continue
        text = texts.render(message["template"], _language(ctx, recipient),
                            texts.masked(message["params"]), ctx.reference,
                            _tz(ctx, recipient))
        # the message was stored before the need's urgency was known
        priority = (policy.CRITICAL if policy.priority_of(facts.get("urgency")) ==
                    policy.CRITICAL else message["priority"])
        ctx.store.adopt_message(tx, message["_id"], {
            "$set": {"recipient": recipient_id, "language": _language(ctx, recipient),
                     "subject": text.subject, "text": text.body, "priority": priority,
                     "due_at": due(ctx, recipient, priority), "updated_at": ctx.now},
            "$unset": {"awaiting": ""}})
    ctx.store.set_awaiting(tx, subject_key, [], None)


def on_need_posted(ctx: Context, tx: Tx, event: Event) -> None:
    data = event.data
    introduce(ctx, tx, *INTRODUCES[event.type](data),
              posting=("need_id", data["need_id"], contract.fingerprint(data)),
              urgency=data["urgency"], quantity=data["quantity"], unit=data["unit"],
              category=data["category"], community_id=data["community_id"])


def on_donation_received(ctx: Context, tx: Tx, event: Event) -> None:
    data = event.data
    # the lot id is the donation id (one lot per goods donation)
    introduce(ctx, tx, *INTRODUCES[event.type](data),
              posting=("donation_id", data["donation_id"], contract.fingerprint(data)))


def on_volunteer_registered(ctx: Context, tx: Tx, event: Event) -> None:
    data = event.data
    introduce(ctx, tx, *INTRODUCES[event.type](data))


# -- what happened, and who hears of it ----------------------------------------------------
def on_assignment_made(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    subject_key = TOLD_ABOUT[event.type](d)
    if d.get("need_assigned") is not None and d.get("need_quantity") is not None:
        # matching says how far the need is: nothing to count here, and who is behind the
        # need is what was read lately (it does not change once known)
        needed, assigned = d["need_quantity"], d["need_assigned"]
        need = ctx.store.known_subject(tx, subject_key) or {}
        counted = False
    else:  # an event from before matching said so: the running total is kept here
        # The running total is written first: of two assignments of one need handled at
        # once, the second conflicts at its first write and retries at the least cost.
        ctx.store.set_subject(tx, subject_key, {}, inc={"assigned": d["quantity"]})
        need = ctx.store.subject(tx, subject_key, remember=False) or {}  # this one counted
        needed, assigned, counted = need.get("quantity"), need.get("assigned"), True
    if need.get("known") and need.get("recipient") is None:
        return  # they left no contact: nobody to tell
    params = {"need_id": d["need_id"], "quantity": d["quantity"], "unit": d["unit"],
              "category": d["category"], "location_id": d["location_id"],
              "assigned": assigned if needed is not None else None, "needed": needed,
              "partial": bool(needed is not None and assigned + EPSILON < needed),
              # matching said the need's totals: this assignment met it (need_fulfilled
              # then tells nothing more)
              "complete": bool(needed is not None and not counted
                               and assigned + EPSILON >= needed)}
    notice = Notice(event, "assignment_made", TOLD_CAUSE[event.type](event), params,
                    urgency=need.get("urgency"), need_id=d["need_id"])
    if not tell_subject(ctx, tx, notice, subject_key, subject=need) and counted:
        # the same assignment told again (under another event id): counted once
        ctx.store.set_subject(tx, subject_key, {}, inc={"assigned": -d["quantity"]})


def on_need_fulfilled(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    if d.get("completed_by"):
        # a goods need met by an assignment that carried its totals: that assignment's
        # message said the need is fully met, and the poster is not told twice
        return
    params = {k: d[k] for k in ("need_id", "quantity", "unit", "category")}
    tell_subject(ctx, tx, Notice(event, "need_fulfilled", TOLD_CAUSE[event.type](event),
                                 params, need_id=d["need_id"]), TOLD_ABOUT[event.type](d))


def on_need_expired(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    params = {k: d[k] for k in ("need_id", "unfulfilled_quantity", "unit", "category")}
    tell_subject(ctx, tx, Notice(event, "need_expired", TOLD_CAUSE[event.type](event),
                                 params, need_id=d["need_id"]), TOLD_ABOUT[event.type](d))


def on_stock_changed(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    if d["reason"] != "allocated":
        return
    # Receipt numbers do not exist yet: the donation id (= the lot id) is the donor's
    # reference, and the texts say so.
    cause = TOLD_CAUSE[event.type](event)
    params = {"receipt": d["lot_id"], "quantity": abs(d["delta"]), "unit": d["unit"],
              "category": d["category"], "location_id": d["location_id"],
              "available": d["available"]}
    tell_subject(ctx, tx, Notice(event, "goods_dispatched", cause, params),
                 TOLD_ABOUT[event.type](d))


def on_offer_made(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    cfg = ctx.cfg
    offer = ctx.store.subject(tx, f"offer:{d['offer_id']}") or {}
    if offer.get("answered"):
        return  # its answer overtook it: the offer is moot
    ctx.store.set_subject(tx, f"offer:{d['offer_id']}", {"made": True})
    params = {k: d[k] for k in ("offer_id", "need_id", "category", "quantity", "unit",
                                "community_id")}
    params["expires_at"] = d["expires_at"].isoformat()
    valid_until = d["expires_at"] + timedelta(seconds=cfg.link_grace_seconds)
    params["accept_url"] = offer_link(cfg.public_url, ctx.link_secret, d["offer_id"], "accept",
                                      valid_until)
    params["decline_url"] = offer_link(cfg.public_url, ctx.link_secret, d["offer_id"],
                                       "decline", valid_until)
    notice = Notice(event, "offer_made", f"offer_made/{d['offer_id']}", params,
                    urgency=d.get("urgency"), topic=f"offer:{d['offer_id']}",
                    expires_at=d["expires_at"])
    tell_subject(ctx, tx, notice, f"volunteer:{d['volunteer_id']}")


def offer_link(base_url: str, secret: str, offer_id: str, answer: str,
               valid_until: datetime) -> str:
    """The gateway's ``/api/offers/<offer_id>/<answer>?sig=``: the signature lets the
    volunteer give this answer to this offer without an account, until ``valid_until``
    (``services.common.links``)."""
    url = f"{base_url.rstrip('/')}/api/offers/{quote(offer_id, safe='')}/{answer}"
    if not secret:
        return url
    return f"{url}?sig={links.sign(offer_id, answer, valid_until, secret)}"


def on_offer_answered(ctx: Context, tx: Tx, event: Event) -> None:
    """Accepted or released: an offer message not sent yet is moot. A release (lapsed,
    withdrawn) is told to the volunteer, unless they never heard of the offer; a decline is
    their own act and needs no message."""
    d = event.data
    # written by both offer handlers: whichever runs second sees the first
    offer = ctx.store.subject(tx, f"offer:{d['offer_id']}") or {}
    ctx.store.set_subject(tx, f"offer:{d['offer_id']}", {"answered": d["outcome"]})
    if not offer.get("made"):
        return  # the volunteer never heard of it
    unsent = cancel_topic(ctx, tx, f"offer:{d['offer_id']}",
                          f"the offer was {d['outcome']} before it was sent")
    if event.type == "offer_accepted" or d["outcome"] in ("accepted", "declined"):
        return
    if unsent:
        return
    params = {"offer_id": d["offer_id"], "need_id": d["need_id"], "outcome": d["outcome"]}
    tell_subject(ctx, tx, Notice(event, "offer_released", f"offer_released/{d['offer_id']}",
                                 params), f"volunteer:{d['volunteer_id']}")


def on_need_escalated(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    params = {k: d[k] for k in ("need_id", "community_id", "category", "urgency", "from_tier",
                                "to_tier", "area_id", "remaining", "unit")}
    cause = f"need_escalated/{d['need_id']}/{d['to_tier']}/{d['area_id']}"
    coordinators = ctx.store.coordinators(tx, d["area_id"])
    tell_group(ctx, tx, Notice(event, "need_escalated", cause, params, urgency=d["urgency"],
                               need_id=d["need_id"]),
               coordinators, f"area:{d['area_id']}",
               f"no coordinator is registered for {d['area_id']}")


def on_status_report_missing(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    params = {"organisation_id": d["organisation_id"], "due_at": d["due_at"].isoformat()}
    cause = f"status_report_missing/{d['organisation_id']}/{d['due_at'].isoformat()}"
    contacts = ctx.store.organisation_contacts(tx, d["organisation_id"])
    tell_group(ctx, tx, Notice(event, "status_report_missing", cause, params), contacts,
               f"organisation:{d['organisation_id']}",
               f"no contact is registered for organisation {d['organisation_id']}")


# -- invitations (asked by the gateway, not an event) --------------------------------------
def invite(ctx: Context, tx: Tx, invitation_id: str, contact: dict[str, Any],
           params: dict[str, Any]) -> str | None:
    """A person invited to an account: one message to the e-mail or phone the admin gave,
    in the language asked for, due at once. Its id is derived from the invitation's, so
    asking twice sends once; the link (``invite_url``, a secret) is kept in the params
    only, masked in the stored text. Returns the message id, or None when the contact
    cannot be reached."""
    recipient_id = remember_contact(ctx, tx, contact)
    if recipient_id is None:
        return None
    cause = f"invitation/{invitation_id}"
    # the language asked for, not a read of the contact this transaction may have written
    recipient = {"_id": recipient_id, "language": contact.get("language")}
    notice = Notice(_Cause(invitation_id, "invitation"), "invitation", cause, params)
    enqueue(ctx, tx, notice, Addressee(recipient_id, recipient_id, recipient), policy.CRITICAL)
    return message_id_for(cause, recipient_id)


# -- events that can change nothing --------------------------------------------------------
def changes_nothing(store: NotificationsStore, event: Event) -> bool:
    """True when handling ``event`` could change nothing, so it needs no transaction (nor a
    processed marker: handling it again changes nothing either). Stock that did not leave
    for a need tells nobody; nor does news of a need or donation whose poster or donor left
    no contact, as this process read lately (who is behind a subject does not change once
    known). In doubt (nothing read lately) the event is handled."""
    if event.type == "stock_changed" and event.data.get("reason") != "allocated":
        return True
    about = TOLD_ABOUT.get(event.type)
    subject = store.recent_subjects.get(about(event.data)) if about else None
    return bool(subject and subject.get("known") and subject.get("recipient") is None)


# -- the mechanics -------------------------------------------------------------------------
def tell_subject(ctx: Context, tx: Tx, notice: Notice, subject_key: str, *,
                 subject: dict[str, Any] | None = None) -> bool:
    """Tell whoever is behind a need, donation or volunteer (known now, or adopted later).
    ``subject`` is the subject as the caller read it in this transaction (else it is read,
    or taken from what was read lately if it was known then). True when a message was
    queued."""
    if subject is None:
        subject = ctx.store.known_subject(tx, subject_key) or {}
    known = bool(subject.get("known"))
    if known and subject.get("recipient") is None:
        return False  # they left no contact: nobody to tell
    urgency = notice.urgency if notice.urgency is not None else subject.get("urgency")
    to = Addressee(subject_key, subject.get("recipient") if known else None,
                   awaiting=None if known else subject_key)
    if not enqueue(ctx, tx, notice, to, policy.priority_of(urgency)):
        return False  # told before
    if not known:
        # A real change to the subject (never a no-op write, which conflicts with nothing):
        # this transaction and the one introducing the subject conflict, one retries and
        # sees the other's write; else each could miss the other and the message would
        # wait for ever.
        ctx.store.set_subject(tx, subject_key, {}, inc={"waiting": 1})
        ctx.store.await_subject(tx, subject_key, message_id_for(notice.cause, subject_key),
                                ctx.now)
    return True


def tell_group(ctx: Context, tx: Tx, notice: Notice, recipients: list[dict[str, Any]],
               group: str, nobody: str) -> None:
    """Tell every recipient of a group (an area's coordinators, an organisation's contacts).
    A group with nobody in it is a message that cannot arrive: it is recorded dead, so that
    on-call sees it (an escalation to nobody is a problem in the status report until it is
    retried: see :func:`unaddressed_escalations`)."""
    priority = policy.priority_of(notice.urgency)
    if not recipients:
        if enqueue(ctx, tx, notice, Addressee(group, None, dead_reason=nobody, group=group),
                   priority):
            log.warning("%s: %s", notice.template, nobody,
                        extra={"event_id": notice.event.event_id, "need_id": notice.need_id})
        return
    for recipient in recipients:
        enqueue(ctx, tx, notice, Addressee(recipient["_id"], recipient["_id"], recipient),
                priority)


def enqueue(ctx: Context, tx: Tx, notice: Notice, to: Addressee, priority: str) -> bool:
    """Store one message: queued and due at the end of its recipient's window (or dead
    with a reason). Returns False when the message already existed."""
    message_id = message_id_for(notice.cause, to.audience)
    recipient = to.recipient
    if recipient is None and to.recipient_id is not None:
        recipient = ctx.store.recent_recipient(to.recipient_id, tx)
    language = _language(ctx, recipient)
    # stored text carries no greeting name: what the API shows has no personal data (nor
    # the recipient's secrets: the courier renders the text it delivers from the params)
    text = texts.render(notice.template, language, texts.masked(notice.params), ctx.reference,
                        _tz(ctx, recipient))
    event = notice.event
    message: dict[str, Any] = {
        "_id": message_id, "template": notice.template, "recipient": to.recipient_id,
        "priority": priority, "params": notice.params, "language": language,
        "subject": text.subject, "text": text.body,
        "state": "dead" if to.dead_reason else "queued", "attempts": 0, "generation": 0,
        "cause": notice.cause, "cause_event_id": event.event_id, "cause_type": event.type,
        "created_at": ctx.now, "updated_at": ctx.now,
    }
    for name, value in (("need_id", notice.need_id), ("topic", notice.topic),
                        ("expires_at", notice.expires_at), ("awaiting", to.awaiting),
                        ("reason", to.dead_reason), ("group", to.group)):
        if value is not None:
            message[name] = value
    if to.recipient_id is not None and not to.dead_reason:
        message["due_at"] = due(ctx, recipient, priority)
    return ctx.store.add_message(tx, message)


def due(ctx: Context, recipient: dict[str, Any] | None, priority: str) -> datetime:
    """When a new message may go out. The courier then sends it together with whatever else
    is pending for the same recipient, so a window holds at most one delivery.

    Messages carry their own due time and handlers write nothing shared: a burst of events
    for one coordinator never makes their transactions conflict."""
    # not ctx.now: a transaction retried after conflicts would open a window in the past
    return policy.due_at(contract.now(), recipient, priority, ctx.cfg.window_seconds,
                         ctx.cfg.default_timezone)


def cancel_topic(ctx: Context, tx: Tx, topic: str, reason: str) -> bool:
    """Cancel the pending messages of a topic. True if one was cancelled."""
    cancelled = False
    for message in ctx.store.by_topic(tx, topic):
        if message["state"] in PENDING:
            cancelled |= ctx.store.update_message(tx, message["_id"], {
                "$set": {"state": "cancelled", "reason": reason, "updated_at": ctx.now},
                "$unset": {"awaiting": "", "due_at": ""}}, expect_state=PENDING)
    return cancelled


def _language(ctx: Context, recipient: dict[str, Any] | None) -> str:
    return texts.language_of((recipient or {}).get("language") or ctx.cfg.default_language)


def _tz(ctx: Context, recipient: dict[str, Any] | None) -> str:
    return (recipient or {}).get("timezone") or ctx.cfg.default_timezone


# -- on-call -------------------------------------------------------------------------------
class RetryRefused(ValueError):
    """A message that cannot be retried, with the reason."""


def retry_dead(ctx: Context, tx: Tx, message_id: str) -> list[str]:
    """Give a dead message another go (after on-call fixed its cause): it is queued again,
    due at once. A message that had nobody to go to (an area without coordinators) goes to
    whoever is registered for that group now. Returns the ids of the messages queued."""
    message = ctx.store.message(message_id, tx)
    if message is None:
        raise RetryRefused(f"no message {message_id!r}")
    if message["state"] != "dead":
        raise RetryRefused(f"message {message_id} is {message['state']}, not dead")
    if message.get("recipient") is None and message.get("group"):
        kind, _, group_id = message["group"].partition(":")
        members = (ctx.store.coordinators(tx, group_id) if kind == "area"
                   else ctx.store.organisation_contacts(tx, group_id))
        if not members:
            raise RetryRefused(f"still nobody is registered for {message['group']}")
        cause = _Cause(message["cause_event_id"], message["cause_type"])
        queued = []
        for member in members:
            notice = Notice(cause, message["template"], message["cause"], message["params"],
                            need_id=message.get("need_id"))
            if enqueue(ctx, tx, notice, Addressee(member["_id"], member["_id"], member),
                       message["priority"]):
                queued.append(message_id_for(message["cause"], member["_id"]))
        ctx.store.update_message(tx, message_id, {"$set": {
            "state": "cancelled", "updated_at": ctx.now,
            "reason": f"{message['reason']}; handed on retry to {len(queued)} recipient(s)"}})
        return queued
    if message.get("recipient") is None:
        raise RetryRefused(f"message {message_id} has no recipient to retry")
    ctx.store.update_message(tx, message_id, {
        "$set": {"state": "queued", "attempts": 0, "updated_at": ctx.now, "due_at": ctx.now,
                 "retried_at": ctx.now, "last_reason": message.get("reason")},
        "$inc": {"generation": 1},
        "$unset": {"reason": "", "next_attempt_at": ""}}, expect_state="dead")
    return [message_id]


def unaddressed_escalations(store: NotificationsStore) -> list[dict[str, Any]]:
    """Escalations that reached nobody, per area: ``need_escalated`` messages recorded dead
    because no coordinator was registered for the area they went to. Each stays a problem
    for on-call until it is retried (register a coordinator, then ``retry_dead`` hands the
    message to them); ``coordinators`` says how many the area has now."""
    by_area: dict[str, dict[str, Any]] = {}
    for message in store.undeliverable("need_escalated"):
        params = message.get("params") or {}
        area = params.get("area_id") or message["group"].partition(":")[2]
        row = by_area.setdefault(area, {"area_id": area, "tier": params.get("to_tier"),
                                        "count": 0, "need_ids": [], "notification_ids": [],
                                        "since": message["created_at"]})
        row["count"] += 1
        row["since"] = min(row["since"], message["created_at"])
        if message.get("need_id") and len(row["need_ids"]) < 10:
            row["need_ids"].append(message["need_id"])
        if len(row["notification_ids"]) < 10:
            row["notification_ids"].append(message["_id"])
    rows = []
    for area in sorted(by_area):
        row = by_area[area]
        row["coordinators"] = len(store.coordinators(None, area))
        row["since"] = row["since"].isoformat()
        rows.append(row)
    return rows


@dataclass(frozen=True)
class _Cause:
    event_id: str
    type: str
