"""Surge drill: a burst of needs against a running system, with on-call reads timed and the
services' figures compared.

Run from a clone where ``make run`` runs: ``.venv/bin/python bench/surge.py [--needs N]``.
What it checks is the throughput issue's "done": N needs (10,000 by default) and the supply
that meets them published through ``relief.intake``; ``relief-ops status`` answers in under
a second throughout, the dashboard keeps answering, every need is fulfilled within the
target (4 minutes for 10,000, in proportion for other N, at least 30 s), and donations',
accounting's and matching's figures agree.

1. **Supply.** One lot per community, as big as the needs posted there ask (so the run
   leaves no stock behind), published as ``donation_received`` through ``relief.intake``
   as the partner publisher ``partner-demo`` (its password from ``.local/broker_users.json``;
   without one, as the ``--amqp`` user). Communities holding stock of the category, or with
   an open need of it that could take the run's stock, are left out. It waits until
   matching counts the stock (the dashboard's supply figure).
2. **Needs.** N ``need_posted`` events over one confirmed channel, spread over those
   communities (bench/pipeline.py's need events: its urgencies, one poster per community).
   Every id carries the run id, and needs and lots name the run as their programme
   (``surge <run id>``), so a second run on the same system counts only its own.
3. **While they are worked**, one thread runs ``relief-ops status --json`` and another reads
   ``GET /api/dashboard``, each every ``--read-every`` seconds (2: more often than the
   page refreshes or ``relief-ops status --watch``); each answer is timed. An answer that
   takes ``--max-answer`` seconds (1) or more, or says it could not read a source, fails
   the drill. Fulfilment is seen on a probe queue bound to matching's ``need_fulfilled``.
4. **Figures**, for this run only, once donations and accounting have caught up (at most
   ``--settle`` seconds): matching's needs (``GET /api/needs/<id>`` for each: fulfilled,
   and quantity assigned from the run's lots), donations' lots (``GET /api/lots?programme=``:
   taken, left), accounting's ledger (``GET /api/ledger/report?by=programme``: received,
   allocated, their values) and ``GET /api/reconciliation`` at the run's warehouses; and
   no new message in any dead-letter queue (``dlq.*``, ``relief.intake.dlq``) nor in
   ``relief.unroutable`` (exact depths, before and after).

Every default is what ``make run`` leaves: the gateway on 8000, the broker on 5672 and its
management API on 15672 (``GATEWAY_PORT``, ``AMQP_PORT``, ``MANAGEMENT_PORT`` if set, as
``make run`` reads them), guest as the broker's administrator, the operator token from
``RELIEF_ADMIN_TOKEN`` or ``.local/admin_token`` (of the current directory if it has a
``.local``, else of this clone; ``--root`` names another). Each has its flag.

Exit status: 0 every check held; 1 a check failed (each is named); 2 the drill could not run
(bad arguments, the system unreachable, a credential refused). Progress goes to stderr,
the report to stdout; every timing is printed with the 1-minute load average beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")

import requests  # noqa: E402

from bench.pipeline import (  # noqa: E402
    CATEGORY,
    NEED_QUANTITY,
    Bench,
    Probe,
    Publisher,
    Queues,
    fmt_ms,
    fmt_rate,
    is_dead_letter_queue,
    load1,
    need_id_of,
    percentile,
    table,
)
from services.ops.cli import redact_uri  # noqa: E402

OK, FAILED, CANNOT_RUN = 0, 1, 2
TARGET_NEEDS, TARGET_SECONDS, MIN_TIMEOUT = 10_000, 240.0, 30.0
INTAKE = "relief.intake"
UNROUTABLE = "relief.unroutable"
DEFAULT_PUBLISHER = "partner-demo"
PAGE = 200  # the largest page a list answers
READ_TIMEOUT = 30.0  # an on-call read that takes longer counts as no answer
QUANTITY_MAX = 1e9  # the contract's bound on a quantity (one lot)
# one read of each kind every this many seconds (start to start; at once after a slower
# answer): more often than the dashboard page refreshes (every 10 s, 2 s at the least) or
# `relief-ops status --watch` (5 s), without the readers taking a core of their own
READ_EVERY = 2.0
NEED_READERS = 4  # GETs of single needs at a time, once the run is over


class DrillError(Exception):
    """The drill cannot run (said as it is, exit 2)."""


class Answered(DrillError):
    """The gateway answered something else than 200 (``status``)."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


class ReadFailed(Exception):
    """An on-call read that got no answer, or one saying a source could not be read."""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- where the system is ----------------------------------------------------------------------
@dataclass
class Target:
    api: str
    token: str
    admin_uri: str  # the broker as its administrator, in the vhost: depths, probe, relief-ops
    management: str
    publish_uri: str
    publisher: str
    state: Path | None  # the .local/ the defaults came from


def with_vhost(uri: str, vhost: str) -> str:
    return urlunsplit(urlsplit(uri)._replace(path="/" + quote(vhost, safe="")))


def with_user(uri: str, user: str, password: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (
        f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def vhost_of(uri: str) -> str:
    return unquote(urlsplit(uri).path[1:]) or "/"


def user_of(uri: str) -> str:
    return unquote(urlsplit(uri).username or "guest")


def state_dir(root: Path | None) -> Path:
    if root is not None:
        return root / ".local"
    here = Path.cwd() / ".local"
    return here if here.is_dir() else ROOT / ".local"


def read_token(args: argparse.Namespace, state: Path) -> str:
    token = args.token or os.environ.get("RELIEF_ADMIN_TOKEN", "").strip()
    if not token:
        try:
            token = (state / "admin_token").read_text(encoding="utf-8").strip()
        except OSError:
            token = ""
    if not token:
        raise DrillError(f"no operator token: give --token, or set RELIEF_ADMIN_TOKEN, or run "
                         f"where make run wrote {state / 'admin_token'} (--root)")
    return token


def publishers(state: Path) -> dict[str, str]:
    """The partner publishers' passwords make run generated (none when it did not)."""
    try:
        known = json.loads((state / "broker_users.json").read_text(encoding="utf-8"))
    except OSError:
        return {}
    except ValueError as exc:
        raise DrillError(f"{state / 'broker_users.json'} is not JSON ({exc})") from None
    found = known.get("publishers") if isinstance(known, dict) else None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def publish_as(args: argparse.Namespace, admin_uri: str, state: Path) -> tuple[str, str]:
    """(URI, user) to publish with: the partner publisher when known, else the admin."""
    passwords = publishers(state)
    name = args.publisher or (DEFAULT_PUBLISHER if DEFAULT_PUBLISHER in passwords else None)
    if name is None or name == user_of(admin_uri):
        return admin_uri, user_of(admin_uri)
    password = args.publisher_password or passwords.get(name)
    if password is None:
        raise DrillError(f"no password for publisher {name!r}: give --publisher-password, or "
                         f"run where make run wrote it ({state / 'broker_users.json'})")
    return with_user(admin_uri, name, password), name


def resolve(args: argparse.Namespace) -> Target:
    state = state_dir(args.root)
    admin = with_vhost(args.amqp, args.vhost or vhost_of(args.amqp))
    uri, user = publish_as(args, admin, state)
    return Target(api=args.api.rstrip("/"), token=read_token(args, state), admin_uri=admin,
                  management=args.management, publish_uri=uri, publisher=user,
                  state=state if state.is_dir() else None)


# -- the gateway ------------------------------------------------------------------------------
class Gateway:
    """GETs with the operator token; whatever is not a 200 is said as a DrillError."""

    def __init__(self, api: str, token: str):
        self.api, self.token = api, token
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, timeout: float = 60.0, **params: Any) -> Any:
        try:
            answer = self.session.get(self.api + path, params=params, timeout=timeout)
        except requests.RequestException as exc:
            raise DrillError(f"no answer from the gateway at {self.api} for GET {path} "
                             f"({type(exc).__name__}); is make run running? (--api)") from None
        if answer.status_code == 200:
            return answer.json()
        detail = _error_of(answer)
        if answer.status_code == 401:
            raise DrillError(f"the gateway at {self.api} refused the token (401: {detail}); "
                             f"give the operator token with --token (make run writes it to "
                             f".local/admin_token)")
        raise Answered(answer.status_code, f"GET {path} answered {answer.status_code}: {detail}")

    def need(self, need_id: str) -> dict[str, Any] | None:
        """One need as matching has it (None: matching has none of that id)."""
        try:
            return self.get(f"/api/needs/{quote(need_id, safe='')}")
        except Answered as exc:
            if exc.status == 404:
                return None
            raise

    def items(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list, a page at a time."""
        after = None
        while True:
            page = self.get(path, limit=PAGE, after=after, **params)
            yield from page["items"]
            after = page.get("next")
            if not after:
                return


def _error_of(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("error", ""))[:300]
    except (ValueError, AttributeError):
        return answer.text[:300]


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Run:
    run_id: str
    category: str
    unit: str
    quantity: float
    needs: int
    communities: list[str]  # need i is posted in communities[i % len]

    @property
    def programme(self) -> str:
        return f"surge {self.run_id}"

    @property
    def total(self) -> float:
        return self.needs * self.quantity

    def need_ids(self) -> list[str]:
        return [f"SURGE-{self.run_id}-N{i:06d}" for i in range(self.needs)]

    def lot_id(self, community: str) -> str:
        return f"SURGE-{self.run_id}-{community}"

    def lots(self) -> dict[str, float]:
        """Each community's lot: what its needs ask, exactly."""
        k = len(self.communities)
        return {c: (self.needs // k + (1 if i < self.needs % k else 0)) * self.quantity
                for i, c in enumerate(self.communities)}


def goods_unit(gateway: Gateway, category: str) -> str:
    found = {c["id"]: c for c in gateway.get("/api/categories")["categories"]}
    if category not in found:
        raise DrillError(f"no category {category!r}; the system knows "
                         f"{', '.join(sorted(found))}")
    if found[category]["kind"] != "goods":
        raise DrillError(f"{category!r} is a {found[category]['kind']} category; the drill "
                         f"posts goods (--category)")
    return found[category]["unit"]


def communities(gateway: Gateway) -> dict[str, str]:
    """Every community and its street, from the gateway's area tree."""
    out: dict[str, str] = {}

    def walk(node: dict[str, Any], parent: str | None) -> None:
        if node["tier"] == "community" and parent:
            out[node["id"]] = parent
        for child in node.get("children", []):
            walk(child, node["id"])

    for root in gateway.get("/api/areas")["areas"]:
        walk(root, None)
    return out


def eligible(gateway: Gateway, category: str) -> list[str]:
    """Communities where the run's needs can only take the run's lot: none holds stock of
    the category, and no open need of it (in the community, escalated to its street, or
    to the district) could take the run's stock instead."""
    streets = communities(gateway)
    stocked = {lot["location_id"] for lot in gateway.get("/api/stock", category=category)["lots"]
               if lot["available"] > 0}
    busy: set[str] = set()
    district: list[str] = []
    for status in ("open", "partial"):  # a list of open needs of one category is indexed
        for need in gateway.items("/api/needs", category=category, status=status):
            tier, where = need.get("tier", "community"), need["community_id"]
            if tier == "district":
                district.append(need["need_id"])
            elif tier == "street":
                busy |= {c for c, s in streets.items() if s == streets.get(where)}
            else:
                busy.add(where)
    if district:
        raise DrillError(f"{len(district)} open {category} need(s) escalated to the district "
                         f"(e.g. {district[0]}) could take any stock of the run: choose "
                         f"another --category")
    chosen = sorted(set(streets) - stocked - busy)
    if not chosen:
        raise DrillError(f"every community holds {category} stock or has an open {category} "
                         f"need: choose another --category")
    return chosen


def plan(gateway: Gateway, args: argparse.Namespace) -> Run:
    unit = goods_unit(gateway, args.category)
    chosen = eligible(gateway, args.category)[:args.needs]
    run_id = f"{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    run = Run(run_id, args.category, unit, args.quantity, args.needs, chosen)
    biggest = max(run.lots().values())
    if biggest > QUANTITY_MAX:
        raise DrillError(f"one lot would hold {biggest:,.0f} {unit}, over the contract's "
                         f"{QUANTITY_MAX:,.0f}: fewer --needs or a smaller --quantity")
    return run


# -- publishing -------------------------------------------------------------------------------
class PartnerPublisher(Publisher):
    """bench/pipeline.py's confirmed publisher, as a partner system publishes: its broker
    user in each message's ``user_id`` (the broker refuses any other), which intake records
    as the event's source."""

    def __init__(self, amqp_uri: str):
        super().__init__(amqp_uri)
        self.user = user_of(amqp_uri)

    def publish(self, exchange: str, routing_key: str, body: dict[str, Any]) -> None:
        self.ch.basic_publish(exchange, routing_key, json.dumps(body).encode(),
                              self.pika.BasicProperties(content_type="application/json",
                                                        delivery_mode=2, user_id=self.user))


class NeedPoster(Bench):
    """bench/pipeline.py's need events and their publishing (``need_event``,
    ``post_needs``), aimed at a running system: only what those two read is set here
    (``Bench.__init__`` prepares a system of its own). Each need is the run's: its
    category, quantity and programme, the publisher as its source."""

    def __init__(self, publisher: PartnerPublisher, run: Run):
        self.publisher = publisher
        self.supplied = run.communities
        self.run = run

    def need_event(self, need_id: str, i: int, community: str | None = None,
                   urgency: str | None = None) -> dict[str, Any]:
        event = super().need_event(need_id, i, community, urgency)
        event["data"].update(category=self.run.category, unit=self.run.unit,
                             quantity=self.run.quantity, programme=self.run.programme)
        event["source"] = self.publisher.user
        return event

    def donation_event(self, community: str, quantity: float) -> dict[str, Any]:
        """One lot for ``community``, shaped as bench/pipeline.py's ``load_supply`` makes
        them."""
        from tests.support import envelope

        return envelope("donation_received", {
            "donation_id": self.run.lot_id(community), "location_id": community,
            "donor": {"name": "成都启毅农业科技有限公司", "kind": "company"},
            "category": self.run.category, "quantity": quantity, "unit": self.run.unit,
            "value_yuan": round(quantity * 0.5, 2), "programme": self.run.programme},
            source=self.publisher.user)

    def post_supply(self) -> None:
        for community, quantity in self.run.lots().items():
            self.publisher.publish(INTAKE, "donation_received",
                                   self.donation_event(community, quantity))


def connect(uri: str, what: str) -> PartnerPublisher:
    try:
        return PartnerPublisher(uri)
    except Exception as exc:  # noqa: BLE001 - refused, unreachable: said as it is
        raise DrillError(f"cannot connect to the broker as {user_of(uri)} ({what}) at "
                         f"{redact_uri(uri)}: {type(exc).__name__} {exc}".rstrip()) from None


def matching_supply(gateway: Gateway, category: str) -> float:
    """What matching counts as available in ``category`` (the dashboard's supply figure)."""
    supply = (gateway.get("/api/dashboard").get("needs") or {}).get("supply") or []
    return sum(s["available"] for s in supply if s["category"] == category)


# -- dead letters -----------------------------------------------------------------------------
class DeadLetters:
    """Exact depths (bench/pipeline.py's ``Queues``: passive declares) of every dead-letter
    queue and of ``relief.unroutable``, their names from the management API."""

    def __init__(self, target: Target):
        from services.common.management import Management

        self.management = Management(target.management, target.admin_uri)
        try:
            self.names = [q["name"] for q in self.management.queues()
                          if is_dead_letter_queue(q["name"]) or q["name"] == UNROUTABLE]
        except requests.RequestException as exc:
            raise DrillError(f"the broker's management API at {self.management.base} did not "
                             f"list the queues ({type(exc).__name__}: {exc}) (--management, "
                             f"--vhost)") from None
        try:
            self.queues = Queues(target.admin_uri, target.management, vhost_of(target.admin_uri))
        except Exception as exc:  # noqa: BLE001
            raise DrillError(f"cannot connect to the broker at {redact_uri(target.admin_uri)} "
                             f"({type(exc).__name__}) (--amqp)") from None

    def depths(self) -> dict[str, int]:
        return self.queues.depths(self.names)

    def added(self, before: dict[str, int]) -> dict[str, tuple[int, str]]:
        """Queues holding more than before: how many more, and why the first one is there."""
        out = {}
        for name, depth in self.depths().items():
            if depth > before.get(name, 0):
                out[name] = (depth - before.get(name, 0), self.queues.first_reason(name))
        return out

    def close(self) -> None:
        self.queues.close()


# -- on-call reads ----------------------------------------------------------------------------
@dataclass
class Sample:
    seconds: float
    load: float
    error: str | None
    problems: tuple[str, ...]


class Reader(threading.Thread):
    """Calls ``read`` every ``every`` seconds (start to start) until stopped, timing each.
    ``read`` returns the problems the report names (the system's checks: a queue deeper
    than its threshold during a surge is expected) or raises ReadFailed."""

    def __init__(self, label: str, read: Callable[[], list[str]], every: float = READ_EVERY):
        super().__init__(daemon=True, name=label)
        self.label, self.read, self.every = label, read, every
        self.samples: list[Sample] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started, error, problems = time.perf_counter(), None, ()
            try:
                problems = tuple(self.read())
            except ReadFailed as exc:
                error = str(exc)
            took = time.perf_counter() - started
            self.samples.append(Sample(took, load1(), error, problems))
            self.stopping.wait(max(0.0, self.every - took))

    def stop(self) -> None:
        """No read after the one under way (``join`` waits for it)."""
        self.stopping.set()


def report_problems(report: dict[str, Any]) -> list[str]:
    """The problems of a status report; a source it could not read is a failed read."""
    problems = report.get("problems") or []
    unread = [p["message"] for p in problems if p.get("check") == "source"]
    if unread:
        raise ReadFailed("; ".join(unread))
    return [str(p.get("check")) for p in problems]


def ops_command() -> list[str]:
    script = Path(sys.executable).parent / "relief-ops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "services.ops.cli"]


def ops_env(target: Target) -> dict[str, str]:
    """relief-ops finds the system through its environment (the token stays out of ``ps``)."""
    return {**os.environ, "RABBIT_MANAGEMENT_URI": target.management,
            "AMQP_URI": target.admin_uri, "RELIEF_GATEWAY_URL": target.api,
            "RELIEF_ADMIN_TOKEN": target.token, "RELIEF_LANG": "en"}


def ops_status(target: Target) -> Callable[[], list[str]]:
    command, env = [*ops_command(), "status", "--json"], ops_env(target)

    def read() -> list[str]:
        try:
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=READ_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ReadFailed(f"no answer within {READ_TIMEOUT:g} s") from None
        if done.returncode not in (0, 1):  # 1: it answered, naming problems
            last = (done.stderr.strip().splitlines() or [""])[-1]
            raise ReadFailed(f"exit {done.returncode}: {last[:200]}")
        try:
            return report_problems(json.loads(done.stdout))
        except ValueError:
            raise ReadFailed(f"exit {done.returncode} without a JSON report") from None

    return read


def dashboard(target: Target) -> Callable[[], list[str]]:
    session = requests.Session()  # its own: the main thread reads the gateway meanwhile
    session.headers["Authorization"] = f"Bearer {target.token}"

    def read() -> list[str]:
        try:
            answer = session.get(f"{target.api}/api/dashboard", timeout=READ_TIMEOUT)
        except requests.RequestException as exc:
            raise ReadFailed(type(exc).__name__) from None
        if answer.status_code != 200:
            raise ReadFailed(f"HTTP {answer.status_code}: {_error_of(answer)}")
        return report_problems(answer.json())

    return read


def startup_seconds() -> float:
    """relief-ops's own start-up (``--version``, median of three): part of every answer."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([*ops_command(), "--version"], cwd=ROOT, capture_output=True,
                       timeout=READ_TIMEOUT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- waiting ----------------------------------------------------------------------------------
def wait_stock(gateway: Gateway, run: Run, before: float, seconds: float,
               dead: DeadLetters, dead_before: dict[str, int]) -> float:
    """Until matching counts the run's stock; returns how long that took."""
    started = time.perf_counter()
    while matching_supply(gateway, run.category) < before + run.total - 1e-6:
        if time.perf_counter() - started > seconds:
            added = dead.added(dead_before)
            why = "; ".join(f"{q}: +{n} ({reason})" for q, (n, reason) in added.items())
            raise DrillError(f"matching did not count the run's {run.total:,g} {run.unit} of "
                             f"{run.category} within {seconds:g} s (--settle)"
                             + (f"; dead letters: {why}" if why else ""))
        time.sleep(0.5)
    return time.perf_counter() - started


def wait_fulfilled(probe: Probe, ids: list[str], start: float, timeout: float) -> int:
    """Until every need was seen fulfilled or ``timeout`` from ``start``; how many were."""
    wanted, last_said = set(ids), time.perf_counter()
    while (count := probe.count("fulfilled", wanted)) < len(ids):
        now = time.perf_counter()
        if now - start > timeout:
            return count
        if now - last_said >= 10:
            log(f"{count:,} of {len(ids):,} fulfilled after {now - start:.0f} s "
                f"(load 1m {load1():.2f})")
            last_said = now
        time.sleep(0.1)
    return len(ids)


def lots_taken(gateway: Gateway, run: Run) -> float:
    return sum(lot["allocated"] for lot in gateway.items(
        "/api/lots", programme=run.programme, category=run.category))


def ledger_row(gateway: Gateway, run: Run) -> dict[str, Any]:
    rows = gateway.get("/api/ledger/report", by="programme")["rows"]
    return next((r for r in rows if r["group"] == run.programme
                 and r["category"] == run.category), {})


def wait_caught_up(gateway: Gateway, run: Run, start: float,
                   seconds: float) -> dict[str, float | None]:
    """Until donations' lots and accounting's ledger both show the run's stock allocated;
    when each got there, in seconds from the first need published (None: not in time)."""
    at: dict[str, float | None] = {"donations": None, "accounting": None}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and None in at.values():
        if at["donations"] is None and same(lots_taken(gateway, run), run.total):
            at["donations"] = time.perf_counter() - start
        if at["accounting"] is None and same(ledger_row(gateway, run).get("allocated", 0),
                                             run.total):
            at["accounting"] = time.perf_counter() - start
        time.sleep(0.5)
    return at


def same(a: float, b: float) -> bool:
    """Equal in thousandths (the services count quantities in them)."""
    return round(a * 1000) == round(b * 1000)


# -- figures ----------------------------------------------------------------------------------
@dataclass
class Check:
    source: str
    figure: str
    value: str
    expected: str
    ok: bool


@dataclass
class Figures:
    checks: list[Check] = field(default_factory=list)

    def add(self, source: str, figure: str, value: float, expected: float,
            unit: str = "") -> None:
        self.checks.append(Check(source, figure, qty(value, unit), qty(expected, unit),
                                 same(value, expected)))

    def unread(self, source: str, error: Exception) -> None:
        self.checks.append(Check(source, "could not be read", str(error)[:120], "-", False))


def qty(value: float, unit: str = "") -> str:
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".rstrip()


def needs_of(gateway: Gateway, run: Run) -> list[dict[str, Any]]:
    """Every need of the run that matching has, one GET each, a few at a time. (A list of
    needs, ``GET /api/needs?programme=``, reads every need stored for each page of 200:
    10,000 needs would be 50 such reads.)"""
    local = threading.local()

    def one(need_id: str) -> dict[str, Any] | None:
        if not hasattr(local, "gateway"):
            local.gateway = Gateway(gateway.api, gateway.token)  # a session per thread
        return local.gateway.need(need_id)

    with ThreadPoolExecutor(max_workers=NEED_READERS) as pool:
        return [n for n in pool.map(one, run.need_ids()) if n is not None]


def matching_figures(gateway: Gateway, run: Run, out: Figures) -> None:
    needs = needs_of(gateway, run)
    lots = {run.lot_id(c) for c in run.communities}
    fulfilled = sum(1 for n in needs if n["status"] == "fulfilled")
    assigned = sum(n["fulfilled_quantity"] for n in needs)
    from_lots = sum(a["quantity"] for n in needs for a in n.get("assignments") or []
                    if a.get("lot_id") in lots)
    out.checks.append(Check("matching", "needs of the run fulfilled",
                            f"{fulfilled:,} of {len(needs):,}", f"{run.needs:,}",
                            fulfilled == len(needs) == run.needs))
    out.add("matching", "quantity assigned to them", assigned, run.total, run.unit)
    out.add("matching", "of it from the run's lots", from_lots, run.total, run.unit)


def donations_figures(gateway: Gateway, run: Run, out: Figures) -> None:
    lots = list(gateway.items("/api/lots", programme=run.programme, category=run.category))
    out.add("donations", f"stock taken from the run's {len(lots)} lots",
            sum(lot["allocated"] for lot in lots), run.total, run.unit)
    out.add("donations", "left in them (available, written off, moved)",
            sum(lot["available"] + lot["written_off"] + lot["transferred"] for lot in lots),
            0, run.unit)


def accounting_figures(gateway: Gateway, run: Run, out: Figures) -> None:
    row = ledger_row(gateway, run)
    out.add("accounting", "received into the run's lots (ledger)", row.get("received", 0),
            run.total, run.unit)
    out.add("accounting", "allocated from them (ledger)", row.get("allocated", 0), run.total,
            run.unit)
    received, allocated = row.get("received_yuan", 0.0), row.get("allocated_yuan", 0.0)
    out.checks.append(Check("accounting", "value allocated (yuan; all of it received)",
                            qty(allocated), qty(received),
                            bool(row) and round(allocated * 100) == round(received * 100)))
    balance = gateway.get("/api/reconciliation")
    places = set(run.communities)
    off = [d for d in balance.get("differences", [])
           if d["category"] == run.category and d["location_id"] in places]
    out.checks.append(Check("accounting", "reconciliation differences at the run's warehouses",
                            str(len(off)), "0", not off))


def dead_letter_figures(dead: DeadLetters, before: dict[str, int], out: Figures) -> None:
    added = dead.added(before)
    out.checks.append(Check("broker", "new dead letters (dlq.*, relief.intake.dlq, "
                            "relief.unroutable)", str(sum(n for n, _ in added.values())), "0",
                            not added))
    for name, (n, reason) in added.items():
        out.checks.append(Check("broker", f"  {name} (the first: {reason[:60]})", f"+{n}",
                                "0", False))


def collect(gateway: Gateway, run: Run, dead: DeadLetters, before: dict[str, int]) -> Figures:
    out = Figures()
    for source, read in (("matching", matching_figures), ("donations", donations_figures),
                         ("accounting", accounting_figures)):
        try:
            read(gateway, run, out)
        except DrillError as exc:
            out.unread(source, exc)
    dead_letter_figures(dead, before, out)
    return out


# -- the report -------------------------------------------------------------------------------
@dataclass
class Drain:
    start: float
    published_s: float
    fulfilled: int
    elapsed_s: float
    load: float
    waits: list[float]
    caught_up: dict[str, float | None] = field(default_factory=dict)


def drain_of(probe: Probe, sent: dict[str, float], start: float, published_s: float,
             fulfilled: int, timeout: float) -> Drain:
    seen = probe.times("fulfilled", sent)
    end = max(seen.values()) if seen else start + timeout
    waits = [seen[k] - sent[k] if k in seen else float("inf") for k in sent]
    return Drain(start, published_s, fulfilled, end - start, load1(), waits)


def reads_row(reader: Reader, limit: float) -> list[str]:
    times = [s.seconds for s in reader.samples]
    loads = [s.load for s in reader.samples]
    slow = sum(1 for t in times if t >= limit)
    errors = sum(1 for s in reader.samples if s.error)
    return [reader.label, str(len(times)), fmt_ms(percentile(times, 50)),
            fmt_ms(max(times, default=float("nan"))), str(slow), str(errors),
            f"{min(loads):.2f}-{max(loads):.2f}" if loads else "-"]


def reads_ok(reader: Reader, limit: float) -> bool:
    return bool(reader.samples) and all(s.seconds < limit and not s.error
                                        for s in reader.samples)


def reads_notes(reader: Reader) -> list[str]:
    errors = Counter(s.error for s in reader.samples if s.error)
    problems = Counter(p for s in reader.samples for p in set(s.problems))
    notes = [f"  {reader.label}: {n} x {e}" for e, n in errors.most_common(3)]
    if problems:
        notes.append(f"  {reader.label} named, while busy: " + ", ".join(
            f"{kind} problems in {n} answers" for kind, n in problems.most_common()))
    return notes


def timings(run: Run, d: Drain, stock: tuple[float, float],
            timeout: float) -> tuple[str, list[str]]:
    """The drain's table, and what failed in it."""
    failed = []
    if d.fulfilled < run.needs:
        failed.append(f"{run.needs - d.fulfilled:,} of {run.needs:,} needs not fulfilled "
                      f"within the target, {timeout:g} s")
    elif d.elapsed_s > timeout:
        failed.append(f"every need fulfilled, in {d.elapsed_s:.1f} s: over the target, "
                      f"{timeout:g} s")
    done = not failed
    up = {k: f"{v:.1f}" if v is not None else "not in time" for k, v in d.caught_up.items()}
    rows = [["figure", "value", "load 1m"],
            ["matching counted the run's stock (s)", f"{stock[0]:.1f}", f"{stock[1]:.2f}"],
            ["needs published, confirmed one by one (s; per s)",
             f"{d.published_s:.1f}; {fmt_rate(run.needs / max(d.published_s, 1e-6))}", ""],
            [f"all fulfilled (s; target {timeout:g})",
             f"{d.elapsed_s:.1f}" if d.fulfilled == run.needs
             else f"{d.fulfilled:,} of {run.needs:,} in {timeout:g}", f"{d.load:.2f}"],
            ["needs fulfilled per s", fmt_rate(d.fulfilled / d.elapsed_s)
             if d.elapsed_s > 0 else "-", ""],
            ["publish -> fulfilled p50 / p95 / max (ms)",
             " / ".join(fmt_ms(percentile(d.waits, p)) for p in (50, 95, 100)), ""],
            ["donations' lots show it all allocated (s)", up.get("donations", "-"), ""],
            ["accounting's ledger shows it all allocated (s)", up.get("accounting", "-"), ""]]
    head = f"drain of {run.needs:,} needs: " + ("within" if done else "NOT within")
    return "\n".join([head + " target", table(rows)]), failed


def reads(readers: list[Reader], limit: float, startup: float) -> tuple[str, list[str]]:
    """The on-call reads' table, and what failed in it."""
    failed = []
    every = f", every {readers[0].every:g} s" if readers else ""
    rows = [[f"read{every}", "reads", "p50 ms", "max ms", f">= {limit:g} s", "errors",
             "load 1m"]]
    rows += [reads_row(r, limit) for r in readers]
    out = [f"\non-call reads while the needs were worked (relief-ops start-up alone, before "
            f"the surge: {fmt_ms(startup)} ms)", table(rows)]
    for r in readers:
        out += reads_notes(r)
        if not reads_ok(r, limit):
            failed.append(f"{r.label}: an answer took >= {limit:g} s or failed"
                          if r.samples else f"{r.label}: never answered")
    return "\n".join(out), failed


def agreement(run: Run, figures: Figures) -> tuple[str, list[str]]:
    rows = [["figure", "value", "expected", "agrees"]]
    rows += [[f"{c.source}: {c.figure}", c.value, c.expected, "yes" if c.ok else "NO"]
             for c in figures.checks]
    head = (f"\nfigures of this run ({run.needs:,} needs x {qty(run.quantity, run.unit)} = "
            f"{qty(run.total, run.unit)} of {run.category})")
    failed = [f"{c.source}: {c.figure.strip()} is {c.value}, expected {c.expected}"
              for c in figures.checks if not c.ok]
    return "\n".join([head, table(rows)]), failed


# -- arguments --------------------------------------------------------------------------------
def count(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", "").lower().replace("k", "000"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def number(what: str, low: float, high: float = math.inf,
           low_allowed: bool = True) -> Callable[[str], float]:
    """An argument type: a finite number from ``low`` (or above it) to ``high``."""
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value > high or value < low or (
                value == low and not low_allowed):
            bounds = (f"between {low:g} and {high:g}" if math.isfinite(high)
                      else f"over {low:g}" if not low_allowed else f"at least {low:g}")
            raise argparse.ArgumentTypeError(f"{text} must be {bounds}")
        return value
    return check


seconds = number("a number of seconds", 0, low_allowed=False)
quantity = number("a quantity", 0.001, QUANTITY_MAX)


def uri(*schemes: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {' or '.join(s + '://' for s in schemes)} address")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} has a port that is not a number") from None
        return text
    return check


def directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory")
    return path.resolve()


def parse(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="bench/surge.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--needs", metavar="N", type=count, default=TARGET_NEEDS,
                   help=f"needs to publish (default {TARGET_NEEDS:,}; 500, 2_000 or 2k)")
    p.add_argument("--timeout", metavar="SECONDS", type=seconds, default=None,
                   help=f"seconds from the first need until every need must be fulfilled "
                        f"(default {TARGET_SECONDS:g} for {TARGET_NEEDS:,}, in proportion "
                        f"for other --needs, at least {MIN_TIMEOUT:g})")
    p.add_argument("--settle", metavar="SECONDS", type=seconds, default=60.0,
                   help="seconds to wait for matching to count the stock, and afterwards "
                        "for donations and accounting to catch up (default 60)")
    p.add_argument("--read-every", metavar="SECONDS", type=seconds, default=READ_EVERY,
                   help=f"start a relief-ops status and a dashboard read every this many "
                        f"seconds (default {READ_EVERY:g}; at once after a slower answer)")
    p.add_argument("--max-answer", metavar="SECONDS", type=seconds, default=1.0,
                   help="an on-call answer taking this many seconds or more fails the drill "
                        "(default 1)")
    p.add_argument("--category", metavar="ID", default=CATEGORY,
                   help=f"goods category of the run's needs and lots (default {CATEGORY})")
    p.add_argument("--quantity", metavar="Q", type=quantity, default=float(NEED_QUANTITY),
                   help=f"what each need asks, in the category's unit (default "
                        f"{NEED_QUANTITY})")
    p.add_argument("--api", metavar="URL", type=uri("http", "https"),
                   default=f"http://127.0.0.1:{env('GATEWAY_PORT', '8000')}",
                   help="the gateway (default http://127.0.0.1:8000, or GATEWAY_PORT)")
    p.add_argument("--token", metavar="TOKEN", default=None,
                   help="operator token (default RELIEF_ADMIN_TOKEN, else .local/admin_token)")
    p.add_argument("--amqp", metavar="URI", type=uri("amqp", "amqps"),
                   default=f"amqp://guest:guest@127.0.0.1:{env('AMQP_PORT', '5672')}/",
                   help="the broker as its administrator: dead-letter depths, the probe, "
                        "relief-ops (default amqp://guest:guest@127.0.0.1:5672/, or AMQP_PORT)")
    p.add_argument("--vhost", metavar="NAME", default=None,
                   help="the system's vhost (default: the one in --amqp, else /)")
    p.add_argument("--management", metavar="URL", type=uri("http", "https"),
                   default=f"http://guest:guest@127.0.0.1:{env('MANAGEMENT_PORT', '15672')}",
                   help="the broker's management API (default http://guest:guest@127.0.0.1:"
                        "15672, or MANAGEMENT_PORT)")
    p.add_argument("--publisher", metavar="USER", default=None,
                   help=f"broker user to publish as (default {DEFAULT_PUBLISHER} when "
                        f".local/broker_users.json has it, else the --amqp user)")
    p.add_argument("--publisher-password", metavar="PASSWORD", default=None,
                   help="its password (default: from .local/broker_users.json)")
    p.add_argument("--root", metavar="DIR", type=directory, default=None,
                   help="the clone whose .local/ gives the defaults (default: the current "
                        "directory if it has .local/, else this clone)")
    args = p.parse_args(argv)
    if args.vhost == "":
        p.error("--vhost: give a name (/ is the default vhost)")
    if args.timeout is None:
        args.timeout = max(MIN_TIMEOUT, TARGET_SECONDS * args.needs / TARGET_NEEDS)
    return args


# -- main -------------------------------------------------------------------------------------
def header(run: Run, target: Target, timeout: float) -> str:
    where = f"defaults from {target.state}" if target.state else "no .local/ found"
    return (f"Relief Exchange surge drill {run.run_id}, {datetime.now(UTC):%Y-%m-%d %H:%M} "
            f"UTC, {os.cpu_count()} cores, load 1m {load1():.2f} at the start\n"
            f"{run.needs:,} needs of {qty(run.quantity, run.unit)} {run.category} in "
            f"{len(run.communities)} communities, programme {run.programme!r}; published as "
            f"{target.publisher} to {INTAKE} on {redact_uri(target.publish_uri)}; gateway "
            f"{target.api}; target: all fulfilled within {timeout:g} s; {where}\n")


@contextmanager
def publishing(what: str, user: str) -> Iterator[None]:
    import pika

    try:
        yield
    except pika.exceptions.AMQPError as exc:
        raise DrillError(f"the broker stopped {user} publishing {what} to {INTAKE}: "
                         f"{type(exc).__name__} {exc}".rstrip()) from None


def supply(gateway: Gateway, poster: NeedPoster, dead: DeadLetters,
           dead_before: dict[str, int], settle: float) -> tuple[float, float]:
    """The run's lots published, until matching counts them: (seconds, load 1m then)."""
    run = poster.run
    log(f"publishing {len(run.communities)} lots ({qty(run.total, run.unit)}) as "
        f"{poster.publisher.user}")
    before = matching_supply(gateway, run.category)
    with publishing("the lots", poster.publisher.user):
        poster.post_supply()
    return wait_stock(gateway, run, before, settle, dead, dead_before), load1()


def start_probe(target: Target) -> Probe:
    try:
        return Probe(target.admin_uri, {"fulfilled": ("matching.events", "need_fulfilled",
                                                      need_id_of)}).start_and_wait()
    except RuntimeError as exc:
        raise DrillError(f"{exc} (the --amqp user binds a queue to matching.events)") from None


def burst(target: Target, poster: NeedPoster, timeout: float,
          every: float) -> tuple[Drain, list[Reader]]:
    """The needs published and worked, on-call reads timed meanwhile."""
    run = poster.run
    probe = start_probe(target)
    readers = [Reader("relief-ops status", ops_status(target), every),
               Reader("GET /api/dashboard", dashboard(target), every)]
    for r in readers:
        r.start()
    try:
        log(f"publishing {run.needs:,} needs")
        with publishing("the needs", poster.publisher.user):
            start, sent = poster.post_needs(run.need_ids())
        published_s = time.perf_counter() - start
        log(f"published in {published_s:.1f} s; waiting for them to be fulfilled")
        fulfilled = wait_fulfilled(probe, run.need_ids(), start, timeout)
        return drain_of(probe, sent, start, published_s, fulfilled, timeout), readers
    finally:
        for r in readers:
            r.stop()
        probe.stop()


def surge(target: Target, args: argparse.Namespace) -> int:
    gateway = Gateway(target.api, target.token)
    run = plan(gateway, args)
    dead = DeadLetters(target)
    publisher = connect(target.publish_uri, "publisher")
    try:
        poster = NeedPoster(publisher, run)
        dead_before = dead.depths()
        startup = startup_seconds()
        print(header(run, target, args.timeout), flush=True)
        stock = supply(gateway, poster, dead, dead_before, args.settle)
        drain, readers = burst(target, poster, args.timeout, args.read_every)
        if drain.fulfilled == run.needs:
            log("every need fulfilled; waiting for donations and accounting to catch up")
            drain.caught_up = wait_caught_up(gateway, run, drain.start, args.settle)
        log(f"reading the figures ({run.needs:,} needs one by one, {NEED_READERS} at a time)")
        figures = collect(gateway, run, dead, dead_before)
        for r in readers:
            r.join(READ_TIMEOUT + 5)
    finally:
        publisher.close()
        dead.close()
    failed = []
    for text, failures in (timings(run, drain, stock, args.timeout),
                           reads(readers, args.max_answer, startup), agreement(run, figures)):
        print(text)
        failed += failures
    print("\nresult: " + ("PASS, every check held" if not failed
                          else "FAIL\n" + "\n".join(f"  - {f}" for f in failed)))
    return FAILED if failed else OK


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return surge(resolve(args), args)
    except DrillError as exc:
        print(f"surge: {exc}", file=sys.stderr)
        return CANNOT_RUN
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
