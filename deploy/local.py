"""Run Relief Exchange on one machine without containers: the broker (Debian's
rabbitmq-server, as a process on loopback), the database (the development server, unless
``MONGO_URI`` points at a MongoDB), the topology and every service.

``relief-local run`` is what ``make run`` calls; the tests use the same classes to start
their own broker and database on free ports.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "config.yaml"


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

    def env(self) -> dict[str, str]:
        d = str(self.data_dir)
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{d}/mnesia",
            "RABBITMQ_LOG_BASE": f"{d}/log",
            "RABBITMQ_FEATURE_FLAGS_FILE": f"{d}/feature_flags",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{d}/enabled_plugins",
            "RABBITMQ_SERVER_START_ARGS": (
                f"-rabbitmq_management tcp_config [{{port,{self.management_port}}},"
                f"{{ip,\"127.0.0.1\"}}] "
                f"-rabbitmq_prometheus tcp_config [{{port,{self.prometheus_port}}},"
                f"{{ip,\"127.0.0.1\"}}]"),
        }

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
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another broker running?")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # the server switches to the rabbitmq user: it must own its data folder
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.data_dir)], check=True)
        subprocess.run(["rabbitmq-plugins", "--offline", "enable", "rabbitmq_management",
                        "rabbitmq_prometheus"], env=self.env(), check=True,
                       capture_output=True, timeout=60)
        log = open(self.data_dir / "server.out", "ab")
        self.process = subprocess.Popen(["rabbitmq-server"], env=self.env(), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.data_dir}/server.out")
            return port_open(self.port) and port_open(self.management_port)

        wait_for(up, timeout, "the broker")

    def stop(self) -> None:
        try:
            self.ctl("stop", timeout=60)
        except subprocess.TimeoutExpired:
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process = None


@dataclass
class Database:
    """The development database server (MongoDB wire protocol) on a port of its own."""

    data_dir: Path
    port: int = 27017
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 60) -> None:
        exe = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
        if not Path(exe).exists():
            raise RuntimeError("the development database server is not installed "
                               "(pip install -e '.[dev]')")
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is another database running?")
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
                           "WEB_SERVER_ADDRESS": f"0.0.0.0:{self.web_port(key)}",
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
    subprocess.run([sys.executable, "-m", "services.common.topology", "--config", str(CONFIG)],
                   cwd=ROOT, env=env, check=True)


def run(args: argparse.Namespace) -> int:
    from services.common.topology import SERVICES

    state = ROOT / ".local"
    state.mkdir(exist_ok=True)
    token_file = state / "admin_token"
    token = os.environ.get("RELIEF_ADMIN_TOKEN") or (
        token_file.read_text().strip() if token_file.exists() else "")
    if not token:
        token = secrets.token_urlsafe(24)
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)

    broker = Broker(state / "rabbitmq", port=args.amqp_port,
                    management_port=args.management_port,
                    prometheus_port=args.prometheus_port)
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
    try:
        print("starting the broker (10-20 s)...", flush=True)
        broker.start()
        if not mongo_uri:
            database = Database(state / "db", port=args.db_port)
            print("starting the database...", flush=True)
            database.start()
            mongo_uri = database.uri
        env = service_env(broker.amqp_uri, mongo_uri, broker.management_uri, token)
        if not os.environ.get("SMTP_HOST"):
            # a local SMTP (and SMS/WeChat webhook) sink: messages land in .local/mail/
            from deploy.mail_sink import MailSink

            sink = MailSink(state / "mail", port=args.smtp_port, http_port=args.webhook_port)
            print("starting the mail sink...", flush=True)
            sink.start()
            env.update({k: v for k, v in sink.env().items() if k not in os.environ})
        deploy_topology(env)
        ports = {name: args.metrics_port_base + i for i, name in enumerate(SERVICES)}
        ports["gateway"] = args.gateway_port
        services = Services(env, state / "logs", web_ports=ports)
        services.start_all(list(SERVICES))
        wait_for(lambda: port_open(args.gateway_port), 60, "the gateway")
        print(f"""
Relief Exchange is running.
  API            http://127.0.0.1:{args.gateway_port}/api/   (Authorization: Bearer <token>)
  health         http://127.0.0.1:{args.gateway_port}/health
  admin token    {token_file if token_file.exists() else "$RELIEF_ADMIN_TOKEN"}
  publish events {broker.amqp_uri}  exchange relief.intake, routing key = event type
  queues         {broker.management_uri.replace('guest:guest@', '')}/  (guest / guest)
  metrics        http://127.0.0.1:{args.prometheus_port}/metrics (broker); each service:
                 {", ".join(f"{n} :{p}" for n, p in ports.items() if n != "gateway")}
  database       {mongo_uri}
  mail           {f"{state / 'mail'}/  (read: .venv/bin/python -m deploy.mail_sink list, show)"
                  if sink else f"SMTP {os.environ['SMTP_HOST']}"}
  service logs   {state / 'logs'}/
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
        print("stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relief-local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="start everything and wait for Ctrl-C")
    p.add_argument("--gateway-port", type=int, default=int(os.environ.get("GATEWAY_PORT", 8000)))
    p.add_argument("--amqp-port", type=int, default=int(os.environ.get("AMQP_PORT", 5672)))
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
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
