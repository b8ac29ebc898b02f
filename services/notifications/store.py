"""Notifications' storage, the only code that knows its collections.

* ``recipients``: people we may tell something, with their contact (personal data lives here
  and nowhere else), language, time zone, channels, quiet hours, digest preference, and the
  areas they coordinate or organisations they speak for. ``managed`` ones are set through the
  API; the others come from events (a need's poster, a donor, a volunteer). A contact whose
  phone is also a managed recipient's carries ``managed_by`` (that recipient's id): finding
  who a phone number is takes one ``_id`` read, not a search.
* ``subjects``: what we know of a need, donation or volunteer: who to tell about it
  (a recipient id, or none when no contact was given) and a few figures for the texts.
* ``messages``: one per (cause, recipient), with its state: queued, failed (will retry), sent,
  dead (gave up, with the reason), skipped or cancelled (nothing to send).
  A pending message carries ``due_at``; the courier finds pending messages by their state
  (an indexed equality), never by a range over every message ever stored.
* ``awaiting``: one record per subject whose messages wait for it to become known (an
  ``assignment_made`` that overtook its ``need_posted``), deleted when it does: the
  periodic sweep for messages whose recipient never became known reads only these.
* ``mailboxes``: one per recipient, written by the courier only: who holds it while
  delivering (a lease, so two instances never send the same thing) and when it last sent.
* ``migrations``: which one-off rewrites of older documents were done.

Request budget (see DESIGN.md, "Data stores"): lookups are by ``_id`` or an indexed equality,
new documents are written with an upsert that says whether they existed (no find before
insert), and recipients and known subjects read by event handlers are remembered for a few
seconds (:class:`Recent`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.store import BaseStore, Tx
from services.notifications.keys import contact_id, prefetch_keys
from services.notifications.settings import notify_settings

log = logging.getLogger(__name__)

PENDING = ("queued", "failed")
MIGRATION = "awaiting-records-v1"


class Recent:
    """Documents read lately, kept for ``ttl`` seconds (a small, process-local cache).

    Only what this process read from the database or committed itself goes in, so an entry
    is never a write that was rolled back; an entry is at most ``ttl`` seconds behind what
    another instance wrote."""

    def __init__(self, ttl: float, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < self.clock():
            self._items.pop(key, None)
            return None
        return item[1]

    def put(self, key: str, doc: dict[str, Any]) -> None:
        if self.ttl <= 0:
            return
        if len(self._items) >= self.size:
            now = self.clock()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
            if len(self._items) >= self.size:
                self._items.clear()
        self._items[key] = (self.clock() + self.ttl, doc)

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


class PostedOtherwise(Exception):
    """A subject's id was posted before with other content (see :meth:`set_subject`)."""


class NotificationsStore(BaseStore):
    collections = {
        "recipients": [[("phone_key", ASCENDING)], [("areas", ASCENDING)],
                       [("organisations", ASCENDING)]],
        "subjects": [],
        # a message has a topic (an offer's) or a delivery id (once sent) seldom: those
        # indexes are sparse, and a message without the field costs them nothing
        "messages": [[("recipient", ASCENDING), ("state", ASCENDING)],
                     [("need_id", ASCENDING)], [("state", ASCENDING)],
                     {"keys": [("topic", ASCENDING)],
                      "options": {"sparse": True, "name": "topic_sparse"}},
                     {"keys": [("delivery_id", ASCENDING)],
                      "options": {"sparse": True, "name": "delivery_id_sparse"}}],
        "awaiting": [],
        "mailboxes": [],
        "migrations": [],
    }

    retired_indexes = {"messages": ("awaiting_1", "due_at_1", "topic_1", "delivery_id_1")}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        ttl = notify_settings(self.config or {}).cache_seconds
        self.recent_recipients = Recent(ttl)
        self.recent_subjects = Recent(ttl)

    def on_start(self) -> None:
        self._migrate()

    # -- a batch's reads, at once ---------------------------------------------------------
    def prefetch(self, tx: Tx, events: list[Any]) -> None:
        """What a batch's handlers will look up, in one read per collection: the subjects
        its events are about, whether the messages they tell exist already, and the contacts
        they introduce (those not read lately). The handlers then find them in
        ``tx.shared``; a new message is inserted with the batch's others as it commits."""
        subjects, messages, contacts = prefetch_keys(events)
        seen = tx.shared.setdefault("subjects", {})
        subjects = [k for k in subjects if k not in seen
                    and not (self.recent_subjects.get(k) or {}).get("known")]
        waited_for = []  # subjects being introduced that messages wait for already
        if subjects:
            for key in subjects:
                seen[key] = None
            for doc in self.db.subjects.find({"_id": {"$in": subjects}}, session=tx.session):
                seen[doc["_id"]] = dict(doc)
                if doc.get("known"):
                    tx.after_commit.append(
                        lambda d=doc: self.recent_subjects.put(d["_id"], d))
                elif doc.get("waiting"):
                    waited_for.append(doc["_id"])
        if waited_for:  # what they wait with, to be adopted (see ``handlers.introduce``)
            records = tx.shared.setdefault("awaiting", {})
            waiting: list[str] = []
            for record in self.db.awaiting.find({"_id": {"$in": waited_for}},
                                                session=tx.session):
                records[record["_id"]] = record
                waiting.extend(record.get("messages") or [])
            if waiting:
                read = tx.shared.setdefault("messages", {})
                for doc in self.db.messages.find({"_id": {"$in": waiting}},
                                                 session=tx.session):
                    read[doc["_id"]] = doc
        if messages:
            found = {d["_id"] for d in self.db.messages.find(
                {"_id": {"$in": messages}}, {"_id": 1}, session=tx.session)}
            tx.shared.setdefault("absent_messages", set()).update(set(messages) - found)
        contacts = [c for c in contacts if self.recent_recipients.get(c) is None]
        if contacts:
            read = tx.shared.setdefault("recipients", {})
            for key in contacts:
                read[key] = None
            for doc in self.db.recipients.find({"_id": {"$in": contacts}},
                                               session=tx.session):
                read[doc["_id"]] = doc

    # -- recipients ---------------------------------------------------------------------
    def recipient(self, recipient_id: str, tx: Tx | None = None,
                  remember: bool = True) -> dict[str, Any] | None:
        """A recipient as stored. ``remember=False`` when the transaction may have written
        it already (what it sees is not committed yet)."""
        read = tx.shared.get("recipients", {}) if tx is not None else {}
        if recipient_id in read:
            doc = read[recipient_id]
        else:
            doc = self.db.recipients.find_one({"_id": recipient_id}, session=_s(tx))
        if doc is None:
            self.recent_recipients.forget(recipient_id)
        elif remember and self.batch is None:  # in a batch: may be uncommitted (see subject)
            self.recent_recipients.put(recipient_id, doc)
        return doc

    def recent_recipient(self, recipient_id: str, tx: Tx | None = None,
                         remember: bool = True) -> dict[str, Any] | None:
        """A recipient as read in the last few seconds, else from the database: for the
        language, time zone and window of a message being queued (the courier reads the
        recipient afresh before it delivers)."""
        return self.recent_recipients.get(recipient_id) or self.recipient(
            recipient_id, tx, remember)

    def managed_by_phone(self, key: str, tx: Tx | None = None,
                         other_than: str | None = None) -> dict[str, Any] | None:
        for doc in self.db.recipients.find({"phone_key": key}, session=_s(tx)).limit(10):
            if doc.get("managed") and doc["_id"] != other_than:
                return doc
        return None

    def save_recipient(self, recipient: dict[str, Any], tx: Tx | None = None) -> None:
        self.db.recipients.replace_one({"_id": recipient["_id"]}, recipient, upsert=True,
                                       session=_s(tx))
        self._forget_recipient(tx, recipient["_id"])

    def _forget_recipient(self, tx: Tx | None, recipient_id: str) -> None:
        """A recipient written: read afresh from here on."""
        self.recent_recipients.forget(recipient_id)
        if tx is not None:
            tx.shared.get("recipients", {}).pop(recipient_id, None)

    def link_contact(self, tx: Tx, contact_id: str, managed_id: str | None,
                     phone_key: str) -> None:
        """Point the contact known by ``phone_key`` at the managed recipient with that phone
        (``None``: at nobody any more). The contact record is created if no event brought
        that person yet; it holds no address then, only the pointer."""
        if managed_id is None:
            self.db.recipients.update_one({"_id": contact_id}, {"$unset": {"managed_by": ""}},
                                          session=tx.session)
        else:
            self.db.recipients.update_one(
                {"_id": contact_id},
                {"$set": {"managed_by": managed_id},
                 "$setOnInsert": {"kind": "contact", "managed": False, "phone_key": phone_key}},
                upsert=True, session=tx.session)
        self._forget_recipient(tx, contact_id)

    def update_contact(self, tx: Tx, recipient_id: str, fields: dict[str, Any],
                       current: dict[str, Any] | None) -> None:
        """Create or refresh a recipient known from events (never a managed one's choices).
        ``current`` is the record as just read. Unchanged contacts are not written: ten
        needs from one poster do not conflict."""
        if current and all(current.get(k) == v for k, v in fields.items()
                           if k != "updated_at"):
            return
        self.db.recipients.update_one(
            {"_id": recipient_id}, {"$set": fields,
                                    "$setOnInsert": {"managed": False}},
            upsert=True, session=tx.session)
        self._forget_recipient(tx, recipient_id)

    def delete_recipient(self, recipient_id: str, tx: Tx | None = None) -> bool:
        self._forget_recipient(tx, recipient_id)
        return self.db.recipients.delete_one({"_id": recipient_id},
                                             session=_s(tx)).deleted_count == 1

    def coordinators(self, tx: Tx | None, area_id: str) -> list[dict[str, Any]]:
        return list(self.db.recipients.find({"areas": area_id}, session=_s(tx)))

    def organisation_contacts(self, tx: Tx, organisation_id: str) -> list[dict[str, Any]]:
        return list(self.db.recipients.find({"organisations": organisation_id},
                                            session=tx.session))

    # -- subjects -----------------------------------------------------------------------
    def subject(self, tx: Tx, key: str, remember: bool = True) -> dict[str, Any] | None:
        """The subject as this transaction sees it. ``remember=False`` when the transaction
        wrote it already (what it sees is not committed yet)."""
        seen = tx.shared.setdefault("subjects", {})  # as this transaction (batch) left them
        if key in seen:
            return None if seen[key] is None else dict(seen[key])
        doc = self.db.subjects.find_one({"_id": key}, session=tx.session)
        seen[key] = None if doc is None else dict(doc)
        if remember and doc is not None and doc.get("known"):
            if self.batch is None:
                self.recent_subjects.put(key, doc)
            else:  # a batch's reads may see an earlier event's writes, not committed yet
                tx.after_commit.append(lambda: self.recent_subjects.put(key, doc))
        return doc

    def known_subject(self, tx: Tx, key: str) -> dict[str, Any] | None:
        """The subject, from what was read lately when it was already known then: who is
        behind a need or a donation does not change once known."""
        return self.recent_subjects.get(key) or self.subject(tx, key)

    def posting_of(self, tx: Tx, key: str) -> str | None:
        """The fingerprint of what the subject was posted with, as far as this transaction
        (batch) read it or it was read lately; None when neither knows (no read is made)."""
        seen = tx.shared.get("subjects", {})
        doc = seen[key] if key in seen else self.recent_subjects.get(key)
        return (doc or {}).get("posting")

    def set_subject(self, tx: Tx, key: str, fields: dict[str, Any],
                    inc: dict[str, Any] | None = None) -> bool:
        """Upsert a subject's fields. True when the subject did not exist before.

        A subject this transaction read (or found missing) is changed in memory and written
        once, in its last state, as the transaction (the batch) commits; else one upsert
        that says whether it existed. With ``fields["posting"]``, the upsert changes only a
        subject posted with the same fingerprint or none: one posted otherwise raises
        :class:`PostedOtherwise` (and the transaction is spoilt: the caller refuses)."""
        seen = tx.shared.setdefault("subjects", {})
        if key in seen:
            created = seen[key] is None
            doc = {"_id": key} if created else seen[key]
            doc.update(fields)
            for name, by in (inc or {}).items():
                doc[name] = doc.get(name, 0) + by
            seen[key] = doc
            tx.stage("subjects", key, ReplaceOne({"_id": key}, doc, upsert=True))
            return created
        update: dict[str, Any] = {"$set": fields} if fields else {}
        if inc:
            update["$inc"] = inc
        query: dict[str, Any] = {"_id": key}
        if fields.get("posting"):
            query["posting"] = {"$in": [fields["posting"], None]}
        try:
            result = self.db.subjects.update_one(query, update, upsert=True,
                                                 session=tx.session)
        except DuplicateKeyError:
            raise PostedOtherwise(key) from None
        created = result.upserted_id is not None
        if created:  # what this transaction now knows of it, so that it need not read it
            seen[key] = {"_id": key, **fields, **(inc or {})}
        return created

    # -- messages -----------------------------------------------------------------------
    def message(self, message_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        read = tx.shared.get("messages", {}) if tx is not None else {}
        if message_id in read:  # as the batch read it: nothing wrote it since
            return dict(read[message_id])
        _settle(tx)
        return self.db.messages.find_one({"_id": message_id}, session=_s(tx))

    def add_message(self, tx: Tx, message: dict[str, Any]) -> bool:
        """At most one message per (cause, recipient): the id says which. True when the
        message is new. In a batch whose read found no message with this id
        (:meth:`prefetch`), it is inserted with the batch's other new messages as it
        commits; else one upsert that inserts only when the id is new (a duplicate key
        error would abort the transaction)."""
        new = tx.shared.setdefault("new_messages", set())
        if message["_id"] in new:
            return False
        absent = tx.shared.get("absent_messages", set())
        if message["_id"] in absent:
            absent.discard(message["_id"])
            new.add(message["_id"])
            tx.stage("messages", message["_id"], InsertOne(message))
            return True
        body = {k: v for k, v in message.items() if k != "_id"}
        _settle(tx)
        result = self.db.messages.update_one({"_id": message["_id"]}, {"$setOnInsert": body},
                                             upsert=True, session=tx.session)
        return result.upserted_id is not None

    def by_topic(self, tx: Tx, topic: str) -> list[dict[str, Any]]:
        _settle(tx)
        return list(self.db.messages.find({"topic": topic}, session=tx.session))

    def update_message(self, tx: Tx | None, message_id: str, update: dict[str, Any],
                       expect_state: Any = None) -> bool:
        _settle(tx)
        query: dict[str, Any] = {"_id": message_id}
        if expect_state is not None:
            query["state"] = {"$in": list(expect_state)} if isinstance(
                expect_state, tuple | list) else expect_state
        return self.db.messages.update_one(query, update, session=_s(tx)).modified_count == 1

    def adopt_message(self, tx: Tx, message_id: str, update: dict[str, Any]) -> None:
        """Change a waiting message, still pending, as the transaction commits (with the
        batch's other writes of messages)."""
        tx.stage("messages", f"adopt:{message_id}",
                 UpdateOne({"_id": message_id, "state": {"$in": list(PENDING)}}, update))
        tx.shared.get("messages", {}).pop(message_id, None)

    def messages_for_need(self, need_id: str) -> list[dict[str, Any]]:
        return list(self.db.messages.find({"need_id": need_id}).limit(1000))

    def messages_of_delivery(self, delivery_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The messages that went out together in one delivery (an indexed equality)."""
        return list(self.db.messages.find({"delivery_id": delivery_id}).limit(limit))

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

    def undeliverable(self, template: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Dead messages of ``template`` that had nobody to go to (a group with no members).
        Dead messages are few: the state index keeps this small."""
        found = self.db.messages.find({"state": "dead", "template": template},
                                      {"group": 1, "recipient": 1, "params": 1, "need_id": 1,
                                       "created_at": 1}).limit(limit)
        return [m for m in found if m.get("recipient") is None and m.get("group")]

    def due_messages(self, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
        """Pending messages with a recipient, due by ``now``, earliest first. Found by their
        state (an indexed equality: only what is still to be sent is read, however many
        messages were sent before) and ranked in memory (no sort or range on the server,
        see DESIGN.md)."""
        due = [m for m in self._pending_heads()
               if m.get("recipient") and m.get("due_at") is not None and m["due_at"] <= now]
        return sorted(due, key=lambda m: m["due_at"])[:limit]

    def due_mailboxes(self, now: datetime, limit: int = 500) -> dict[str, list[str]]:
        """The recipients with a message due by ``now``, the earliest due first (at most
        ``limit``), each with the ids of *all* its pending messages: whatever else is
        pending goes in the same delivery. One read, as :meth:`due_messages`."""
        pending: dict[str, list[str]] = {}
        first_due: dict[str, datetime] = {}
        for m in self._pending_heads():
            recipient = m.get("recipient")
            if not recipient:
                continue
            pending.setdefault(recipient, []).append(m["_id"])
            due = m.get("due_at")
            if due is not None and due <= now and (recipient not in first_due
                                                   or due < first_due[recipient]):
                first_due[recipient] = due
        ranked = sorted(first_due, key=first_due.__getitem__)[:limit]
        return {r: pending[r] for r in ranked}

    def _pending_heads(self) -> Any:
        return self.db.messages.find({"state": {"$in": list(PENDING)}},
                                     {"recipient": 1, "due_at": 1})

    # -- messages waiting for their subject ---------------------------------------------
    def await_subject(self, tx: Tx, subject_key: str, message_id: str,
                      now: datetime) -> None:
        """Record that ``message_id`` waits for ``subject_key`` (written as the transaction
        commits, with whatever else of the batch waits)."""
        adding = tx.shared.setdefault("awaiting_adds", {}).setdefault(subject_key, [])
        adding.append(message_id)
        # what the batch read of this record is out of date: it is read afresh (written first)
        tx.shared.get("awaiting", {}).pop(subject_key, None)
        tx.stage("awaiting", subject_key, UpdateOne(
            {"_id": subject_key}, {"$addToSet": {"messages": {"$each": list(adding)}},
                                   "$setOnInsert": {"since": now}}, upsert=True))

    def awaiting_record(self, tx: Tx, subject_key: str) -> dict[str, Any] | None:
        read = tx.shared.setdefault("awaiting", {})
        if tx.staged("awaiting", subject_key):  # what waits was added here: read it afresh
            tx.write_staged("awaiting")
            tx.shared.pop("awaiting_adds", None)
            read.pop(subject_key, None)
        if subject_key in read:
            return read[subject_key]
        return self.db.awaiting.find_one({"_id": subject_key}, session=tx.session)

    def awaiting_records(self, limit: int = 500) -> list[dict[str, Any]]:
        """Every subject some messages wait for (a small collection: a record lives only
        while its subject is unknown)."""
        return list(self.db.awaiting.find({}).limit(limit))

    def set_awaiting(self, tx: Tx, subject_key: str, message_ids: list[str],
                     since: datetime | None) -> None:
        """What still waits for ``subject_key`` (nothing: the record goes, as the
        transaction commits)."""
        tx.shared.get("awaiting", {}).pop(subject_key, None)
        if not message_ids:
            tx.shared.get("awaiting_adds", {}).pop(subject_key, None)
            tx.stage("awaiting", subject_key, DeleteOne({"_id": subject_key}))
        else:
            if tx.staged("awaiting"):
                tx.write_staged("awaiting")
                tx.shared.pop("awaiting_adds", None)
            self.db.awaiting.update_one({"_id": subject_key},
                                        {"$set": {"messages": message_ids, "since": since}},
                                        session=tx.session)

    # -- mailboxes (the courier's leases) -----------------------------------------------
    def claim_mailboxes(self, recipient_ids: list[str], now: datetime,
                        lease_until: datetime, owner: str) -> set[str]:
        """Take recipients for delivery; returns those taken. Of two instances claiming the
        same recipient, one wins. A few requests however many recipients: their mailboxes
        read by id; the free ones (no lease, or one past) leased by one conditional
        ``update_many`` carrying a token of this claim, and read back to see which carry it
        (another instance's claim in between makes the condition fail); those never used
        inserted, where a duplicate key means someone else created it first: a refusal."""
        if not recipient_ids:
            return set()
        token = uuid.uuid4().hex
        lease = {"lease_until": lease_until, "lease_owner": owner, "lease_token": token}
        existing = {d["_id"]: d for d in self.db.mailboxes.find(
            {"_id": {"$in": list(recipient_ids)}}, {"lease_until": 1})}
        free = [r for r, d in existing.items()
                if d.get("lease_until") is None or d["lease_until"] < now]
        won: set[str] = set()
        if free:
            # ``$not``: an ``$or`` (no lease, or one past) makes the local database scan
            self.db.mailboxes.update_many(
                {"_id": {"$in": free}, "lease_until": {"$not": {"$gte": now}}},
                {"$set": lease})
            won |= {d["_id"] for d in self.db.mailboxes.find(
                {"_id": {"$in": free}}, {"lease_token": 1}) if d.get("lease_token") == token}
        absent = [r for r in dict.fromkeys(recipient_ids) if r not in existing]
        if absent:
            try:
                self.db.mailboxes.insert_many([{"_id": r, **lease} for r in absent],
                                              ordered=False)
                won |= set(absent)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != 11000 for e in errors):
                    raise
                refused = {absent[e["index"]] for e in errors}
                won |= set(absent) - refused
        return won

    def release_mailboxes(self, tx: Tx | None, owner: str,
                          releases: dict[str, dict[str, Any] | None]) -> None:
        """Give back the mailboxes this instance holds (``{recipient: fields to set}``), in
        one request: one op per distinct set of fields (an ``update_many`` by id costs
        half of separate updates)."""
        groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for recipient_id, fields in releases.items():
            groups.setdefault(repr(sorted((fields or {}).items())),
                              (fields or {}, []))[1].append(recipient_id)
        if not groups:
            return
        self.db.mailboxes.bulk_write(
            [UpdateMany({"_id": {"$in": ids}, "lease_owner": owner},
                        {"$set": {**fields, "lease_until": None, "lease_owner": None,
                                  "lease_token": None}})
             for fields, ids in groups.values()], ordered=False, session=_s(tx))

    def pending_of(self, message_ids: list[str]) -> list[dict[str, Any]]:
        """Those of ``message_ids`` still pending, read afresh by id (one request)."""
        if not message_ids:
            return []
        return [m for m in self.db.messages.find({"_id": {"$in": list(message_ids)}})
                if m.get("state") in PENDING]

    def recipients_of(self, recipient_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Recipients by id as stored, with the managed recipients they are reached as
        (:func:`courier.effective`): one or two requests."""
        found = {d["_id"]: d for d in self.db.recipients.find(
            {"_id": {"$in": list(recipient_ids)}})} if recipient_ids else {}
        managing = list({d["managed_by"] for d in found.values()
                         if not d.get("managed") and d.get("managed_by")} - set(found))
        if managing:
            found.update({d["_id"]: d for d in self.db.recipients.find(
                {"_id": {"$in": managing}})})
        return found

    def record_deliveries(self, tx: Tx | None, updates: list[tuple[list[str], dict[str, Any]]],
                          owner: str, releases: dict[str, dict[str, Any] | None]) -> None:
        """The outcomes of deliveries: each ``(message ids, update)`` applied to those of
        the messages still pending (found by id: a filter that also names the recipient
        makes the local database scan every message), in one request; then the mailboxes
        released, in another."""
        _settle(tx)
        ops: list[Any] = []
        for ids, update in updates:
            if len(ids) == 1:
                ops.append(UpdateOne({"_id": ids[0], "state": {"$in": list(PENDING)}}, update))
            elif ids:
                ops.append(UpdateMany({"_id": {"$in": list(ids)},
                                       "state": {"$in": list(PENDING)}}, update))
        if ops:
            self.db.messages.bulk_write(ops, ordered=False, session=_s(tx))
        self.release_mailboxes(tx, owner, releases)

    # -- older documents ----------------------------------------------------------------
    def _migrate(self) -> None:
        """Once per database: messages that waited for their subject before ``awaiting``
        records existed get one, and contacts get their ``managed_by`` pointer (indexes
        nothing queries any more are dropped at every start: ``retired_indexes``)."""
        if self.db.migrations.find_one({"_id": MIGRATION}):
            return
        waiting: dict[str, dict[str, Any]] = {}
        for message in self.db.messages.find({"awaiting": {"$exists": True}},
                                             {"awaiting": 1, "state": 1, "created_at": 1}):
            if message.get("state") not in PENDING:
                continue
            record = waiting.setdefault(message["awaiting"], {"messages": [], "since": None})
            record["messages"].append(message["_id"])
            at = message.get("created_at")
            if at is not None and (record["since"] is None or at < record["since"]):
                record["since"] = at
        for key, record in waiting.items():
            self.db.awaiting.update_one({"_id": key},
                                        {"$addToSet": {"messages": {"$each": record["messages"]}},
                                         "$min": {"since": record["since"]}}, upsert=True)
            self.db.subjects.update_one({"_id": key}, {"$inc": {"waiting": 1}}, upsert=True)
        # contacts whose phone a managed recipient has point at it (see ``link_contact``)
        for doc in self.db.recipients.find({"managed": True}, {"phone_key": 1}):
            if doc.get("phone_key"):
                self.db.recipients.update_one(
                    {"_id": contact_id(doc["phone_key"])},
                    {"$set": {"managed_by": doc["_id"]},
                     "$setOnInsert": {"kind": "contact", "managed": False,
                                      "phone_key": doc["phone_key"]}}, upsert=True)
        try:
            self.db.migrations.insert_one({"_id": MIGRATION, "awaiting": len(waiting)})
        except DuplicateKeyError:
            pass
        if waiting:
            log.info("%d subject(s) with waiting messages recorded in awaiting", len(waiting))


def _s(tx: Tx | None) -> Any:
    return tx.session if tx is not None else None


def _settle(tx: Tx | None) -> None:
    """Before a query or an update of messages: write what is staged for them in ``tx``, and
    forget the messages the batch read (what is written next may change them)."""
    if tx is None:
        return
    if tx.staged("messages"):
        tx.write_staged("messages")
    tx.shared.pop("messages", None)
