"""Helpers shared by the integration and end-to-end tests (real broker, real database)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import requests
from pymongo import MongoClient

from deploy.local import Broker, Database

DEFAULT_TIMEOUT = float(os.environ.get("RELIEF_TEST_TIMEOUT", "30"))


def eventually(check, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.2,
               what: str = "condition"):
    """Poll ``check`` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except AssertionError as exc:
            last_exc = exc
        time.sleep(interval)
    time.sleep(float(os.environ.get("RELIEF_TEST_PAUSE_ON_FAILURE", "0")))  # to look around
    if last_exc:
        raise last_exc
    raise AssertionError(f"{what} not reached within {timeout}s")


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """This process's environment as ``values`` for a while (then as it was)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def envelope(type_: str, data: dict[str, Any], event_id: str | None = None,
             source: str = "test-system") -> dict[str, Any]:
    return {"event_id": event_id or str(uuid.uuid4()), "type": type_, "version": 1,
            "occurred_at": datetime.now(UTC).isoformat(), "source": source, "data": data}


@dataclass
class Infra:
    broker: Broker
    database: Database
    base: Path

    def new_space(self, name: str) -> Space:
        """A fresh vhost and database prefix: an isolated system."""
        vhost = f"{name}-{uuid.uuid4().hex[:6]}"
        mgmt = self.broker.management_uri.replace("guest:guest@", "")
        auth = ("guest", "guest")
        requests.put(f"{mgmt}/api/vhosts/{vhost}", auth=auth, timeout=10).raise_for_status()
        requests.put(f"{mgmt}/api/permissions/{vhost}/guest", auth=auth, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        return Space(self, vhost, f"t{uuid.uuid4().hex[:6]}_")


@dataclass
class Space:
    infra: Infra
    vhost: str
    db_prefix: str

    @property
    def amqp_uri(self) -> str:
        return self.infra.broker.amqp_uri_for(self.vhost)

    @property
    def mongo_uri(self) -> str:
        return self.infra.database.uri

    @property
    def management_uri(self) -> str:
        return self.infra.broker.management_uri

    def config(self, **relief: Any) -> dict[str, Any]:
        """A nameko config for services in this space."""
        section = {"db_prefix": self.db_prefix, "management_uri": self.management_uri,
                   "reference_dir": str(Path(__file__).resolve().parent.parent / "deploy" /
                                        "reference"),
                   "retry_backoff_seconds": 0.1, "outbox_sweep_seconds": 0.5,
                   "outbox_grace_seconds": 1.0}
        section.update(relief)
        return {"AMQP_URI": self.amqp_uri, "MONGO_URI": self.mongo_uri, "serializer": "json",
                "max_workers": 10, "RELIEF": section}

    def db(self, service: str):
        client = MongoClient(self.mongo_uri, tz_aware=True)
        return client[f"{self.db_prefix}{service}"]

    # -- broker helpers ------------------------------------------------------------------
    def channel(self):
        conn = pika.BlockingConnection(pika.URLParameters(self.amqp_uri))
        ch = conn.channel()
        ch.confirm_delivery()
        return conn, ch

    def publish(self, exchange: str, routing_key: str, body: Any,
                content_type: str = "application/json") -> None:
        self.publish_many(exchange, [(routing_key, body)], content_type)

    def publish_many(self, exchange: str, messages: list[tuple[str, Any]],
                     content_type: str = "application/json") -> None:
        """Publish ``(routing key, body)`` messages over one confirmed channel."""
        conn, ch = self.channel()
        try:
            for routing_key, body in messages:
                raw = body if isinstance(body, bytes | str) else json.dumps(body)
                ch.basic_publish(exchange, routing_key, raw, pika.BasicProperties(
                    content_type=content_type, delivery_mode=2))
        finally:
            conn.close()

    def intake(self, type_: str, data: dict[str, Any], event_id: str | None = None) -> str:
        env = envelope(type_, data, event_id)
        self.publish("relief.intake", type_, env)
        return env["event_id"]

    def intake_many(self, events: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Publish ``(type, data)`` events to ``relief.intake`` over one confirmed channel."""
        envelopes = [envelope(type_, data) for type_, data in events]
        self.publish_many("relief.intake", [(env["type"], env) for env in envelopes])
        return [env["event_id"] for env in envelopes]

    def get_messages(self, queue: str, limit: int = 100) -> list[tuple[dict, bytes]]:
        """Read (and requeue) up to ``limit`` messages: (headers, body)."""
        conn, ch = self.channel()
        out: list[tuple[dict, bytes]] = []
        tags = []
        try:
            for _ in range(limit):
                method, props, body = ch.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                tags.append(method.delivery_tag)
                out.append((props.headers or {}, body))
            for tag in tags:
                ch.basic_nack(tag, requeue=True)
        finally:
            conn.close()
        return out

    def queue_depth(self, queue: str) -> int:
        conn, ch = self.channel()
        try:
            return ch.queue_declare(queue, passive=True).method.message_count
        finally:
            conn.close()

    def bind_probe(self, exchange: str, routing_key: str) -> str:
        """A queue that records what is published to ``exchange`` with ``routing_key``."""
        conn, ch = self.channel()
        try:
            name = f"probe-{uuid.uuid4().hex[:8]}"
            ch.exchange_declare(exchange, "topic", durable=True, passive=False)
            ch.queue_declare(name, durable=True)
            ch.queue_bind(name, exchange, routing_key)
            return name
        finally:
            conn.close()


class System:
    """Every service as its own process (``nameko run``), in one space, as operators run it."""

    TOKEN = "test-operator-token"

    def __init__(self, space: Space, log_dir: Path):
        from deploy.local import Services, free_port, service_env

        self.space = space
        self.gateway_port = free_port()
        env = service_env(space.amqp_uri, space.mongo_uri, space.management_uri, self.TOKEN,
                          db_prefix=space.db_prefix)
        env.update({"RELIEF_RETRY_BACKOFF": "0.2", "RELIEF_OUTBOX_SWEEP": "0.5",
                    "RELIEF_OUTBOX_GRACE": "1", "LOG_LEVEL": "INFO"})
        self.env = env
        self.services = Services(env, log_dir, web_ports={"gateway": self.gateway_port})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self, names: list[str] | None = None) -> None:
        from deploy import topology
        from deploy.local import CONFIG
        from services.common.topology import SERVICES

        # relief-deploy as operators run it, in this process: its configuration and the
        # broker users' passwords are read from the system's environment
        with environ(self.env):
            assert topology.main(["--config", str(CONFIG)]) == 0
        names = names or list(SERVICES)
        self.services.start_all(names)
        self.wait_consumers(names)

    def wait_consumers(self, names: list[str], timeout: float = 60) -> None:
        """Until every queue of these services has a consumer (and the gateway answers)."""
        from services.common.topology import consumer_specs, service_class

        wanted = {s.name for s in consumer_specs([service_class(n) for n in names])}
        wanted |= {f"rpc-{n}" for n in names if n != "gateway"}  # the gateway answers no RPC

        def ready() -> bool:
            exited = self.services.exited()
            assert not exited, f"services exited: {exited}"
            mgmt = self.space.management_uri.replace("guest:guest@", "")
            queues = requests.get(f"{mgmt}/api/queues/{self.space.vhost}",
                                  auth=("guest", "guest"), timeout=5).json()
            consuming = {q["name"] for q in queues if q.get("consumers", 0) > 0}
            if not wanted <= consuming:
                return False
            if "gateway" in names:
                try:
                    return requests.get(f"{self.url}/health", timeout=2).status_code == 200
                except requests.ConnectionError:
                    return False
            return True

        eventually(ready, timeout=timeout, interval=0.5, what="all consumers")

    def stop(self) -> None:
        self.services.stop_all()

    # -- the public API ------------------------------------------------------------------
    def api(self, method: str, path: str, token: str | None = TOKEN, **kw: Any):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=15, **kw)

    def need(self, need_id: str) -> dict[str, Any] | None:
        response = self.api("GET", f"/api/needs/{need_id}")
        return response.json() if response.status_code == 200 else None

    def lots(self, category: str) -> dict[str, dict[str, Any]]:
        lots = self.api("GET", f"/api/stock?category={category}").json()["lots"]
        return {lot["lot_id"]: lot for lot in lots}
