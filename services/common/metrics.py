"""Prometheus metrics for every service, and the per-service health check.

Each service mixes in :class:`ServiceEndpoints`: ``GET /metrics`` (text exposition format) and
``GET /healthz`` (200 while its consumers are connected and its database answers, 503
otherwise; a container health check calls it). The handler base counts events; the store's
outbox backlog, and whatever gauges a service adds (``metric_gauges``), are read at scrape
time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import prometheus_client
from nameko.extensions import DependencyProvider
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from werkzeug.wrappers import Response

from services.common.web import http

# latency buckets in seconds: handlers take milliseconds; a database stall shows up at the top
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

prometheus_client.disable_created_metrics()  # no *_created series: they only add noise


class Registry:
    """The process's metrics (prometheus_client), with process and platform metrics.

    Counters and histograms are declared by their first use (name, labels, help), so the
    code that counts says what it counts; scrape-time gauges come from the service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        self._metrics: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._gauges = _ScrapeGauges()
        self.registry.register(self._gauges)

    def _metric(self, kind: type, name: str, labels: dict[str, str], doc: str,
                **options: Any) -> Any:
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                metric = kind(name, doc or name, sorted(labels), registry=self.registry,
                              **options)
                self._metrics[name] = metric
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, labels: dict[str, str], value: float = 1.0, doc: str = "") -> None:
        self._metric(Counter, name, labels, doc).inc(value)

    def observe(self, name: str, labels: dict[str, str], seconds: float, doc: str = "") -> None:
        self._metric(Histogram, name, labels, doc, buckets=BUCKETS).observe(seconds)

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> bytes:
        """The text exposition, with ``gauges`` (name -> (help, value)) read at scrape time."""
        with self._gauges.reading(gauges or {}):
            return prometheus_client.generate_latest(self.registry)


class _ScrapeGauges(Collector):
    """Gauges whose values the service reads when scraped (outbox backlog...)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def reading(self, values: dict[str, tuple[str, float]]) -> Iterator[None]:
        with self._lock:
            self._values = values
            try:
                yield
            finally:
                self._values = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (doc, value) in sorted(self._values.items()):
            yield GaugeMetricFamily(name, doc, value=value)


REGISTRY = Registry()
"""One registry per service process (each service runs in its own process)."""


class ConsumerState(DependencyProvider):
    """Whether every event consumer of this service is connected to the broker."""

    def get_dependency(self, worker_ctx: Any) -> Any:
        def connected() -> bool:
            # the reliable consumers' queue consumer says whether it is registered
            consumers = [ep.queue_consumer for ep in self.container.entrypoints
                         if hasattr(getattr(ep, "queue_consumer", None), "ready")]
            return all(c.ready for c in consumers)

        return connected


class ServiceEndpoints:
    """Mixed into every service: ``/metrics`` and ``/healthz`` on its web port."""

    consumers_connected = ConsumerState()

    def metric_gauges(self) -> dict[str, tuple[str, float]]:
        """A service's own gauges, read at scrape time: name -> (help, value)."""
        return {}

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
        try:
            gauges.update(self.metric_gauges())
        except Exception:  # noqa: BLE001 - a scrape must not fail on a slow database
            pass
        return Response(REGISTRY.render(gauges), mimetype=prometheus_client.CONTENT_TYPE_LATEST)

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
