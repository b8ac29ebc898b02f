"""docker-compose.yml and the image: properties operators rely on, checked without Docker."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml

from services.common.topology import MONITOR_USER, SERVICES, user_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CONFIG_FILE = ROOT / "deploy" / "config.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / "relief.env.example"
CONFIG_ARG = ["--config", "deploy/config.yaml"]
ONE_SHOT = "deploy"
VHOST = "relief"
BROKER_NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")
CLUSTER_PROFILE = "cluster"
ADMIN_VARS = ("RABBITMQ_ADMIN_USER", "RABBITMQ_ADMIN_PASSWORD")
MONITOR_VAR = "RELIEF_MONITOR_PASSWORD"
DB_ONE_SHOT = "mongo-users"
DB_ADMIN_VARS = ("MONGO_ADMIN_USER", "MONGO_ADMIN_PASSWORD")
DB_USERS_SCRIPT = ROOT / "deploy" / "compose" / "mongo-users.js"
TOP_LEVEL_KEYS = {"version", "services", "volumes", "networks", "configs", "secrets"}
# a variable holding any of these is a secret: it must be required (${NAME:?...}), no default
SECRET_WORDS = ("PASSWORD", "TOKEN", "COOKIE", "SECRET", "ADMIN_USER")
# the gateway publishes a host port, so it runs once; every other service is a consumer
SINGLE_INSTANCE = {"gateway"}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


def password_var(service: str) -> str:
    return f"RELIEF_AMQP_PASSWORD_{service.upper()}"


def db_password_var(service: str) -> str:
    return f"RELIEF_MONGO_PASSWORD_{service.upper()}"


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


EXAMPLE = read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose-style interpolation with the example env file, as `--env-file` does."""
    env = EXAMPLE if env is None else env

    def one(m: re.Match) -> str:
        name, op = m.group("name"), m.group("op") or ""
        if env.get(name) or (name in env and ":" not in op):
            return env[name]
        assert "?" not in op, f"required variable {name} is not in {ENV_EXAMPLE.name}"
        return m.group("arg") if "-" in op else ""

    return _VAR.sub(one, value)


def variables(value: Any) -> list[str]:
    return [m.group("name") for m in _VAR.finditer(str(value))]


def argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def raw_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: interpolate(v) for k, v in raw_environment(service).items()}


def healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    assert test, "no healthcheck"
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short form: only "started"
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: services[name] for name in SERVICES if name in services}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of each volume."""
    return {str(v).split(":")[1]: str(v).split(":")[0] for v in service.get("volumes", [])}


def compose_cli() -> str | None:
    return shutil.which("docker-compose") or (
        "/usr/bin/docker-compose" if os.path.exists("/usr/bin/docker-compose") else None)


def run_compose(cli: str, *args: str) -> subprocess.CompletedProcess:
    # none of the file's variables from this shell: only the env file (or nothing) counts
    named = set(variables(COMPOSE_FILE.read_text(encoding="utf-8")))
    env = {k: v for k, v in os.environ.items() if k not in named}
    return subprocess.run([cli, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_every_service_has_a_compose_service_running_its_class(services):
    missing = sorted(set(SERVICES) - set(services))
    assert not missing, f"no compose service for {missing}"
    for name, target in SERVICES.items():
        args = argv(services[name].get("command") or [])
        assert args[:4] == ["python", "-m", "nameko", "run"], (name, args)
        assert args[-1] == target, f"{name} runs {args[-1]!r}, expected {target!r}"
        joined = " ".join(args)
        assert " ".join(CONFIG_ARG) in joined, f"{name} does not use deploy/config.yaml"


def test_every_service_restarts_and_waits_for_its_dependencies(services):
    for name, service in app_services(services).items():
        assert service.get("restart") in ("unless-stopped", "always"), name
        deps = depends(service)
        assert deps.get(ONE_SHOT) == "service_completed_successfully", (name, deps)
        assert deps.get(DB_ONE_SHOT) == "service_completed_successfully", (name, deps)
        assert deps.get("mongo") == "service_healthy", (name, deps)
        assert deps.get("rabbitmq") == "service_healthy", (name, deps)


def test_topology_step_is_a_one_shot_after_the_broker(services):
    deploy = services[ONE_SHOT]
    args = argv(deploy["command"])
    assert args[:3] == ["python", "-m", "deploy.topology"], args
    assert " ".join(CONFIG_ARG) in " ".join(args)
    assert depends(deploy).get("rabbitmq") == "service_healthy"
    # restarted forever it would never count as completed
    assert deploy.get("restart", "no") not in ("always", "unless-stopped")


def test_mongo_runs_as_a_replica_set_that_the_healthcheck_initiates(services):
    mongo = services["mongo"]
    args = argv(mongo["command"])
    assert "--replSet" in args
    replset = args[args.index("--replSet") + 1]
    assert "--bind_ip_all" in args
    check = healthcheck_text(mongo)
    assert "mongosh" in check
    assert "rs.initiate(" in check and f"_id: '{replset}'" in check
    assert "host: 'mongo:27017'" in check
    for name, service in app_services(services).items():
        uri = urlparse(environment(service)["MONGO_URI"])
        assert uri.hostname == "mongo" and (uri.port or 27017) == 27017, name
        assert parse_qs(uri.query).get("replicaSet") == [replset], (name, uri.geturl())


def test_rabbitmq_has_a_healthcheck_and_the_plugins_operators_need(services):
    rabbit = services["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:") and "management" in rabbit["image"]
    assert "rabbitmq-diagnostics" in healthcheck_text(rabbit)
    mounts = [str(v) for v in rabbit.get("volumes", [])]
    plugin_mounts = [m for m in mounts if m.split(":")[1] == "/etc/rabbitmq/enabled_plugins"]
    assert plugin_mounts, "enabled_plugins is not mounted"
    plugins = (ROOT / plugin_mounts[0].split(":")[0]).read_text(encoding="utf-8")
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    for name, service in [*app_services(services).items(), (ONE_SHOT, services[ONE_SHOT])]:
        env = environment(service)
        amqp = urlparse(env["AMQP_URI"])
        assert (amqp.scheme, amqp.hostname, amqp.port) == ("amqp", "rabbitmq", 5672), name
        assert amqp.username and amqp.password, f"{name}: AMQP_URI has no credentials"
        if "RABBIT_MANAGEMENT_URI" in env:
            mgmt = urlparse(env["RABBIT_MANAGEMENT_URI"])
            assert (mgmt.hostname, mgmt.port) == ("rabbitmq", 15672), name


def test_data_lives_in_named_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, target in (("mongo", "/data/db"), ("rabbitmq", "/var/lib/rabbitmq")):
        sources = [str(v).split(":")[0] for v in services[name].get("volumes", [])
                   if str(v).split(":")[1] == target]
        assert sources and sources[0] in declared, f"{name} {target} is not a named volume"


def test_environment_names_are_ones_the_config_reads(services):
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", CONFIG_FILE.read_text(encoding="utf-8")))
    # the topology step reads the broker users' passwords from its environment directly
    provisioning = {password_var(s) for s in SERVICES} | {MONITOR_VAR, "RELIEF_PUBLISHERS"}
    needed = {name: {"AMQP_URI", "MONGO_URI"} for name in SERVICES}
    needed["gateway"] |= {"RABBIT_MANAGEMENT_URI", "RELIEF_ADMIN_TOKEN"}
    # the topology step never touches the database
    needed[ONE_SHOT] = {"AMQP_URI", "RABBIT_MANAGEMENT_URI"} | provisioning
    for name in [*SERVICES, ONE_SHOT]:
        env = environment(services[name])
        assert needed[name] <= set(env), (name, sorted(needed[name] - set(env)))
        unknown = set(env) - read - (provisioning if name == ONE_SHOT else set())
        assert not unknown, f"{name} sets variables deploy/config.yaml never reads: {unknown}"


def test_gateway_publishes_8000_and_checks_health(services):
    gateway = services["gateway"]
    published = [str(p) for p in gateway.get("ports", [])]
    assert any(p.rsplit(":", 1)[-1].split("/")[0] == "8000" for p in published), published
    check = healthcheck_text(gateway)
    assert "127.0.0.1:8000/healthz" in check
    assert environment(gateway)["WEB_SERVER_ADDRESS"].endswith(":8000")


def test_image_installs_runtime_dependencies_only():
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    instructions = "\n".join(line for line in dockerfile.splitlines()
                             if not line.lstrip().startswith("#"))
    assert "pip install" in instructions
    assert "[dev]" not in dockerfile
    assert re.search(r"^FROM python:3\.11-slim", instructions, re.M)
    users = re.findall(r"^USER\s+(\S+)", instructions, re.M)
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    with (ROOT / "pyproject.toml").open("rb") as fh:
        dev = tomllib.load(fh)["project"]["optional-dependencies"]["dev"]
    for requirement in dev:
        package = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        assert package.lower() not in instructions.lower(), f"{package} installed in the image"


def test_services_build_only_that_image(services):
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        dockerfile = build.get("dockerfile") if isinstance(build, dict) else None
        assert dockerfile == "deploy/Dockerfile", f"{name} builds from {dockerfile!r}"
        assert "[dev]" not in str(build) and "[dev]" not in str(service.get("command", ""))


def test_compose_file_is_valid(compose, services):
    """Structural checks always; the docker-compose parser as well where it is installed."""
    extra = {k for k in compose if not k.startswith("x-")} - TOP_LEVEL_KEYS
    assert not extra, f"unknown top-level keys: {extra}"
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dep in depends(service):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"
    cli = compose_cli()
    if cli is None:
        return  # the structural checks above stand in for the parser on this machine
    result = run_compose(cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE),
                         "config", "-q")
    assert result.returncode == 0, result.stderr or result.stdout


# -- least privilege on the broker ------------------------------------------------------------
def test_the_broker_has_the_relief_vhost_and_a_required_admin(services):
    for node in BROKER_NODES:
        env = raw_environment(services[node])
        assert env.get("RABBITMQ_DEFAULT_VHOST") == VHOST, node
        assert env["RABBITMQ_DEFAULT_USER"].startswith("${RABBITMQ_ADMIN_USER:?"), node
        assert env["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_ADMIN_PASSWORD:?"), node


def test_only_the_broker_and_the_one_shot_know_the_admin(services):
    allowed = {*BROKER_NODES, ONE_SHOT}
    for name, service in services.items():
        used = set(variables(service.get("environment"))) & set(ADMIN_VARS)
        assert not used or name in allowed, f"{name} is given the broker admin: {used}"
    deploy = environment(services[ONE_SHOT])
    admin = EXAMPLE["RABBITMQ_ADMIN_USER"]
    assert urlparse(deploy["AMQP_URI"]).username == admin
    assert urlparse(deploy["AMQP_URI"]).path == f"/{VHOST}"
    assert urlparse(deploy["RABBIT_MANAGEMENT_URI"]).username == admin


def test_every_service_connects_as_its_own_user_in_the_vhost(services):
    admin = EXAMPLE["RABBITMQ_ADMIN_USER"]
    for name, service in app_services(services).items():
        raw = raw_environment(service)["AMQP_URI"]
        assert variables(raw) == [password_var(name)], f"{name}: {raw}"
        uri = urlparse(interpolate(raw))
        assert unquote(uri.username or "") == user_name(name) != admin, (name, uri.username)
        assert uri.password == EXAMPLE[password_var(name)], name
        assert uri.path == f"/{VHOST}", f"{name} is not on the {VHOST} vhost: {uri.path}"


def test_the_one_shot_provisions_every_services_user_with_the_same_password(services):
    raw = raw_environment(services[ONE_SHOT])
    for name in SERVICES:
        var = password_var(name)
        assert raw.get(var, "").startswith(f"${{{var}:?"), f"deploy does not get {var}"
    assert raw.get(MONITOR_VAR, "").startswith(f"${{{MONITOR_VAR}:?"), "no monitor password"


def test_only_the_gateway_reads_the_management_api_as_the_monitor(services):
    for name, service in app_services(services).items():
        env = environment(service)
        if name != "gateway":
            assert "RABBIT_MANAGEMENT_URI" not in env, f"{name} needs no management API"
            continue
        raw = raw_environment(service)["RABBIT_MANAGEMENT_URI"]
        assert variables(raw) == [MONITOR_VAR], raw
        assert urlparse(interpolate(raw)).username == MONITOR_USER


def test_no_secret_has_a_default():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    found = [m for m in _VAR.finditer(text) if any(w in m.group("name") for w in SECRET_WORDS)]
    assert found, "no secrets found: the pattern is wrong"
    loose = sorted({m.group(0) for m in found if m.group("op") != ":?"})
    assert not loose, f"secrets with a default or allowed empty: {loose}"


def test_the_env_example_lists_every_variable_with_a_comment():
    named = set(variables(COMPOSE_FILE.read_text(encoding="utf-8")))
    listed = set(EXAMPLE)
    assert named - listed == set(), f"missing from {ENV_EXAMPLE.name}: {named - listed}"
    assert listed - named == set(), f"not used by docker-compose.yml: {listed - named}"
    commented = False
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            commented = False
        elif line.startswith("#"):
            commented = True
        else:
            assert commented, f"no comment above {line.split('=')[0]}"
    for name in named:
        if any(w in name for w in SECRET_WORDS) and not name.endswith("_ADMIN_USER"):
            # placeholders an operator cannot mistake for a real secret
            assert "change-me" in EXAMPLE[name], name


# -- authentication on the database -----------------------------------------------------------
def test_the_database_requires_authentication_with_a_required_admin(services):
    mongo = services["mongo"]
    env = raw_environment(mongo)
    # the image turns authentication on when its administrator is set
    assert env["MONGO_INITDB_ROOT_USERNAME"].startswith("${MONGO_ADMIN_USER:?")
    assert env["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_ADMIN_PASSWORD:?")
    # a replica set with authentication needs a key file: written from a required secret
    args = argv(mongo["command"])
    keyfile = args[args.index("--keyFile") + 1]
    assert env["MONGO_KEYFILE_SECRET"].startswith("${MONGO_KEYFILE_SECRET:?")
    entrypoint = " ".join(argv(mongo["entrypoint"]))
    assert f"> {keyfile}" in entrypoint and "$$MONGO_KEYFILE_SECRET" in entrypoint
    assert f"chmod 400 {keyfile}" in entrypoint
    assert 'exec docker-entrypoint.sh "$$@"' in entrypoint
    # the health check (which also initiates the replica set) signs in as the administrator
    check = healthcheck_text(mongo)
    assert '--username "$$MONGO_INITDB_ROOT_USERNAME"' in check
    assert '--password "$$MONGO_INITDB_ROOT_PASSWORD"' in check
    assert "--authenticationDatabase admin" in check
    assert not mongo.get("ports"), "the database is not published on the host"


def test_every_service_connects_to_its_own_database_as_its_own_user(services):
    seen = set()
    for name, service in app_services(services).items():
        raw = raw_environment(service)["MONGO_URI"]
        assert set(variables(raw)) == {db_password_var(name), "RELIEF_DB_PREFIX"}, raw
        uri = urlparse(interpolate(raw))
        database = f"{EXAMPLE['RELIEF_DB_PREFIX']}{name}"
        assert unquote(uri.username or "") == f"relief-{name}", (name, uri.username)
        assert uri.password == EXAMPLE[db_password_var(name)], name
        assert uri.path == f"/{database}", (name, uri.path)
        assert parse_qs(uri.query).get("authSource") == [database], (name, uri.query)
        seen.add((uri.username, uri.password))
    assert len(seen) == len(SERVICES), "two services share a database user"


def test_a_one_shot_creates_one_user_per_service_database(services):
    one_shot = services[DB_ONE_SHOT]
    assert one_shot["image"] == services["mongo"]["image"]
    assert one_shot.get("restart", "no") not in ("always", "unless-stopped")
    assert depends(one_shot).get("mongo") == "service_healthy"
    raw = raw_environment(one_shot)
    for var in [*DB_ADMIN_VARS, *(db_password_var(s) for s in SERVICES)]:
        assert raw.get(var, "").startswith(f"${{{var}:?"), f"{DB_ONE_SHOT} does not get {var}"
    assert "RELIEF_DB_PREFIX" in raw
    # credentials come from the environment, not the command line (visible in ps)
    command = " ".join(argv(one_shot["command"]))
    assert "${" not in command and "--password" not in command and "-p " not in command
    target = {v.split(":")[1]: v.split(":")[0] for v in one_shot["volumes"]}
    script = [path for path in target if path in command]
    assert script and ROOT / target[script[0]] == DB_USERS_SCRIPT
    text = DB_USERS_SCRIPT.read_text(encoding="utf-8")
    listed = re.search(r"const SERVICES = \[([^\]]*)\]", text).group(1)
    assert re.findall(r'"([a-z]+)"', listed) == list(SERVICES)
    assert "process.env" in text and "RELIEF_MONGO_PASSWORD_${service.toUpperCase()}" in text
    # each user may read and write its own database, and nothing else
    assert re.findall(r"role: \"(\w+)\"", text) == ["readWrite"]
    assert '[{role: "readWrite", db: name}]' in text and "const name = prefix + service" in text
    assert "updateUser(" in text and "createUser(" in text  # safe to run again: rotation


def test_only_the_database_and_its_one_shot_know_the_database_admin(services):
    for name, service in services.items():
        used = set(variables(service.get("environment"))) & set(DB_ADMIN_VARS)
        assert not used or name in {"mongo", DB_ONE_SHOT}, f"{name} is given {used}"
    for name, service in app_services(services).items():
        uri = urlparse(environment(service)["MONGO_URI"])
        assert uri.username != EXAMPLE["MONGO_ADMIN_USER"], name


# -- health and scaling -----------------------------------------------------------------------
def test_every_service_checks_its_healthz(services):
    for name, service in app_services(services).items():
        check = healthcheck_text(service)
        assert "127.0.0.1:8000/healthz" in check, f"{name}: {check}"
        assert environment(service)["WEB_SERVER_ADDRESS"].endswith(":8000"), name
        assert service.get("restart") == "unless-stopped", name


def test_consumers_declare_replicas(services):
    for name, service in app_services(services).items():
        replicas = (service.get("deploy") or {}).get("replicas")
        if name in SINGLE_INSTANCE:
            assert replicas in (None, 1), f"{name} publishes a host port: one instance"
            continue
        assert str(replicas) == f"${{{name.upper()}_REPLICAS:-1}}", (name, replicas)
        assert int(interpolate(str(replicas))) >= 1
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    # docker-compose 1.x ignores deploy.replicas: operators must be told so
    assert "--compatibility" in text and "--scale" in text


# -- the cluster profile ----------------------------------------------------------------------
def test_the_cluster_profile_adds_two_nodes_sharing_cookie_and_config(compose, services):
    assert not services["rabbitmq"].get("profiles"), "node 1 must run without the profile"
    cookies, configs, data = set(), set(), set()
    for node in BROKER_NODES:
        service = services[node]
        if node != "rabbitmq":
            assert service.get("profiles") == [CLUSTER_PROFILE], node
            # after node 1 is up, so it joins node 1 instead of forming a cluster of its own
            assert depends(service).get("rabbitmq") == "service_healthy", node
        assert service.get("hostname") == node, f"{node}: the node name must be stable"
        assert "rabbitmq-diagnostics" in healthcheck_text(service), node
        cookie = raw_environment(service).get("RABBITMQ_ERLANG_COOKIE", "")
        assert cookie.startswith("${RABBITMQ_ERLANG_COOKIE:?"), node
        cookies.add(cookie)
        paths = mounts(service)
        conf = [path for path in paths if path.startswith("/etc/rabbitmq/conf.d/")]
        assert conf, f"{node} does not mount the cluster config"
        configs.add((conf[0], paths[conf[0]]))
        assert paths.get("/etc/rabbitmq/enabled_plugins"), node
        data.add(paths["/var/lib/rabbitmq"])
    assert len(cookies) == 1 and len(configs) == 1, (cookies, configs)
    assert len(data) == 3 and data <= set(compose["volumes"]), data
    conf_text = (ROOT / configs.pop()[1]).read_text(encoding="utf-8")
    assert re.search(r"^cluster_formation\.peer_discovery_backend\s*=\s*classic_config",
                     conf_text, re.M)
    listed = set(re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+\s*=\s*(\S+)",
                            conf_text, re.M))
    assert listed == {f"rabbit@{node}" for node in BROKER_NODES}, listed


def test_the_quorum_switch_is_documented_for_the_cluster():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "RELIEF_QUEUE_TYPE=quorum" in text and "BEFORE the first start" in text


# -- metrics ----------------------------------------------------------------------------------
def test_prometheus_scrapes_the_broker_and_every_service(services):
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    paths = mounts(prometheus)
    source = paths.get("/etc/prometheus/prometheus.yml")
    assert source, "prometheus.yml is not mounted"
    config = yaml.safe_load((ROOT / source).read_text(encoding="utf-8"))
    targets: set[str] = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics", job["job_name"]
        for static in job.get("static_configs", []):
            targets |= set(static["targets"])
        for dns in job.get("dns_sd_configs", []):
            targets |= {f"{name}:{dns['port']}" for name in dns["names"]}
    assert "rabbitmq:15692" in targets, targets
    missing = {f"{name}:8000" for name in SERVICES} - targets
    assert not missing, f"not scraped: {missing}"
    unknown = {t.split(":")[0] for t in targets} - set(services)
    assert not unknown, f"scrape targets that are no compose service: {unknown}"


def test_compose_refuses_to_start_without_the_secrets():
    cli = compose_cli()
    # yaml-only stand-in: a required secret has no value without the env file
    with pytest.raises(AssertionError, match="required variable"):
        interpolate("${RABBITMQ_ADMIN_PASSWORD:?}", env={})
    if cli is None:
        return
    result = run_compose(cli, "-f", str(COMPOSE_FILE), "config", "-q")
    assert result.returncode != 0
    assert "mandatory" in (result.stderr + result.stdout).lower() or "required" in (
        result.stderr + result.stdout).lower(), result.stderr
