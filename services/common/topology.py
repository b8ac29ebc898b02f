"""Broker topology: every exchange, queue, binding and policy the system needs.

Computed from the code (each service's consumers say what they listen to), declared at
deploy time by ``relief-deploy`` (and again by each consumer when it starts), so that the
queue of every handler exists before the first event is published.

Dead-lettering and the alternate exchange are **policies** (never queue arguments: changing
the arguments of an existing queue makes its consumer fail forever). The queue type
(classic or quorum) is the one argument fixed at first declaration, from config.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlparse

log = logging.getLogger(__name__)

INTAKE_EXCHANGE = "relief.intake"
INTAKE_QUEUE = "relief.intake.events"
INTAKE_DLQ = "relief.intake.dlq"
DLX = "relief.dlx"
UNROUTABLE_EXCHANGE = "relief.unroutable"
UNROUTABLE_QUEUE = "relief.unroutable"

# service name -> "module:Class"; the order is the start order of the local runner.
SERVICES: dict[str, str] = {
    "intake": "services.intake.service:IntakeService",
    "donations": "services.donations.service:DonationsService",
    "volunteers": "services.volunteers.service:VolunteersService",
    "matching": "services.matching.service:MatchingService",
    "notifications": "services.notifications.service:NotificationsService",
    "accounting": "services.accounting.service:AccountingService",
    "gateway": "services.gateway.service:GatewayService",
}


@dataclass(frozen=True)
class QueueSpec:
    name: str
    exchange: str
    routing_keys: tuple[str, ...]
    dlq: str


def event_exchange(source: str) -> str:
    return f"{source}.events"


def dlq_name(queue: str) -> str:
    return f"dlq.{queue}"


def queue_arguments(cfg: Any) -> dict[str, Any]:
    return {"x-queue-type": cfg.queue_type}


def service_class(name: str) -> type:
    module, cls = SERVICES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def consumer_specs(classes: list[type] | None = None) -> list[QueueSpec]:
    """Every queue a consumer of these service classes (default: all) reads, from their code."""
    from services.common.handler import ReliableConsumer

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


class Management:
    """A small client of the broker's management HTTP API."""

    def __init__(self, management_uri: str, amqp_uri: str):
        parsed = urlparse(management_uri)
        self.auth = (unquote(parsed.username or "guest"), unquote(parsed.password or "guest"))
        self.base = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 15672}"
        vhost = unquote(urlparse(amqp_uri).path[1:]) or "/"
        self.vhost = quote(vhost, safe="")

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5,
                ok_missing: bool = False) -> Any:
        import requests

        response = requests.request(method, f"{self.base}/api/{path}", auth=self.auth,
                                    json=body, timeout=timeout)
        if ok_missing and response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json() if response.content else None

    def set_policies(self, bodies: dict[str, dict[str, Any]]) -> None:
        for name, body in bodies.items():
            self.request("PUT", f"policies/{self.vhost}/{quote(name, safe='')}", body)

    def queues(self) -> list[dict[str, Any]]:
        return self.request("GET", f"queues/{self.vhost}")

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.request("GET", "overview")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


RPC_EXCHANGE = "nameko-rpc"


def user_name(service: str) -> str:
    return f"relief-{service}"


def permissions(service: str) -> dict[str, str]:
    """Least privilege for one service's broker user, from its consumers in the code: it may
    declare, bind and read only its own queues (and its RPC queues), publish only to its own
    events exchange, the RPC exchange and the dead-letter exchange."""
    specs = consumer_specs([service_class(service)])
    own_queues = [re.escape(s.name) for s in specs]
    sources = sorted({re.escape(s.exchange) for s in specs})
    rpc = [re.escape(f"rpc-{service}"), re.escape(f"rpc.reply-{service}-") + ".*",
           re.escape(RPC_EXCHANGE)]
    events = re.escape(event_exchange(service))

    def alt(parts: list[str]) -> str:
        return "^(" + "|".join(parts) + ")$"

    return {
        "configure": alt(own_queues + rpc + sources + [events]),
        "write": alt(own_queues + rpc + [events, re.escape(DLX),
                                          re.escape(UNROUTABLE_EXCHANGE)]),
        "read": alt(own_queues + rpc + sources),
    }


def provision_users(mgmt: Management, passwords: dict[str, str]) -> list[str]:
    """Create (or update) one broker user per service with its permissions in the vhost."""
    made = []
    for service, password in sorted(passwords.items()):
        name = quote(user_name(service), safe="")
        mgmt.request("PUT", f"users/{name}", {"password": password, "tags": ""})
        mgmt.request("PUT", f"permissions/{mgmt.vhost}/{name}", permissions(service))
        made.append(user_name(service))
    return made


MONITOR_USER = "relief-monitor"


def provision_monitor(mgmt: Management, password: str) -> str:
    """A read-only user for health and status pages (management API, tag ``monitoring``)."""
    name = quote(MONITOR_USER, safe="")
    mgmt.request("PUT", f"users/{name}", {"password": password, "tags": "monitoring"})
    mgmt.request("PUT", f"permissions/{mgmt.vhost}/{name}",
                 {"configure": "^$", "write": "^$", "read": ".*"})
    return MONITOR_USER


def service_passwords(environ: dict[str, str]) -> dict[str, str]:
    """``RELIEF_AMQP_PASSWORD_<SERVICE>`` for each service that has one set."""
    out = {}
    for service in SERVICES:
        value = environ.get(f"RELIEF_AMQP_PASSWORD_{service.upper()}")
        if value:
            out[service] = value
    return out


def deploy(config: dict[str, Any], classes: list[type] | None = None) -> list[QueueSpec]:
    """Declare the whole topology and apply the policies. Safe to run again at any time."""
    from services.common.config import settings

    cfg = settings(config)
    specs = consumer_specs(classes)
    mgmt = Management(cfg.management_uri, config["AMQP_URI"])
    mgmt.wait_ready()
    # Policies first: queues declared after them are dead-lettering from their first message.
    mgmt.set_policies(policies(specs, cfg))
    declare(config["AMQP_URI"], specs, cfg)
    return specs


def obsolete_queues(queues: list[dict[str, Any]], specs: list[QueueSpec]) -> list[dict]:
    """Event queues (and their dead-letter queues) no handler in the code reads any more:
    left behind when a handler is renamed or removed."""
    wanted = {s.name for s in specs} | {s.dlq for s in specs}
    return [q for q in queues
            if (q["name"].startswith(("evt-", "dlq.evt-")) and q["name"] not in wanted)]


def prune(mgmt: Management, specs: list[QueueSpec]) -> tuple[list[str], list[str]]:
    """Delete obsolete queues that are empty; return (deleted, kept because not empty).
    A queue with messages is kept: drain or replay it first (``relief-ops dlq``)."""
    import requests

    deleted, kept = [], []
    for q in obsolete_queues(mgmt.queues(), specs):
        try:
            # the broker refuses (400) if the queue is not empty: its statistics may lag
            mgmt.request("DELETE",
                         f"queues/{mgmt.vhost}/{quote(q['name'], safe='')}?if-empty=true")
        except requests.HTTPError as exc:
            if exc.response is None or exc.response.status_code != 400:
                raise
            kept.append(f"{q['name']} (not empty)")
            continue
        mgmt.request("DELETE", f"policies/{mgmt.vhost}/"
                               f"{quote('relief-dlx-' + q['name'], safe='')}",
                     ok_missing=True)
        deleted.append(q["name"])
    return deleted, kept


def main(argv: list[str] | None = None) -> int:
    from services.common.config import load_config

    parser = argparse.ArgumentParser(
        prog="relief-deploy",
        description="Declare Relief Exchange's exchanges, queues and broker policies.")
    parser.add_argument("--config", default="deploy/config.yaml")
    parser.add_argument("--print", action="store_true", help="print the topology, change nothing")
    parser.add_argument("--prune", action="store_true",
                        help="also delete empty queues of handlers that no longer exist "
                             "(after a handler was renamed or removed)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.print:
        from services.common.config import settings

        specs = consumer_specs()
        print(json.dumps({"queues": [s.__dict__ for s in specs],
                          "policies": policies(specs, settings(config))}, indent=2, default=list))
        return 0
    specs = deploy(config)
    print(f"relief-deploy: {len(specs)} consumer queues, dead-letter queues and policies in place")
    from services.common.config import settings as _settings

    mgmt = Management(_settings(config).management_uri, config["AMQP_URI"])
    if args.prune:
        deleted, kept = prune(mgmt, specs)
        for name in deleted:
            print(f"relief-deploy: deleted obsolete queue {name}")
        for name in kept:
            print(f"relief-deploy: obsolete queue kept, not empty: {name}")
    else:
        for q in obsolete_queues(mgmt.queues(), specs):
            print(f"relief-deploy: obsolete queue {q['name']} ({q.get('messages', 0)} messages);"
                  " run with --prune once it is drained")
    passwords = service_passwords(dict(os.environ))
    if passwords:
        from services.common.config import settings

        mgmt = Management(settings(config).management_uri, config["AMQP_URI"])
        users = provision_users(mgmt, passwords)
        if os.environ.get("RELIEF_MONITOR_PASSWORD"):
            users.append(provision_monitor(mgmt, os.environ["RELIEF_MONITOR_PASSWORD"]))
        print(f"relief-deploy: least-privilege broker users {', '.join(users)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
