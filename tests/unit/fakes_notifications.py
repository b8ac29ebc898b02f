"""An in-memory notifications store for unit tests of its use cases (``handlers``): the
queries the handlers call, with the same conditions as the MongoDB ones (an upsert that says
whether it inserted, ``$inc`` from zero, an update that matches only in the expected state
and counts as a change only when it changes something), and the same caches of recipients
and subjects read lately. Documents go in and come out as copies, as from a database.

Only what the handlers call is here; each method stands for the store method of its name
and arguments (``services/notifications/store.py``)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from services.common.config import Settings
from services.common.store import Tx
from services.notifications.settings import notify_settings
from services.notifications.store import PostedOtherwise, Recent
from tests.unit.fakes import Collection, FakeStore


def apply_update(doc: dict[str, Any], update: dict[str, Any], inserted: bool) -> None:
    """Apply a MongoDB update document (the operators the store uses) to ``doc``."""
    for name, value in update.get("$set", {}).items():
        doc[name] = copy.deepcopy(value)
    for name in update.get("$unset", {}):
        doc.pop(name, None)
    for name, value in update.get("$inc", {}).items():
        doc[name] = doc.get(name, 0) + value
    for name, value in update.get("$addToSet", {}).items():
        items = doc.setdefault(name, [])
        if value not in items:
            items.append(copy.deepcopy(value))
    if inserted:
        for name, value in update.get("$setOnInsert", {}).items():
            doc[name] = copy.deepcopy(value)


def upsert(collection: Collection, doc_id: str, update: dict[str, Any],
           upsert_: bool = True) -> tuple[bool, bool]:
    """``update_one`` by ``_id``: ``(inserted, modified)``."""
    if not update:
        raise ValueError("an update needs at least one operator")  # as MongoDB refuses
    doc = collection.docs.get(doc_id)
    if doc is None:
        if not upsert_:
            return False, False
        doc = {"_id": doc_id}
        apply_update(doc, update, inserted=True)
        collection.docs[doc_id] = doc
        return True, False
    before = copy.deepcopy(doc)
    apply_update(doc, update, inserted=False)
    return False, doc != before


class FakeNotificationsStore(FakeStore):
    names = ("recipients", "subjects", "messages", "awaiting")

    def __init__(self, cfg: Settings | None = None, config: dict[str, Any] | None = None):
        super().__init__("notifications", cfg)
        ttl = notify_settings(config or {}).cache_seconds
        self.recent_recipients = Recent(ttl)
        self.recent_subjects = Recent(ttl)

    # recipients
    def recipient(self, recipient_id: str, tx: Tx | None = None,
                  remember: bool = True) -> dict[str, Any] | None:
        doc = self.recipients.get(recipient_id)
        if doc is None:
            self.recent_recipients.forget(recipient_id)
        elif remember:
            self.recent_recipients.put(recipient_id, doc)
        return doc

    def recent_recipient(self, recipient_id: str, tx: Tx | None = None,
                         remember: bool = True) -> dict[str, Any] | None:
        return self.recent_recipients.get(recipient_id) or self.recipient(
            recipient_id, tx, remember)

    def update_contact(self, tx: Tx, recipient_id: str, fields: dict[str, Any],
                       current: dict[str, Any] | None) -> None:
        if current and all(current.get(k) == v for k, v in fields.items()
                           if k != "updated_at"):
            return
        upsert(self.recipients, recipient_id, {"$set": fields,
                                               "$setOnInsert": {"managed": False}})
        self.recent_recipients.forget(recipient_id)

    def coordinators(self, tx: Tx | None, area_id: str) -> list[dict[str, Any]]:
        return self.recipients.find(lambda d: area_id in d.get("areas", []))

    def organisation_contacts(self, tx: Tx, organisation_id: str) -> list[dict[str, Any]]:
        return self.recipients.find(lambda d: organisation_id in d.get("organisations", []))

    # subjects
    def subject(self, tx: Tx, key: str, remember: bool = True) -> dict[str, Any] | None:
        doc = self.subjects.get(key)
        if remember and doc is not None and doc.get("known"):
            self.recent_subjects.put(key, doc)
        return doc

    def known_subject(self, tx: Tx, key: str) -> dict[str, Any] | None:
        return self.recent_subjects.get(key) or self.subject(tx, key)

    def posting_of(self, tx: Tx, key: str) -> str | None:
        return (self.recent_subjects.get(key) or {}).get("posting")

    def set_subject(self, tx: Tx, key: str, fields: dict[str, Any],
                    inc: dict[str, Any] | None = None) -> bool:
        before = (self.subjects.get(key) or {}).get("posting")
        if fields.get("posting") and before not in (None, fields["posting"]):
            raise PostedOtherwise(key)
        update: dict[str, Any] = {"$set": fields} if fields else {}
        if inc:
            update["$inc"] = inc
        return upsert(self.subjects, key, update)[0]

    # messages
    def message(self, message_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return self.messages.get(message_id)

    def add_message(self, tx: Tx, message: dict[str, Any]) -> bool:
        body = {k: v for k, v in message.items() if k != "_id"}
        return upsert(self.messages, message["_id"], {"$setOnInsert": body})[0]

    def by_topic(self, tx: Tx, topic: str) -> list[dict[str, Any]]:
        return self.messages.find(lambda d: d.get("topic") == topic)

    def update_message(self, tx: Tx | None, message_id: str, update: dict[str, Any],
                       expect_state: Any = None) -> bool:
        doc = self.messages.docs.get(message_id)
        if doc is None:
            return False
        if expect_state is not None:
            states = expect_state if isinstance(expect_state, tuple | list) else (expect_state,)
            if doc.get("state") not in states:
                return False
        return upsert(self.messages, message_id, update, upsert_=False)[1]

    def adopt_message(self, tx: Tx, message_id: str, update: dict[str, Any]) -> None:
        self.update_message(tx, message_id, update, expect_state=("queued", "failed"))

    # messages waiting for their subject
    def await_subject(self, tx: Tx, subject_key: str, message_id: str,
                      now: datetime) -> None:
        upsert(self.awaiting, subject_key, {"$addToSet": {"messages": message_id},
                                            "$setOnInsert": {"since": now}})

    def awaiting_record(self, tx: Tx, subject_key: str) -> dict[str, Any] | None:
        return self.awaiting.get(subject_key)

    def set_awaiting(self, tx: Tx, subject_key: str, message_ids: list[str],
                     since: datetime | None) -> None:
        if not message_ids:
            self.awaiting.delete(subject_key)
        else:
            upsert(self.awaiting, subject_key,
                   {"$set": {"messages": message_ids, "since": since}}, upsert_=False)

    # for the tests
    def messages_of(self, template: str) -> list[dict[str, Any]]:
        """The stored messages of a template, in the order they were stored."""
        return self.messages.find(lambda d: d["template"] == template)
