"""``relief-deploy``: put the topology in place on a broker, and the broker users.

Declares every exchange, queue and policy the code needs (``services.common.topology``),
lists (or, with ``--prune``, deletes) the queues of handlers that no longer exist, and
creates one least-privilege broker user per service, the read-only monitor and one
publisher per partner system, from passwords in its environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any
from urllib.parse import quote

from services.common.config import load_config, settings
from services.common.management import Management
from services.common.routing import (
    DLX,
    INTAKE_EXCHANGE,
    MONITOR_USER,
    RPC_EXCHANGE,
    SERVICES,
    UNROUTABLE_EXCHANGE,
    QueueSpec,
    event_exchange,
    user_name,
)
from services.common.topology import consumer_specs, declare, policies, service_class


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


MONITOR_PASSWORD_VARIABLE = "RELIEF_MONITOR_PASSWORD"


def password_variable(service: str) -> str:
    """The environment variable ``relief-deploy`` reads a service's broker password from."""
    return f"RELIEF_AMQP_PASSWORD_{service.upper()}"


def provision_monitor(mgmt: Management, password: str) -> str:
    """A read-only user for health and status pages (management API, tag ``monitoring``)."""
    name = quote(MONITOR_USER, safe="")
    mgmt.request("PUT", f"users/{name}", {"password": password, "tags": "monitoring"})
    mgmt.request("PUT", f"permissions/{mgmt.vhost}/{name}",
                 {"configure": "^$", "write": "^$", "read": ".*"})
    return MONITOR_USER


# Partner systems publish to relief.intake as their own broker users, named in
# ``RELIEF_PUBLISHERS`` as ``name:password`` pairs separated by commas. The name is what
# intake records as the event's source.
PUBLISHERS_VARIABLE = "RELIEF_PUBLISHERS"
PUBLISHER_NAME = re.compile(r"^(?!relief-)[a-z0-9][a-z0-9-]{1,62}$")


def publisher_permissions() -> dict[str, str]:
    """A partner system may publish to ``relief.intake`` (and, through it, to its alternate
    exchange) and nothing else: it declares, reads and binds nothing."""
    write = "^(" + "|".join(re.escape(x) for x in (INTAKE_EXCHANGE, UNROUTABLE_EXCHANGE)) + ")$"
    return {"configure": "^$", "write": write, "read": "^$"}


def publishers(environ: dict[str, str]) -> dict[str, str]:
    """The publishers ``RELIEF_PUBLISHERS`` names, with their passwords; ValueError naming
    what is wrong with it."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in environ.get(PUBLISHERS_VARIABLE, "").split(","))):
        name, sep, password = item.partition(":")
        if not sep or not password:
            raise ValueError(f"{PUBLISHERS_VARIABLE}: {name!r} has no password (name:password)")
        if not PUBLISHER_NAME.match(name):
            raise ValueError(f"{PUBLISHERS_VARIABLE}: {name!r} is not a publisher name "
                             "(a-z, 0-9 and -, not starting with relief-)")
        out[name] = password
    return out


def provision_publishers(mgmt: Management, passwords: dict[str, str]) -> list[str]:
    """Create (or update) one broker user per partner system, allowed only to publish to
    ``relief.intake``."""
    for name, password in sorted(passwords.items()):
        quoted = quote(name, safe="")
        mgmt.request("PUT", f"users/{quoted}", {"password": password, "tags": ""})
        mgmt.request("PUT", f"permissions/{mgmt.vhost}/{quoted}", publisher_permissions())
    return sorted(passwords)


def service_passwords(environ: dict[str, str]) -> dict[str, str]:
    """``RELIEF_AMQP_PASSWORD_<SERVICE>`` for each service that has one set."""
    out = {}
    for service in SERVICES:
        value = environ.get(password_variable(service))
        if value:
            out[service] = value
    return out


def deploy(config: dict[str, Any], classes: list[type] | None = None) -> list[QueueSpec]:
    """Declare the whole topology and apply the policies. Safe to run again at any time."""
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
        specs = consumer_specs()
        print(json.dumps({"queues": [s.__dict__ for s in specs],
                          "policies": policies(specs, settings(config))}, indent=2, default=list))
        return 0
    specs = deploy(config)
    print(f"relief-deploy: {len(specs)} consumer queues, dead-letter queues and policies in place")
    mgmt = Management(settings(config).management_uri, config["AMQP_URI"])
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
        users = provision_users(mgmt, passwords)
        if os.environ.get(MONITOR_PASSWORD_VARIABLE):
            users.append(provision_monitor(mgmt, os.environ[MONITOR_PASSWORD_VARIABLE]))
        print(f"relief-deploy: least-privilege broker users {', '.join(users)}")
    partners = publishers(dict(os.environ))
    if partners:
        made = provision_publishers(mgmt, partners)
        print(f"relief-deploy: publishers to {INTAKE_EXCHANGE} only: {', '.join(made)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
