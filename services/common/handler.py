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

Dead letters go to exchange ``relief.dlx`` with the origin queue's name as routing key; queue
``dlq.<queue>`` (``relief.intake.dlq`` for intake) is bound there (see ``topology``).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import eventlet
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError
from nameko.amqp.publish import Publisher
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import Entrypoint
from nameko.messaging import QueueConsumer
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from services.common import contract
from services.common.config import settings
from services.common.metrics import REGISTRY
from services.common.topology import (
    DLX,
    INTAKE_DLQ,
    INTAKE_EXCHANGE,
    INTAKE_QUEUE,
    QueueSpec,
    dlq_name,
    event_exchange,
    queue_arguments,
)

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
            consumer.qos(prefetch_count=self.prefetch_count)
            self._consumers[provider] = consumer
        return self._consumers.values()

    def _dispatch(self, provider: ReliableConsumer, message: Any) -> None:
        self.container.spawn_managed_thread(
            partial(provider.handle_raw, message),
            identifier=f"{type(provider).__name__}.handle_raw",
        )


class ReliableConsumer(Entrypoint):
    """Base entrypoint: validated events in, retries, dead letters. See the module doc."""

    queue_consumer = ReliableQueueConsumer()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.queue: Queue | None = None
        self.spec: QueueSpec | None = None
        self.publisher: Publisher | None = None

    # -- subclasses say where they listen and what they accept ----------------------------
    def queue_spec(self, service_name: str, method_name: str) -> QueueSpec:
        raise NotImplementedError

    def accepts(self, event: contract.Event) -> str | None:
        """Return a reason to reject a valid envelope for this consumer, or None."""
        return None

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

    def stop(self) -> None:
        self.queue_consumer.unregister_provider(self)
        super().stop()

    # -- message handling ----------------------------------------------------------------
    def handle_raw(self, message: Any) -> None:
        """Decode and validate; dead-letter what is not a valid event; else run the worker."""
        try:
            body = message.body
            if isinstance(body, bytes | bytearray):
                body = bytes(body).decode("utf-8")
            envelope = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            self.dead_letter(message, f"not valid JSON: {exc}", kind="invalid")
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
        self._spawn(message, event, 1)

    def _spawn(self, message: Any, event: contract.Event, attempt: int) -> None:
        try:
            self.container.spawn_worker(
                self,
                (event,),
                {},
                context_data={},
                handle_result=partial(self._on_result, message, event, attempt,
                                      time.monotonic()),
            )
        except ContainerBeingKilled:
            self._safely(message.requeue)

    def _on_result(self, message: Any, event: contract.Event, attempt: int, started: float,
                   worker_ctx: Any, result: Any, exc_info: Any) -> Any:
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
    """Consumes what outside systems publish to ``relief.intake`` (every routing key)."""

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
