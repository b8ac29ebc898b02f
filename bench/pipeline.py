"""Pipeline benchmark: the whole system against a bare nameko event chain on the same broker.

Run from the repository root: ``python bench/pipeline.py [--burst N] [--stored N[,N...]]
[--open-in-category N[,N...]] [--reps N] [--quick]``. It starts its own broker, database,
mail sink and every service (each its own process, as the tests and ``make run`` do), on free
ports, prints figures and ratios, stops everything, and never fails on a figure.

(a) **pipeline**: a publisher with confirms sends ``need_posted`` to ``relief.intake``; intake
    passes it on, matching allocates it from stock loaded beforehand (every need can be met),
    its ``assignment_made`` is consumed by notifications, donations and accounting. A need is
    done when its ``need_fulfilled`` reaches a probe queue bound to ``matching.events``.
(b) **bare chain**: two tiny nameko services defined below (:class:`ChainHopA`,
    :class:`ChainHopB`), each a ``nameko run`` process: hop A consumes what the publisher
    sends and dispatches an event, hop B consumes it and dispatches the event a probe queue
    sees, as matching's ``need_fulfilled`` is seen in (a). Same broker (its own vhost), same
    publisher, same probe.

Figures, for each level of stored / open needs asked for:

* throughput of (a) and (b) from bursts, interleaved a, b, a, b... (``--reps``, median) and
  the ratio a/b, with the CPU they cost;
* time to assignment (publish → first ``assignment_made`` on a probe) p50/p95/p99 at fixed
  open-loop rates (``--rates``, ``--window`` seconds each), and (b)'s time through the chain
  at the same rates. A rate whose needs are not all assigned within the drain limit is
  saturated: the higher rates are skipped;
* a burst of ``--burst`` needs: drain time, needs lost (not fulfilled as matching's database
  sees them once the system is idle), dead letters (every ``dlq.*`` queue and
  ``relief.intake.dlq``), CPU-ms per need of every process (``/proc/<pid>/stat``: each
  service, the broker's Erlang VM, the database server, the mail sink, this process) and
  database requests per need (the server's ``serverStatus`` opcounters; per service from its
  ``top`` counters, one namespace per collection).

Each figure carries the 1-minute load average at the time it was taken: on a busy machine the
ratio of (a) to (b), measured in the same minutes, is the figure to compare.

Stored and open needs (``--stored``, ``--open-in-category``) are by default written straight
into every service's database as copies of the documents one real need left there (a
fulfilled one for ``--stored``; for ``--open-in-category`` an open one in a community with no
stock of the measured category, so it stays open), with fresh ids; documents that are still
work to do (outbox records, undelivered messages) are not copied. ``--store-via pipeline``
posts them through ``relief.intake`` instead: exact, but at today's speed hours for 100k.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")

from nameko.events import EventDispatcher, event_handler  # noqa: E402

CATEGORY = "masks"  # the category measured (its reference unit: piece)
UNIT = "piece"
NEED_QUANTITY = 10
LOT_QUANTITY = 50_000_000  # per community: far more than any run asks for
URGENCIES = ("critical", "high", "normal", "low")
DEFAULT_RATES = (10, 25, 50, 100)
CHAIN_SOURCE = "bench_source"  # the publisher's exchange for (b): bench_source.events


# -- (b) the bare chain: two nameko services, each run as its own process -------------------
class ChainHopA:
    """Hop 1 of the bare chain: consume, dispatch."""

    name = "bench_hop_a"
    dispatch = EventDispatcher()

    @event_handler(CHAIN_SOURCE, "ping")
    def relay(self, payload: dict[str, Any]) -> None:
        self.dispatch("pong", payload)


class ChainHopB:
    """Hop 2: consume, dispatch the event the probe sees (as matching's need_fulfilled)."""

    name = "bench_hop_b"
    dispatch = EventDispatcher()

    @event_handler(ChainHopA.name, "pong")
    def finish(self, payload: dict[str, Any]) -> None:
        self.dispatch("done", payload)


# -- processes and the CPU they use ---------------------------------------------------------
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    return [str(pid), raw[raw.index("(") + 1:raw.rindex(")")]] + raw[raw.rindex(")") + 2:].split()


def cpu_ms(pid: int) -> float:
    """User + system CPU of one process (all its threads) so far, in ms (0 if gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[13]) + int(fields[14])) * 1000.0 / CLOCK_TICK


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (the broker's script starts its VM)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[3]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


class CpuMeter:
    """CPU-ms of named groups of processes; each group's pids are resolved at each reading,
    so a restarted process is followed."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]]):
        self.groups = groups

    def read(self) -> dict[str, float]:
        return {name: sum(cpu_ms(pid) for pid in pids()) for name, pids in self.groups.items()}

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before.get(name, 0.0) for name in after}


def tree_of(process: subprocess.Popen | None) -> Callable[[], list[int]]:
    return lambda: process_tree(process.pid) if process and process.poll() is None else []


# -- on-call reads during a burst ---------------------------------------------------------------
class OnCallWatch:
    """Reads what on-call reads (``/health``, ``GET /api/status``, ``GET /api/dashboard``,
    ``GET /api/needs/<id>``), one after another, for as long as a burst runs; each read's
    time is kept, a read that fails or takes longer than 10 s counts as failed."""

    PATHS = ("/health", "/api/status", "/api/dashboard", "/api/needs/{need_id}")

    def __init__(self, url: str, token: str, need_id: str):
        self.url, self.token, self.need_id = url, token, need_id
        self.times: dict[str, list[float]] = {p: [] for p in self.PATHS}
        self.failed: dict[str, int] = dict.fromkeys(self.PATHS, 0)
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> OnCallWatch:
        self.running.set()
        self.thread.start()
        return self

    def _run(self) -> None:
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        while self.running.is_set():
            for path in self.PATHS:
                started = time.perf_counter()
                try:
                    answer = session.get(self.url + path.format(need_id=self.need_id),
                                         timeout=10)
                    ok = answer.status_code in (200, 404)  # the need may not be there yet
                except requests.RequestException:
                    ok = False
                if ok:
                    self.times[path].append(time.perf_counter() - started)
                else:
                    self.failed[path] += 1
            time.sleep(0.2)

    def stop(self) -> dict[str, Any]:
        self.running.clear()
        self.thread.join(timeout=15)
        return {path: {"reads": len(t), "failed": self.failed[path],
                       "p50_s": percentile(t, 50), "max_s": max(t, default=float("nan"))}
                for path, t in self.times.items()}


# -- the database server's own counters -----------------------------------------------------
class DbCounters:
    """Requests the database server counted: ``serverStatus`` opcounters (every command, by
    kind) and ``top`` (per collection namespace, so per service by database name)."""

    BUCKETS = ("query", "insert", "update", "delete", "getmore", "command")

    def __init__(self, client: Any, db_prefix: str):
        self.client = client
        self.prefix = db_prefix
        self.note = ""

    def read(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ops": {}, "by_service": {}, "by_collection": {}}
        try:
            ops = self.client.admin.command("serverStatus").get("opcounters") or {}
            out["ops"] = {k: int(ops.get(k, 0)) for k in self.BUCKETS}
        except Exception as exc:  # noqa: BLE001 - a server without it: say so, go on
            self.note = f"serverStatus opcounters unavailable ({exc})"
        try:
            totals = self.client.admin.command("top").get("totals", {})
            for ns, sections in totals.items():
                if ns == "note" or not ns.startswith(self.prefix):
                    continue
                service = ns.split(".", 1)[0][len(self.prefix):]
                count = int(sections.get("total", {}).get("count", 0))
                out["by_service"][service] = out["by_service"].get(service, 0) + count
                out["by_collection"][ns[len(self.prefix):]] = count
        except Exception as exc:  # noqa: BLE001
            self.note = (self.note + "; " if self.note else "") + f"top unavailable ({exc})"
        return out

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        return {part: {k: v - before[part].get(k, 0) for k, v in after[part].items()}
                for part in ("ops", "by_service", "by_collection")}


# -- the broker: publisher, probe, queue depths ---------------------------------------------
def pika_params(amqp_uri: str) -> Any:
    import pika

    # no heartbeats: the bench's connections sit idle while it waits for a drain
    sep = "&" if "?" in amqp_uri else "?"
    return pika.URLParameters(f"{amqp_uri}{sep}heartbeat=0")


class Publisher:
    """Persistent messages, each confirmed by the broker before the next is sent."""

    def __init__(self, amqp_uri: str):
        import pika

        self.pika = pika
        self.conn = pika.BlockingConnection(pika_params(amqp_uri))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()

    def publish(self, exchange: str, routing_key: str, body: dict[str, Any]) -> None:
        self.ch.basic_publish(exchange, routing_key, json.dumps(body).encode(),
                              self.pika.BasicProperties(content_type="application/json",
                                                        delivery_mode=2))

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing at the end
            pass


class Probe(threading.Thread):
    """Exclusive queues bound to exchanges; records when each key is first seen.

    ``bindings``: label -> (exchange, routing key, key of a message body)."""

    def __init__(self, amqp_uri: str,
                 bindings: dict[str, tuple[str, str, Callable[[dict[str, Any]], Any]]]):
        super().__init__(daemon=True)
        self.amqp_uri = amqp_uri
        self.bindings = bindings
        self.seen: dict[str, dict[Any, float]] = {label: {} for label in bindings}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.stopping = False
        self.error: BaseException | None = None

    def run(self) -> None:
        import pika

        try:
            conn = pika.BlockingConnection(pika_params(self.amqp_uri))
            ch = conn.channel()
            for label, (exchange, routing_key, key) in self.bindings.items():
                ch.exchange_declare(exchange, "topic", durable=True)
                queue = ch.queue_declare("", exclusive=True).method.queue
                ch.queue_bind(queue, exchange, routing_key)
                ch.basic_consume(queue, partial(self._on_message, label, key), auto_ack=True)
            self.ready.set()
            while not self.stopping:
                conn.process_data_events(time_limit=0.1)
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the waiting side
            self.error = exc
            self.ready.set()

    def _on_message(self, label: str, key: Callable[[dict[str, Any]], Any], _ch: Any,
                    _method: Any, _props: Any, body: bytes) -> None:
        now = time.perf_counter()
        try:
            k = key(json.loads(body))
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            self.seen[label].setdefault(k, now)

    def start_and_wait(self) -> Probe:
        self.start()
        self.ready.wait(30)
        if self.error or not self.ready.is_set():
            raise RuntimeError(f"probe did not start: {self.error}")
        return self

    def times(self, label: str, keys: Iterable[Any]) -> dict[Any, float]:
        with self.lock:
            seen = self.seen[label]
            return {k: seen[k] for k in keys if k in seen}

    def count(self, label: str, keys: set[Any]) -> int:
        with self.lock:
            return len(keys & self.seen[label].keys())

    def stop(self) -> None:
        self.stopping = True
        self.join(5)


def need_id_of(body: dict[str, Any]) -> str:
    return (body.get("data") or body)["need_id"]


class Queues:
    """Exact depths of a vhost's queues (passive declares), names from the management API."""

    def __init__(self, amqp_uri: str, management_uri: str, vhost: str):
        import pika

        self.pika = pika
        self.amqp_uri = amqp_uri
        self.mgmt = management_uri.replace("guest:guest@", "")
        self.vhost = vhost
        self.conn = pika.BlockingConnection(pika_params(amqp_uri))
        self.ch = self.conn.channel()

    def names(self) -> list[str]:
        import requests

        r = requests.get(f"{self.mgmt}/api/queues/{quote(self.vhost, safe='')}",
                         params={"columns": "name,exclusive"}, auth=("guest", "guest"),
                         timeout=10)
        r.raise_for_status()
        return [q["name"] for q in r.json() if not q.get("exclusive")]

    def depths(self, names: Iterable[str]) -> dict[str, int]:
        out = {}
        for name in names:
            try:
                out[name] = self.ch.queue_declare(name, passive=True).method.message_count
            except self.pika.exceptions.ChannelClosedByBroker:
                self.ch = self.conn.channel()  # the queue is gone: count nothing
        return out

    def first_reason(self, name: str) -> str:
        """Why the first message of a dead-letter queue is there (left in the queue)."""
        try:
            method, props, body = self.ch.basic_get(name, auto_ack=False)
        except self.pika.exceptions.ChannelClosedByBroker:
            self.ch = self.conn.channel()
            return "?"
        if method is None:
            return "?"
        self.ch.basic_nack(method.delivery_tag, requeue=True)
        headers = props.headers or {}
        reason = headers.get("x-relief-error")
        if reason is None and headers.get("x-death"):
            death = headers["x-death"][0]
            reason = f"{death.get('reason')} from {death.get('queue')}"
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        return text[:200]

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass


def is_dead_letter_queue(name: str) -> bool:
    from services.common.topology import INTAKE_DLQ

    return name.startswith("dlq.") or name == INTAKE_DLQ


# -- figures --------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    """Nearest rank; ``inf`` entries (never seen) sort last."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def load1() -> float:
    return os.getloadavg()[0]


def fmt_ms(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "-"
    if seconds == float("inf"):
        return "never"
    ms = seconds * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def fmt_rate(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


@dataclass
class Sizes:
    rep_needs: int
    rep_events: int
    rates: tuple[int, ...]
    window: float
    chain_window: float
    burst: int
    burst_timeout: float
    stall: float
    settle_timeout: float
    drain_limit: float  # per open-loop rate, after its window
    settle_step: float
    idle_seconds: float
    all_rates: bool


@dataclass
class Level:
    stored: int
    open_in_category: int
    results: dict[str, Any] = field(default_factory=dict)


# -- the harness ----------------------------------------------------------------------------
class Bench:
    """Everything the runs need: infrastructure, the system, the chain, probes, meters."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes):
        self.args = args
        self.sizes = sizes
        self.base = Path(tempfile.mkdtemp(prefix="relief-bench-"))
        os.chmod(self.base, 0o755)
        self.stack: list[Callable[[], None]] = []  # what to stop, last started first
        self.seq = 0
        self.reference = json.loads((ROOT / "deploy" / "reference" / "areas.json")
                                    .read_text(encoding="utf-8"))["areas"]
        communities = [a for a in self.reference if a["tier"] == "community"]
        streets = sorted({a["parent"] for a in communities})
        # the last street's communities hold no stock: needs posted there stay open
        self.dry = [a["id"] for a in communities if a["parent"] == streets[-1]]
        self.supplied = [a["id"] for a in communities if a["parent"] != streets[-1]]
        if args.quick:
            self.supplied = self.supplied[:8]
        self.templates: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        self.stored = 0
        self.open = 0
        self.notes: list[str] = []
        self.settled = True

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # -- start and stop ---------------------------------------------------------------------
    def start(self) -> None:
        from pymongo import MongoClient

        from deploy.local import Broker, Database, free_port
        from deploy.mail_sink import MailSink
        from tests.support import Infra, System

        tag = uuid.uuid4().hex[:6]
        self.log(f"starting broker, database and mail sink in {self.base}")
        self.broker = Broker(self.base / "rabbitmq", nodename=f"relief-bench-{tag}@localhost",
                             port=free_port(), dist_port=free_port(),
                             management_port=free_port(), prometheus_port=free_port())
        self.database = Database(self.base / "db", port=free_port())
        # each stop is registered before its start: a start that fails half-way is undone
        # its data is thrown away after the run, unless kept: no need to wait for a shutdown
        keep = bool(os.environ.get("RELIEF_KEEP_BENCH_DATA"))
        self.stack.append(lambda: self.broker.stop(graceful=keep))
        self.broker.start()
        self.stack.append(self.database.stop)
        self.database.start()
        self.sink = MailSink(self.base / "mail", port=free_port(), http_port=free_port()).start()
        self.stack.append(self.sink.stop)
        infra = Infra(self.broker, self.database, self.base)

        self.space = infra.new_space("bench")
        self.system = System(self.space, self.base / "logs")
        # the configuration operators run (the tests shorten these)
        for name in ("RELIEF_RETRY_BACKOFF", "RELIEF_OUTBOX_SWEEP", "RELIEF_OUTBOX_GRACE"):
            self.system.env.pop(name, None)
        self.system.env.update(self.sink.env())
        self.log("starting every service")
        self.stack.append(self.system.stop)
        self.system.start()

        self.chain_space = infra.new_space("bench-chain")
        self.chain = self._start_chain()

        self.client = MongoClient(self.space.mongo_uri, tz_aware=True)
        self.stack.append(self.client.close)
        self.counters = DbCounters(self.client, self.space.db_prefix)
        procs = self.system.services.processes
        bench_pid = os.getpid()
        groups: dict[str, Callable[[], Iterable[int]]] = {
            name: (lambda n=name: [procs[n].pid] if n in procs else []) for name in procs}
        groups.update({"broker": tree_of(self.broker.process),
                       "database": tree_of(self.database.process),
                       "mail sink": tree_of(self.sink.process),
                       "bench (publisher, probes)": lambda: [bench_pid]})
        self.cpu = CpuMeter(groups)
        self.chain_cpu = CpuMeter({"hop A": tree_of(self.chain["a"]),
                                   "hop B": tree_of(self.chain["b"]),
                                   "broker": tree_of(self.broker.process),
                                   "bench (publisher, probes)": lambda: [bench_pid]})
        self.quiet_groups = [*procs, "database"]

        self.publisher = Publisher(self.space.amqp_uri)
        self.stack.append(self.publisher.close)
        self.chain_publisher = Publisher(self.chain_space.amqp_uri)
        self.stack.append(self.chain_publisher.close)
        self.probe = Probe(self.space.amqp_uri, {
            "assigned": ("matching.events", "assignment_made", need_id_of),
            "fulfilled": ("matching.events", "need_fulfilled", need_id_of),
        }).start_and_wait()
        self.stack.append(self.probe.stop)
        self.chain_probe = Probe(self.chain_space.amqp_uri, {
            "done": (f"{ChainHopB.name}.events", "done", lambda body: body["i"]),
        }).start_and_wait()
        self.stack.append(self.chain_probe.stop)
        self.queues = Queues(self.space.amqp_uri, self.space.management_uri, self.space.vhost)
        self.stack.append(self.queues.close)
        names = self.queues.names()
        self.work_queues = [n for n in names if not is_dead_letter_queue(n)]
        self.dead_letter_queues = [n for n in names if is_dead_letter_queue(n)]
        self.idle_cores = 0.0
        self.measure_idle()

    def _start_chain(self) -> dict[str, subprocess.Popen]:
        config = self.base / "chain.yaml"
        config.write_text(json.dumps({"AMQP_URI": self.chain_space.amqp_uri,
                                      "serializer": "json", "max_workers": 10}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)]),
               "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        processes = {}
        for key, cls in (("a", ChainHopA), ("b", ChainHopB)):
            log = open(self.base / f"chain-{key}.log", "ab")
            processes[key] = subprocess.Popen(
                [sys.executable, "-m", "nameko", "run", "--config", str(config),
                 f"pipeline:{cls.__name__}"], cwd=ROOT / "bench", env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

        def stop() -> None:
            for p in processes.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in processes.values():
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()

        self.stack.append(stop)
        # both hops consume once their queues have a consumer
        import requests

        mgmt = self.chain_space.management_uri.replace("guest:guest@", "")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for key, p in processes.items():
                if p.poll() is not None:
                    raise RuntimeError(f"chain hop {key} exited; see {self.base}/chain-{key}.log")
            queues = requests.get(f"{mgmt}/api/queues/{quote(self.chain_space.vhost, safe='')}",
                                  auth=("guest", "guest"), timeout=5).json()
            if sum(1 for q in queues if q.get("consumers", 0) > 0) >= 2:
                return processes
            time.sleep(0.5)
        raise RuntimeError("the bare chain's hops did not start consuming within 60 s")

    def stop(self) -> None:
        while self.stack:
            try:
                self.stack.pop()()
            except Exception as exc:  # noqa: BLE001 - stop the rest anyway
                self.log(f"while stopping: {exc}")
        if not os.environ.get("RELIEF_KEEP_BENCH_DATA"):
            shutil.rmtree(self.base, ignore_errors=True)

    # -- waiting ----------------------------------------------------------------------------
    def _quiet_cpu(self) -> float:
        reading = self.cpu.read()
        return sum(reading[g] for g in self.quiet_groups)

    def measure_idle(self) -> dict[str, float]:
        """Cores each process uses with no work queued: its timers and sweeps, which grow
        with what is stored. ``settle`` waits for this level again."""
        self.drain_queues()
        seconds = self.sizes.idle_seconds
        before = self.cpu.read()
        time.sleep(seconds)
        used = {k: v / 1000 / seconds
                for k, v in CpuMeter.delta(before, self.cpu.read()).items()}
        self.idle_cores = sum(used[g] for g in self.quiet_groups)
        top = max(used, key=used.get)
        self.log(f"idle: {self.idle_cores:.2f} cores used by services and database "
                 f"({top} {used[top]:.2f})")
        return used

    def drain_queues(self, timeout: float = 600) -> None:
        """Until no work queue holds a message, three times in a row."""
        deadline = time.perf_counter() + timeout
        empty = 0
        while empty < 3 and time.perf_counter() < deadline:
            empty = empty + 1 if sum(self.queues.depths(self.work_queues).values()) == 0 else 0
            time.sleep(self.sizes.settle_step)

    def settle(self, timeout: float | None = None) -> float:
        """Until nothing waits in any work queue and the services and database are back to
        idle CPU (a handler still at work burns CPU there, or in the database), twice in a
        row. Returns the seconds until the quiet began (not the checks that confirmed it)."""
        start = time.perf_counter()
        deadline = start + (timeout or self.sizes.settle_timeout)
        threshold = max(self.idle_cores * 1.25, self.idle_cores + 0.15)
        step = self.sizes.settle_step
        quiet, last, last_t = 0, self._quiet_cpu(), time.perf_counter()
        began = last_t
        while time.perf_counter() < deadline:
            time.sleep(step)
            now_cpu, now_t = self._quiet_cpu(), time.perf_counter()
            cores = (now_cpu - last) / 1000 / (now_t - last_t)
            ready = sum(self.queues.depths(self.work_queues).values())
            if ready == 0 and cores < threshold:
                quiet += 1
            else:
                quiet, began = 0, now_t
            last, last_t = now_cpu, now_t
            if quiet >= 2:
                self.settled = True
                return began - start
        self.log("the system did not settle in time; measuring on")
        self.settled = False
        return time.perf_counter() - start

    def wait_seen(self, probe: Probe, label: str, keys: set[Any], timeout: float,
                  stall: float | None = None) -> bool:
        """Until every key was seen, ``timeout`` passes, or nothing new arrives for ``stall``
        seconds. True if every key was seen."""
        deadline = time.perf_counter() + timeout
        last_count, last_change = -1, time.perf_counter()
        while time.perf_counter() < deadline:
            count = probe.count(label, keys)
            if count == len(keys):
                return True
            if count != last_count:
                last_count, last_change = count, time.perf_counter()
            elif stall and time.perf_counter() - last_change > stall:
                return False
            time.sleep(0.05)
        return False

    # -- what is published ------------------------------------------------------------------
    def next_ids(self, prefix: str, n: int) -> list[str]:
        start = self.seq
        self.seq += n
        return [f"{prefix}{i:07d}" for i in range(start, start + n)]

    def need_event(self, need_id: str, i: int, community: str | None = None,
                   urgency: str | None = None) -> dict[str, Any]:
        from tests.support import envelope

        c = community or self.supplied[i % len(self.supplied)]
        # each station's coordinator posts its needs (one contact per community)
        phone = f"139{zlib.crc32(c.encode()) % 10**8:08d}"
        return envelope("need_posted", {
            "need_id": need_id, "community_id": c, "kind": "goods", "category": CATEGORY,
            "quantity": NEED_QUANTITY, "unit": UNIT,
            "urgency": urgency or URGENCIES[i % len(URGENCIES)],
            "contact": {"name": "社区工作站", "phone": phone}}, source="bench-partner")

    def post_needs(self, ids: list[str], **kw: Any) -> tuple[float, dict[str, float]]:
        """Publish as fast as confirms allow. Returns (first publish time, id -> sent time)."""
        sent: dict[str, float] = {}
        for i, need_id in enumerate(ids):
            sent[need_id] = time.perf_counter()
            self.publisher.publish("relief.intake", "need_posted",
                                   self.need_event(need_id, i, **kw))
        return (min(sent.values()) if sent else time.perf_counter()), sent

    def load_supply(self) -> None:
        from tests.support import envelope

        self.log(f"loading stock: one lot of {CATEGORY} in each of {len(self.supplied)} "
                 f"communities")
        supply = self.client[f"{self.space.db_prefix}matching"].supply
        before = supply.estimated_document_count()
        for community in self.supplied:
            self.publisher.publish("relief.intake", "donation_received", envelope(
                "donation_received", {
                    "donation_id": f"BL-{community}", "location_id": community,
                    "donor": {"name": "成都启毅农业科技有限公司", "kind": "company"},
                    "category": CATEGORY, "quantity": LOT_QUANTITY, "unit": UNIT,
                    "value_yuan": 500_000.0}, source="bench-partner"))
        deadline = time.monotonic() + 300
        while supply.estimated_document_count() < before + len(self.supplied):
            if time.monotonic() > deadline:
                raise RuntimeError("matching did not record the stock within 300 s")
            time.sleep(0.5)

    def warm_up(self) -> None:
        self.log("warming up")
        ids = self.next_ids("W", 10 if not self.args.quick else 3)
        self.post_needs(ids)
        self.wait_seen(self.probe, "fulfilled", set(ids), 120)
        keys = self.chain_keys(200 if not self.args.quick else 20)
        self.chain_burst_publish(keys)
        self.wait_seen(self.chain_probe, "done", set(keys), 60)
        self.settle()

    def chain_keys(self, n: int) -> list[int]:
        start = self.seq
        self.seq += n
        return list(range(start, start + n))

    def chain_burst_publish(self, keys: list[int]) -> dict[int, float]:
        sent = {}
        for k in keys:
            sent[k] = time.perf_counter()
            self.chain_publisher.publish(f"{CHAIN_SOURCE}.events", "ping", {"i": k})
        return sent

    # -- (a) and (b) bursts -----------------------------------------------------------------
    def pipeline_burst(self, n: int, timeout: float, stall: float) -> dict[str, Any]:
        ids = self.next_ids("P", n)
        cpu0, db0, dlq0 = self.cpu.read(), self.counters.read(), self.dead_letters()
        batches0 = self.batches()
        watch = OnCallWatch(self.system.url, self.system.TOKEN, ids[0]).start()
        try:
            start, _ = self.post_needs(ids)
            complete = self.wait_seen(self.probe, "fulfilled", set(ids), timeout, stall)
        finally:
            on_call = watch.stop()
        seen = self.probe.times("fulfilled", ids)
        end = max(seen.values()) if seen else time.perf_counter()
        drained_load = load1()
        settled = time.perf_counter() + self.settle() - start
        cpu1, db1 = self.cpu.read(), self.counters.read()
        batches1 = self.batches()
        fulfilled = self.fulfilled_in_matching(ids)
        elapsed = end - start
        return {
            "needs": n, "complete": complete, "seen": len(seen), "elapsed_s": elapsed,
            "per_s": len(seen) / elapsed if elapsed > 0 and seen else 0.0,
            "settled_s": settled if self.settled else None, "lost": n - fulfilled,
            "dead_lettered": self.dead_letters() - dlq0,
            "dead_letters": self.dead_letter_detail(),
            "cpu_ms": CpuMeter.delta(cpu0, cpu1), "db": DbCounters.delta(db0, db1),
            "on_call": on_call,
            "batches": {name: [after[i] - batches0.get(name, (0.0, 0.0))[i] for i in (0, 1)]
                        for name, after in batches1.items()},
            "load": drained_load, "per": max(fulfilled, 1)}

    def batches(self) -> dict[str, tuple[float, float]]:
        """Each service's committed batch transactions and the events they held, from its
        own metrics (``relief_batches_total``, ``relief_batch_events_total``)."""
        import requests

        out = {}
        for name, port in self.system.services.web_ports.items():
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.RequestException:
                continue
            batches = events = 0.0
            for line in text.splitlines():
                if line.startswith("relief_batches_total{") and 'outcome="committed"' in line:
                    batches += float(line.rsplit(" ", 1)[1])
                elif line.startswith("relief_batch_events_total{"):
                    events += float(line.rsplit(" ", 1)[1])
            out[name] = (batches, events)
        return out

    def chain_burst(self, n: int) -> dict[str, Any]:
        keys = self.chain_keys(n)
        cpu0 = self.chain_cpu.read()
        sent = self.chain_burst_publish(keys)
        self.wait_seen(self.chain_probe, "done", set(keys), max(60, n / 50), stall=30)
        seen = self.chain_probe.times("done", keys)
        end = max(seen.values()) if seen else time.perf_counter()
        cpu1 = self.chain_cpu.read()
        elapsed = end - min(sent.values())
        return {"events": n, "seen": len(seen), "elapsed_s": elapsed,
                "per_s": len(seen) / elapsed if elapsed > 0 and seen else 0.0,
                "cpu_ms": CpuMeter.delta(cpu0, cpu1), "load": load1(), "per": max(len(seen), 1)}

    def throughput(self) -> dict[str, Any]:
        a_runs, b_runs = [], []
        for rep in range(self.args.reps):
            self.log(f"throughput rep {rep + 1}/{self.args.reps}: (a) {self.sizes.rep_needs} "
                     f"needs")
            a_runs.append(self.pipeline_burst(self.sizes.rep_needs, self.sizes.burst_timeout,
                                              self.sizes.stall))
            self.log(f"throughput rep {rep + 1}/{self.args.reps}: (b) {self.sizes.rep_events} "
                     f"events")
            b_runs.append(self.chain_burst(self.sizes.rep_events))
            self.settle()
        return {"a": a_runs, "b": b_runs}

    # -- open loop ----------------------------------------------------------------------------
    def open_loop(self, rate: float, publish: Callable[[Any, int], None],
                  keys: list[Any]) -> dict[Any, float]:
        """Publish ``keys`` at ``rate`` per second from now; returns key -> intended time (a
        publisher that falls behind does not hide the wait from the figures)."""
        start = time.perf_counter() + 0.05
        intended = {}
        for i, key in enumerate(keys):
            at = start + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            intended[key] = at
            publish(key, i)
        return intended

    def latency(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        saturated_at = None
        for rate in self.sizes.rates:
            if saturated_at is not None:
                rows.append({"rate": rate, "skipped": f"saturated at {saturated_at}/s, where "
                                                     f"the queue grows with the window "
                                                     f"(--all-rates runs them)"})
                continue
            n = max(1, round(rate * self.sizes.window))
            self.log(f"open loop (a) {rate}/s for {self.sizes.window:g} s ({n} needs)")
            ids = self.next_ids("L", n)
            intended = self.open_loop(rate, lambda k, i: (
                self.publisher.publish("relief.intake", "need_posted",
                                       self.need_event(k, i))), ids)
            self.wait_seen(self.probe, "assigned", set(ids), self.sizes.drain_limit)
            got = self.probe.times("assigned", ids)
            waits = [got[k] - intended[k] if k in got else float("inf") for k in ids]
            row = {"rate": rate, "window": self.sizes.window, "sent": n, "assigned": len(got),
                   "p50": percentile(waits, 50), "p95": percentile(waits, 95),
                   "p99": percentile(waits, 99), "load": load1()}
            if len(got) < n and not self.sizes.all_rates:
                saturated_at = rate
            self.wait_seen(self.probe, "fulfilled", set(ids), self.sizes.burst_timeout,
                           self.sizes.stall)
            self.settle()
            m = max(1, round(rate * self.sizes.chain_window))
            self.log(f"open loop (b) {rate}/s for {self.sizes.chain_window:g} s ({m} events)")
            keys = self.chain_keys(m)
            intended = self.open_loop(rate, lambda k, i: (
                self.chain_publisher.publish(f"{CHAIN_SOURCE}.events", "ping", {"i": k})),
                keys)
            self.wait_seen(self.chain_probe, "done", set(keys), self.sizes.drain_limit)
            got_b = self.chain_probe.times("done", keys)
            waits_b = [got_b[k] - intended[k] if k in got_b else float("inf") for k in keys]
            row.update({"b_sent": m, "b_p50": percentile(waits_b, 50),
                        "b_p95": percentile(waits_b, 95), "b_p99": percentile(waits_b, 99),
                        "b_load": load1()})
            rows.append(row)
        return rows

    # -- what the burst left behind -----------------------------------------------------------
    def dead_letters(self) -> int:
        return sum(self.queues.depths(self.dead_letter_queues).values())

    def dead_letter_detail(self) -> dict[str, dict[str, Any]]:
        """Each dead-letter queue holding messages: how many, and the first one's reason."""
        out = {}
        for name, count in self.queues.depths(self.dead_letter_queues).items():
            if count:
                out[name] = {"messages": count, "reason": self.queues.first_reason(name)}
        return out

    def fulfilled_in_matching(self, ids: list[str]) -> int:
        needs = self.client[f"{self.space.db_prefix}matching"].needs
        count = 0
        for i in range(0, len(ids), 1000):
            count += needs.count_documents({"_id": {"$in": ids[i:i + 1000]},
                                            "status": "fulfilled"})
        return count

    def needs_stored(self) -> int:
        return self.client[f"{self.space.db_prefix}matching"].needs.estimated_document_count()

    # -- stored and open needs ----------------------------------------------------------------
    def reach_level(self, level: Level) -> None:
        if level.stored > self.stored:
            self.add_needs("stored", level.stored - self.stored)
            self.stored = level.stored
        if level.open_in_category > self.open:
            self.add_needs("open", level.open_in_category - self.open)
            self.open = level.open_in_category
        level.results["idle_cores"] = self.measure_idle()
        self.settle()

    def add_needs(self, kind: str, n: int) -> None:
        self.log(f"adding {n:,} {kind} needs ({self.args.store_via})")
        t0 = time.perf_counter()
        if self.args.store_via == "pipeline":
            self._add_via_pipeline(kind, n)
        else:
            self._add_copies(kind, n)
        self.log(f"added {n:,} {kind} needs in {time.perf_counter() - t0:.0f} s")

    def _add_via_pipeline(self, kind: str, n: int) -> None:
        needs = self.client[f"{self.space.db_prefix}matching"].needs
        for i in range(0, n, 1000):
            batch = self.next_ids("S" if kind == "stored" else "O", min(1000, n - i))
            if kind == "stored":
                self.post_needs(batch)
                self.wait_seen(self.probe, "fulfilled", set(batch), 3600, stall=300)
            else:
                for j, need_id in enumerate(batch):
                    self.publisher.publish("relief.intake", "need_posted", self.need_event(
                        need_id, j, community=self.dry[j % len(self.dry)], urgency="low"))
                deadline = time.monotonic() + 3600
                while needs.count_documents({"_id": {"$in": batch}}) < len(batch):
                    if time.monotonic() > deadline:
                        raise RuntimeError("open needs not recorded within an hour")
                    time.sleep(1)

    def _service_databases(self) -> list[str]:
        return [d for d in self.client.list_database_names()
                if d.startswith(self.space.db_prefix)]

    def _all_ids(self) -> dict[tuple[str, str], set[Any]]:
        out = {}
        for db in self._service_databases():
            for coll in self.client[db].list_collection_names():
                out[(db, coll)] = {d["_id"] for d in self.client[db][coll].find({}, {"_id": 1})}
        return out

    def make_templates(self) -> None:
        """One real need of each kind, posted into a quiet system one after the other; the
        documents each adds are what its copies are made of."""
        for kind, need_id, community, urgency in (
                ("stored", "TPL-FULFILLED", None, "normal"),
                ("open", "TPL-OPEN", self.dry[0], "low")):
            self.settle()
            before = self._all_ids()
            self.publisher.publish("relief.intake", "need_posted", self.need_event(
                need_id, 0, community=community, urgency=urgency))
            needs = self.client[f"{self.space.db_prefix}matching"].needs
            deadline = time.monotonic() + 120
            while needs.count_documents({"_id": need_id}) < 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            if kind == "stored":
                self.wait_seen(self.probe, "fulfilled", {need_id}, 120)
            self.settle()
            self._wait_messages_delivered()
            docs = []
            for db in self._service_databases():
                for coll in self.client[db].list_collection_names():
                    if coll in ("outbox", "redeliveries"):
                        continue  # work still to do, or the record of a retry: never copied
                    known = before.get((db, coll), set())
                    for doc in self.client[db][coll].find({}):
                        if doc["_id"] in known or self._pending_message(coll, doc):
                            continue
                        # a document no copy would give a new id (the poster's recipient
                        # record) is shared by every need: it exists once already
                        if _copy(doc, need_id, "X")["_id"] != doc["_id"]:
                            docs.append((db, coll, doc))
            self.templates[kind] = docs
            where = sorted({f"{db[len(self.space.db_prefix):]}.{coll}" for db, coll, _ in docs})
            self.log(f"the {kind} template need left {len(docs)} documents: "
                     f"{', '.join(where)}")

    def _wait_messages_delivered(self, timeout: float = 150) -> None:
        """Notifications holds a second message to the same person for its digest window:
        wait until nothing the templates caused is still to be sent."""
        db = self.client[f"{self.space.db_prefix}notifications"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(self._pending_message("messages", m) for m in db.messages.find({})):
                return
            time.sleep(2)
        self.notes.append("some template messages were still pending; they were not copied")

    @staticmethod
    def _pending_message(coll: str, doc: dict[str, Any]) -> bool:
        try:
            from services.notifications.store import PENDING
        except ImportError:
            PENDING = ("queued", "failed")  # noqa: N806
        return coll == "messages" and doc.get("state") in PENDING

    def _add_copies(self, kind: str, n: int) -> None:
        if not self.templates:
            self.make_templates()
        template = self.templates[kind]
        token = "TPL-FULFILLED" if kind == "stored" else "TPL-OPEN"
        batch: dict[tuple[str, str], list[dict[str, Any]]] = {}
        pending = 0
        for done, need_id in enumerate(self.next_ids("S" if kind == "stored" else "O", n), 1):
            for db, coll, doc in template:
                batch.setdefault((db, coll), []).append(_copy(doc, token, need_id))
                pending += 1
            if pending >= 5000:
                self._insert(batch)
                batch, pending = {}, 0
            if done % 10000 == 0:
                self.log(f"  {done:,} / {n:,}")
        self._insert(batch)

    def _insert(self, batch: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        from pymongo.errors import BulkWriteError

        for (db, coll), docs in batch.items():
            try:
                self.client[db][coll].insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _copy(doc: Any, token: str, need_id: str) -> Any:
    """The document again for another need: the template's need id replaced, every uuid in
    it (event ids, ids derived from them) replaced by one derived from it and the new need."""
    from bson import ObjectId

    def fresh(match: re.Match[str]) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{match.group(0)}/{need_id}"))

    def walk(value: Any, top: bool = False) -> Any:
        if isinstance(value, str):
            return UUID.sub(fresh, value).replace(token, need_id)
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            if top and isinstance(value.get("_id"), ObjectId):
                out["_id"] = ObjectId()
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(doc, top=True)


# -- the report -----------------------------------------------------------------------------
def table(rows: list[list[str]], indent: str = "  ") -> str:
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs) if runs else float("nan")


def cpu_per(run: dict[str, Any]) -> float:
    return sum(run["cpu_ms"].values()) / run["per"]


def report(level: Level, bench: Bench, sizes: Sizes) -> str:
    r = level.results
    out = [f"== {level.stored:,} needs stored and {level.open_in_category:,} open in "
           f"{CATEGORY} ({bench.args.store_via}); {r['needs_stored_before']:,} needs in "
           f"matching's database before measuring"]

    idle = r.get("idle_cores", {})
    if idle:
        busiest = sorted(idle.items(), key=lambda kv: -kv[1])[:3]
        out.append(f"idle before measuring (no work queued): {sum(idle.values()):.2f} cores "
                   f"in all; " + ", ".join(f"{k} {v:.2f}" for k, v in busiest))

    t = r["throughput"]
    a, b = t["a"], t["b"]
    a_rate, b_rate = median_of(a, "per_s"), median_of(b, "per_s")
    ratio = a_rate / b_rate if b_rate else float("nan")
    r["summary"] = {"a_per_s": a_rate, "b_per_s": b_rate, "ratio": ratio}
    out.append(f"\nthroughput, bursts of {sizes.rep_needs} needs (a) and {sizes.rep_events} "
               f"events (b), interleaved a,b x{len(a)}; median")
    rows = [["figure", "a pipeline", "b bare chain", "a/b", "load 1m"],
            ["throughput (per s)", fmt_rate(a_rate), fmt_rate(b_rate), f"{ratio:.3f}",
             f"{statistics.median(x['load'] for x in a + b):.2f}"],
            ["each rep (per s)", " ".join(fmt_rate(x["per_s"]) for x in a),
             " ".join(fmt_rate(x["per_s"]) for x in b), "", ""],
            ["load 1m, each rep", " ".join(f"{x['load']:.1f}" for x in a),
             " ".join(f"{x['load']:.1f}" for x in b), "", ""],
            ["CPU-ms per need / event", f"{statistics.median(map(cpu_per, a)):.1f}",
             f"{statistics.median(map(cpu_per, b)):.2f}",
             f"{statistics.median(map(cpu_per, a)) / statistics.median(map(cpu_per, b)):.0f}x",
             ""],
            ["not completed (of all reps)", str(sum(x["needs"] - x["seen"] for x in a)),
             str(sum(x["events"] - x["seen"] for x in b)), "", ""]]
    out.append(table(rows))

    out.append(f"\ntime to assignment, open loop ({sizes.window:g} s per rate for (a), "
               f"{sizes.chain_window:g} s for (b)); ms from publish to first assignment_made "
               f"on a probe (b: through both hops)")
    rows = [["rate/s", "sent", "assigned", "p50", "p95", "p99", "load 1m", "b p50", "b p95",
             "b p99", "b load"]]
    skipped = [row for row in r["latency"] if "skipped" in row]
    for row in r["latency"]:
        if "skipped" in row:
            rows.append([str(row["rate"]), "-", "-", "-", "-", "-", "", "-", "-", "-", ""])
            continue
        rows.append([str(row["rate"]), str(row["sent"]), str(row["assigned"]),
                     fmt_ms(row["p50"]), fmt_ms(row["p95"]), fmt_ms(row["p99"]),
                     f"{row['load']:.2f}", fmt_ms(row["b_p50"]), fmt_ms(row["b_p95"]),
                     fmt_ms(row["b_p99"]), f"{row['b_load']:.2f}"])
    out.append(table(rows))
    if skipped:
        out.append(f"  rates {', '.join(str(row['rate']) for row in skipped)}/s skipped: "
                   f"{skipped[0]['skipped']}")
    if any(row.get("assigned", 0) < row.get("sent", 0) for row in r["latency"]):
        out.append(f"  (a need not assigned within {sizes.drain_limit:g} s of its window's "
                   f"end counts as never)")

    burst = r["burst"]
    state = "" if burst["complete"] else (
        f" - NOT drained: {burst['seen']} of {burst['needs']} fulfilled when it stopped "
        f"(limit {sizes.burst_timeout:g} s, or nothing new for {sizes.stall:g} s)")
    out.append(f"\nburst of {burst['needs']:,} needs{state}")
    rows = [["figure", "value", "load 1m"],
            ["drain: all fulfilled (s)", f"{burst['elapsed_s']:.1f}", f"{burst['load']:.2f}"],
            ["needs fulfilled per s", fmt_rate(burst["per_s"]), ""],
            ["settled: every queue empty, idle again (s)",
             f"{burst['settled_s']:.1f}" if burst["settled_s"] is not None
             else f"not within {sizes.settle_timeout:g} s", ""],
            ["lost (not fulfilled in matching)", str(burst["lost"]), ""],
            ["dead-lettered (dlq.*, relief.intake.dlq)", str(burst["dead_lettered"]), ""]]
    out.append(table(rows))
    for name, d in burst.get("dead_letters", {}).items():
        out.append(f"  {name}: {d['messages']} (first: {d['reason']})")

    cpu = burst["cpu_ms"]
    total = sum(cpu.values())
    out.append(f"\nCPU-ms per need in the burst, by process (per {burst['per']:,} needs "
               f"fulfilled; includes each process's idle timers; load 1m {burst['load']:.2f})")
    rows = [["process", "CPU-ms/need", "share"]]
    for name, ms in sorted(cpu.items(), key=lambda kv: -kv[1]):
        rows.append([name, f"{ms / burst['per']:.1f}", f"{ms / total:.0%}" if total else "-"])
    rows.append(["total", f"{total / burst['per']:.1f}", ""])
    out.append(table(rows))
    bare = r["throughput"]["b"]
    if bare:
        b_cpu = {k: statistics.median(x["cpu_ms"][k] / x["per"] for x in bare)
                 for k in bare[0]["cpu_ms"]}
        out.append("  bare chain, CPU-ms per event: " + ", ".join(
            f"{k} {v:.2f}" for k, v in b_cpu.items()) + f"; total {sum(b_cpu.values()):.2f}")

    if burst.get("on_call"):
        out.append("  on-call reads during the burst (one after another): " + "; ".join(
            f"{path} {w['reads']} reads, p50 {fmt_ms(w['p50_s'])} ms, max {fmt_ms(w['max_s'])} ms"
            + (f", {w['failed']} failed" if w["failed"] else "")
            for path, w in burst["on_call"].items()))
    sizes = {k: (n, e) for k, (n, e) in burst.get("batches", {}).items() if n}
    if sizes:
        out.append("  events per committed batch in the burst: " + ", ".join(
            f"{k} {e / n:.1f} ({int(n)} batches)" for k, (n, e) in sorted(sizes.items())))
    db = burst["db"]
    ops, by_service = db["ops"], db["by_service"]
    per = burst["per"]
    out.append(f"\ndatabase requests per need in the burst (the server's serverStatus "
               f"opcounters; by service from its top counters; load 1m {burst['load']:.2f})")
    if ops:
        total_ops = sum(ops.values())
        rows = [["kind", "requests/need"]]
        rows += [[k, f"{v / per:.1f}"] for k, v in sorted(ops.items(), key=lambda kv: -kv[1])]
        rows.append(["total", f"{total_ops / per:.1f}"])
        out.append(table(rows))
        if by_service:
            named = sum(by_service.values())
            rows = [["service", "requests/need"]]
            rows += [[k, f"{v / per:.1f}"] for k, v in
                     sorted(by_service.items(), key=lambda kv: -kv[1]) if v]
            rows.append(["not tied to a collection (transactions, sessions, hello)",
                         f"{(total_ops - named) / per:.1f}"])
            out.append(table(rows))
            busiest = sorted(db.get("by_collection", {}).items(), key=lambda kv: -kv[1])[:12]
            rows = [["collection", "requests/need"]]
            rows += [[k, f"{v / per:.2f}"] for k, v in busiest if v]
            out.append(table(rows))
        r["summary"]["db_requests_per_need"] = total_ops / per
    else:
        out.append(f"  not available from this server: {bench.counters.note}")
    r["summary"].update({"on_call_max_s": max(
                             (w["max_s"] for w in (burst.get("on_call") or {}).values()
                              if w["reads"]), default=None),
                         "burst_per_s": burst["per_s"], "burst_drain_s": burst["elapsed_s"],
                         "cpu_ms_per_need": total / per,
                         "p99_at_50": next((x["p99"] for x in r["latency"]
                                            if x.get("rate") == 50 and "p99" in x), None)})
    return "\n".join(out)


def targets(levels: list[Level], burst: int) -> str:
    first = levels[0].results["summary"]
    lines = ["\ntargets (issue 12; quiet machine, ratios within one run)"]

    def mark(ok: bool, resolve: bool) -> str:
        return "met" if ok else ("resolve threshold met" if resolve else "not met")

    ratio = first["ratio"]
    lines.append(f"  throughput a/b >= 0.40 (to resolve 0.20): {ratio:.3f} - "
                 f"{mark(ratio >= 0.40, ratio >= 0.20)}")
    p99 = first.get("p99_at_50")
    if p99 is None:
        lines.append("  p99 time to assignment at 50 needs/s: not measured (rate skipped or "
                     "not asked for)")
    else:
        got = "not every need assigned in time" if p99 == float("inf") else f"{fmt_ms(p99)} ms"
        lines.append(f"  p99 at 50 needs/s <= 50 ms (to resolve 250 ms): {got} - "
                     f"{mark(p99 <= 0.05, p99 <= 0.25)}")
    b = levels[0].results["burst"]
    drain = b["elapsed_s"] if b["complete"] else float("inf")
    if burst >= 10_000:
        lines.append(f"  10,000-need burst drains <= 120 s (to resolve 240 s), 0 lost, 0 "
                     f"dead-lettered: {drain:.0f} s, {b['lost']} lost, {b['dead_lettered']} "
                     f"dead-lettered - {mark(drain <= 120, drain <= 240)}")
    else:
        at = 10_000 / b["per_s"] if b["per_s"] else float("inf")
        lines.append(f"  10,000-need burst <= 120 s: this run's {burst:,} burst at "
                     f"{fmt_rate(b['per_s'])} needs/s would take ~{at:,.0f} s "
                     f"(run --burst 10000 to measure)")
    slowest = first.get("on_call_max_s")
    if slowest is not None:
        lines.append(f"  on-call reads answer within 1 s during the burst: slowest "
                     f"{fmt_ms(slowest)} ms - {mark(slowest <= 1.0, slowest <= 1.0)}")
    by_stored = {lv.stored: lv.results["summary"]["a_per_s"] for lv in levels}
    if 1000 in by_stored and 100_000 in by_stored and by_stored[1000]:
        share = by_stored[100_000] / by_stored[1000]
        lines.append(f"  throughput at 100k stored >= 80% of 1k: {share:.0%} - "
                     f"{mark(share >= 0.8, share >= 0.8)}")
    else:
        lines.append("  throughput at 100k stored vs 1k: run --stored 1000,100000")
    return "\n".join(lines)


def summary(levels: list[Level]) -> str:
    rows = [["stored", "open", "a/s", "b/s", "a/b", "p99@50 ms", "burst/s", "CPU-ms/need",
             "db req/need"]]
    for lv in levels:
        s = lv.results["summary"]
        rows.append([f"{lv.stored:,}", f"{lv.open_in_category:,}", fmt_rate(s["a_per_s"]),
                     fmt_rate(s["b_per_s"]), f"{s['ratio']:.3f}",
                     fmt_ms(s["p99_at_50"]) if s.get("p99_at_50") is not None else "-",
                     fmt_rate(s["burst_per_s"]), f"{s['cpu_ms_per_need']:.1f}",
                     f"{s.get('db_requests_per_need', float('nan')):.1f}"])
    return "\nby level\n" + table(rows)


# -- main -----------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    return [int(x.replace("_", "").replace("k", "000")) for x in text.split(",") if x]


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Sizes, list[Level]]:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--burst", type=int, default=None, help="needs in the burst (default 1000)")
    p.add_argument("--stored", type=int_list, default=[0],
                   help="needs stored before measuring; a list (1000,10000,100000) measures "
                        "at each")
    p.add_argument("--open-in-category", type=int_list, default=[0],
                   help=f"needs left open in {CATEGORY} (no stock can reach them); a list "
                        f"(100,10000) measures at each")
    p.add_argument("--store-via", choices=("copies", "pipeline"), default="copies",
                   help="how stored and open needs are made (default: copies of a real "
                        "need's documents)")
    p.add_argument("--reps", type=int, default=None, help="throughput repetitions (default 3)")
    p.add_argument("--rep-needs", type=int, default=None,
                   help="needs per throughput burst of (a) (default 200)")
    p.add_argument("--rep-events", type=int, default=None,
                   help="events per throughput burst of (b) (default 3000)")
    p.add_argument("--rates", type=int_list, default=None,
                   help="open-loop rates, needs/s (default 10,25,50,100)")
    p.add_argument("--window", type=float, default=None,
                   help="seconds of publishing per open-loop rate (default 10)")
    p.add_argument("--burst-timeout", type=float, default=None,
                   help="seconds a burst may take before it is reported as not drained "
                        "(default 420)")
    p.add_argument("--all-rates", action="store_true",
                   help="run every open-loop rate even above the first that saturates")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's run)")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    args = p.parse_args(argv)
    quick = args.quick
    sizes = Sizes(
        rep_needs=args.rep_needs or (5 if quick else 200),
        rep_events=args.rep_events or (100 if quick else 3000),
        rates=tuple(args.rates or DEFAULT_RATES),
        window=args.window or (0.2 if quick else 10.0),
        chain_window=min(args.window or (0.2 if quick else 5.0), 5.0),
        burst=args.burst or (10 if quick else 1000),
        burst_timeout=args.burst_timeout or (60 if quick else 420),
        stall=20 if quick else 60,
        settle_timeout=30 if quick else 120,
        drain_limit=10 if quick else 30,
        settle_step=0.5 if quick else 1.0,
        idle_seconds=2.0 if quick else 10.0,
        all_rates=args.all_rates)
    args.reps = args.reps or (1 if quick else 3)
    if len(args.stored) > 1 and len(args.open_in_category) > 1:
        p.error("vary one of --stored and --open-in-category at a time")
    stored, opened = sorted(args.stored), sorted(args.open_in_category)
    levels = [Level(s, o) for s in stored for o in opened]
    return args, sizes, levels


def main(argv: list[str] | None = None) -> int:
    args, sizes, levels = parse(argv)
    bench = Bench(args, sizes)
    started = datetime.now(UTC)
    wall = time.perf_counter()
    try:
        bench.start()
        bench.load_supply()
        bench.warm_up()
        for level in levels:
            bench.reach_level(level)
            level.results["needs_stored_before"] = bench.needs_stored()
            level.results["throughput"] = bench.throughput()
            level.results["latency"] = bench.latency()
            bench.log(f"burst of {sizes.burst} needs")
            level.results["burst"] = bench.pipeline_burst(sizes.burst, sizes.burst_timeout,
                                                          sizes.stall)
    except KeyboardInterrupt:
        bench.log("interrupted")
        return 130
    finally:
        bench.stop()
    print(f"Relief Exchange pipeline benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} "
          f"cores, {time.perf_counter() - wall:.0f} s in all")
    print("(a) pipeline: publisher (confirms) -> relief.intake -> intake -> matching -> "
          "assignment_made -> notifications, donations, accounting; done = need_fulfilled on "
          "a probe queue")
    print("(b) bare nameko chain, same broker: publisher (confirms) -> hop A -> hop B; done = "
          "hop B's event on a probe queue")
    print(f"stock loaded beforehand in {len(bench.supplied)} communities, every need can be "
          f"met; needs of {NEED_QUANTITY} {UNIT} of {CATEGORY}; {len(bench.supplied)} posters")
    for level in levels:
        print()
        print(report(level, bench, sizes))
    if len(levels) > 1:
        print(summary(levels))
    print(targets(levels, sizes.burst))
    for note in bench.notes + ([bench.counters.note] if bench.counters.note else []):
        print(f"note: {note}")
    if args.json:
        args.json.write_text(json.dumps(
            [{"stored": lv.stored, "open_in_category": lv.open_in_category, **lv.results}
             for lv in levels], default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
