"""Who hears what: one function per event, each run inside the event's transaction.

A handler only *stores* messages (state ``queued``, with the time they are due: the end of
the recipient's coalescing window, past quiet hours, or at once when critical); the courier
(``courier.py``) delivers them later, outside any event transaction. A message's id is
derived from its cause and its recipient, so the same fact told twice (a redelivered or
re-emitted event) adds nothing.

Contacts come with the events that introduce a person (a need's poster, a donor, a
volunteer); coordinators and organisation contacts are recipients managed through the API.
When a message's recipient is not known yet (``assignment_made`` overtook ``need_posted``),
the message waits with ``awaiting`` set and is adopted when the contact arrives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from services.common import contract, links
from services.common.contract import Event
from services.common.logs import mask_phone
from services.common.store import Tx
from services.notifications import policy, texts
from services.notifications.settings import NotifySettings
from services.notifications.store import PENDING, NotificationsStore

log = logging.getLogger(__name__)

EPSILON = 1e-9


@dataclass
class Context:
    store: NotificationsStore
    cfg: NotifySettings
    reference: Any
    now: datetime
    link_secret: str = ""  # the gateway checks accept/decline links with the same secret


# -- people introduced by events -----------------------------------------------------------
def remember_contact(ctx: Context, tx: Tx, contact: dict[str, Any] | None) -> str | None:
    """The recipient id for a contact from an event, or None when it cannot be reached.

    A contact is identified by its phone number (a key of it): the same person posting ten
    needs is one recipient, so their messages coalesce. A managed recipient with the same
    phone (a station's coordinator registered through the API) *is* that person, and their
    preferences win."""
    contact = contact or {}
    key = policy.phone_key(contact.get("phone"))
    email = contact.get("email")  # not in the contract yet; used when it is
    if not key and not policy.email_key(email):
        return None
    if key:
        managed = ctx.store.managed_by_phone(key, tx)
        if managed:
            return managed["_id"]
    recipient_id = f"contact:{key or policy.email_key(email)}"
    fields: dict[str, Any] = {"kind": "contact", "updated_at": ctx.now}
    for name in ("name", "phone", "language", "email"):
        if contact.get(name):
            fields[name] = contact[name]
    if key:
        fields["phone_key"] = key
    ctx.store.update_contact(tx, recipient_id, fields)
    log.info("contact %s known as %s", mask_phone(contact.get("phone")), recipient_id)
    return recipient_id


def introduce(ctx: Context, tx: Tx, subject_key: str, contact: dict[str, Any] | None,
              **facts: Any) -> None:
    """Record who to tell about a need, donation or volunteer; adopt waiting messages."""
    recipient_id = remember_contact(ctx, tx, contact)
    ctx.store.set_subject(tx, subject_key, {"recipient": recipient_id, "known": True,
                                            **facts})
    for message in ctx.store.awaiting(tx, subject_key):
        if message["state"] not in PENDING:
            continue
        if recipient_id is None:
            ctx.store.update_message(tx, message["_id"], {
                "$set": {"state": "skipped", "reason": "no contact was given",
                         "updated_at": ctx.now},
                "$unset": {"awaiting": ""}})
            continue
        recipient = ctx.store.recipient(recipient_id, tx)
        text = texts.render(message["template"], _language(ctx, recipient),
                            message["params"], ctx.reference, _tz(ctx, recipient))
        # the message was stored before the need's urgency was known
        priority = (policy.CRITICAL if policy.priority_of(facts.get("urgency")) ==
                    policy.CRITICAL else message["priority"])
        ctx.store.update_message(tx, message["_id"], {
            "$set": {"recipient": recipient_id, "language": _language(ctx, recipient),
                     "subject": text.subject, "text": text.body, "priority": priority,
                     "due_at": due(ctx, recipient, priority), "updated_at": ctx.now},
            "$unset": {"awaiting": ""}})


def on_need_posted(ctx: Context, tx: Tx, event: Event) -> None:
    data = event.data
    introduce(ctx, tx, f"need:{data['need_id']}", data.get("contact"),
              urgency=data["urgency"], quantity=data["quantity"], unit=data["unit"],
              category=data["category"], community_id=data["community_id"])


def on_donation_received(ctx: Context, tx: Tx, event: Event) -> None:
    data = event.data
    # the lot id is the donation id (one lot per goods donation)
    introduce(ctx, tx, f"donation:{data['donation_id']}",
              (data.get("donor") or {}).get("contact"))


def on_volunteer_registered(ctx: Context, tx: Tx, event: Event) -> None:
    data = event.data
    introduce(ctx, tx, f"volunteer:{data['volunteer_id']}", data.get("contact"))


# -- what happened, and who hears of it ----------------------------------------------------
def on_assignment_made(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    subject_key = f"need:{d['need_id']}"
    message_id = message_id_for(f"assignment_made/{d['assignment_id']}", subject_key)
    if ctx.store.message(message_id, tx):
        return  # the same assignment told again
    need = ctx.store.set_subject(tx, subject_key, {}, inc={"assigned": d["quantity"]})
    needed = need.get("quantity")
    assigned = need.get("assigned")
    params = {"need_id": d["need_id"], "quantity": d["quantity"], "unit": d["unit"],
              "category": d["category"], "location_id": d["location_id"],
              "assigned": assigned if needed is not None else None, "needed": needed,
              "partial": bool(needed is not None and assigned + EPSILON < needed)}
    tell_subject(ctx, tx, event, "assignment_made", f"assignment_made/{d['assignment_id']}",
                 subject_key, params, urgency=need.get("urgency"), need_id=d["need_id"])


def on_need_fulfilled(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    params = {k: d[k] for k in ("need_id", "quantity", "unit", "category")}
    tell_subject(ctx, tx, event, "need_fulfilled", f"need_fulfilled/{d['need_id']}",
                 f"need:{d['need_id']}", params, need_id=d["need_id"])


def on_need_expired(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    params = {k: d[k] for k in ("need_id", "unfulfilled_quantity", "unit", "category")}
    tell_subject(ctx, tx, event, "need_expired", f"need_expired/{d['need_id']}",
                 f"need:{d['need_id']}", params, need_id=d["need_id"])


def on_stock_changed(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    if d["reason"] != "allocated":
        return
    # Receipt numbers do not exist yet: the donation id (= the lot id) is the donor's
    # reference, and the texts say so.
    cause = f"goods_dispatched/{d.get('assignment_id') or event.event_id}"
    params = {"receipt": d["lot_id"], "quantity": abs(d["delta"]), "unit": d["unit"],
              "category": d["category"], "location_id": d["location_id"],
              "available": d["available"]}
    tell_subject(ctx, tx, event, "goods_dispatched", cause, f"donation:{d['lot_id']}", params)


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
    params["accept_url"] = offer_link(cfg.public_url, ctx.link_secret, d["offer_id"], "accept")
    params["decline_url"] = offer_link(cfg.public_url, ctx.link_secret, d["offer_id"],
                                       "decline")
    tell_subject(ctx, tx, event, "offer_made", f"offer_made/{d['offer_id']}",
                 f"volunteer:{d['volunteer_id']}", params, urgency=d.get("urgency"),
                 topic=f"offer:{d['offer_id']}", expires_at=d["expires_at"])


def offer_link(base_url: str, secret: str, offer_id: str, answer: str) -> str:
    """The gateway's ``/api/offers/<offer_id>/<answer>?sig=``: the signature lets the
    volunteer answer without an account (``services.common.links``)."""
    url = f"{base_url.rstrip('/')}/api/offers/{quote(offer_id, safe='')}/{answer}"
    return f"{url}?sig={links.sign(offer_id, secret)}" if secret else url


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
    tell_subject(ctx, tx, event, "offer_released", f"offer_released/{d['offer_id']}",
                 f"volunteer:{d['volunteer_id']}", params)


def on_need_escalated(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    params = {k: d[k] for k in ("need_id", "community_id", "category", "urgency", "from_tier",
                                "to_tier", "area_id", "remaining", "unit")}
    cause = f"need_escalated/{d['need_id']}/{d['to_tier']}/{d['area_id']}"
    coordinators = ctx.store.coordinators(tx, d["area_id"])
    tell_group(ctx, tx, event, "need_escalated", cause, coordinators,
               f"area:{d['area_id']}", f"no coordinator is registered for {d['area_id']}",
               params, urgency=d["urgency"], need_id=d["need_id"])


def on_status_report_missing(ctx: Context, tx: Tx, event: Event) -> None:
    d = event.data
    params = {"organisation_id": d["organisation_id"], "due_at": d["due_at"].isoformat()}
    cause = f"status_report_missing/{d['organisation_id']}/{d['due_at'].isoformat()}"
    contacts = ctx.store.organisation_contacts(tx, d["organisation_id"])
    tell_group(ctx, tx, event, "status_report_missing", cause, contacts,
               f"organisation:{d['organisation_id']}",
               f"no contact is registered for organisation {d['organisation_id']}", params)


# -- the mechanics -------------------------------------------------------------------------
def message_id_for(cause: str, audience: str) -> str:
    """One message per (cause, recipient): the id is derived from both."""
    return contract.derived_id("notification", cause, audience)


def tell_subject(ctx: Context, tx: Tx, event: Event, template: str, cause: str,
                 subject_key: str, params: dict[str, Any], *, urgency: str | None = None,
                 need_id: str | None = None, topic: str | None = None,
                 expires_at: datetime | None = None) -> None:
    """Tell whoever is behind a need, donation or volunteer (known now, or adopted later)."""
    subject = ctx.store.subject(tx, subject_key) or {}
    if subject.get("known") and subject.get("recipient") is None:
        return  # they left no contact: nobody to tell
    if not subject.get("known"):
        # Written so that this transaction and the one introducing the subject conflict
        # (one retries and sees the other); else each could miss the other's write.
        ctx.store.set_subject(tx, subject_key, {"waiting": True})
    if urgency is None:
        urgency = subject.get("urgency")
    enqueue(ctx, tx, event, template, cause, subject_key,
            subject.get("recipient") if subject.get("known") else None, params,
            priority=policy.priority_of(urgency), need_id=need_id, topic=topic,
            expires_at=expires_at, awaiting=None if subject.get("known") else subject_key)


def tell_group(ctx: Context, tx: Tx, event: Event, template: str, cause: str,
               recipients: list[dict[str, Any]], group: str, nobody: str,
               params: dict[str, Any], *, urgency: str | None = None,
               need_id: str | None = None) -> None:
    """Tell every recipient of a group (an area's coordinators, an organisation's contacts).
    A group with nobody in it is a message that cannot arrive: it is recorded dead, so that
    on-call sees it."""
    priority = policy.priority_of(urgency)
    if not recipients:
        if enqueue(ctx, tx, event, template, cause, group, None, params, priority=priority,
                   need_id=need_id, dead_reason=nobody, group=group):
            log.warning("%s: %s", template, nobody, extra={"event_id": event.event_id,
                                                           "need_id": need_id})
        return
    for recipient in recipients:
        enqueue(ctx, tx, event, template, cause, recipient["_id"], recipient["_id"], params,
                priority=priority, need_id=need_id, recipient=recipient)


def enqueue(ctx: Context, tx: Tx, event: Event, template: str, cause: str, audience: str,
            recipient_id: str | None, params: dict[str, Any], *, priority: str,
            need_id: str | None = None, topic: str | None = None,
            expires_at: datetime | None = None, awaiting: str | None = None,
            dead_reason: str | None = None, group: str | None = None,
            recipient: dict[str, Any] | None = None) -> bool:
    """Store one message: queued and due at the end of its recipient's window (or dead
    with a reason). Returns False when the message already existed."""
    message_id = message_id_for(cause, audience)
    if recipient is None and recipient_id is not None:
        recipient = ctx.store.recipient(recipient_id, tx)
    language = _language(ctx, recipient)
    # stored text carries no greeting name: what the API shows has no personal data
    text = texts.render(template, language, params, ctx.reference, _tz(ctx, recipient))
    message: dict[str, Any] = {
        "_id": message_id, "template": template, "recipient": recipient_id,
        "priority": priority, "params": params, "language": language,
        "subject": text.subject, "text": text.body,
        "state": "dead" if dead_reason else "queued", "attempts": 0, "generation": 0,
        "cause": cause, "cause_event_id": event.event_id, "cause_type": event.type,
        "created_at": ctx.now, "updated_at": ctx.now,
    }
    for name, value in (("need_id", need_id), ("topic", topic), ("expires_at", expires_at),
                        ("awaiting", awaiting), ("reason", dead_reason), ("group", group)):
        if value is not None:
            message[name] = value
    if recipient_id is not None and not dead_reason:
        message["due_at"] = due(ctx, recipient, priority)
    if not ctx.store.add_message(tx, message):
        return False
    if dead_reason:
        tx.emit("notification_failed", {"notification_id": message_id, "channel": "none",
                                        "template": template, "reason": dead_reason},
                event_id=contract.derived_id("notification_failed", message_id, "0"))
    return True


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
            if enqueue(ctx, tx, cause, message["template"], message["cause"], member["_id"],
                       member["_id"], message["params"], priority=message["priority"],
                       need_id=message.get("need_id"), recipient=member):
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


@dataclass(frozen=True)
class _Cause:
    event_id: str
    type: str
