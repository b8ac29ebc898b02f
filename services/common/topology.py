"""Broker topology: every exchange, queue, binding and policy the system needs.

Computed from the code (each service's consumers say what they listen to), declared at
deploy time by ``relief-deploy`` (``deploy/topology.py``: also the broker users and their
permissions) and again by each consumer when it starts, so that the queue of every handler
exists before the first event is published.

Dead-lettering and the alternate exchange are **policies** (never queue arguments: changing
the arguments of an existing queue makes its consumer fail forever). The queue type
(classic or quorum) is the one argument fixed at first declaration, from config.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from services.common.handler import ReliableConsumer
from services.common.management import Management  # noqa: F401 - re-exported
from services.common.routing import (  # noqa: F401 - re-exported for the deploy tools
    DLX,
    INTAKE_DLQ,
    INTAKE_EXCHANGE,
    INTAKE_QUEUE,
    MONITOR_USER,
    RPC_EXCHANGE,
    SERVICES,
    UNROUTABLE_EXCHANGE,
    UNROUTABLE_QUEUE,
    QueueSpec,
    dlq_name,
    event_exchange,
    queue_arguments,
    user_name,
)


def service_class(name: str) -> type:
    module, cls = SERVICES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def consumer_specs(classes: list[type] | None = None) -> list[QueueSpec]:
    """Every queue a consumer of these service classes (default: all) reads, from their code."""
    specs: dict[str, QueueSpec] = {}
    for cls in classes or [service_class(name) for name in SERVICES]:
        for method_name in dir(cls):
            method = getattr(cls, method_name, None)
            for ep in getattr(method, "nameko_entrypoints", ()):
                if isinstance(ep, ReliableConsumer):
                    spec = ep.queue_spec(cls.name, method_name)
                    specs[spec.name] = spec
    return sorted(specs.values(), key=lambda s: s.name)


def exchanges() -> list[str]:
    from services.common.contract import PRODUCERS

    return [INTAKE_EXCHANGE] + [event_exchange(s) for s in PRODUCERS if s != "intake"] + [
        event_exchange("intake")]


def policies(specs: list[QueueSpec], cfg: Any) -> dict[str, dict[str, Any]]:
    """Policy name -> definition body for the management API."""
    out: dict[str, dict[str, Any]] = {
        "relief-alternate-exchange": {
            "pattern": r"^(relief\.intake|[a-z_]+\.events)$",
            "apply-to": "exchanges",
            "priority": 10,
            "definition": {"alternate-exchange": UNROUTABLE_EXCHANGE},
        },
        "relief-unroutable-cap": {
            "pattern": rf"^{re.escape(UNROUTABLE_QUEUE)}$",
            "apply-to": "queues",
            "priority": 10,
            # a diagnostic tap: keep a week, at most 100k messages
            "definition": {"max-length": 100000, "message-ttl": 7 * 24 * 3600 * 1000},
        },
    }
    for spec in specs:
        definition: dict[str, Any] = {
            "dead-letter-exchange": DLX,
            "dead-letter-routing-key": spec.name,
        }
        if cfg.queue_type == "quorum":
            definition["delivery-limit"] = cfg.delivery_limit
        out[f"relief-dlx-{spec.name}"] = {
            "pattern": f"^{re.escape(spec.name)}$",
            "apply-to": "queues",
            "priority": 10,
            "definition": definition,
        }
    return out


def declare(amqp_uri: str, specs: list[QueueSpec], cfg: Any) -> None:
    """Declare exchanges, queues, bindings and dead-letter queues (idempotent)."""
    from kombu import Connection, Exchange, Queue

    args = queue_arguments(cfg)
    with Connection(amqp_uri, connect_timeout=10) as conn:
        conn.ensure_connection(max_retries=10, interval_start=1, interval_step=1)
        channel = conn.channel()
        topic = {}
        for name in exchanges():
            topic[name] = Exchange(name, type="topic", durable=True, auto_delete=False)
            topic[name](channel).declare()
        dlx = Exchange(DLX, type="direct", durable=True, auto_delete=False)
        dlx(channel).declare()
        unroutable = Exchange(UNROUTABLE_EXCHANGE, type="fanout", durable=True,
                              auto_delete=False)
        unroutable(channel).declare()
        Queue(UNROUTABLE_QUEUE, exchange=unroutable, durable=True, auto_delete=False,
              queue_arguments=args)(channel).declare()
        for spec in specs:
            exchange = topic.get(spec.exchange) or Exchange(
                spec.exchange, type="topic", durable=True, auto_delete=False)
            exchange(channel).declare()
            queue = Queue(spec.name, exchange=exchange, routing_key=spec.routing_keys[0],
                          durable=True, auto_delete=False, queue_arguments=args)
            queue(channel).declare()
            for key in spec.routing_keys[1:]:
                queue(channel).bind_to(exchange=spec.exchange, routing_key=key)
            Queue(spec.dlq, exchange=dlx, routing_key=spec.name, durable=True,
                  auto_delete=False, queue_arguments=args)(channel).declare()
        channel.close()
