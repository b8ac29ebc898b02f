"""Storage spine: one MongoDB client per service process, transactions, outbox, idempotency.

A service's ``store.py`` subclasses :class:`BaseStore` (its collections and queries live there
and nowhere else) and the service declares ``store = StoreProvider(ItsStore)``.

``BaseStore.atomically(work, event=..., consumer=...)`` runs ``work(tx)`` in one transaction
together with

* the **processed marker** of the event being handled (so a redelivered event changes nothing:
  the second run finds the marker and returns :data:`DUPLICATE`) — unless its consumer is
  declared ``keyed_by_cause`` (``handler.py``): then its writes are what makes the second
  run change nothing, and no marker is written — and
* the **outbox** records of every event ``tx.emit`` produced.

A transaction's events are one outbox **record** (a document holding up to
:data:`RECORD_EVENTS` envelopes): one document to write and one to delete, however many events
a batch emitted. After commit the record is handed to the relay, which publishes it (with
publisher confirms) and deletes it (or keeps in it only what the broker did not confirm); a
sweeper in every process publishes whatever is left (for instance after a broker outage). In a
running service the relay publishes from a green thread of its own, in commit order, so the
consumer that committed goes on to its next batch while the broker confirms this one's events,
and records handed over meanwhile go out in one window and are deleted in one request. An
event may be published twice (crash between publish and delete, or writer and sweeper
racing); consumers are idempotent, so that is harmless.

A :class:`Batch` runs the handlers of many events in **one** transaction (the consumer base
opens it for a service's batch consumers, see ``handler.py``): each handler's ``atomically``
joins it instead of starting its own (its processed marker written first, as alone), the
outbox records of all of them are written in one request, and one commit settles them all.
If anything fails the whole batch is rolled back and its events are handled one by one as
above, so a batch never changes what an event does, only how many round trips it costs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import eventlet
import eventlet.event
import eventlet.queue
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, MongoClient
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure, PyMongoError

from services.common import contract
from services.common.config import Settings, settings
from services.common.routing import event_exchange

log = logging.getLogger(__name__)


class _Duplicate:
    def __repr__(self) -> str:
        return "DUPLICATE"


DUPLICATE: Any = _Duplicate()
"""Returned by ``atomically`` when the event was already processed."""


_STAGED = "_staged"  # the key of a transaction's staged bulk writes in ``Tx.shared``

RECORD_EVENTS = 500
"""Envelopes per outbox record at most (a batch of 100 events emits two or three hundred)."""
SWEEP_EVENTS = 1000
"""Events a sweep publishes in one window, about (whole records; one at least); the relay's
publisher takes as many of what was handed over at once."""
HANDOFF_COMMITS = 8
"""Commits whose records may wait for the relay's publisher: a committer that would be the
next one waits (so a broker that is slow to confirm slows the consumers, as it did when they
published themselves, instead of piling up records in memory)."""


def outbox_records(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outbox records of one transaction's events (written in it, as it commits)."""
    at = contract.now()
    return [{"_id": uuid.uuid4().hex, "envelopes": events[i:i + RECORD_EVENTS],
             "n": len(events[i:i + RECORD_EVENTS]), "created_at": at}
            for i in range(0, len(events), RECORD_EVENTS)]


def _held(record: dict[str, Any]) -> int:
    """How many events an outbox record holds (an earlier version's record holds one)."""
    return int(record.get("n", 1))


def _envelopes(record: dict[str, Any]) -> list[dict[str, Any]]:
    # a record written before records held many events held one, as ``envelope``
    return record["envelopes"] if "envelopes" in record else [record["envelope"]]


class Tx:
    """One transaction: its session, its database and the events it will emit."""

    def __init__(self, db: Database, session: Any, source: str,
                 shared: dict[str, Any] | None = None):
        self.db = db
        self.session = session
        self.source = source
        #: what the whole transaction knows (one batch's handlers share it): e.g. what was
        #: written once already and need not be written again
        self.shared: dict[str, Any] = {} if shared is None else shared
        self.events: list[dict[str, Any]] = []
        #: run once the transaction committed (what may then be cached in memory)
        self.after_commit: list[Callable[[], None]] = []

    def emit(self, type_: str, data: dict[str, Any], event_id: str | None = None,
             occurred_at: Any = None) -> dict:
        """Add an event to the outbox of this transaction (validated against the contract)."""
        envelope = contract.build(type_, data, self.source, event_id=event_id,
                                  occurred_at=occurred_at)
        self.events.append(envelope)
        return envelope

    def stage(self, collection: str, key: str, op: Any,
              or_raise: Exception | None = None) -> None:
        """Write ``op`` (a pymongo write model: ``InsertOne``, ``ReplaceOne``, ``UpdateOne``)
        to ``collection`` as the transaction (the batch's, if it is in one) commits, in one
        bulk write with the other writes staged there (a request per kind of write). A
        later op under the same key replaces an earlier one (the caller stages a document's
        last state, or an update that sums up the transaction's).

        ``or_raise``: the op is conditional (an ``UpdateOne`` whose filter says what must
        still hold, e.g. enough stock) and this is raised if it matches nothing. The caller
        keeps what it staged in memory: reads through the database do not see it before the
        commit (see :meth:`write_staged`)."""
        self.shared.setdefault(_STAGED, {})[(collection, key)] = (op, or_raise)

    def staged(self, collection: str, key: str | None = None) -> bool:
        """Whether a write to ``collection`` (under ``key``, if given) is staged."""
        staged = self.shared.get(_STAGED, {})
        if key is not None:
            return (collection, key) in staged
        return any(c == collection for c, _ in staged)

    def write_staged(self, collection: str | None = None) -> None:
        """Write what is staged (for ``collection`` only, if given) now: before a query that
        must see it. Each collection's ops go in one bulk write (one op per key, so their
        order does not matter: the bulk is unordered, a request per kind of write)."""
        staged = self.shared.get(_STAGED) or {}
        chosen = [k for k in staged if collection is None or k[0] == collection]
        groups: dict[tuple[str, bool], list[tuple[Any, Exception | None]]] = {}
        for k in chosen:
            op, miss = staged.pop(k)
            groups.setdefault((k[0], miss is not None), []).append((op, miss))
        for (name, checked), items in groups.items():
            result = self.db[name].bulk_write([op for op, _ in items], ordered=False,
                                              session=self.session)
            if checked and result.matched_count < len(items):
                first = items[0][1]
                if len(items) == 1:
                    raise first
                raise type(first)(f"{len(items) - result.matched_count} of {len(items)} "
                                  f"conditional writes to {name} found their document "
                                  "changed")

    def flush(self) -> None:
        """Write what is staged for the commit (see :meth:`stage`)."""
        self.write_staged()


class ConfirmWindow:
    """Publishing with publisher confirms, many messages per round trip.

    A kombu connection of its own (kept open, made again after any failure) with a channel
    in confirm mode: :meth:`publish` sends every message (persistent, ``mandatory``), then
    waits until the broker has answered each (``basic.ack`` or ``basic.nack``, either of
    which may cover several) or ``timeout`` passed. A message the broker returned as
    unroutable (``basic.return``, sent before its ack) or nacked is not counted as
    published. Serialised as nameko's publisher does (JSON): consumers cannot tell."""

    def __init__(self, amqp_uri: str, timeout: float = 10.0):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self._connection: Any = None
        self._producer: Any = None
        self._next_tag = 1
        self._waiting: set[int] = set()  # tags of this window not answered yet
        self._nacked: set[int] = set()
        self._returned: set[str] = set()  # message ids

    def _open(self) -> None:
        from kombu import Connection, Producer

        connection = Connection(self.amqp_uri, connect_timeout=5,
                                transport_options={"confirm_publish": False})
        connection.ensure_connection(max_retries=1)
        channel = connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._connection = connection
        self._producer = Producer(channel, serializer="json")
        self._next_tag = 1  # delivery tags count from 1 on a channel in confirm mode

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - it is being dropped anyway
                log.debug("closing the relay's connection failed", exc_info=True)

    def _answered(self, tag: int, multiple: bool) -> set[int]:
        tags = {t for t in self._waiting if t <= tag} if multiple else {tag}
        self._waiting -= tags
        return tags

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._answered(tag, multiple)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked |= self._answered(tag, multiple)

    def _on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        message_id = (getattr(message, "properties", None) or {}).get("message_id")
        if message_id:
            self._returned.add(message_id)

    def publish(self, messages: list[tuple[Any, str, str, str, dict[str, Any]]]) -> list[str]:
        """Publish each ``(body, exchange, routing_key, message_id, headers)``; return the
        ids of those the broker confirmed, in order. A broken connection raises (and is
        dropped: the next call opens another)."""
        if self._connection is None:
            self._open()
        self._waiting, self._nacked, self._returned = set(), set(), set()
        tags: list[tuple[int, str]] = []
        try:
            for body, exchange, routing_key, message_id, headers in messages:
                tags.append((self._next_tag, message_id))
                self._waiting.add(self._next_tag)
                self._next_tag += 1
                self._producer.publish(body, exchange=exchange, routing_key=routing_key,
                                       message_id=message_id, headers=headers,
                                       delivery_mode=2, mandatory=True, retry=False)
            deadline = time.monotonic() + self.timeout
            while self._waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("the broker confirmed %d of %d event(s) within %gs",
                                len(tags) - len(self._waiting), len(tags), self.timeout)
                    break
                try:
                    self._connection.drain_events(timeout=min(left, 1.0))
                except TimeoutError:
                    continue
        except Exception:
            self.close()
            raise
        unanswered = set(self._waiting)
        if unanswered:
            self.close()  # their answers would come to a window nobody waits on
        return [m for t, m in tags
                if t not in unanswered and t not in self._nacked and m not in self._returned]


class Relay:
    """Publishes outbox records with confirms and deletes them once the broker has them.

    The events of one call are published as a window: all of them at once on a channel in
    confirm mode, then the broker's acknowledgements are awaited together (one round trip
    for the lot, instead of one per event). What the broker did not acknowledge (a nack, an
    unroutable event returned, a timeout, a lost connection) stays in its record for the
    sweeper."""

    def __init__(self, amqp_uri: str, db: Database, source: str, cfg: Settings):
        self.db = db
        self.source = source
        self.cfg = cfg
        self.amqp_uri = amqp_uri
        self.exchange = event_exchange(source)
        self._window = ConfirmWindow(amqp_uri, timeout=cfg.publish_confirm_seconds)
        self._lock = threading.Lock()
        self._handoff: eventlet.queue.Queue | None = None  # set while the publisher runs
        self._publisher_done: eventlet.event.Event | None = None

    # -- after commit ----------------------------------------------------------------------
    def hand_over(self, records: list[dict[str, Any]]) -> None:
        """Publish a committed transaction's records: by the publisher thread when it runs
        (:meth:`start_publisher`; this waits only while it is :data:`HANDOFF_COMMITS` commits
        behind), else here and now."""
        if self._handoff is None:
            self.publish(records)
        else:
            self._handoff.put(records)

    def start_publisher(self, spawn: Callable[[Callable[[], None]], Any]) -> None:
        """Publish what is handed over from a thread ``spawn`` starts, in the order handed."""
        self._handoff = eventlet.queue.Queue(maxsize=HANDOFF_COMMITS)
        self._publisher_done = eventlet.event.Event()
        spawn(self._publish_forever)

    def stop_publisher(self, timeout: float) -> None:
        """Publish what was handed over (for at most ``timeout`` seconds; what is left stays
        in the outbox for the sweeper) and stop the thread."""
        handoff, done = self._handoff, self._publisher_done
        if handoff is None or done is None:
            return
        self._handoff = None  # from now on a late commit publishes itself
        with eventlet.Timeout(timeout, False):
            handoff.put(None)
            done.wait()

    def _publish_forever(self) -> None:
        handoff, done = self._handoff, self._publisher_done
        assert handoff is not None and done is not None
        try:
            while True:
                records = handoff.get()
                if records is None:
                    return
                records, stop = list(records), False
                events = sum(map(_held, records))
                while events < SWEEP_EVENTS and not handoff.empty():
                    more = handoff.get_nowait()
                    if more is None:
                        stop = True
                        break
                    records.extend(more)
                    events += sum(map(_held, more))
                try:
                    self.publish(records)
                except Exception:  # noqa: BLE001 - left in the outbox: the sweeper has them
                    log.exception("the relay could not publish %d outbox record(s)",
                                  len(records))
                if stop:
                    return
        finally:
            done.send(None)

    def publish(self, records: list[dict[str, Any]]) -> int:
        """Publish the records' events in one window; then delete the records published
        whole in one request, and keep in each other record only what was not confirmed.
        Returns how many events were published."""
        envelopes = [e for record in records for e in _envelopes(record)]
        if not envelopes:
            return 0
        with self._lock:  # one window at a time on the relay's channel
            try:
                sent = set(self._window.publish([
                    (envelope, self.exchange, envelope["type"], envelope["event_id"],
                     {"x-relief-source": self.source}) for envelope in envelopes]))
            except Exception as exc:  # noqa: BLE001 - any failure leaves them in the outbox
                log.warning("outbox publish deferred: %s", exc,
                            extra={"event_id": envelopes[0]["event_id"],
                                   "event_type": envelopes[0]["type"]})
                sent = set()
        missed = [e for e in envelopes if e["event_id"] not in sent]
        if missed:
            log.warning("outbox publish deferred for %d of %d event(s)", len(missed),
                        len(envelopes), extra={"event_id": missed[0]["event_id"],
                                               "event_type": missed[0]["type"]})
        if sent:
            done = []
            try:
                for record in records:
                    left = [e for e in _envelopes(record) if e["event_id"] not in sent]
                    if not left:
                        done.append(record["_id"])
                    elif len(left) < len(_envelopes(record)):
                        self.db.outbox.update_one({"_id": record["_id"]}, {
                            "$set": {"envelopes": left, "n": len(left)}})
                if len(done) == 1:
                    self.db.outbox.delete_one({"_id": done[0]})
                elif done:
                    self.db.outbox.delete_many({"_id": {"$in": done}})
            except PyMongoError as exc:  # published: the sweeper may publish them again
                log.warning("outbox clean-up deferred: %s", exc)
        return len(envelopes) - len(missed)

    def sweep(self) -> int:
        """Publish outbox records older than the grace period. Returns how many events were
        sent."""
        cutoff = contract.now() - timedelta(seconds=self.cfg.outbox_grace_seconds)
        # The outbox holds only unpublished records (a batch's events in one), so this scan
        # stays small.
        pending = list(self.db.outbox.find({"created_at": {"$lt": cutoff}}).limit(100))
        pending.sort(key=lambda r: r["created_at"])  # in memory (see DESIGN.md)
        window, events = [], 0  # about SWEEP_EVENTS at a time: one window the broker confirms
        for record in pending:
            if window and events + _held(record) > SWEEP_EVENTS:
                break
            window.append(record)
            events += _held(record)
        return self.publish(window)

    def backlog(self) -> int:
        """Events written but not yet published (each record says how many it holds)."""
        return sum(map(_held, self.db.outbox.find({}, {"n": 1})))


class BatchFailed(Exception):
    """A batch could not commit; its events are handled one by one instead."""


class Batch:
    """One transaction shared by the handlers of several events (see the module doc).

    Open it, let each handler's ``atomically`` :meth:`join` it (its processed marker first),
    then :meth:`commit` (the outbox records in one request, then the commit) or
    :meth:`abort`."""

    _ids = itertools.count(1)
    open_batches: dict[str, Batch] = {}  # by id: how a worker's store finds its batch

    def __init__(self, store: BaseStore):
        self.id = f"b{next(self._ids)}"
        self.store = store
        self.session = store.client.start_session()
        self.session.start_transaction()
        self.events: list[dict[str, Any]] = []
        self.after_commit: list[Callable[[], None]] = []
        self.shared: dict[str, Any] = {}
        self.marked: set[str] = set()
        Batch.open_batches[self.id] = self

    def mark(self, marks: list[tuple[str, contract.Event]]) -> None:
        """Write the processed markers of the batch's events (``(key, event)``) in one
        request, before any handler runs (the order a transaction of its own writes them
        in). A marker already there (a redelivered event) fails the batch, which then goes
        one by one."""
        if not marks:
            return
        try:
            self.store.db.processed.insert_many(
                [self.store.marker(key, event) for key, event in marks], session=self.session)
        except PyMongoError as exc:
            self.abort()
            raise BatchFailed(f"markers: {type(exc).__name__}: {exc}"[:500]) from exc
        self.marked.update(key for key, _ in marks)

    def prefetch(self, events: list[contract.Event]) -> None:
        """Let the store read, in a few requests, what the batch's handlers will look up one
        by one (:meth:`BaseStore.prefetch`)."""
        tx = Tx(self.store.db, self.session, self.store.source, self.shared)
        try:
            self.store.prefetch(tx, events)
            self.after_commit.extend(tx.after_commit)
        except PyMongoError as exc:  # the caller aborts the batch
            raise BatchFailed(f"prefetch: {type(exc).__name__}: {exc}"[:500]) from exc

    def join(self, work: Callable[[Tx], Any], key: str | None,
             event: contract.Event | None = None) -> Any:
        if key and key not in self.marked:
            # the marker first, as a transaction of its own does: every transaction then
            # writes its collections in the same order (the local database server makes a
            # transaction wait for another's writes, so two orders could wait on each other);
            # a redelivered event fails here with a duplicate key and the batch goes one by one
            self.store.db.processed.insert_one(self.store.marker(key, event),
                                               session=self.session)
        tx = Tx(self.store.db, self.session, self.store.source, self.shared)
        result = work(tx)
        self.events.extend(tx.events)
        self.after_commit.extend(tx.after_commit)
        return result

    def commit(self) -> None:
        """Write the outbox and commit; on any error the transaction is aborted and
        :class:`BatchFailed` raised (the caller then handles the events one by one, which is
        always safe: what did commit is found by its markers)."""
        db, session = self.store.db, self.session
        try:
            Tx(db, session, self.store.source, self.shared).flush()
            records = outbox_records(self.events)
            if records:
                db.outbox.insert_many(records, session=session)
            session.commit_transaction()
        except Exception as exc:
            self.abort()
            raise BatchFailed(f"{type(exc).__name__}: {exc}") from exc
        self.close()
        if records and self.store.relay is not None:
            self.store.relay.hand_over(records)
        for remember in self.after_commit:
            remember()

    def abort(self) -> None:
        try:
            if self.session.in_transaction:
                self.session.abort_transaction()
        except PyMongoError as exc:  # the server drops it by itself
            log.warning("could not abort a batch's transaction: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        Batch.open_batches.pop(self.id, None)
        try:
            self.session.end_session()
        except PyMongoError:
            pass


class BaseStore:
    """A service's storage. Subclasses list their collections and indexes and add queries."""

    #: collection name -> list of index specs (each a list of (field, direction) pairs,
    #: or a dict with "keys" and index options)
    collections: dict[str, list[Any]] = {}
    #: collection name -> names of indexes an earlier version made that nothing uses now
    #: (each would cost every write): dropped at start, before the wanted ones are made
    retired_indexes: dict[str, tuple[str, ...]] = {}

    def __init__(self, client: MongoClient, db: Database, source: str, relay: Relay | None,
                 cfg: Settings, config: dict[str, Any]):
        self.client = client
        self.db = db
        self.source = source
        self.relay = relay
        self.cfg = cfg
        self.config = config
        self.batch: Batch | None = None  # set on the view a batch's worker gets
        #: the processed-marker key of the event consumer whose worker holds this view
        #: (its entrypoint's name): ``atomically(work, event=...)`` needs no other
        self.consumer: str | None = None

    def in_batch(self, batch: Batch) -> BaseStore:
        """This store as a batch's worker sees it: the same collections and caches, and
        ``atomically`` joins the batch's transaction."""
        return self.for_worker(batch, self.consumer)

    def for_worker(self, batch: Batch | None, consumer: str | None) -> BaseStore:
        """This store as one worker sees it: the same collections and caches; the event
        consumer it works for (the key of its processed markers) and the batch whose
        transaction ``atomically`` joins, if any."""
        if batch is None and consumer is None:
            return self
        view = copy.copy(self)
        view.batch = batch
        view.consumer = consumer
        return view

    # -- schema --------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create collections and indexes (outside any transaction; see DESIGN.md)."""
        wanted = {"outbox": [[("created_at", ASCENDING)]], "processed": [], "redeliveries": []}
        wanted.update(self.collections)
        existing = set(self.db.list_collection_names())
        for name, retired in self.retired_indexes.items():
            for index in retired if name in existing else ():
                try:
                    self.db[name].drop_index(index)
                except OperationFailure:
                    pass  # never made here, or dropped by another instance
        for name, indexes in wanted.items():
            if name not in existing:
                try:
                    self.db.create_collection(name)
                except CollectionInvalid:
                    pass  # created by another instance meanwhile
            for spec in indexes:
                if isinstance(spec, dict):
                    self.db[name].create_index(spec["keys"], **spec.get("options", {}))
                else:
                    self.db[name].create_index(spec)

    def count_redelivery(self, queue: str, body: bytes | str) -> int:
        """Count one more redelivery of the message ``body`` on ``queue``; return how many
        were seen in the last hour (the consumer base dead-letters one redelivered too
        often)."""
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
        key = hashlib.sha256(queue.encode() + b"\0" + raw).hexdigest()
        now = contract.now()
        self.db.redeliveries.update_one({"_id": key}, {"$inc": {"n": 1},
                                                      "$setOnInsert": {"since": now}},
                                        upsert=True)
        row = self.db.redeliveries.find_one({"_id": key}) or {}
        since = row.get("since") or now
        if now - since > timedelta(hours=1):  # an old count: start again
            self.db.redeliveries.update_one({"_id": key}, {"$set": {"n": 1, "since": now}})
            return 1
        return int(row.get("n", 1))

    def on_start(self) -> None:
        """Hook for a service's first-start work (loading reference data...)."""

    def marker(self, key: str, event: contract.Event | None) -> dict[str, Any]:
        """The processed marker of ``event`` under ``key``: a store may keep in it what it
        would otherwise write per event elsewhere (intake: who sent it)."""
        return {"_id": key, "at": contract.now()}

    def prefetch(self, tx: Tx, events: list[contract.Event]) -> None:
        """Hook: before a batch's handlers run, read what they will need (one ``$in`` per
        collection instead of one ``_id`` lookup per event) into ``tx.shared``, where the
        store's own reads look first. Only in a batch: an event alone reads as it goes."""

    # -- transactions --------------------------------------------------------------------
    def atomically(
        self,
        work: Callable[[Tx], Any],
        *,
        event: contract.Event | None = None,
        consumer: str | None = None,
    ) -> Any:
        """Run ``work(tx)`` in one transaction with the event's processed marker and outbox.

        Returns what ``work`` returned, or :data:`DUPLICATE` if ``consumer`` already processed
        ``event``. ``consumer`` defaults to the event consumer whose worker this store serves
        (its entrypoint's name). Transient transaction errors (write conflicts) are retried
        by the driver.
        """
        consumer = consumer or self.consumer
        key = (f"{consumer}:{event.event_id}"
               if event is not None and consumer else None)
        if self.batch is not None:
            return self.batch.join(work, key, event)
        last: list[Any] = []  # the records and the Tx of the attempt that committed

        def callback(session: Any) -> Any:
            last.clear()
            if key:
                # the marker first: a redelivered event fails here with a duplicate key
                # (one request, no lookup) and the transaction is abandoned
                self.db.processed.insert_one(self.marker(key, event), session=session)
            tx = Tx(self.db, session, self.source)
            result = work(tx)
            tx.flush()
            records = outbox_records(tx.events)
            if records:
                self.db.outbox.insert_many(records, session=session)
            last.append(records)
            last.append(tx)
            return result

        try:
            with self.client.start_session() as session:
                result = session.with_transaction(callback)
        except DuplicateKeyError as exc:
            # The event was processed before (or by a consumer racing on a redelivery).
            if key and "processed" in str(exc):
                return DUPLICATE
            raise
        if result is not DUPLICATE and last:
            records, tx = last
            if records and self.relay is not None:
                self.relay.hand_over(records)
            for remember in tx.after_commit:
                remember()
        return result


class StoreProvider(DependencyProvider):
    """Gives a service its store: one MongoClient per process, closed on stop, plus the relay
    and its sweeper. Errors at start stop the service (the supervisor restarts it); errors
    later never escape into the container."""

    def __init__(self, store_class: type[BaseStore], emits: bool = True):
        """``emits=False``: the service publishes no events (no outbox, no relay). Which
        consumers write processed markers is each consumer's to say (``keyed_by_cause``)."""
        self.store_class = store_class
        self.emits = emits
        self.store: BaseStore | None = None
        self.client: MongoClient | None = None
        self._running = False
        # sent once the schema exists: consumers wait for it (a container starts all of its
        # extensions at once, and a transaction must not race the creation of a collection)
        self.ready = eventlet.event.Event()

    def setup(self) -> None:
        config = self.container.config
        cfg = settings(config)
        source = self.container.service_name
        self.client = MongoClient(
            config["MONGO_URI"],
            serverSelectionTimeoutMS=int(config.get("MONGO_TIMEOUT_MS", 5000)),
            connectTimeoutMS=int(config.get("MONGO_TIMEOUT_MS", 5000)),
            tz_aware=True,
        )
        db = self.client[cfg.db_prefix + source]
        relay = Relay(config["AMQP_URI"], db, source, cfg) if self.emits else None
        self.store = self.store_class(self.client, db, source, relay, cfg, config)

    def start(self) -> None:
        assert self.store is not None
        self.store.ensure_schema()
        self.store.on_start()
        self.ready.send(True)
        if self.store.relay is not None:
            self._running = True
            self.store.relay.start_publisher(partial(self.container.spawn_managed_thread,
                                                     identifier="outbox-publisher"))
            self.container.spawn_managed_thread(self._sweep_forever, identifier="outbox-sweeper")

    def _sweep_forever(self) -> None:
        assert self.store is not None and self.store.relay is not None
        interval = self.store.cfg.outbox_sweep_seconds
        while True:
            eventlet.sleep(interval)
            if not self._running:
                return
            try:
                sent = self.store.relay.sweep()
                if sent:
                    log.info("outbox sweep published %d event(s)", sent)
            except PyMongoError as exc:
                log.warning("outbox sweep failed (database): %s", exc)
            except Exception:  # noqa: BLE001 - the sweeper must never kill the service
                log.exception("outbox sweep failed")

    def stop(self) -> None:
        self._running = False
        if self.store is not None and self.store.relay is not None:
            self.store.relay.stop_publisher(timeout=self.store.cfg.publish_confirm_seconds)
        if self.client is not None:
            self.client.close()

    def kill(self) -> None:
        self._running = False  # what the publisher had not published stays in the outbox
        if self.client is not None:
            self.client.close()

    def get_dependency(self, worker_ctx: Any) -> BaseStore:
        assert self.store is not None
        batch = Batch.open_batches.get((worker_ctx.data or {}).get(BATCH_KEY, ""))
        # an event consumer's worker: its processed markers are keyed by the entrypoint
        consumer = getattr(worker_ctx.entrypoint, "consumer_key", None)
        return self.store.for_worker(batch, consumer)


BATCH_KEY = "relief_batch"
"""Context data naming the batch a worker runs in (set by the consumer base)."""
