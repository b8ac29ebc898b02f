"""Prometheus metrics for every service, and the per-service health check.

Each service mixes in :class:`ServiceEndpoints`: ``GET /metrics`` (text exposition format) and
``GET /healthz`` (200 while its consumers are connected and its database answers, 503
otherwise; a container health check calls it). The handler base counts events; the store's
outbox backlog is read at scrape time.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from werkzeug.wrappers import Response

# latency buckets in seconds: handlers take milliseconds; a database stall shows up at the top
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Registry:
    """Counters and histograms keyed by label tuples; thread- and greenlet-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.histograms: dict[str, dict[tuple, list[float]]] = defaultdict(dict)
        self.help: dict[str, str] = {}

    def inc(self, name: str, labels: dict[str, str], value: float = 1.0, doc: str = "") -> None:
        with self._lock:
            self.counters[name][tuple(sorted(labels.items()))] += value
            self.help.setdefault(name, doc)

    def observe(self, name: str, labels: dict[str, str], seconds: float, doc: str = "") -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            row = self.histograms[name].setdefault(key, [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            row[-2] += 1  # count (+Inf)
            row[-1] += seconds  # sum
            self.help.setdefault(name, doc)

    def value(self, name: str, labels: dict[str, str]) -> float:
        return self.counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        def fmt(labels: tuple, extra: tuple = ()) -> str:
            items = list(labels) + list(extra)
            if not items:
                return ""
            body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in items)
            return "{" + body + "}"

        lines: list[str] = []
        with self._lock:
            for name, rows in sorted(self.counters.items()):
                lines += [f"# HELP {name} {self.help.get(name, '')}", f"# TYPE {name} counter"]
                lines += [f"{name}{fmt(k)} {v:g}" for k, v in sorted(rows.items())]
            for name, rows in sorted(self.histograms.items()):
                lines += [f"# HELP {name} {self.help.get(name, '')}",
                          f"# TYPE {name} histogram"]
                for key, row in sorted(rows.items()):
                    for i, bound in enumerate(BUCKETS):
                        lines.append(f"{name}_bucket{fmt(key, (('le', f'{bound:g}'),))} "
                                     f"{row[i]:g}")
                    lines.append(f"{name}_bucket{fmt(key, (('le', '+Inf'),))} {row[-2]:g}")
                    lines.append(f"{name}_count{fmt(key)} {row[-2]:g}")
                    lines.append(f"{name}_sum{fmt(key)} {row[-1]:.6f}")
        for name, (doc, value) in sorted((gauges or {}).items()):
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


REGISTRY = Registry()
"""One registry per service process (each service runs in its own process)."""


class ConsumerState(DependencyProvider):
    """Whether every event consumer of this service is connected to the broker."""

    def get_dependency(self, worker_ctx: Any) -> Any:
        from services.common.handler import ReliableConsumer

        def connected() -> bool:
            consumers = [ep.queue_consumer for ep in self.container.entrypoints
                         if isinstance(ep, ReliableConsumer)]
            return all(c.ready for c in consumers)

        return connected


class ServiceEndpoints:
    """Mixed into every service: ``/metrics`` and ``/healthz`` on its web port."""

    consumers_connected = ConsumerState()

    @http("GET", "/metrics")
    def metrics(self, request: Any) -> Response:
        gauges: dict[str, tuple[str, float]] = {}
        store = getattr(self, "store", None)
        if store is not None and getattr(store, "relay", None) is not None:
            try:
                gauges["relief_outbox_backlog"] = (
                    "events written but not yet published", float(store.relay.backlog()))
            except Exception:  # noqa: BLE001 - a scrape must not fail on a slow database
                gauges["relief_outbox_backlog"] = ("events written but not yet published", -1)
        return Response(REGISTRY.render(gauges), mimetype="text/plain; version=0.0.4")

    @http("GET", "/healthz")
    def healthz(self, request: Any) -> Response:
        problems = []
        if not self.consumers_connected():
            problems.append("consumers not connected to the broker")
        store = getattr(self, "store", None)
        try:
            if store is not None:
                store.db.command("ping")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"database: {type(exc).__name__}")
        status = 503 if problems else 200
        return Response("; ".join(problems) or "ok", status=status, mimetype="text/plain")
