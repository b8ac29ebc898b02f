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
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from services.common.topology import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CONFIG_FILE = ROOT / "deploy" / "config.yaml"
CONFIG_ARG = ["--config", "deploy/config.yaml"]
ONE_SHOT = "deploy"
TOP_LEVEL_KEYS = {"version", "services", "volumes", "networks", "configs", "secrets"}
# variables the compose file must work without (CI and a first local run set none of them)
OPTIONAL_VARS = ("RELIEF_ADMIN_TOKEN", "RABBITMQ_USER", "RABBITMQ_PASSWORD", "RELIEF_QUEUE_TYPE",
                 "RELIEF_DB_PREFIX", "LOG_LEVEL", "RELIEF_IMAGE_TAG")

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def interpolate(value: str) -> str:
    """Compose-style ``${VAR:-default}`` with nothing set, as in CI."""
    return _VAR.sub(lambda m: m.group("default") or "", value)


def argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


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
        assert deps.get("mongo") == "service_healthy", (name, deps)
        assert deps.get("rabbitmq") == "service_healthy", (name, deps)


def test_topology_step_is_a_one_shot_after_the_broker(services):
    deploy = services[ONE_SHOT]
    args = argv(deploy["command"])
    assert args[:3] == ["python", "-m", "services.common.topology"], args
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
    for name, service in app_services(services).items():
        env = environment(service)
        amqp = urlparse(env["AMQP_URI"])
        mgmt = urlparse(env["RABBIT_MANAGEMENT_URI"])
        assert (amqp.scheme, amqp.hostname, amqp.port) == ("amqp", "rabbitmq", 5672), name
        assert (mgmt.hostname, mgmt.port) == ("rabbitmq", 15672), name
        assert amqp.username and amqp.password, f"{name}: AMQP_URI has no credentials"


def test_data_lives_in_named_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, target in (("mongo", "/data/db"), ("rabbitmq", "/var/lib/rabbitmq")):
        sources = [str(v).split(":")[0] for v in services[name].get("volumes", [])
                   if str(v).split(":")[1] == target]
        assert sources and sources[0] in declared, f"{name} {target} is not a named volume"


def test_environment_names_are_ones_the_config_reads(services):
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", CONFIG_FILE.read_text(encoding="utf-8")))
    needed = {"AMQP_URI", "MONGO_URI", "RABBIT_MANAGEMENT_URI", "RELIEF_ADMIN_TOKEN"}
    for name in [*SERVICES, ONE_SHOT]:
        env = environment(services[name])
        assert needed <= set(env), (name, sorted(needed - set(env)))
        unknown = set(env) - read
        assert not unknown, f"{name} sets variables deploy/config.yaml never reads: {unknown}"


def test_gateway_publishes_8000_and_checks_health(services):
    gateway = services["gateway"]
    published = [str(p) for p in gateway.get("ports", [])]
    assert any(p.rsplit(":", 1)[-1].split("/")[0] == "8000" for p in published), published
    check = healthcheck_text(gateway)
    assert "/health" in check and ":8000" in check
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
    cli = shutil.which("docker-compose") or (
        "/usr/bin/docker-compose" if os.path.exists("/usr/bin/docker-compose") else None)
    if cli is None:
        return  # the structural checks above stand in for the parser on this machine
    env = {k: v for k, v in os.environ.items() if k not in OPTIONAL_VARS}
    result = subprocess.run([cli, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or result.stdout
