"""Storage spine: one MongoDB client per service process, transactions, outbox, idempotency.

A service's ``store.py`` subclasses :class:`BaseStore` (its collections and queries live there
and nowhere else) and the service declares ``store = StoreProvider(ItsStore)``.

``BaseStore.atomically(work, event=..., consumer=...)`` runs ``work(tx)`` in one transaction
together with

* the **processed marker** of the event being handled (so a redelivered event changes nothing:
  the second run finds the marker and returns :data:`DUPLICATE`), and
* the **outbox** records of every event ``tx.emit`` produced.

After commit the relay publishes those events at once (with publisher confirms) and deletes
their outbox records; a sweeper in every process publishes whatever is left (for instance after
a broker outage). An event may be published twice (crash between publish and delete, or
writer and sweeper racing); consumers are idempotent, so that is harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import eventlet
from nameko.amqp.publish import Publisher
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, MongoClient
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, DuplicateKeyError, PyMongoError

from services.common import contract
from services.common.config import Settings, settings
from services.common.topology import event_exchange

log = logging.getLogger(__name__)


class _Duplicate:
    def __repr__(self) -> str:
        return "DUPLICATE"


DUPLICATE: Any = _Duplicate()
"""Returned by ``atomically`` when the event was already processed."""


class Tx:
    """One transaction: its session, its database and the events it will emit."""

    def __init__(self, db: Database, session: Any, source: str):
        self.db = db
        self.session = session
        self.source = source
        self.events: list[dict[str, Any]] = []

    def emit(self, type_: str, data: dict[str, Any], event_id: str | None = None,
             occurred_at: Any = None) -> dict:
        """Add an event to the outbox of this transaction (validated against the contract)."""
        envelope = contract.build(type_, data, self.source, event_id=event_id,
                                  occurred_at=occurred_at)
        self.events.append(envelope)
        return envelope


class Relay:
    """Publishes outbox records with confirms and deletes them once the broker has them."""

    def __init__(self, amqp_uri: str, db: Database, source: str, cfg: Settings):
        self.db = db
        self.source = source
        self.cfg = cfg
        self.exchange = event_exchange(source)
        self.publisher = Publisher(
            amqp_uri,
            use_confirms=True,
            # unroutable with no alternate exchange configured: raise, keep the record
            mandatory=True,
            retry=True,
            retry_policy={
                "max_retries": 1,
                "interval_start": 0.2,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        )
        self._lock = threading.Lock()

    def _publish(self, envelope: dict[str, Any]) -> None:
        self.publisher.publish(
            envelope,
            exchange=self.exchange,
            routing_key=envelope["type"],
            message_id=envelope["event_id"],
            headers={"x-relief-source": self.source},
        )
        self.db.outbox.delete_one({"_id": envelope["event_id"]})

    def publish(self, envelopes: Iterable[dict[str, Any]]) -> int:
        """Publish in order; stop at the first failure (the sweeper retries). Returns count."""
        sent = 0
        for envelope in envelopes:
            try:
                self._publish(envelope)
            except Exception as exc:  # noqa: BLE001 - any failure leaves it in the outbox
                log.warning(
                    "outbox publish deferred: %s",
                    exc,
                    extra={"event_id": envelope["event_id"], "event_type": envelope["type"]},
                )
                break
            sent += 1
        return sent

    def sweep(self) -> int:
        """Publish outbox records older than the grace period. Returns how many were sent."""
        cutoff = contract.now() - timedelta(seconds=self.cfg.outbox_grace_seconds)
        # The outbox holds only unpublished records, so this scan stays small.
        pending = list(self.db.outbox.find({"created_at": {"$lt": cutoff}}).limit(1000))
        pending.sort(key=lambda r: r["created_at"])
        return self.publish(r["envelope"] for r in pending)

    def backlog(self) -> int:
        return self.db.outbox.estimated_document_count()


class BaseStore:
    """A service's storage. Subclasses list their collections and indexes and add queries."""

    #: collection name -> list of index specs (each a list of (field, direction) pairs,
    #: or a dict with "keys" and index options)
    collections: dict[str, list[Any]] = {}

    def __init__(self, client: MongoClient, db: Database, source: str, relay: Relay | None,
                 cfg: Settings, config: dict[str, Any]):
        self.client = client
        self.db = db
        self.source = source
        self.relay = relay
        self.cfg = cfg
        self.config = config

    # -- schema --------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create collections and indexes (outside any transaction; see DESIGN.md)."""
        wanted = {"outbox": [[("created_at", ASCENDING)]], "processed": []}
        wanted.update(self.collections)
        existing = set(self.db.list_collection_names())
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

    def on_start(self) -> None:
        """Hook for a service's first-start work (loading reference data...)."""

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
        ``event``. Transient transaction errors (write conflicts) are retried by the driver.
        """
        key = f"{consumer}:{event.event_id}" if event is not None and consumer else None
        last: list[Tx] = []

        def callback(session: Any) -> Any:
            last.clear()
            if key and self.db.processed.find_one({"_id": key}, session=session):
                return DUPLICATE
            tx = Tx(self.db, session, self.source)
            result = work(tx)
            if key:
                self.db.processed.insert_one({"_id": key, "at": contract.now()}, session=session)
            if tx.events:
                at = contract.now()
                self.db.outbox.insert_many(
                    [{"_id": e["event_id"], "envelope": e, "created_at": at} for e in tx.events],
                    session=session,
                )
            last.append(tx)
            return result

        try:
            with self.client.start_session() as session:
                result = session.with_transaction(callback)
        except DuplicateKeyError as exc:
            # Two consumers raced on the same redelivered event: the other one won.
            if key and "processed" in str(exc):
                return DUPLICATE
            raise
        if result is not DUPLICATE and last and last[0].events and self.relay is not None:
            self.relay.publish(last[0].events)
        return result


class StoreProvider(DependencyProvider):
    """Gives a service its store: one MongoClient per process, closed on stop, plus the relay
    and its sweeper. Errors at start stop the service (the supervisor restarts it); errors
    later never escape into the container."""

    def __init__(self, store_class: type[BaseStore], emits: bool = True):
        self.store_class = store_class
        self.emits = emits
        self.store: BaseStore | None = None
        self.client: MongoClient | None = None
        self._running = False

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
        if self.store.relay is not None:
            self._running = True
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
        if self.client is not None:
            self.client.close()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> BaseStore:
        assert self.store is not None
        return self.store
