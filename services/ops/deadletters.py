"""Dead letters for on-call staff: read them (masked), replay them to their origin, purge.

Reading goes through the management API (peek: messages are requeued). Replay consumes with
AMQP so that each message is published once, confirmed, and only then removed: it goes to
the default exchange with the origin queue as routing key, so only the consumer that failed
sees it again. Consumers are idempotent by event id, so a replay interrupted between the
publish and the removal is harmless.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.common.logs import mask_name, mask_phone, scrub
from services.ops.report import is_dead_letter_queue, origin_of

# the ids that say what an event is about (not personal data)
SUBJECT_FIELDS = ("need_id", "donation_id", "assignment_id", "lot_id", "volunteer_id",
                  "hours_id")
# headers that describe a failure; a replayed message starts clean
FAILURE_HEADERS = ("x-relief-error", "x-relief-error-kind", "x-relief-attempts",
                   "x-relief-failed-at", "x-death", "x-first-death-exchange",
                   "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange",
                   "x-last-death-queue", "x-last-death-reason")
PERSONAL_KEYS = {"name", "phone", "mobile", "email", "address", "id_number", "id_card",
                 "wechat"}


@dataclass
class DeadLetter:
    """One message in a dead-letter queue."""

    queue: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = None
    content_encoding: str | None = None

    @property
    def envelope(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    @property
    def ref(self) -> str:
        """How to name this message on the command line: its event id, else a body hash."""
        env = self.envelope
        if env and isinstance(env.get("event_id"), str) and env["event_id"]:
            return env["event_id"]
        return "sha1:" + hashlib.sha1(self.body).hexdigest()[:12]

    @property
    def origin(self) -> str | None:
        """The queue it was dead-lettered from: our header, else the broker's, else the
        naming rule."""
        origin = _text(self.headers.get("x-relief-queue"))
        if origin:
            return origin
        for death in self.headers.get("x-death") or []:
            queue = _text((death or {}).get("queue"))
            if queue:
                return queue
        return origin_of(self.queue)

    @property
    def reason(self) -> str:
        reason = _text(self.headers.get("x-relief-error"))
        if reason:
            return scrub(reason)
        deaths = self.headers.get("x-death") or []
        if deaths:
            return f"dead-lettered by the broker: {_text(deaths[0].get('reason')) or '?'}"
        return "(no reason recorded)"

    @property
    def kind(self) -> str:
        return _text(self.headers.get("x-relief-error-kind")) or "-"

    def summary(self) -> dict[str, Any]:
        env = self.envelope or {}
        data = env.get("data") if isinstance(env.get("data"), dict) else {}
        subject = next((f"{k}={data[k]}" for k in SUBJECT_FIELDS
                        if isinstance(data.get(k), str)), None)
        attempts = self.headers.get("x-relief-attempts")
        return {
            "queue": self.queue,
            "id": self.ref,
            "origin": self.origin,
            "event_type": env.get("type") if isinstance(env.get("type"), str) else None,
            "subject": subject,
            "kind": self.kind,
            "reason": self.reason,
            "attempts": attempts if isinstance(attempts, int) else None,
            "failed_at": _text(self.headers.get("x-relief-failed-at")),
            "replays": self.headers.get("x-relief-replays") or 0,
            "content_type": self.content_type,
            "size": len(self.body),
        }

    def details(self) -> dict[str, Any]:
        """Everything about the message, personal data masked."""
        out = self.summary()
        out["headers"] = {k: redact(_jsonable(v)) for k, v in sorted(self.headers.items())
                          if k.startswith("x-")}
        env = self.envelope
        if env is not None:
            out["body"] = redact(env)
        else:
            out["body_text"] = redact_text(self.body.decode("utf-8", errors="replace"))[:2000]
        return out

    def replay_headers(self) -> dict[str, Any]:
        headers = {k: v for k, v in self.headers.items() if k not in FAILURE_HEADERS}
        previous = headers.get("x-relief-replays")
        headers["x-relief-replays"] = (previous if isinstance(previous, int) else 0) + 1
        headers["x-relief-replayed-from"] = self.queue
        headers["x-relief-replayed-at"] = datetime.now(UTC).isoformat()
        return headers


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) and value else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# -- personal data -------------------------------------------------------------------------
def redact(value: Any, key: str | None = None) -> Any:
    """A copy of a decoded message with names, phones and other contact details masked."""
    if isinstance(value, Mapping):
        if key == "contact":
            return {k: (v if k == "language" else _mask(k, v)) for k, v in value.items()}
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key in PERSONAL_KEYS:
        return _mask(key, value)
    if isinstance(value, str):
        return scrub(value)
    return value


def _mask(key: str, value: Any) -> Any:
    if isinstance(value, Mapping | list):
        return redact(value, "contact")
    if not isinstance(value, str):
        return "***" if value is not None else None
    if key in ("phone", "mobile"):
        return mask_phone(value)
    if key == "name":
        return mask_name(value)
    return "***"


_PERSONAL_KEYS_RE = "|".join(sorted(PERSONAL_KEYS))
_PERSONAL_TEXT = re.compile(rf'("(?:{_PERSONAL_KEYS_RE})"\s*:\s*")([^"]*)(")')


def redact_text(text: str) -> str:
    """For bodies that are not valid JSON: mask what looks like a personal field, and phones."""
    return scrub(_PERSONAL_TEXT.sub(lambda m: m.group(1) + "***" + m.group(3), text))


# -- reading (management API) ---------------------------------------------------------------
def dead_letter_queues(queue_rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(q) for q in queue_rows if is_dead_letter_queue(q["name"])]


def peek(mgmt: Any, queue: str, count: int) -> tuple[list[DeadLetter], int]:
    """Up to ``count`` messages from the head of ``queue``, left in place, and the queue's
    depth as of now (the queue list's figures lag by the broker's statistics interval)."""
    from urllib.parse import quote

    if count <= 0:
        return [], 0
    answer = mgmt.request("POST", f"queues/{mgmt.vhost}/{quote(queue, safe='')}/get",
                          {"count": count, "ackmode": "ack_requeue_true", "encoding": "auto"},
                          timeout=15)
    out = []
    for item in answer or []:
        payload = item.get("payload", "")
        body = (base64.b64decode(payload) if item.get("payload_encoding") == "base64"
                else payload.encode("utf-8"))
        props = item.get("properties") or {}
        out.append(DeadLetter(queue=queue, body=body, headers=dict(props.get("headers") or {}),
                              content_type=props.get("content_type"),
                              content_encoding=props.get("content_encoding")))
    depth = answer[0].get("message_count", len(answer) - 1) + 1 if answer else 0
    return out, depth


def purge(mgmt: Any, queue: str) -> int:
    """Delete every message of dead-letter queue ``queue``; returns how many it held just
    before."""
    from urllib.parse import quote

    if not is_dead_letter_queue(queue):
        raise ValueError(f"{queue} is not a dead-letter queue")
    _, depth = peek(mgmt, queue, 1)
    mgmt.request("DELETE", f"queues/{mgmt.vhost}/{quote(queue, safe='')}/contents")
    return depth


# -- replay (AMQP) -------------------------------------------------------------------------
@dataclass
class ReplayResult:
    replayed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    left: int = 0  # messages not selected, left in the queue


def replay(amqp_uri: str, queue: str, select: Callable[[DeadLetter], bool]) -> ReplayResult:
    """Publish each selected message of dead-letter queue ``queue`` once to its origin queue
    (confirmed, mandatory), then remove it. Messages not selected, or whose publish fails,
    stay in the queue in their order."""
    import pika
    from pika.exceptions import NackError, UnroutableError

    if not is_dead_letter_queue(queue):
        raise ValueError(f"{queue} is not a dead-letter queue")
    result = ReplayResult()
    conn = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        depth = channel.queue_declare(queue, passive=True).method.message_count
        keep: list[int] = []
        # at most the depth seen at the start: a replay that fails again comes back at the
        # tail and must not be picked up twice in one run
        for _ in range(depth):
            method, props, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            letter = DeadLetter(queue=queue, body=body, headers=dict(props.headers or {}),
                                content_type=props.content_type,
                                content_encoding=props.content_encoding)
            if not select(letter):
                keep.append(method.delivery_tag)
                continue
            origin = letter.origin
            if not origin:
                result.failed.append({**letter.summary(), "error": "origin queue unknown"})
                keep.append(method.delivery_tag)
                continue
            try:
                channel.basic_publish("", origin, body, pika.BasicProperties(
                    content_type=props.content_type, content_encoding=props.content_encoding,
                    headers=letter.replay_headers(), delivery_mode=2,
                    message_id=props.message_id, correlation_id=props.correlation_id,
                    type=props.type, app_id=props.app_id, timestamp=props.timestamp,
                ), mandatory=True)
            except UnroutableError:
                result.failed.append({**letter.summary(),
                                      "error": f"origin queue {origin} does not exist"})
                keep.append(method.delivery_tag)
                continue
            except NackError:
                result.failed.append({**letter.summary(), "error": "the broker refused it"})
                keep.append(method.delivery_tag)
                continue
            channel.basic_ack(method.delivery_tag)
            result.replayed.append(letter.summary())
        for tag in keep:
            channel.basic_nack(tag, multiple=False, requeue=True)
        result.left = len(keep)
    finally:
        if conn.is_open:
            conn.close()
    return result
