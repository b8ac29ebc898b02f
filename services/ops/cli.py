"""``relief-ops``: the on-call tool. Reads the broker's management API and the gateway, never
the databases.

    relief-ops status [--watch [N]] [--json] [--quiet] [--max-depth N]
                      [--max-dead-letters N] [--max-age 4h | --max-age community=2h,...]
    relief-ops dlq list [QUEUE] [--limit N] [--json]
    relief-ops dlq show QUEUE ID [--json]
    relief-ops dlq replay QUEUE (--id ID ... | --all) [--json]
    relief-ops dlq purge QUEUE --yes

Exit status: 0 all checks passed (or the command did what was asked), 1 something is wrong
(each problem is named), 2 usage error or nothing done.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

# importing the service classes (to know their queues) must not print eventlet's notice
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from services.common.reference import TIER_ORDER  # noqa: E402
from services.common.topology import Management  # noqa: E402
from services.ops import deadletters  # noqa: E402
from services.ops.report import (  # noqa: E402
    Thresholds,
    build_report,
    format_age,
    is_dead_letter_queue,
    resolve_dlq,
)

OK, PROBLEMS, USAGE = 0, 1, 2
ROOT = Path(__file__).resolve().parents[2]
URGENCIES = ("critical", "high", "normal", "low")


# -- configuration ---------------------------------------------------------------------------
def default_token() -> str | None:
    token = os.environ.get("RELIEF_ADMIN_TOKEN", "").strip()
    if token:
        return token
    for path in (Path.cwd() / ".local" / "admin_token", ROOT / ".local" / "admin_token"):
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if token:
            return token
    return None


def redact_uri(uri: str) -> str:
    """A broker URI without its password, for messages."""
    parsed = urlsplit(uri)
    if parsed.password is None:
        return uri
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (
        f":{parsed.port}" if parsed.port else "")
    return urlunsplit(parsed._replace(netloc=netloc))


def management(args: argparse.Namespace) -> Management:
    return Management(args.management_uri, args.amqp_uri)


# -- reading -----------------------------------------------------------------------------------
def read_queues(args: argparse.Namespace) -> list[dict[str, Any]]:
    from services.gateway.status import queue_rows

    return queue_rows(management(args).queues())


def read_needs(args: argparse.Namespace) -> dict[str, Any]:
    """Matching's needs overview, through the gateway (``GET /api/status``)."""
    if not args.token:
        raise RuntimeError("no operator token (--token, RELIEF_ADMIN_TOKEN or "
                           ".local/admin_token): open needs not checked")
    url = f"{args.gateway.rstrip('/')}/api/status"
    try:
        response = requests.get(url, headers={"Authorization": f"Bearer {args.token}"},
                                timeout=args.timeout)
    except requests.RequestException as exc:
        raise RuntimeError(f"unreachable at {args.gateway} ({type(exc).__name__})") from None
    if response.status_code == 401:
        raise RuntimeError("refused the operator token")
    if response.status_code != 200:
        try:
            detail = response.json().get("error", "")
        except ValueError:
            detail = ""
        raise RuntimeError(f"answered {response.status_code} {detail}".strip())
    return response.json()["needs"]


def collect(args: argparse.Namespace, thresholds: Thresholds) -> dict[str, Any]:
    errors: dict[str, str] = {}
    queues = needs = None
    try:
        queues = read_queues(args)
    except requests.HTTPError as exc:
        errors["broker"] = (f"management API at {management(args).base} answered "
                            f"{exc.response.status_code}")
    except requests.RequestException as exc:
        errors["broker"] = (f"management API unreachable at {management(args).base} "
                            f"({type(exc).__name__})")
    try:
        needs = read_needs(args)
    except RuntimeError as exc:
        errors["gateway"] = str(exc)
    return build_report(queues, needs, thresholds=thresholds, errors=errors)


# -- rendering -------------------------------------------------------------------------------
def _rate(value: float) -> str:
    return f"{value:.1f}"


def render_status(report: dict[str, Any]) -> str:
    lines = [f"Relief Exchange status at {report['checked_at']}", ""]
    queues = report["queues"]
    if queues is not None:
        width = max([len("QUEUE")] + [len(q["name"]) for q in queues
                                      if not q["dead_letter_queue"]])
        lines.append(f"{'QUEUE':<{width}}  {'DEPTH':>6} {'READY':>6} {'UNACKED':>7} "
                     f"{'CONSUMERS':>9} {'PUB/s':>7} {'ACK/s':>7} {'DEAD':>6}")
        for q in queues:
            if q["dead_letter_queue"]:
                continue
            lines.append(
                f"{q['name']:<{width}}  {q['messages']:>6} {q['ready']:>6} {q['unacked']:>7} "
                f"{q['consumers']:>9} {_rate(q['publish_rate']):>7} {_rate(q['ack_rate']):>7} "
                f"{q['dead_letters']:>6}")
        dlqs = [q for q in queues if q["dead_letter_queue"] and q["messages"]]
        lines.append("")
        lines.append(f"Dead letters: {report['dead_letters']}" + (
            "  (" + ", ".join(f"{q['name']}: {q['messages']}" for q in dlqs) + ")"
            if dlqs else ""))
    needs = report["needs"]
    if needs is not None:
        lines.append("")
        header = " ".join(f"{u:>8}" for u in URGENCIES)
        lines.append(f"{'OPEN NEEDS':<10} {header}   OLDEST OPEN")
        for tier in TIER_ORDER:
            counts = (needs.get("open_needs") or {}).get(tier) or {}
            oldest = (needs.get("oldest_open") or {}).get(tier)
            cells = " ".join(f"{counts.get(u, 0):>8}" for u in URGENCIES)
            old = (f"{oldest['need_id']}  {format_age(oldest['age_seconds'])}  "
                   f"{oldest['urgency']} {oldest['category']} at {oldest['community_id']}"
                   if oldest else "-")
            lines.append(f"{tier:<10} {cells}   {old}")
        supply = needs.get("supply") or []
        if supply:
            lines.append("")
            lines.append("Supply available: " + ", ".join(
                f"{s['category']} {s['available']:g} {s['unit']}" for s in supply))
        hours = needs.get("assignments_per_hour") or []
        lines.append(f"Assignments in the last 24 h: {sum(h['count'] for h in hours)}")
    lines.append("")
    lines.extend(render_verdict(report))
    return "\n".join(lines)


def render_verdict(report: dict[str, Any]) -> list[str]:
    if report["ok"]:
        return ["OK: every check passed"]
    problems = report["problems"]
    return [f"PROBLEMS ({len(problems)}):"] + [f"  - {p['message']}" for p in problems]


# -- commands -------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    try:
        thresholds = Thresholds.from_options(args.max_depth, args.max_dead_letters,
                                             args.max_age)
    except ValueError as exc:
        print(f"relief-ops: {exc}", file=sys.stderr)
        return USAGE
    code = OK
    try:
        while True:
            report = collect(args, thresholds)
            code = OK if report["ok"] else PROBLEMS
            if args.json:
                print(json.dumps(report, ensure_ascii=False,
                                 indent=None if args.watch else 2), flush=True)
            elif args.quiet:
                if not report["ok"]:
                    print("\n".join(render_verdict(report)), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")  # clear the screen between refreshes
                print(render_status(report), flush=True)
                if args.watch:
                    print(f"\n(refreshing every {args.watch:g} s; Ctrl-C to stop)", flush=True)
            if not args.watch:
                return code
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return code


def _dlq_rows(args: argparse.Namespace, only: str | None) -> list[dict[str, Any]]:
    rows = [q for q in read_queues(args) if is_dead_letter_queue(q["name"])]
    if only:
        rows = [q for q in rows if q["name"] == only]
        if not rows:
            raise LookupError(f"no dead-letter queue {only}")
    return rows


def cmd_dlq_list(args: argparse.Namespace) -> int:
    rows = _dlq_rows(args, resolve_dlq(args.queue) if args.queue else None)
    mgmt = management(args)
    listing = []
    for q in rows:
        letters, depth = deadletters.peek(mgmt, q["name"], args.limit)
        listing.append({"queue": q["name"], "messages": max(depth, len(letters)),
                        "dead_letters": [d.summary() for d in letters]})
    if args.json:
        print(json.dumps(listing, ensure_ascii=False, indent=2))
        return OK
    total = sum(q["messages"] for q in listing)
    print(f"{total} dead letter(s) in {len(listing)} dead-letter queue(s)")
    for q in listing:
        if not q["messages"] and not args.queue:
            continue
        print(f"\n{q['queue']}: {q['messages']}")
        for d in q["dead_letters"]:
            attempts = f"attempts {d['attempts']}" if d["attempts"] is not None else ""
            print(f"  {d['id']}  {d['event_type'] or '?'}  {d['subject'] or ''}  "
                  f"[{d['kind']}] {attempts}  failed {d['failed_at'] or '?'}")
            print(f"      reason: {d['reason']}")
            print(f"      origin: {d['origin'] or '?'}")
        if q["messages"] > len(q["dead_letters"]):
            print(f"  ... {q['messages'] - len(q['dead_letters'])} more (--limit)")
    return OK


def cmd_dlq_show(args: argparse.Namespace) -> int:
    queue = resolve_dlq(args.queue)
    _dlq_rows(args, queue)
    peeked, _ = deadletters.peek(management(args), queue, args.limit)
    letters = [d for d in peeked if d.ref == args.id]
    if not letters:
        print(f"relief-ops: no dead letter {args.id} in the first {args.limit} of {queue}",
              file=sys.stderr)
        return USAGE
    details = [d.details() for d in letters]
    if args.json:
        print(json.dumps(details, ensure_ascii=False, indent=2))
        return OK
    for d in details:
        for key in ("queue", "id", "origin", "event_type", "subject", "kind", "reason",
                    "attempts", "failed_at", "replays", "content_type", "size"):
            print(f"{key + ':':<14}{d[key] if d[key] is not None else '-'}")
        print("headers:")
        for key, value in d["headers"].items():
            print(f"  {key}: {json.dumps(value, ensure_ascii=False, default=str)}")
        print("body (personal data masked):")
        if "body" in d:
            print(json.dumps(d["body"], ensure_ascii=False, indent=2))
        else:
            print(d["body_text"])
    return OK


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    if not args.all and not args.id:
        print("relief-ops: say which messages: --id ID (repeatable) or --all", file=sys.stderr)
        return USAGE
    queue = resolve_dlq(args.queue)
    _dlq_rows(args, queue)
    wanted = set(args.id or [])
    try:
        result = deadletters.replay(args.amqp_uri, queue,
                                    lambda d: args.all or d.ref in wanted)
    except ImportError:
        print("relief-ops: replay needs the pika package (pip install pika)", file=sys.stderr)
        return USAGE
    except Exception as exc:  # noqa: BLE001 - pika's connection errors, named for on-call
        print(f"relief-ops: could not replay through {redact_uri(args.amqp_uri)}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return PROBLEMS
    if args.json:
        print(json.dumps({"queue": queue, "replayed": result.replayed, "failed": result.failed,
                          "left": result.left}, ensure_ascii=False, indent=2))
    else:
        for d in result.replayed:
            print(f"replayed {d['id']} ({d['event_type'] or '?'}) to {d['origin']}")
        for d in result.failed:
            print(f"NOT replayed {d['id']}: {d['error']}")
        missing = wanted - {d["id"] for d in result.replayed + result.failed}
        for ref in sorted(missing):
            print(f"not found: {ref}")
        print(f"{len(result.replayed)} replayed, {len(result.failed)} failed, "
              f"{result.left} left in {queue}")
    if result.failed:
        return PROBLEMS
    if not result.replayed:
        return USAGE
    return OK


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    queue = resolve_dlq(args.queue)
    _dlq_rows(args, queue)
    if not args.yes:
        _, depth = deadletters.peek(management(args), queue, 1)
        print(f"relief-ops: {queue} holds {depth} dead letter(s); purging deletes them for "
              f"good. Add --yes to do it.", file=sys.stderr)
        return USAGE
    purged = deadletters.purge(management(args), queue)
    print(f"purged {queue} ({purged} dead letter(s))")
    return OK


# -- arguments --------------------------------------------------------------------------------
def add_connection_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--management-uri",
                   default=default(os.environ.get("RABBIT_MANAGEMENT_URI",
                                                  "http://guest:guest@127.0.0.1:15672")),
                   help="broker management API (env RABBIT_MANAGEMENT_URI)")
    p.add_argument("--amqp-uri",
                   default=default(os.environ.get("AMQP_URI",
                                                  "amqp://guest:guest@127.0.0.1:5672/")),
                   help="broker AMQP URI: its vhost, and where replays are published "
                        "(env AMQP_URI)")
    p.add_argument("--gateway",
                   default=default(os.environ.get("RELIEF_GATEWAY_URL",
                                                  "http://127.0.0.1:8000")),
                   help="gateway base URL (env RELIEF_GATEWAY_URL)")
    p.add_argument("--token", default=default(None),
                   help="operator token (default: env RELIEF_ADMIN_TOKEN, else "
                        ".local/admin_token)")
    p.add_argument("--timeout", type=float, default=default(15.0),
                   help="seconds to wait for the gateway")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relief-ops",
        description="On-call tool for Relief Exchange: queue status, dead letters.",
        epilog="Exit status: 0 ok, 1 something is wrong (named), 2 usage error or nothing "
               "done.")
    add_connection_options(p, defaults=True)
    # the same options after the subcommand too (relief-ops status --token ...)
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("status", parents=[common],
                       help="queues, dead letters and open needs, checked")
    s.add_argument("--watch", type=float, nargs="?", const=5.0, default=None, metavar="N",
                   help="refresh every N seconds (default 5) until Ctrl-C")
    s.add_argument("--json", action="store_true", help="the report as JSON (one line per "
                   "refresh with --watch)")
    s.add_argument("--quiet", action="store_true",
                   help="print only problems (nothing when all is well): for cron")
    s.add_argument("--max-depth", default=None, metavar="N",
                   help="problem when a consumer queue holds more than N messages "
                        f"(default {Thresholds().max_depth})")
    s.add_argument("--max-dead-letters", default=None, metavar="N",
                   help="problem when a dead-letter queue holds more than N "
                        f"(default {Thresholds().max_dead_letters})")
    s.add_argument("--max-age", action="append", default=None, metavar="AGE",
                   help="problem when the oldest open need of a tier is older: 4h for every "
                        "tier, or community=2h,street=8h,district=1d (default 24h)")
    s.set_defaults(func=cmd_status)

    d = sub.add_parser("dlq", help="dead letters: list, show, replay, purge")
    dsub = d.add_subparsers(dest="dlq_command", required=True)
    ls = dsub.add_parser("list", parents=[common],
                         help="dead-letter queues and their messages with reasons")
    ls.add_argument("queue", nargs="?", help="a dead-letter queue (or the queue it serves)")
    ls.add_argument("--limit", type=int, default=20, help="messages per queue (default 20)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_dlq_list)
    sh = dsub.add_parser("show", parents=[common],
                         help="one dead letter in full, personal data masked")
    sh.add_argument("queue")
    sh.add_argument("id", help="the id shown by list (event id, or sha1:...)")
    sh.add_argument("--limit", type=int, default=1000, help="how deep to look (default 1000)")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_dlq_show)
    rp = dsub.add_parser("replay", parents=[common],
                         help="send dead letters back to the queue they failed in, once "
                              "each, and remove them")
    rp.add_argument("queue")
    rp.add_argument("--id", action="append", help="the id shown by list (repeatable)")
    rp.add_argument("--all", action="store_true", help="every message in the queue")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_dlq_replay)
    pg = dsub.add_parser("purge", parents=[common],
                         help="delete every message of a dead-letter queue")
    pg.add_argument("queue")
    pg.add_argument("--yes", action="store_true", help="really delete them")
    pg.set_defaults(func=cmd_dlq_purge)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.token is None:
        args.token = default_token()
    try:
        return args.func(args)
    except LookupError as exc:
        print(f"relief-ops: {exc}", file=sys.stderr)
        return USAGE
    except requests.RequestException as exc:
        print(f"relief-ops: broker management API: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
