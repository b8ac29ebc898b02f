"""Structured logs: one JSON object per line, personal data masked.

Handlers log with ``extra={"event_id": ..., "need_id": ...}``; those keys become fields.
Phone numbers are masked wherever they appear in a message, as a last line of defence; code
should not log personal data in the first place (use ``mask_phone`` / ``mask_name``).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

# mobile numbers (optionally +86) and landlines with an area code; not dates, not hex ids
_PHONE = re.compile(
    r"(?<![\w.+])((?:\+?86[ \-]?)?1[3-9]\d(?:[ \-]?\d){8}|0\d{2,3}-\d{7,8})(?![\w.])")
FIELDS = ("service", "event_id", "event_type", "need_id", "lot_id", "queue", "assignment_id")


def mask_email(email: str | None) -> str:
    """``wang.fang@example.org`` -> ``w********@example.org``."""
    if not email or "@" not in email:
        return ""
    local, domain = email.split("@", 1)
    return f"{local[:1]}{'*' * max(len(local) - 1, 1)}@{domain}"


def mask_phone(phone: str | None) -> str:
    """``13812345678`` -> ``138****5678``."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_name(name: str | None) -> str:
    """``张三丰`` -> ``张**``; ``Li Lei`` -> ``L*****``."""
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1)


def scrub(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group(1)), text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)
