"""Notifications' storage, the only code that knows its collections.

* ``recipients``: people we may tell something, with their contact (personal data lives here
  and nowhere else), language, time zone, channels, quiet hours, digest preference, and the
  areas they coordinate or organisations they speak for. ``managed`` ones are set through the
  API; the others come from events (a need's poster, a donor, a volunteer).
* ``subjects``: what we know of a need, donation or volunteer: who to tell about it
  (a recipient id, or none when no contact was given) and a few figures for the texts.
* ``messages``: one per (cause, recipient), with its state: queued, failed (will retry), sent,
  dead (gave up, with the reason), skipped or cancelled (nothing to send).
  A pending message carries ``due_at``; no other does, so the courier's scan stays small.
* ``mailboxes``: one per recipient, written by the courier only: who holds it while
  delivering (a lease, so two instances never send the same thing) and when it last sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from services.common.store import BaseStore, Tx

PENDING = ("queued", "failed")


class NotificationsStore(BaseStore):
    collections = {
        "recipients": [[("phone_key", ASCENDING)], [("areas", ASCENDING)],
                       [("organisations", ASCENDING)]],
        "subjects": [],
        "messages": [[("recipient", ASCENDING), ("state", ASCENDING)],
                     [("need_id", ASCENDING)], [("state", ASCENDING)],
                     [("awaiting", ASCENDING)], [("topic", ASCENDING)],
                     [("due_at", ASCENDING)]],
        "mailboxes": [],
    }

    # -- recipients ---------------------------------------------------------------------
    def recipient(self, recipient_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return self.db.recipients.find_one({"_id": recipient_id}, session=_s(tx))

    def managed_by_phone(self, key: str, tx: Tx | None = None) -> dict[str, Any] | None:
        for doc in self.db.recipients.find({"phone_key": key}, session=_s(tx)).limit(10):
            if doc.get("managed"):
                return doc
        return None

    def save_recipient(self, recipient: dict[str, Any], tx: Tx | None = None) -> None:
        self.db.recipients.replace_one({"_id": recipient["_id"]}, recipient, upsert=True,
                                       session=_s(tx))

    def update_contact(self, tx: Tx, recipient_id: str, fields: dict[str, Any]) -> None:
        """Create or refresh a recipient known from events (never a managed one's choices).
        Unchanged contacts are not written: ten needs from one poster do not conflict."""
        current = self.db.recipients.find_one({"_id": recipient_id}, session=tx.session)
        if current and all(current.get(k) == v for k, v in fields.items()
                           if k != "updated_at"):
            return
        self.db.recipients.update_one(
            {"_id": recipient_id}, {"$set": fields,
                                    "$setOnInsert": {"managed": False}},
            upsert=True, session=tx.session)

    def delete_recipient(self, recipient_id: str) -> bool:
        return self.db.recipients.delete_one({"_id": recipient_id}).deleted_count == 1

    def coordinators(self, tx: Tx, area_id: str) -> list[dict[str, Any]]:
        return list(self.db.recipients.find({"areas": area_id}, session=tx.session))

    def organisation_contacts(self, tx: Tx, organisation_id: str) -> list[dict[str, Any]]:
        return list(self.db.recipients.find({"organisations": organisation_id},
                                            session=tx.session))

    # -- subjects -----------------------------------------------------------------------
    def subject(self, tx: Tx, key: str) -> dict[str, Any] | None:
        return self.db.subjects.find_one({"_id": key}, session=tx.session)

    def set_subject(self, tx: Tx, key: str, fields: dict[str, Any],
                    inc: dict[str, Any] | None = None) -> dict[str, Any]:
        update: dict[str, Any] = {"$set": fields} if fields else {}
        if inc:
            update["$inc"] = inc
        self.db.subjects.update_one({"_id": key}, update, upsert=True, session=tx.session)
        return self.db.subjects.find_one({"_id": key}, session=tx.session) or {}

    # -- messages -----------------------------------------------------------------------
    def message(self, message_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return self.db.messages.find_one({"_id": message_id}, session=_s(tx))

    def add_message(self, tx: Tx, message: dict[str, Any]) -> bool:
        """At most one message per (cause, recipient): the id says which."""
        if self.db.messages.find_one({"_id": message["_id"]}, {"_id": 1}, session=tx.session):
            return False
        self.db.messages.insert_one(message, session=tx.session)
        return True

    def pending_for(self, recipient_id: str, tx: Tx | None = None) -> list[dict[str, Any]]:
        return list(self.db.messages.find(
            {"recipient": recipient_id, "state": {"$in": list(PENDING)}}, session=_s(tx)))

    def awaiting(self, tx: Tx, key: str) -> list[dict[str, Any]]:
        return list(self.db.messages.find({"awaiting": key}, session=tx.session))

    def orphans(self, older_than: datetime, limit: int = 500) -> list[dict[str, Any]]:
        # only messages whose recipient is not known yet carry ``awaiting``: a small set
        return [m for m in self.db.messages.find({"awaiting": {"$exists": True}}).limit(limit)
                if m["created_at"] < older_than]

    def by_topic(self, tx: Tx, topic: str) -> list[dict[str, Any]]:
        return list(self.db.messages.find({"topic": topic}, session=tx.session))

    def update_message(self, tx: Tx | None, message_id: str, update: dict[str, Any],
                       expect_state: Any = None) -> bool:
        query: dict[str, Any] = {"_id": message_id}
        if expect_state is not None:
            query["state"] = {"$in": list(expect_state)} if isinstance(
                expect_state, tuple | list) else expect_state
        return self.db.messages.update_one(query, update, session=_s(tx)).modified_count == 1

    def messages_for_need(self, need_id: str) -> list[dict[str, Any]]:
        return list(self.db.messages.find({"need_id": need_id}).limit(1000))

    def messages(self, *, state: str | None = None, recipient: str | None = None,
                 need_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if state:
            query["state"] = state
        if recipient:
            query["recipient"] = recipient
        if need_id:
            query["need_id"] = need_id
        return list(self.db.messages.find(query).limit(limit))

    def due_messages(self, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
        """Pending messages due by ``now``. Only pending messages carry ``due_at``, so this
        range stays small; ranked in memory (no sort on the server, see DESIGN.md)."""
        due = list(self.db.messages.find({"due_at": {"$lte": now}},
                                         {"recipient": 1, "due_at": 1}).limit(limit))
        return sorted(due, key=lambda m: m["due_at"])

    # -- mailboxes (the courier's leases) -----------------------------------------------
    def claim_mailbox(self, recipient_id: str, now: datetime, lease_until: datetime,
                      owner: str) -> bool:
        """Take a recipient for delivery: a conditional update, so only one instance wins."""
        self.db.mailboxes.update_one({"_id": recipient_id},
                                     {"$setOnInsert": {"lease_until": None}}, upsert=True)
        result = self.db.mailboxes.update_one(
            {"_id": recipient_id,
             "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]},
            {"$set": {"lease_until": lease_until, "lease_owner": owner}})
        return result.modified_count == 1

    def set_mailbox(self, tx: Tx | None, recipient_id: str, fields: dict[str, Any]) -> None:
        self.db.mailboxes.update_one({"_id": recipient_id}, {"$set": fields}, upsert=True,
                                     session=_s(tx))

    def release_mailbox(self, tx: Tx | None, recipient_id: str, owner: str,
                        fields: dict[str, Any] | None = None) -> None:
        self.db.mailboxes.update_one(
            {"_id": recipient_id, "lease_owner": owner},
            {"$set": {**(fields or {}), "lease_until": None, "lease_owner": None}},
            session=_s(tx))


def _s(tx: Tx | None) -> Any:
    return tx.session if tx is not None else None
