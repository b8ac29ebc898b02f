"""What notifications' handlers key things by: recipients known from events, messages (one
per cause and recipient) and the subjects events are about. Shared by the handlers and the
store (which reads, for a batch, everything its events will look up at once)."""

from __future__ import annotations

from typing import Any

from services.common import contract
from services.common.contract import Event
from services.notifications import policy


def contact_id(key: str) -> str:
    """The recipient id of a contact known from events, by its phone (or email) key."""
    return f"contact:{key}"


def contact_key(contact: dict[str, Any] | None) -> str | None:
    """The recipient id a contact from an event is known by, or None (no phone, no email)."""
    contact = contact or {}
    key = policy.phone_key(contact.get("phone")) or policy.email_key(contact.get("email"))
    return contact_id(key) if key else None


def message_id_for(cause: str, audience: str) -> str:
    """One message per (cause, recipient): the id is derived from both."""
    return contract.derived_id("notification", cause, audience)


# what an event tells the person behind (the subject it is about)
TOLD_ABOUT = {
    "assignment_made": lambda d: f"need:{d['need_id']}",
    "need_fulfilled": lambda d: f"need:{d['need_id']}",
    "need_expired": lambda d: f"need:{d['need_id']}",
    "stock_changed": lambda d: f"donation:{d['lot_id']}",
}


# the cause of the one message such an event tells its subject (see ``tell_subject``)
TOLD_CAUSE = {
    "assignment_made": lambda e: f"assignment_made/{e.data['assignment_id']}",
    "need_fulfilled": lambda e: f"need_fulfilled/{e.data['need_id']}",
    "need_expired": lambda e: f"need_expired/{e.data['need_id']}",
    "stock_changed": lambda e: f"goods_dispatched/{e.data.get('assignment_id') or e.event_id}",
}

# the subject an event introduces, and the contact it comes with (see ``introduce``)
INTRODUCES = {
    "need_posted": lambda d: (f"need:{d['need_id']}", d.get("contact")),
    "donation_received": lambda d: (f"donation:{d['donation_id']}",
                                    (d.get("donor") or {}).get("contact")),
    "volunteer_registered": lambda d: (f"volunteer:{d['volunteer_id']}", d.get("contact")),
}


def prefetch_keys(events: list[Event]) -> tuple[list[str], list[str], list[str]]:
    """What handling ``events`` will look up: subjects, message ids and contacts (for the
    store to read at once before a batch's handlers run)."""
    subjects: dict[str, None] = {}
    messages: dict[str, None] = {}
    contacts: dict[str, None] = {}
    for event in events:
        if event.type in INTRODUCES:
            key, contact = INTRODUCES[event.type](event.data)
            subjects[key] = None
            recipient = contact_key(contact)
            if recipient:
                contacts[recipient] = None
        elif event.type in TOLD_CAUSE:
            if event.type == "stock_changed" and event.data.get("reason") != "allocated":
                continue
            key = TOLD_ABOUT[event.type](event.data)
            subjects[key] = None
            messages[message_id_for(TOLD_CAUSE[event.type](event), key)] = None
    return list(subjects), list(messages), list(contacts)
