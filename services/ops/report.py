"""The on-call status report: queues and open needs, checked against thresholds.

Pure (no I/O): ``relief-ops status`` and the gateway's dashboard both build their report
here from the same inputs (the broker's queue rows, matching's needs overview and
notifications' on-call summary), so the command line, ``--json`` and the dashboard always
agree on figures and on what is wrong.

Besides thresholds, two things are always a problem: a message in ``relief.unroutable``
(an event no queue was bound for: a misroute, or a type nobody consumes) and an escalation
that reached nobody (no coordinator registered for the area it went to).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from services.common.reference import TIER_ORDER
from services.common.routing import INTAKE_DLQ, INTAKE_QUEUE, SERVICES, UNROUTABLE_QUEUE

DEFAULT_MAX_DEPTH = 1000
DEFAULT_MAX_DEAD_LETTERS = 0
# a need nobody could serve for a day is worth waking someone for; tune per tier with flags
DEFAULT_MAX_AGE_SECONDS = 24 * 3600.0

_RPC_QUEUES = {f"rpc-{name}" for name in SERVICES}


@dataclass(frozen=True)
class Thresholds:
    max_depth: int = DEFAULT_MAX_DEPTH
    max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS
    max_age: Mapping[str, float] = field(
        default_factory=lambda: {tier: DEFAULT_MAX_AGE_SECONDS for tier in TIER_ORDER})

    def as_dict(self) -> dict[str, Any]:
        return {"max_depth": self.max_depth, "max_dead_letters": self.max_dead_letters,
                "max_age_seconds": dict(self.max_age)}

    @classmethod
    def from_options(cls, max_depth: Any = None, max_dead_letters: Any = None,
                     max_age: Iterable[str] | str | None = None) -> Thresholds:
        """From command-line or query-string values (strings); ``ValueError`` names the bad
        one."""
        return cls(
            max_depth=_non_negative_int("max-depth", max_depth, DEFAULT_MAX_DEPTH),
            max_dead_letters=_non_negative_int("max-dead-letters", max_dead_letters,
                                               DEFAULT_MAX_DEAD_LETTERS),
            max_age=parse_max_age(max_age),
        )


def _non_negative_int(name: str, value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name}: must not be negative")
    return number


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``4h``, ``2d`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 3600, 45m, 4h, 2d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_max_age(values: Iterable[str] | str | None) -> dict[str, float]:
    """``4h`` sets every tier; ``community=2h,district=2d`` sets some. Later values win."""
    out = {tier: DEFAULT_MAX_AGE_SECONDS for tier in TIER_ORDER}
    if values is None:
        return out
    if isinstance(values, str):
        values = [values]
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            tier, sep, amount = part.partition("=")
            if not sep:
                seconds = parse_duration(part)
                out = dict.fromkeys(out, seconds)
                continue
            tier = tier.strip()
            if tier not in out:
                raise ValueError(f"max-age: unknown tier {tier!r} "
                                 f"(tiers: {', '.join(TIER_ORDER)})")
            out[tier] = parse_duration(amount)
    return out


# -- queues ------------------------------------------------------------------------------
def is_dead_letter_queue(name: str) -> bool:
    return name.startswith("dlq.") or name == INTAKE_DLQ


def queue_rows(queues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The management API's queue objects, reduced to what on-call staff look at."""
    rows = []
    for q in queues:
        if q["name"].startswith(("rpc.reply", "amq.")):
            continue
        stats = q.get("message_stats") or {}
        rows.append({
            "name": q["name"],
            "dead_letter_queue": is_dead_letter_queue(q["name"]),
            "messages": q.get("messages", 0),
            "ready": q.get("messages_ready", 0),
            "unacked": q.get("messages_unacknowledged", 0),
            "consumers": q.get("consumers", 0),
            "publish_rate": (stats.get("publish_details") or {}).get("rate", 0.0),
            "ack_rate": (stats.get("ack_details") or {}).get("rate", 0.0),
        })
    return sorted(rows, key=lambda r: r["name"])


def origin_of(dlq: str) -> str | None:
    """The queue whose dead letters ``dlq`` holds, from the naming rule."""
    if dlq == INTAKE_DLQ:
        return INTAKE_QUEUE
    if dlq.startswith("dlq."):
        return dlq[len("dlq."):]
    return None


def dlq_of(queue: str) -> str:
    return INTAKE_DLQ if queue == INTAKE_QUEUE else f"dlq.{queue}"


def resolve_dlq(name: str) -> str:
    """Accept either a dead-letter queue or the queue it serves."""
    return name if is_dead_letter_queue(name) else dlq_of(name)


# Every queue the code consumes from, one name per line: written by ``python -m services.docs``
# from the services' consumers (``consumer_specs``) and checked by a test, so that the
# command line knows them without importing every service (which costs it a second).
CONSUMER_QUEUES_FILE = Path(__file__).resolve().parent / "consumer_queues.txt"


def render_consumer_queues(names: Iterable[str]) -> str:
    return ("# Generated by `python -m services.docs` from the services' consumers; "
            "do not edit.\n" + "".join(f"{name}\n" for name in names))


@lru_cache(maxsize=1)
def consumer_queues() -> tuple[str, ...] | None:
    """Every queue the code consumes from (each must have a consumer while the system runs);
    None when the list cannot be read here (then the naming rule decides)."""
    try:
        text = CONSUMER_QUEUES_FILE.read_text(encoding="utf-8")
    except OSError:
        return None
    return tuple(line.strip() for line in text.splitlines()
                 if line.strip() and not line.startswith("#"))


def _needs_consumer(name: str, required: set[str] | None) -> bool:
    if name in _RPC_QUEUES:
        return True
    if required is None:
        return name.startswith("evt-") or name == INTAKE_QUEUE
    return name in required


def format_age(seconds: float | None) -> str:
    """``7530`` -> ``2h 05m``: ages as people read them."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


TIER_ZH = {"community": "社区", "street": "街道", "district": "区"}


def _problem(check: str, subject: str, message: str, message_zh: str) -> dict[str, str]:
    """A named problem, said in English (``message``) and in Chinese (``message_zh``: the
    dashboard and ``relief-ops`` show it in zh-CN)."""
    return {"check": check, "subject": subject, "message": message, "message_zh": message_zh}


def build_report(  # noqa: PLR0913 - independent inputs, keyword-only but the two sources
        queues: list[dict[str, Any]] | None, needs: dict[str, Any] | None, *,
        notifications: Mapping[str, Any] | None = None,
        thresholds: Thresholds | None = None,
        required: Iterable[str] | None = None,
        errors: Mapping[str, str] | None = None,
        now: datetime | None = None) -> dict[str, Any]:
    """The report both the command line and the dashboard show.

    ``queues``: rows as ``queue_rows`` makes them (None when the
    broker could not be read); ``needs``: matching's ``needs_overview`` (None when it could
    not be read); ``notifications``: notifications' ``on_call_summary`` (None when it could
    not be read); ``required``: queues that must have consumers (default: from the code);
    ``errors``: source -> why it could not be read."""
    thresholds = thresholds or Thresholds()
    known = consumer_queues() if required is None else tuple(required)
    required_set = set(known) if known is not None else None
    problems: list[dict[str, str]] = []
    for source, reason in (errors or {}).items():
        problems.append(_problem("source", source, f"{source}: {reason}",
                                 f"无法读取 {source}：{reason}"))

    rows: list[dict[str, Any]] | None = None
    if queues is not None:
        by_name = {q["name"]: q for q in queues}
        rows = []
        for q in sorted(queues, key=lambda r: r["name"]):
            row = dict(q)
            name = row["name"]
            if is_dead_letter_queue(name):
                row["dead_letter_queue"] = True
                row["origin"] = origin_of(name)
            else:
                row["dead_letter_queue"] = False
                dlq = by_name.get(dlq_of(name))
                row["dlq"] = dlq["name"] if dlq else None
                row["dead_letters"] = dlq.get("messages", 0) if dlq else 0
                row["consumers_required"] = _needs_consumer(name, required_set)
            rows.append(row)
        problems.extend(_queue_problems(rows, required_set, thresholds))

    oldest: dict[str, Any] = {}
    if needs is not None:
        oldest = needs.get("oldest_open") or {}
        for tier in TIER_ORDER:
            need = oldest.get(tier)
            limit = thresholds.max_age.get(tier)
            if need and limit is not None and need.get("age_seconds", 0) > limit:
                problems.append(_problem(
                    "age", tier,
                    f"oldest open {tier} need {need.get('need_id')} is "
                    f"{format_age(need.get('age_seconds'))} old (limit {format_age(limit)})",
                    f"{TIER_ZH.get(tier, tier)}层级最早的未满足需求 {need.get('need_id')} 已等待 "
                    f"{format_age(need.get('age_seconds'))}（上限 {format_age(limit)}）"))

    escalations = None
    if notifications is not None:
        escalations = list(notifications.get("unaddressed_escalations") or [])
        problems.extend(_escalation_problem(row) for row in escalations)

    unroutable = None
    if rows is not None:
        tap = next((r for r in rows if r["name"] == UNROUTABLE_QUEUE), None)
        unroutable = tap["messages"] if tap else 0

    return {
        "checked_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "ok": not problems,
        "problems": problems,
        "thresholds": thresholds.as_dict(),
        "queues": rows,
        "dead_letters": (sum(r["messages"] for r in rows if r["dead_letter_queue"])
                         if rows is not None else None),
        "unroutable": unroutable,
        "needs": needs,
        "unaddressed_escalations": escalations,
    }


def _escalation_problem(row: Mapping[str, Any]) -> dict[str, str]:
    area, count = row.get("area_id", "?"), row.get("count", 0)
    needs = ", ".join(row.get("need_ids") or [])
    ids = row.get("notification_ids") or []
    what = (f"{count} escalation(s) to {row.get('tier') or 'area'} {area}"
            + (f" ({needs})" if needs else "") + " reached nobody")
    retry = f"/api/notifications/{ids[0] if ids else '<id>'}/retry"
    tier = row.get("tier")
    what_zh = (f"{count} 条上报至{TIER_ZH.get(tier, tier) if tier else '区域'} {area}"
               + (f"（{needs}）" if needs else "") + "未送达任何人")
    if row.get("coordinators"):
        fix = f"a coordinator is registered now: send again with POST {retry}"
        fix_zh = f"现已有协调员登记：请用 POST {retry} 重新发送"
    else:
        fix = (f"no coordinator is registered for {area}: PUT /api/recipients/<id> with "
               f"areas [{area}], then POST {retry}")
        fix_zh = (f"{area} 未登记协调员：请 PUT /api/recipients/<id>（areas [{area}]），"
                  f"再 POST {retry}")
    return _problem("escalation", area, f"{what}; {fix}", f"{what_zh}；{fix_zh}")


def _queue_problems(rows: list[dict[str, Any]], required: set[str] | None,
                    thresholds: Thresholds) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    present = {r["name"] for r in rows}
    for name in sorted((required or set()) - present):
        problems.append(_problem("missing", name,
                                 f"{name}: queue does not exist (run relief-deploy)",
                                 f"{name}：队列不存在（请运行 relief-deploy）"))
    for row in rows:
        name = row["name"]
        if row["dead_letter_queue"]:
            if row["messages"] > thresholds.max_dead_letters:
                problems.append(_problem(
                    "dead_letters", name,
                    f"{name}: {row['messages']} dead letter(s) from {row['origin']} "
                    f"(relief-ops dlq list {name})",
                    f"{name}：来自 {row['origin']} 的 {row['messages']} 条死信"
                    f"（relief-ops dlq list {name}）"))
            continue
        if row.get("consumers_required") and row["consumers"] == 0:
            problems.append(_problem("consumers", name, f"{name}: no consumers",
                                     f"{name}：没有消费者"))
        if name == UNROUTABLE_QUEUE:
            # nothing normal lands here: any message is an event no queue was bound for
            if row["messages"]:
                problems.append(_problem(
                    "unroutable", name,
                    f"{name}: {row['messages']} message(s) no queue was bound for (a wrong "
                    f"routing key or exchange, or an event type nobody consumes; "
                    f"relief-ops dlq list {name})",
                    f"{name}：{row['messages']} 条消息没有可投递的队列（路由键或交换机有误，"
                    f"或无人消费该类事件；relief-ops dlq list {name}）"))
            continue
        if row["messages"] > thresholds.max_depth:
            problems.append(_problem(
                "depth", name, f"{name}: depth {row['messages']} over {thresholds.max_depth}",
                f"{name}：深度 {row['messages']}，超过 {thresholds.max_depth}"))
    return problems
