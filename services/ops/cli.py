"""``relief-ops``: the on-call tool. Reads the broker's management API and the gateway, never
the databases.

    relief-ops status [--watch [N]] [--json] [--quiet] [--max-depth N]
                      [--max-dead-letters N] [--max-age 4h | --max-age community=2h,...]
    relief-ops dlq list [QUEUE] [--limit N] [--json]
    relief-ops dlq show QUEUE ID [--json]
    relief-ops dlq replay QUEUE (--id ID ... | --all) [--json] [--unaudited]
    relief-ops dlq purge QUEUE --yes [--unaudited]

    relief-ops --version

Output is in the language setting: ``--lang``, else ``RELIEF_LANG``, else ``NOTIFY_LANGUAGE``
(the one notifications use), else zh-CN; ``--json`` is the same in every language.

``dlq list``, ``show`` and ``purge`` also take ``relief.unroutable``, where the broker keeps
events no queue was bound for (they have no queue to be replayed to).

Replaying and purging change what the system does, so before either the gateway is asked to
allow it for the credential given (``--token``: an account's session or an API key with the
``replay`` / ``purge`` permission, or the operator token) and records it in its audit log
(who, what, which queue and messages, when). A refusal stops the command. When the gateway
cannot be reached (an outage is when on-call needs this most), ``--unaudited`` acts anyway
and says that nothing recorded it.

Exit status: 0 all checks passed (or the command did what was asked), 1 something is wrong
(each problem is named), 2 usage error or nothing done.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

# a status tool prints its report only (never eventlet's notice, should an import pull it in)
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from services.common.management import Management  # noqa: E402
from services.common.reference import TIER_ORDER  # noqa: E402
from services.common.routing import UNROUTABLE_QUEUE  # noqa: E402
from services.ops import deadletters  # noqa: E402
from services.ops.report import (  # noqa: E402
    Thresholds,
    build_report,
    format_age,
    is_dead_letter_queue,
    queue_rows,
    resolve_dlq,
)

OK, PROBLEMS, USAGE = 0, 1, 2
LANGUAGES = ("zh-CN", "en")
ROOT = Path(__file__).resolve().parents[2]
URGENCIES = ("critical", "high", "normal", "low")


# -- configuration ---------------------------------------------------------------------------
def language(explicit: str | None = None) -> str:
    """``--lang``, else ``RELIEF_LANG``, else ``NOTIFY_LANGUAGE`` (the language notifications
    write in when a recipient chose none), else zh-CN."""
    for value in (explicit, os.environ.get("RELIEF_LANG"), os.environ.get("NOTIFY_LANGUAGE")):
        if value in LANGUAGES:
            return value
    return "zh-CN"


def version_text(lang: str) -> str:
    from importlib import metadata  # only here: every status call would pay for it

    try:
        number = metadata.version("relief-exchange")
    except metadata.PackageNotFoundError:
        number = "unknown"
    return WORDS[lang]["version"].format(v=number)


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
class Answered(Exception):
    """An HTTP answer other than 200 (``status``; ``error``: what its body says, if any)."""

    def __init__(self, status: int, error: str = ""):
        super().__init__(f"answered {status} {error}".strip())
        self.status, self.error = status, error


class Unreachable(OSError):
    """No HTTP answer (refused, timed out, cut off)."""


def get_json(url: str, headers: dict[str, str], timeout: float) -> Any:
    """GET ``url`` and its JSON body; :class:`Answered` for another status than 200,
    :class:`Unreachable` when there is no answer. With the standard library's client:
    ``status`` is what on-call runs over and over, and it starts in half the time it would
    with ``requests``."""
    import http.client

    parts = urlsplit(url)
    connection = (http.client.HTTPSConnection if parts.scheme == "https"
                  else http.client.HTTPConnection)(parts.hostname, parts.port, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path, headers={"Accept": "application/json", **headers})
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(type(exc).__name__) from None
    finally:
        connection.close()
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if response.status != 200:
        error = data.get("error", "") if isinstance(data, dict) else ""
        raise Answered(response.status, str(error))
    return data


def basic_auth(user: str, password: str) -> dict[str, str]:
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def read_queues(args: argparse.Namespace) -> list[dict[str, Any]]:
    mgmt = management(args)
    return queue_rows(get_json(f"{mgmt.base}/api/{mgmt.queues_path()}", basic_auth(*mgmt.auth),
                               timeout=min(args.timeout, 5.0)))


def read_gateway(args: argparse.Namespace) -> dict[str, Any]:
    """The gateway's ``GET /api/status``: matching's needs overview, notifications' on-call
    summary, and what the gateway could not read (``errors``)."""
    if not args.token:
        raise RuntimeError("no operator token (--token, RELIEF_ADMIN_TOKEN or "
                           ".local/admin_token): open needs not checked")
    url = f"{args.gateway.rstrip('/')}/api/status"
    try:
        return get_json(url, {"Authorization": f"Bearer {args.token}"}, timeout=args.timeout)
    except Unreachable as exc:
        raise RuntimeError(f"unreachable at {args.gateway} ({exc})") from None
    except Answered as exc:
        if exc.status == 401:
            raise RuntimeError("refused the operator token") from None
        raise RuntimeError(str(exc)) from None


def _read_gateway(args: argparse.Namespace) -> dict[str, Any] | str:
    """``read_gateway``, or why it could not be read (a status tool reports a source it
    cannot read as a problem; it does not stop)."""
    try:
        status = read_gateway(args)
    except RuntimeError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - said as a problem, as above
        return f"could not be read ({type(exc).__name__})"
    return status if isinstance(status, dict) else "answered something else than a report"


def collect(args: argparse.Namespace, thresholds: Thresholds) -> dict[str, Any]:
    errors: dict[str, str] = {}
    needs = notifications = None
    # the broker and the gateway are read at once: an answer waits for the slower, not both
    gateway: dict[str, Any] = {}
    reading = threading.Thread(target=lambda: gateway.update(read=_read_gateway(args)))
    reading.start()
    queues = None
    try:
        queues = read_queues(args)
    except Answered as exc:
        errors["broker"] = f"management API at {management(args).base} answered {exc.status}"
    except Unreachable as exc:
        errors["broker"] = f"management API unreachable at {management(args).base} ({exc})"
    reading.join()
    status = gateway.get("read", "could not be read")
    if isinstance(status, str):
        errors["gateway"] = status
    else:
        needs, notifications = status.get("needs"), status.get("notifications")
        errors.update(status.get("errors") or {})
    return build_report(queues, needs, notifications=notifications, thresholds=thresholds,
                        errors=errors)


# -- rendering -------------------------------------------------------------------------------
def _rate(value: float) -> str:
    return f"{value:.1f}"


WORDS = {
    "en": {"version": "relief-ops {v} (Relief Exchange on-call tool)",
           "status_at": "Relief Exchange status at {at}", "queue": "QUEUE", "depth": "DEPTH",
           "ready": "READY", "unacked": "UNACKED", "consumers": "CONSUMERS", "pub": "PUB/s",
           "ack": "ACK/s", "dead": "DEAD", "dead_letters": "Dead letters: {n}",
           "open_needs": "OPEN NEEDS", "oldest_open": "OLDEST OPEN",
           "oldest": "{id}  {age}  {urgency} {category} at {community}",
           "supply": "Supply available: ", "assignments": "Assignments in the last 24 h: {n}",
           "nobody": "Escalations that reached nobody (no coordinator registered):",
           "since": "since", "needs": "needs", "coordinators": "coordinators now",
           "ok": "OK: every check passed", "problems": "PROBLEMS ({n}):",
           "refreshing": "(refreshing every {s} s; Ctrl-C to stop)"},
    "zh-CN": {"version": "relief-ops {v}（社区抗疫物资协调平台 值班工具）",
              "status_at": "社区抗疫物资协调平台 状态（{at}）", "queue": "队列", "depth": "深度",
              "ready": "待处理", "unacked": "处理中", "consumers": "消费者", "pub": "发布/秒",
              "ack": "确认/秒", "dead": "死信", "dead_letters": "死信：{n}",
              "open_needs": "未满足需求", "oldest_open": "最早未满足",
              "oldest": "{id}  {age}  {urgency} {category}，{community}",
              "supply": "可用物资：", "assignments": "近 24 小时匹配：{n}",
              "nobody": "未能送达任何人的上报（该区域未登记协调员）：",
              "since": "自", "needs": "需求", "coordinators": "现有协调员",
              "ok": "正常：所有检查通过", "problems": "问题（{n}）：",
              "refreshing": "（每 {s} 秒刷新；Ctrl-C 停止）"},
}
TIER_WORDS = {"zh-CN": {"community": "社区", "street": "街道", "district": "区"}}
URGENCY_WORDS = {"zh-CN": {"critical": "紧急", "high": "高", "normal": "一般", "low": "低"}}


def _cell(text: str, width: int, right: bool = True) -> str:
    """``text`` padded to ``width`` terminal columns (a CJK character takes two)."""
    columns = sum(2 if "\u2e80" <= c <= "\uffef" else 1 for c in text)
    pad = " " * max(width - columns, 0)
    return pad + text if right else text + pad


def render_status(report: dict[str, Any], lang: str | None = None) -> str:
    lang = language(lang)
    w = WORDS[lang]
    tier_name = TIER_WORDS.get(lang, {})
    urgency_name = URGENCY_WORDS.get(lang, {})
    lines = [w["status_at"].format(at=report["checked_at"]), ""]
    queues = report["queues"]
    if queues is not None:
        width = max([len(w["queue"])] + [len(q["name"]) for q in queues
                                          if not q["dead_letter_queue"]])
        lines.append(f"{_cell(w['queue'], width, right=False)}  {_cell(w['depth'], 6)} "
                     f"{_cell(w['ready'], 6)} {_cell(w['unacked'], 7)} "
                     f"{_cell(w['consumers'], 9)} {_cell(w['pub'], 7)} {_cell(w['ack'], 7)} "
                     f"{_cell(w['dead'], 6)}")
        for q in queues:
            if q["dead_letter_queue"]:
                continue
            lines.append(
                f"{q['name']:<{width}}  {q['messages']:>6} {q['ready']:>6} {q['unacked']:>7} "
                f"{q['consumers']:>9} {_rate(q['publish_rate']):>7} {_rate(q['ack_rate']):>7} "
                f"{q['dead_letters']:>6}")
        dlqs = [q for q in queues if q["dead_letter_queue"] and q["messages"]]
        lines.append("")
        lines.append(w["dead_letters"].format(n=report["dead_letters"]) + (
            "  (" + ", ".join(f"{q['name']}: {q['messages']}" for q in dlqs) + ")"
            if dlqs else ""))
    needs = report["needs"]
    if needs is not None:
        lines.append("")
        header = " ".join(_cell(urgency_name.get(u, u), 8) for u in URGENCIES)
        lines.append(f"{_cell(w['open_needs'], 10, right=False)} {header}   "
                     f"{w['oldest_open']}")
        for tier in TIER_ORDER:
            counts = (needs.get("open_needs") or {}).get(tier) or {}
            oldest = (needs.get("oldest_open") or {}).get(tier)
            cells = " ".join(f"{counts.get(u, 0):>8}" for u in URGENCIES)
            old = (w["oldest"].format(
                id=oldest["need_id"], age=format_age(oldest["age_seconds"]),
                urgency=urgency_name.get(oldest["urgency"], oldest["urgency"]),
                category=oldest["category"], community=oldest["community_id"])
                if oldest else "-")
            lines.append(f"{_cell(tier_name.get(tier, tier), 10, right=False)} {cells}   {old}")
        supply = needs.get("supply") or []
        if supply:
            lines.append("")
            lines.append(w["supply"] + ", ".join(
                f"{s['category']} {s['available']:g} {s['unit']}" for s in supply))
        hours = needs.get("assignments_per_hour") or []
        lines.append(w["assignments"].format(n=sum(h["count"] for h in hours)))
    escalations = report.get("unaddressed_escalations")
    if escalations:
        lines.append("")
        lines.append(w["nobody"])
        for row in escalations:
            tier = row.get("tier") or ""
            lines.append(f"  {row['area_id']:<12} {_cell(tier_name.get(tier, tier), 9, False)} "
                         f"{row['count']:>4}  {w['since']} {row.get('since') or '?'}  "
                         f"{w['needs']} {', '.join(row.get('need_ids') or []) or '-'}  "
                         f"{w['coordinators']} {row.get('coordinators', 0)}")
    lines.append("")
    lines.extend(render_verdict(report, lang))
    return "\n".join(lines)


def render_verdict(report: dict[str, Any], lang: str | None = None) -> list[str]:
    lang = language(lang)
    w = WORDS[lang]
    if report["ok"]:
        return [w["ok"]]
    problems = report["problems"]
    key = "message_zh" if lang == "zh-CN" else "message"
    return [w["problems"].format(n=len(problems))] + [
        f"  - {p.get(key) or p['message']}" for p in problems]


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
                    print("\n".join(render_verdict(report, args.lang)), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")  # clear the screen between refreshes
                print(render_status(report, args.lang), flush=True)
                if args.watch:
                    print("\n" + WORDS[language(args.lang)]["refreshing"].format(
                        s=f"{args.watch:g}"), flush=True)
            if not args.watch:
                return code
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return code


def _held(name: str) -> bool:
    """Queues whose messages on-call reads one by one: dead letters and the unroutable tap."""
    return is_dead_letter_queue(name) or name == UNROUTABLE_QUEUE


def _queue_arg(name: str) -> str:
    return name if name == UNROUTABLE_QUEUE else resolve_dlq(name)


def _dlq_rows(args: argparse.Namespace, only: str | None) -> list[dict[str, Any]]:
    rows = [q for q in read_queues(args) if _held(q["name"])]
    if only:
        rows = [q for q in rows if q["name"] == only]
        if not rows:
            raise LookupError(f"no dead-letter queue {only}")
    return rows


def cmd_dlq_list(args: argparse.Namespace) -> int:
    rows = _dlq_rows(args, _queue_arg(args.queue) if args.queue else None)
    mgmt = management(args)
    listing = []
    for q in rows:
        letters, depth = deadletters.peek(mgmt, q["name"], args.limit)
        listing.append({"queue": q["name"], "messages": max(depth, len(letters)),
                        "dead_letters": [d.summary() for d in letters]})
    if args.json:
        print(json.dumps(listing, ensure_ascii=False, indent=2))
        return OK
    total = sum(q["messages"] for q in listing if q["queue"] != UNROUTABLE_QUEUE)
    dlqs = sum(1 for q in listing if q["queue"] != UNROUTABLE_QUEUE)
    print(f"{total} dead letter(s) in {dlqs} dead-letter queue(s)")
    for q in listing:
        if not q["messages"] and not args.queue:
            continue
        note = "  (events no queue was bound for)" if q["queue"] == UNROUTABLE_QUEUE else ""
        print(f"\n{q['queue']}: {q['messages']}{note}")
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
    queue = _queue_arg(args.queue)
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


def allowed_by_gateway(args: argparse.Namespace, action: str, queue: str,
                       messages: list[str] | None) -> str | None:
    """Ask the gateway to allow and record an on-call action on a dead-letter queue
    (``POST /api/on-call/dead-letters/<queue>/replay`` or ``.../purge``).
    None when it is recorded (or, with ``--unaudited``, when the gateway cannot be reached);
    else why not, for on-call to read."""
    body = {"messages": messages} if messages is not None else {}
    if not args.token:
        return ("no credential (--token, RELIEF_ADMIN_TOKEN or .local/admin_token): the "
                "gateway must allow and record this action")
    url = (f"{args.gateway.rstrip('/')}/api/on-call/dead-letters/{quote(queue, safe='')}/"
           f"{action}")
    import requests

    try:
        response = requests.post(url, json=body, timeout=args.timeout,
                                 headers={"Authorization": f"Bearer {args.token}"})
    except requests.RequestException as exc:
        if getattr(args, "unaudited", False):
            print(f"relief-ops: the gateway is unreachable at {args.gateway} "
                  f"({type(exc).__name__}): acting with --unaudited, recorded nowhere",
                  file=sys.stderr)
            return None
        return (f"the gateway is unreachable at {args.gateway} ({type(exc).__name__}), so "
                "nothing can record this action; try again, or add --unaudited to act "
                "without a record")
    if response.status_code == 201:
        return None
    try:
        said = response.json().get("error") or response.text
    except ValueError:
        said = response.text
    return f"the gateway refused ({response.status_code}): {said}"


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    if not args.all and not args.id:
        print("relief-ops: say which messages: --id ID (repeatable) or --all", file=sys.stderr)
        return USAGE
    if args.queue == UNROUTABLE_QUEUE:
        print(f"relief-ops: {UNROUTABLE_QUEUE} holds events no queue was bound for: there is "
              "no queue to replay them to. Fix the binding or the publisher, publish them "
              f"again, then purge {UNROUTABLE_QUEUE}.", file=sys.stderr)
        return USAGE
    queue = resolve_dlq(args.queue)
    _dlq_rows(args, queue)
    wanted = set(args.id or [])
    refusal = allowed_by_gateway(args, "replay", queue,
                                 None if args.all else sorted(wanted))
    if refusal:
        print(f"relief-ops: not replayed: {refusal}", file=sys.stderr)
        return USAGE
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
    queue = _queue_arg(args.queue)
    _dlq_rows(args, queue)
    if not args.yes:
        _, depth = deadletters.peek(management(args), queue, 1)
        print(f"relief-ops: {queue} holds {depth} dead letter(s); purging deletes them for "
              f"good. Add --yes to do it.", file=sys.stderr)
        return USAGE
    refusal = allowed_by_gateway(args, "purge", queue, None)
    if refusal:
        print(f"relief-ops: not purged: {refusal}", file=sys.stderr)
        return USAGE
    if queue == UNROUTABLE_QUEUE:
        mgmt = management(args)
        _, purged = deadletters.peek(mgmt, queue, 1)
        mgmt.request("DELETE", f"queues/{mgmt.vhost}/{quote(queue, safe='')}/contents")
    else:
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
    p.add_argument("--lang", choices=LANGUAGES, default=default(None),
                   help="language of the output (default: env RELIEF_LANG, else "
                        "NOTIFY_LANGUAGE, else zh-CN)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relief-ops",
        description="On-call tool for Relief Exchange: queue status, dead letters.",
        epilog="Exit status: 0 ok, 1 something is wrong (named), 2 usage error or nothing "
               "done.")
    p.add_argument("--version", action="store_true",
                   help="print the version (in the language setting) and exit")
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
    rp.add_argument("--unaudited", action="store_true",
                    help="act even when the gateway (its audit log) cannot be reached")
    rp.set_defaults(func=cmd_dlq_replay)
    pg = dsub.add_parser("purge", parents=[common],
                         help="delete every message of a dead-letter queue")
    pg.add_argument("queue")
    pg.add_argument("--yes", action="store_true", help="really delete them")
    pg.add_argument("--unaudited", action="store_true",
                    help="act even when the gateway (its audit log) cannot be reached")
    pg.set_defaults(func=cmd_dlq_purge)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv:  # before the subcommand is required
        lang = argv[argv.index("--lang") + 1] if "--lang" in argv[:-1] else None
        print(version_text(language(lang)))
        return OK
    args = parser().parse_args(argv)
    if args.token is None:
        args.token = default_token()
    try:
        return args.func(args)
    except LookupError as exc:
        print(f"relief-ops: {exc}", file=sys.stderr)
        return USAGE
    except (Answered, OSError) as exc:
        # ours, or the management API's client's (imported by the commands that change
        # queues); any other OSError is not the broker's
        requests = sys.modules.get("requests")
        if not isinstance(exc, Answered | Unreachable) and (
                requests is None or not isinstance(exc, requests.RequestException)):
            raise
        print(f"relief-ops: broker management API: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
