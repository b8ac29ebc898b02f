"""The one handler base for every consumed event: nothing is ever acked and dropped.

Nameko 2.14 acks a message after its handler returns and, on an exception, acks and drops it.
:class:`ReliableConsumer` replaces that:

* the raw body is decoded and validated against the contract here, before any worker runs;
  anything that is not a valid event (not JSON, unknown type, bad field) goes straight to the
  dead-letter queue with the reason in the ``x-relief-error`` header;
* a handler that raises a *transient* error (database or broker unreachable, a write conflict,
  :class:`Retry`) is run again with exponential back-off, a bounded number of times;
* any other error, or transient errors past the bound, dead-letter the message with its reason;
* the message is acked only after the handler returned or the dead letter was confirmed. If
  even the dead-letter publish fails, the message is rejected and the broker's dead-letter
  policy catches it; if the connection is gone, the broker redelivers it.

A consumer declared with ``batch=True`` hands its events to the service's :class:`Batcher`:
events that arrive while a batch is running wait and go into the next one, and a batch runs
its handlers one after another in one shared transaction (``store.Batch``). Under load that
is one commit and one marker/outbox write per batch instead of per event; when events come
one at a time a batch is one event and nothing changes. If any handler in a batch fails, or
the commit does, the batch is rolled back and each of its events goes the one-by-one way
above (retries, dead letters), so a batch never changes an outcome. Only handlers whose every
read and write goes through the transaction (``tx``), with no effect outside the database,
may be batch consumers.

Dead letters go to exchange ``relief.dlx`` with the origin queue's name as routing key; queue
``dlq.<queue>`` (``relief.intake.dlq`` for intake) is bound there (see ``topology``).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections import deque
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple

import eventlet
import eventlet.event
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import Entrypoint
from nameko.messaging import QueueConsumer
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from services.common import contract, wire
from services.common.config import settings
from services.common.metrics import REGISTRY
from services.common.routing import (
    DLX,
    INTAKE_DLQ,
    INTAKE_EXCHANGE,
    INTAKE_QUEUE,
    QueueSpec,
    dlq_name,
    event_exchange,
    queue_arguments,
)
from services.common.store import BATCH_KEY, BaseStore, Batch, BatchFailed, StoreProvider

log = logging.getLogger(__name__)


class Retry(Exception):
    """Raise from a handler when the event cannot be handled *yet* (retried with back-off)."""


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: the broker or database unreachable, a transaction conflict."""
    if isinstance(exc, Retry | ConnectionFailure | OperationalError | socket.error | TimeoutError):
        return True
    if isinstance(exc, PyMongoError) and (
        exc.has_error_label("TransientTransactionError")
        or exc.has_error_label("UnknownTransactionCommitResult")
    ):
        return True
    return isinstance(exc, OperationFailure) and exc.code in (112, 251)  # WriteConflict, NoSuchTxn


class ReliableQueueConsumer(QueueConsumer):
    """Nameko's queue consumer, but it hands raw messages to the entrypoint (no decoding in
    the consumer thread: a body that cannot be decoded would otherwise kill the consumer)."""

    ready = False  # consumers registered with the broker (for the health check)

    _batcher: Batcher | None = None

    @property
    def batcher(self) -> Batcher:
        if self._batcher is None:
            self._batcher = Batcher(self.container)
        return self._batcher

    @property
    def prefetch_count(self) -> int:
        """Events in hand at once: fewer than the service's workers, so that RPC calls
        (status pages, reads of a need) always find a free worker during a backlog. When
        every consumer of the service batches, its events use one worker at a time (the
        batcher's), so two batches' worth may be in hand."""
        cfg = settings(self.container.config)
        if self._providers and all(p.batch for p in self._providers):
            # two batches' worth: the next batch gathers while one runs (with one, the
            # broker sends nothing more until the running batch is acked)
            return 2 * max(1, cfg.batch_max_events)
        return max(1, self.container.max_workers - cfg.reserved_workers)

    def start(self) -> None:
        """Consume only once the service's store is ready (its collections created)."""
        for dependency in self.container.dependencies:
            if isinstance(dependency, StoreProvider):
                dependency.ready.wait()
        super().start()

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any,
                         **kwargs: Any) -> None:
        self.ready = True
        super().on_consume_ready(connection, channel, consumers, **kwargs)

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        self.ready = False
        super().on_connection_error(exc, interval)

    def get_consumers(self, consumer_cls: Any, channel: Any) -> Any:
        for provider in self._providers:
            consumer = consumer_cls(
                queues=[provider.queue],
                on_message=partial(self._dispatch, provider),
                accept=None,
            )
            # one limit for all of this service's event queues (they share a channel)
            consumer.qos(prefetch_count=self.prefetch_count, apply_global=True)
            self._consumers[provider] = consumer
        return self._consumers.values()

    def _dispatch(self, provider: ReliableConsumer, message: Any) -> None:
        self.container.spawn_managed_thread(
            partial(provider.handle_raw, message),
            identifier=f"{type(provider).__name__}.handle_raw",
        )


class Batcher:
    """Runs a service's batch consumers' events a batch at a time (see the module doc)."""

    def __init__(self, container: Any):
        self.container = container
        self.max_events = max(1, settings(container.config).batch_max_events)
        #: how long a batch waits for more events before it runs, when fewer than a full
        #: batch are in hand: a service whose events are not awaited by anyone at once
        #: (messages that coalesce anyway, the ledger) says so with
        #: ``batch_linger_seconds``, and then under a steady flow pays one transaction for
        #: many events instead of one for every one or two, leaving the CPU and the
        #: database to the work people wait on (matching)
        self.linger = max(0.0, float(getattr(container.service_cls, "batch_linger_seconds",
                                             0.0)))
        self.pending: deque[tuple[ReliableConsumer, Any, contract.Event]] = deque()
        self.running = False

    def add(self, provider: ReliableConsumer, message: Any, event: contract.Event) -> None:
        self.pending.append((provider, message, event))
        if not self.running:
            self.running = True
            self.container.spawn_managed_thread(self._drain, identifier="relief-batcher")

    def _drain(self) -> None:
        try:
            eventlet.sleep(0)  # let the messages that arrived with this one be judged
            while self.pending:
                if self.linger and len(self.pending) < self.max_events:
                    eventlet.sleep(self.linger)
                n = min(len(self.pending), self.max_events)
                self.run([self.pending.popleft() for _ in range(n)])
                eventlet.sleep(0)
        finally:
            self.running = False
            if self.pending:  # only if a batch died of a bug: never leave events waiting
                self.running = True
                self.container.spawn_managed_thread(self._drain,
                                                    identifier="relief-batcher")

    def run(self, items: list[tuple[ReliableConsumer, Any, contract.Event]]) -> None:
        store = items[0][0].store
        if len(items) > 1 and store is not None:
            try:
                self._together(store, items)
                return
            except BatchFailed as exc:
                log.info("a batch of %d events is handled one by one: %s", len(items), exc)
                REGISTRY.inc("relief_batches_total", {"service": self.container.service_name,
                                                      "outcome": "one_by_one"},
                             doc="batch transactions, by outcome (committed, one_by_one)")
            except Exception:  # noqa: BLE001 - never lose the events: one by one instead
                log.exception("a batch of %d events failed; handled one by one", len(items))
        for provider, message, event in items:
            provider.run_alone(message, event)

    def _together(self, store: BaseStore,
                  items: list[tuple[ReliableConsumer, Any, contract.Event]]) -> None:
        started = time.monotonic()
        batch = Batch(store)
        batch.mark([(f"{provider.consumer_key}:{event.event_id}", event)
                    for provider, _, event in items if provider.consumer_key])
        try:
            batch.prefetch([event for _, _, event in items])
            for provider, _, event in items:
                failed = provider.run_in_batch(batch, event)
                if failed is not None:
                    raise BatchFailed(f"{event.type} {event.event_id}: {failed}")
        except BaseException:
            batch.abort()
            raise
        batch.commit()  # raises BatchFailed (rolled back) when it cannot
        # committed: from here on nothing may send the events one by one again (their
        # markers would make each a duplicate, and a message acked twice closes the
        # channel); a message that cannot be acked now is redelivered and found handled
        took = (time.monotonic() - started) / len(items)
        for provider, message, event in items:
            try:
                provider.settled(message, took)
            except Exception:  # noqa: BLE001 - see above
                log.warning("could not ack a handled event; it will come back as a duplicate",
                            exc_info=True, extra={"event_id": event.event_id})
        labels = {"service": self.container.service_name}
        REGISTRY.inc("relief_batches_total", {**labels, "outcome": "committed"},
                     doc="batch transactions, by outcome (committed, one_by_one)")
        REGISTRY.inc("relief_batch_events_total", labels, len(items),
                     doc="events handled in committed batch transactions")


class _Try(NamedTuple):
    """One attempt at handling a message: what to settle once the worker returns."""

    message: Any
    event: contract.Event
    attempt: int
    started: float  # time.monotonic() when the worker was spawned


class ReliableConsumer(Entrypoint):
    """Base entrypoint: validated events in, retries, dead letters. See the module doc."""

    queue_consumer = ReliableQueueConsumer()

    def __init__(self, batch: bool = False, marker: str | None = None,
                 keyed_by_cause: bool = False, **kwargs: Any):
        self.batch = batch
        self.marker = marker
        self.keyed_by_cause = keyed_by_cause
        super().__init__(**kwargs)
        self.queue: Queue | None = None
        self.spec: QueueSpec | None = None
        self.publisher: Publisher | None = None

    @property
    def consumer_key(self) -> str | None:
        """What this consumer's processed markers are keyed by (with the event id): the
        handler's name, so that two handlers of one event in a service keep apart; or the
        ``marker`` named, where another entrypoint handles the same events (and so must find
        the same markers). None for a handler declared ``keyed_by_cause``: its every write
        is keyed by the event's cause and made only if absent, or sets what the event says
        (the same again changes nothing), so handling it twice is harmless and a marker
        would cost a write per event and guard nothing."""
        return None if self.keyed_by_cause else self.marker or self.method_name

    # -- subclasses say where they listen and what they accept ----------------------------
    def queue_spec(self, service_name: str, method_name: str) -> QueueSpec:
        raise NotImplementedError

    def accepts(self, event: contract.Event) -> str | None:
        """Return a reason to reject a valid envelope for this consumer, or None."""
        return None

    def prepare(self, message: Any, event: contract.Event) -> contract.Event:
        """The event as the handler gets it (what the broker says of the message may be
        added: e.g. who published it)."""
        return event

    # -- lifecycle -----------------------------------------------------------------------
    def setup(self) -> None:
        cfg = settings(self.container.config)
        self.cfg = cfg
        self.spec = self.queue_spec(self.container.service_name, self.method_name)
        exchange = Exchange(self.spec.exchange, type="topic", durable=True, auto_delete=False)
        self.queue = Queue(
            self.spec.name,
            exchange=exchange,
            bindings=None,
            routing_key=self.spec.routing_keys[0],
            durable=True,
            auto_delete=False,
            queue_arguments=queue_arguments(cfg),
        )
        self.publisher = Publisher(
            self.container.config["AMQP_URI"],
            use_confirms=True,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.5, "interval_step": 0.5},
        )
        self.queue_consumer.register_provider(self)

    @property
    def store(self) -> BaseStore | None:
        """The service's store (it counts redeliveries), or None for a service without one."""
        for dependency in self.container.dependencies:
            if isinstance(dependency, StoreProvider) and dependency.store is not None:
                return dependency.store
        return None

    def stop(self) -> None:
        self.queue_consumer.unregister_provider(self)
        super().stop()

    # -- message handling ----------------------------------------------------------------
    def handle_raw(self, message: Any) -> None:
        """Decode and validate; dead-letter what is not a valid event; else run the worker.

        Nothing raised while judging a message escapes: whatever the bytes, the message is
        either handed to a worker or dead-lettered with a reason (a message that could crash
        the consumer would be redelivered to it for ever and stop the queue)."""
        try:
            if self._poisoned(message):
                return
            try:
                envelope = wire.decode(message.body, max_bytes=self.cfg.max_message_bytes,
                                       max_depth=self.cfg.max_json_depth)
            except wire.DecodeError as exc:
                self.dead_letter(message, exc.reason, kind="invalid")
                return
            try:
                event = contract.parse(envelope)
            except contract.ContractError as exc:
                self.dead_letter(message, exc.reason, kind="invalid", envelope=envelope)
                return
            reason = self.accepts(event)
            if reason:
                self.dead_letter(message, reason, kind="invalid", envelope=envelope)
                return
            event = self.prepare(message, event)
        except Exception as exc:  # noqa: BLE001 - a bug in judging must not stop the queue
            log.exception("could not judge a message; dead-lettering it",
                          extra={"queue": self.spec.name if self.spec else None})
            self.dead_letter(message, f"could not be read: {type(exc).__name__}: {exc}"[:500],
                             kind="error")
            return
        if self.batch and not (message.delivery_info or {}).get("redelivered"):
            # a redelivered message goes alone: if it is what killed the consumer, its
            # batch mates are not redelivered with it again (and never counted as poison)
            self.queue_consumer.batcher.add(self, message, event)
        else:
            self._spawn(message, event, 1)

    # -- in a batch ----------------------------------------------------------------------
    def run_in_batch(self, batch: Batch, event: contract.Event) -> str | None:
        """Run the handler for ``event`` inside ``batch`` and wait; return why it failed, or
        None. Nothing is acked here: the batcher settles the batch as a whole."""
        done = eventlet.event.Event()

        def on_result(worker_ctx: Any, result: Any, exc_info: Any) -> Any:
            done.send(None if exc_info is None else
                      f"{type(exc_info[1]).__name__}: {exc_info[1]}")
            return result, exc_info

        try:
            self.container.spawn_worker(self, (event,), {}, context_data={BATCH_KEY: batch.id},
                                        handle_result=on_result)
        except ContainerBeingKilled:
            return "the service is stopping"
        return done.wait()

    def run_alone(self, message: Any, event: contract.Event) -> None:
        """Handle one event on its own (its own transaction, retries, dead letters) and wait
        for its first attempt, so a batcher falling back uses one worker at a time."""
        done = eventlet.event.Event()
        self._spawn(message, event, 1, done=done)
        done.wait()

    def settled(self, message: Any, seconds: float) -> None:
        """A batch holding ``message`` committed: ack it."""
        queue = {"queue": self.spec.name}
        REGISTRY.observe("relief_handler_seconds", queue, seconds,
                         "time a handler took, per attempt")
        self.queue_consumer.ack_message(message)
        REGISTRY.inc("relief_events_handled_total", {**queue, "outcome": "ok"},
                     doc="events handled, by outcome")

    def _poisoned(self, message: Any) -> bool:
        """A message redelivered again and again (its consumer died each time it had it) is
        dead-lettered instead of being tried once more. Redeliveries are counted in the
        service's database, keyed by the message's digest, only for redelivered messages;
        a cluster's quorum queues also have a delivery limit (broker policy)."""
        info = message.delivery_info or {}
        store = self.store
        if not info.get("redelivered") or store is None:
            return False
        try:
            seen = store.count_redelivery(self.spec.name, message.body)
        except PyMongoError as exc:  # the database is away: the worker's retries handle it
            log.warning("could not count a redelivery: %s", exc, extra={"queue": self.spec.name})
            return False
        if seen <= self.cfg.poison_redeliveries:
            return False
        self.dead_letter(message, f"redelivered {seen} times without being settled (its "
                         "consumer may have died handling it)", kind="poison",
                         attempts=seen)
        return True

    def _spawn(self, message: Any, event: contract.Event, attempt: int,
               done: eventlet.event.Event | None = None) -> None:
        try:
            self.container.spawn_worker(
                self,
                (event,),
                {},
                context_data={},
                handle_result=partial(self._on_result,
                                      _Try(message, event, attempt, time.monotonic()), done),
            )
        except ContainerBeingKilled:
            self._safely(message.requeue)
            if done is not None:
                done.send(None)

    def _on_result(self, run: _Try, done: eventlet.event.Event | None, worker_ctx: Any,
                   result: Any, exc_info: Any) -> Any:
        try:
            return self._settle(run, result, exc_info)
        finally:
            if done is not None:
                done.send(None)

    def _settle(self, run: _Try, result: Any, exc_info: Any) -> Any:
        message, event, attempt, started = run
        queue = {"queue": self.spec.name}
        REGISTRY.observe("relief_handler_seconds", queue, time.monotonic() - started,
                         "time a handler took, per attempt")
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            REGISTRY.inc("relief_events_handled_total", {**queue, "outcome": "ok"},
                         doc="events handled, by outcome")
            return result, exc_info
        exc = exc_info[1]
        extra = {"event_id": event.event_id, "event_type": event.type, "queue": self.spec.name}
        if is_transient(exc) and attempt < self.cfg.retry_attempts:
            delay = self.cfg.retry_backoff_seconds * (2 ** (attempt - 1))
            log.warning("transient failure, retry %d in %.1fs: %s", attempt, delay, exc,
                        extra=extra)
            REGISTRY.inc("relief_events_handled_total", {**queue, "outcome": "retried"},
                         doc="events handled, by outcome")
            self.container.spawn_managed_thread(
                partial(self._retry_later, message, event, attempt + 1, delay),
                identifier="relief-retry",
            )
        else:
            kind = ("invalid" if isinstance(exc, contract.ContractError)
                    else "transient" if is_transient(exc) else "error")
            reason = exc.reason if kind == "invalid" else f"{type(exc).__name__}: {exc}"
            self.dead_letter(message, reason, kind=kind,
                             attempts=attempt, event=event)
        return result, exc_info

    def _retry_later(self, message: Any, event: contract.Event, attempt: int,
                     delay: float) -> None:
        try:
            eventlet.sleep(delay)
            self._spawn(message, event, attempt)
        except Exception:  # noqa: BLE001 - never kill the container from here
            log.exception("could not schedule a retry; the broker will redeliver")

    def dead_letter(self, message: Any, reason: str, *, kind: str, attempts: int = 1,
                    envelope: Any = None, event: contract.Event | None = None) -> None:
        """Publish the original body to ``relief.dlx`` with the reason, then ack it."""
        assert self.spec is not None and self.publisher is not None
        info = message.delivery_info or {}
        headers = dict(message.headers or {})
        headers.update({
            "x-relief-error": reason[:2000],
            "x-relief-error-kind": kind,
            "x-relief-queue": self.spec.name,
            "x-relief-exchange": info.get("exchange", ""),
            "x-relief-routing-key": info.get("routing_key", ""),
            "x-relief-attempts": attempts,
            "x-relief-failed-at": datetime.now(UTC).isoformat(),
        })
        event_id = event.event_id if event else (
            envelope.get("event_id") if isinstance(envelope, dict) else None)
        extra = {"event_id": event_id, "queue": self.spec.name}
        body = message.body if isinstance(message.body, bytes | bytearray) else str(
            message.body).encode("utf-8")
        try:
            self.publisher.publish(
                bytes(body),
                exchange=DLX,
                routing_key=self.spec.name,
                headers=headers,
                content_type=message.content_type or "application/octet-stream",
                content_encoding=message.content_encoding or "binary",
            )
        except Exception as exc:  # noqa: BLE001
            log.error("dead-letter publish failed (%s); rejecting to the broker's DLX", exc,
                      extra=extra)
            self._safely(partial(message.reject, requeue=False))
            return
        log.warning("dead-lettered to %s: %s", self.spec.dlq, reason, extra=extra)
        REGISTRY.inc("relief_events_handled_total",
                     {"queue": self.spec.name, "outcome": "dead_lettered"},
                     doc="events handled, by outcome")
        REGISTRY.inc("relief_dead_lettered_total", {"queue": self.spec.name, "kind": kind},
                     doc="messages dead-lettered, by kind (invalid, error, transient)")
        self.queue_consumer.ack_message(message)

    @staticmethod
    def _safely(action: Any) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - connection gone: the broker redelivers
            log.warning("could not settle message: %s", exc)


class EventHandler(ReliableConsumer):
    """Handles one event type published by one service (``<source>.events`` exchange)."""

    def __init__(self, source: str, event_type: str, **kwargs: Any):
        if event_type not in contract.EVENT_SCHEMAS:
            raise ValueError(f"unknown event type {event_type!r}")
        self.source = source
        self.event_type = event_type
        super().__init__(**kwargs)

    def queue_spec(self, service_name: str, method_name: str) -> QueueSpec:
        name = f"evt-{self.source}-{self.event_type}--{service_name}.{method_name}"
        return QueueSpec(name=name, exchange=event_exchange(self.source),
                         routing_keys=(self.event_type,), dlq=dlq_name(name))

    def accepts(self, event: contract.Event) -> str | None:
        if event.type != self.event_type:
            return f"event type {event.type!r} on a queue for {self.event_type!r}"
        return None


class IntakeConsumer(ReliableConsumer):
    """Consumes what outside systems publish to ``relief.intake`` (every routing key). The
    event's ``publisher`` is the message's ``user_id`` property: the broker refuses a
    ``user_id`` other than the publishing connection's user, so it is who published, not
    what the message claims."""

    def prepare(self, message: Any, event: contract.Event) -> contract.Event:
        user = (getattr(message, "properties", None) or {}).get("user_id")
        if user and event.publisher is None:
            event = dataclasses.replace(event, publisher=str(user)[:128])
        return event

    def queue_spec(self, service_name: str, method_name: str) -> QueueSpec:
        return QueueSpec(name=INTAKE_QUEUE, exchange=INTAKE_EXCHANGE, routing_keys=("#",),
                         dlq=INTAKE_DLQ)

    def accepts(self, event: contract.Event) -> str | None:
        if event.type not in contract.INTAKE_TYPES:
            return (f"event type {event.type!r} is not accepted on relief.intake "
                    f"(accepted: {', '.join(contract.INTAKE_TYPES)})")
        return None


on_event = EventHandler.decorator
on_intake = IntakeConsumer.decorator
