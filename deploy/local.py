"""Run Relief Exchange on one machine without containers: the broker (Debian's
rabbitmq-server, as a process on loopback), the database (the development server, unless
``MONGO_URI`` points at a MongoDB), the topology and every service.

``relief-local run`` is what ``make run`` calls; the tests use the same classes to start
their own broker and database on free ports.

Nothing listens beyond this machine unless asked: the broker (AMQP, management, metrics and
Erlang distribution), the database, the mail sink, the gateway and every service's
``/metrics`` and ``/healthz`` bind 127.0.0.1 (``GATEWAY_HOST`` and ``METRICS_HOST`` change
the last two). Services connect to the broker as their own least-privilege users, as in
compose (``BrokerUsers``); ``guest`` stays the operator's administrator, which the broker
accepts from loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "config.yaml"
LOOPBACK = "127.0.0.1"
EPMD_PORT = 4369


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_for(check, seconds: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up within {seconds:.0f}s")
        time.sleep(interval)


def epmd_names(port: int = EPMD_PORT) -> dict[str, int]:
    """Erlang node names registered with this machine's epmd -> their distribution port
    (empty when epmd is not running). Asked over epmd's own protocol (NAMES_REQ)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2) as s:
            s.sendall(struct.pack(">HB", 1, 110))
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
    except OSError:
        return {}
    names = {}
    for line in b"".join(chunks)[4:].decode("utf-8", "replace").splitlines():
        parts = line.split()  # "name relief at port 25672"
        if len(parts) == 5 and parts[0] == "name" and parts[4].isdigit():
            names[parts[1]] = int(parts[4])
    return names


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Broker:
    """A rabbitmq-server node with its own data folder, node name and ports."""

    data_dir: Path
    nodename: str = "relief@localhost"
    port: int = 5672
    dist_port: int = 25672
    management_port: int = 15672
    prometheus_port: int = 15692
    user: str = "guest"
    password: str = "guest"
    process: subprocess.Popen | None = None

    @property
    def amqp_uri(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/"

    def amqp_uri_for(self, vhost: str) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/{quote(vhost, safe='')}"

    @property
    def management_uri(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.management_port}"

    def amqp_uri_as(self, user: str, password: str, vhost: str = "/") -> str:
        return (f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:"
                f"{self.port}/{quote(vhost, safe='')}")

    def management_uri_as(self, user: str, password: str) -> str:
        return (f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:"
                f"{self.management_port}")

    def env(self) -> dict[str, str]:
        d = str(self.data_dir)
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{d}/mnesia",
            "RABBITMQ_LOG_BASE": f"{d}/log",
            "RABBITMQ_FEATURE_FLAGS_FILE": f"{d}/feature_flags",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{d}/enabled_plugins",
            "RABBITMQ_PID_FILE": f"{d}/node.pid",
            # epmd, when this node is the one that starts it, listens on loopback only
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "RABBITMQ_SERVER_START_ARGS": (
                f"-rabbitmq_management tcp_config [{{port,{self.management_port}}},"
                f"{{ip,\"{LOOPBACK}\"}}] "
                f"-rabbitmq_prometheus tcp_config [{{port,{self.prometheus_port}}},"
                f"{{ip,\"{LOOPBACK}\"}}] "
                # the distribution port (rabbitmqctl, clustering) on loopback too
                "-kernel inet_dist_use_interface {127,0,0,1}"),
        }

    @property
    def short_name(self) -> str:
        return self.nodename.split("@", 1)[0]

    def name_taken(self) -> bool:
        """Another node on this machine already runs under this node name."""
        return self.short_name in epmd_names()

    def check_free(self) -> None:
        """Say clearly what stands in the way of starting: the node name or a port."""
        if self.name_taken():
            raise RuntimeError(
                f"a RabbitMQ node named {self.nodename} is already running on this machine "
                f"(another `make run`, a test run or a broker started by hand). Stop it "
                f"(rabbitmqctl -n {self.nodename} stop), or run this one under another node "
                f"name and ports, e.g. RABBITMQ_NODENAME=relief2@localhost AMQP_PORT=5673 "
                f"MANAGEMENT_PORT=15673 PROMETHEUS_PORT=15693 make run")
        for port, what, variable in ((self.port, "AMQP", "AMQP_PORT"),
                                     (self.dist_port, "Erlang distribution", "DIST_PORT"),
                                     (self.management_port, "management", "MANAGEMENT_PORT"),
                                     (self.prometheus_port, "metrics", "PROMETHEUS_PORT")):
            if port_open(port):
                raise RuntimeError(f"the broker's {what} port {port} is taken: is another "
                                   f"broker running? (choose another with {variable})")

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["rabbitmqctl", "-n", self.nodename, *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def running(self) -> bool:
        try:
            return self.ctl("status", timeout=15).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self, timeout: float = 90) -> None:
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.check_free()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # what `rabbitmq-plugins --offline enable` writes, without starting a VM to write it
        # (the plugins they depend on start with them)
        (self.data_dir / "enabled_plugins").write_text(
            "[rabbitmq_management,rabbitmq_prometheus].\n")
        if os.geteuid() == 0:
            # the server switches to the rabbitmq user: it must own its data folder
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.data_dir)], check=True)
        log = open(self.data_dir / "server.out", "ab")
        self.process = subprocess.Popen(["rabbitmq-server"], env=self.env(), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"rabbitmq-server exited; the end of "
                                   f"{self.data_dir}/server.out:\n"
                                   f"{tail(self.data_dir / 'server.out')}")
            return port_open(self.port) and port_open(self.management_port)

        wait_for(up, timeout, "the broker")

    def _kill_node(self) -> bool:
        """SIGKILL the node's VM (its pid from the file it writes: the server runs in a session
        of its own, as the broker's user); its helpers exit with it. False if it wrote none."""
        try:
            pid = int((self.data_dir / "node.pid").read_text().strip())
        except (OSError, ValueError):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, "the broker's VM to exit")
        return True

    def stop(self, graceful: bool = True) -> None:
        """Stop the node this object started (the same name may be another instance's).
        Not ``graceful``: killed at once, for a broker whose data is thrown away after."""
        if self.process is None:
            return
        if not graceful and self._kill_node():
            self.process.wait(timeout=30)
            self.process = None
            return
        if self.process.poll() is None:
            try:
                self.ctl("stop", timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None


@dataclass
class BrokerUsers:
    """Least-privilege broker users for a local run, as compose has them: ``relief-<service>``
    for each service (its permissions computed from the code by ``relief-deploy``) and the
    read-only ``relief-monitor`` for the gateway's status pages. Passwords are generated
    once and kept in ``path`` (readable by its owner only); ``relief-deploy``, given
    :meth:`deploy_env`, creates the users or sets their passwords."""

    path: Path
    # partner systems publishing to relief.intake, each as its own broker user
    publishers: tuple[str, ...] = ()

    def _all(self) -> dict[str, Any]:
        from services.common.topology import SERVICES

        try:
            known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            known = {}
        wanted = [*SERVICES, "monitor"]
        passwords: dict[str, Any] = {name: known.get(name) or secrets.token_hex(24)
                                     for name in wanted}
        old = known.get("publishers") if isinstance(known.get("publishers"), dict) else {}
        passwords["publishers"] = {**old, **{n: old.get(n) or secrets.token_hex(24)
                                             for n in self.publishers}}
        if passwords != known:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(mode=0o600)
            self.path.chmod(0o600)
            self.path.write_text(json.dumps(passwords, indent=2) + "\n")
        return passwords

    def passwords(self) -> dict[str, str]:
        """Each service's and the monitor's password."""
        return {k: v for k, v in self._all().items() if k != "publishers"}

    def publisher_passwords(self) -> dict[str, str]:
        """Each partner publisher's password (``.local/broker_users.json``, "publishers")."""
        return dict(self._all()["publishers"])

    def deploy_env(self) -> dict[str, str]:
        """What ``relief-deploy`` reads to create the users (give it to that step only)."""
        from deploy.topology import (
            MONITOR_PASSWORD_VARIABLE,
            PUBLISHERS_VARIABLE,
            password_variable,
        )
        from services.common.topology import SERVICES

        passwords = self.passwords()
        partners = ",".join(f"{n}:{p}" for n, p in sorted(self.publisher_passwords().items()))
        return {**{password_variable(s): passwords[s] for s in SERVICES},
                MONITOR_PASSWORD_VARIABLE: passwords["monitor"],
                PUBLISHERS_VARIABLE: partners}

    def service_env(self, broker: Broker, vhost: str = "/") -> dict[str, dict[str, str]]:
        """Each service's own ``AMQP_URI``; the management API as the read-only monitor (only
        the gateway reads it), so that no service process holds the administrator."""
        from services.common.topology import MONITOR_USER, SERVICES, user_name

        passwords = self.passwords()
        monitor = broker.management_uri_as(MONITOR_USER, passwords["monitor"])
        return {s: {"AMQP_URI": broker.amqp_uri_as(user_name(s), passwords[s], vhost),
                    "RABBIT_MANAGEMENT_URI": monitor} for s in SERVICES}


@dataclass
class Database:
    """The development database server (MongoDB wire protocol) on a port of its own."""

    data_dir: Path
    port: int = 27017
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        # Retryable writes cost this server a registry it sorts under one lock on every write
        # outside a transaction (measured: 37% of its time in a burst); every write the
        # services make that matters is in a transaction or retried by the handler base.
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&retryWrites=false"

    def start(self, timeout: float = 60) -> None:
        exe = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
        if not Path(exe).exists():
            raise RuntimeError("the development database server is not installed "
                               "(pip install -e '.[dev]')")
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another database running? "
                               f"(choose another with DB_PORT)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir.parent / f"{self.data_dir.name}.out", "ab")
        self.process = subprocess.Popen(
            [exe, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path",
             str(self.data_dir), "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError("the database server exited; see its .out log")
            return port_open(self.port)

        wait_for(up, timeout, "the database")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None


@dataclass
class Services:
    """One ``nameko run`` process per service, sharing one environment."""

    env: dict[str, str]
    log_dir: Path
    # the gateway's API port, and each other service's port for /metrics and /healthz
    web_ports: dict[str, int] = field(default_factory=dict)
    # settings for one service only (e.g. its own broker user's AMQP_URI)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # the address every web port binds, and per service where it differs (the gateway)
    host: str = LOOPBACK
    hosts: dict[str, str] = field(default_factory=dict)

    def web_port(self, name: str) -> int:
        if name not in self.web_ports:
            self.web_ports[name] = free_port()
        return self.web_ports[name]

    def start(self, name: str, replica: int = 1) -> subprocess.Popen:
        """Start a service; ``replica`` > 1 starts another instance beside the first
        (competing consumers), with its own web port."""
        from services.common.topology import SERVICES

        key = name if replica == 1 else f"{name}#{replica}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{key}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "nameko", "run", "--config", str(CONFIG), SERVICES[name]],
            cwd=ROOT, env={**self.env, "RELIEF_SERVICE": name,
                           "WEB_SERVER_ADDRESS":
                               f"{self.hosts.get(name, self.host)}:{self.web_port(key)}",
                           **self.service_env.get(name, {})}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[key] = process
        return process

    def start_all(self, names: list[str]) -> None:
        for name in names:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        process.send_signal(sig)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}


def service_env(amqp_uri: str, mongo_uri: str, management_uri: str, token: str,
                db_prefix: str = "relief_") -> dict[str, str]:
    return {
        **os.environ,
        "AMQP_URI": amqp_uri,
        "MONGO_URI": mongo_uri,
        "RABBIT_MANAGEMENT_URI": management_uri,
        "RELIEF_ADMIN_TOKEN": token,
        "RELIEF_REFERENCE_DIR": str(ROOT / "deploy" / "reference"),
        "RELIEF_DB_PREFIX": db_prefix,
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }


def deploy_topology(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "deploy.topology", "--config", str(CONFIG)],
                   cwd=ROOT, env=env, check=True)


def hold_lock(path: Path) -> IO[str]:
    """One ``make run`` per folder: its broker and database data live in ``.local/``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise RuntimeError(f"another `make run` is already running from {path.parent.parent} "
                           f"(pid {pid}); stop it first (Ctrl-C in its terminal)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def shown_host(host: str) -> str:
    """An address to print for a bind address (every interface: this machine's loopback)."""
    return LOOPBACK if host in ("0.0.0.0", "::", "") else host


def run(args: argparse.Namespace) -> int:
    from services.common.topology import MONITOR_USER, SERVICES

    state = ROOT / ".local"
    lock = hold_lock(state / "run.lock")
    token_file = state / "admin_token"
    token = os.environ.get("RELIEF_ADMIN_TOKEN") or (
        token_file.read_text().strip() if token_file.exists() else "")
    if not token:
        token = secrets.token_urlsafe(24)
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)

    broker = Broker(state / "rabbitmq", nodename=args.nodename, port=args.amqp_port,
                    dist_port=args.dist_port or args.amqp_port + 20000,
                    management_port=args.management_port,
                    prometheus_port=args.prometheus_port)
    users = BrokerUsers(state / "broker_users.json", publishers=tuple(
        n.strip() for n in os.environ.get("RELIEF_PUBLISHER_NAMES", "partner-demo").split(",")
        if n.strip()))
    database = None
    mongo_uri = os.environ.get("MONGO_URI")
    services = None
    sink = None
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    ports = {name: args.metrics_port_base + i for i, name in enumerate(SERVICES)}
    ports["gateway"] = args.gateway_port
    wanted = [(args.gateway_port, "the gateway's", "GATEWAY_PORT"),
              *((port, f"{name}'s metrics", "METRICS_PORT_BASE")
                for name, port in ports.items() if name != "gateway")]
    if not os.environ.get("SMTP_HOST"):
        wanted += [(args.smtp_port, "the mail sink's SMTP", "SMTP_PORT"),
                   (args.webhook_port, "the mail sink's webhook", "WEBHOOK_SINK_PORT")]
    for port, what, variable in wanted:
        if port_open(port):
            raise RuntimeError(f"{what} port {port} is taken (choose another with {variable})")
    try:
        print(f"starting the broker (node {broker.nodename}, 10-20 s)...", flush=True)
        broker.start()
        if not mongo_uri:
            database = Database(state / "db", port=args.db_port)
            print("starting the database...", flush=True)
            database.start()
            mongo_uri = database.uri
        env = service_env(broker.amqp_uri, mongo_uri, broker.management_uri, token)
        gateway_url = f"http://{shown_host(args.gateway_host)}:{args.gateway_port}"
        env.setdefault("RELIEF_PUBLIC_URL", gateway_url)  # the base of offer links
        if not os.environ.get("SMTP_HOST"):
            # a local SMTP (and SMS/WeChat webhook) sink: messages land in .local/mail/
            from deploy.mail_sink import MailSink

            sink = MailSink(state / "mail", port=args.smtp_port, http_port=args.webhook_port)
            print("starting the mail sink...", flush=True)
            sink.start()
            env.update({k: v for k, v in sink.env().items() if k not in os.environ})
        # as the broker's administrator: queues and policies, then every service's own user
        deploy_topology({**env, **users.deploy_env()})
        services = Services(env, state / "logs", web_ports=ports,
                            service_env=users.service_env(broker), host=args.metrics_host,
                            hosts={"gateway": args.gateway_host})
        services.start_all(list(SERVICES))
        wait_for(lambda: port_open(args.gateway_port, shown_host(args.gateway_host)), 60,
                 "the gateway")
        metrics_host = shown_host(args.metrics_host)
        exposed = [f"{what} listen on every interface ({var}={host})"
                   for what, var, host in (("the API", "GATEWAY_HOST", args.gateway_host),
                                           ("/metrics and /healthz", "METRICS_HOST",
                                            args.metrics_host))
                   if host != LOOPBACK]
        print(f"""
Relief Exchange is running.
  API            {gateway_url}/api/   (Authorization: Bearer <token>)
  health         {gateway_url}/health
  dashboard      {gateway_url}/dashboard
  admin token    {token_file if token_file.exists() else "$RELIEF_ADMIN_TOKEN"}
  publish events {broker.amqp_uri}  exchange relief.intake, routing key = event type
  publishers     {", ".join(users.publishers) or "-"} (each may publish to relief.intake only, \
recorded as the source); passwords in {users.path}
  queues         http://127.0.0.1:{broker.management_port}/  (guest / guest: the broker's \
administrator, from this machine only)
  broker users   relief-<service> (one per service), {MONITOR_USER} (read-only); passwords \
in {users.path}
  broker node    {broker.nodename}
  metrics        http://127.0.0.1:{args.prometheus_port}/metrics (broker); each service's \
/metrics and /healthz at http://{metrics_host}:
                 {", ".join(f"{n} :{p}" for n, p in ports.items() if n != "gateway")}
  database       {mongo_uri}
  mail           {f"{state / 'mail'}/  (read: .venv/bin/python -m deploy.mail_sink list, show)"
                  if sink else f"SMTP {os.environ['SMTP_HOST']}"}
  service logs   {state / 'logs'}/
""" + "".join(f"  note           {line}\n" for line in exposed) + f"""\
Ctrl-C stops everything; data stays in {state}/.
""", flush=True)
        restarts: dict[str, float] = {}
        while not stopping:
            time.sleep(1)
            for name, code in services.exited().items():
                # like a container restart policy: bring a crashed service back, with back-off
                last = restarts.get(name, 0.0)
                if time.monotonic() - last < 5:
                    continue
                print(f"service {name} exited ({code}); restarting", flush=True)
                restarts[name] = time.monotonic()
                services.start(name)
        return 0
    finally:
        print("stopping...", flush=True)
        if services is not None:
            services.stop_all()
        if sink is not None:
            sink.stop()
        if database is not None:
            database.stop()
        broker.stop()
        lock.close()
        print("stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relief-local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="start everything and wait for Ctrl-C")
    p.add_argument("--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", 8000)))
    p.add_argument("--gateway-host", default=os.environ.get("GATEWAY_HOST", LOOPBACK),
                   help="address the gateway binds (default 127.0.0.1; 0.0.0.0 for every "
                        "interface)")
    p.add_argument("--metrics-host", default=os.environ.get("METRICS_HOST", LOOPBACK),
                   help="address each service's /metrics and /healthz bind (default "
                        "127.0.0.1)")
    p.add_argument("--nodename", default=os.environ.get("RABBITMQ_NODENAME", "relief@localhost"),
                   help="the broker's Erlang node name (another instance on this machine "
                        "needs its own)")
    p.add_argument("--amqp-port", type=int, default=int(os.environ.get("AMQP_PORT", 5672)))
    p.add_argument("--dist-port", type=int, default=int(os.environ.get("DIST_PORT", 0)),
                   help="the broker's Erlang distribution port (default: AMQP port + 20000)")
    p.add_argument("--management-port", type=int,
                   default=int(os.environ.get("MANAGEMENT_PORT", 15672)))
    p.add_argument("--prometheus-port", type=int,
                   default=int(os.environ.get("PROMETHEUS_PORT", 15692)))
    p.add_argument("--db-port", type=int, default=int(os.environ.get("DB_PORT", 27017)))
    p.add_argument("--smtp-port", type=int, default=int(os.environ.get("SMTP_PORT", 1025)))
    p.add_argument("--webhook-port", type=int,
                   default=int(os.environ.get("WEBHOOK_SINK_PORT", 1080)))
    p.add_argument("--metrics-port-base", type=int,
                   default=int(os.environ.get("METRICS_PORT_BASE", 9101)))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (RuntimeError, TimeoutError) as exc:
        print(f"relief-local: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
