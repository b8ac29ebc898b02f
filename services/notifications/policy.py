"""Pure rules of delivery: who is critical, when a message is due, which channel, back-off.

No I/O here: the handlers and the courier call these with plain values, and the unit tests
exercise them alone.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

CHANNELS = ("email", "wechat", "sms")
# where each channel sends to, in a recipient document
ADDRESS_FIELD = {"email": "email", "sms": "phone", "wechat": "wechat"}
CRITICAL = "critical"
NORMAL = "normal"


def priority_of(urgency: str | None) -> str:
    """Messages about a critical need (or a critical offer) are critical: they ignore quiet
    hours and the coalescing window. Everything else waits its turn."""
    return CRITICAL if urgency == "critical" else NORMAL


def phone_key(phone: str | None) -> str | None:
    """A stable key for a phone number that is not the number itself (it is stored and
    indexed). ``+86 139-1234-5678`` and ``13912345678`` give the same key."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if not digits:
        return None
    return hashlib.sha256(f"relief-phone:{digits}".encode()).hexdigest()[:32]


def email_key(email: str | None) -> str | None:
    """Like :func:`phone_key`, for a contact reachable by email only."""
    if not email or "@" not in email:
        return None
    return hashlib.sha256(f"relief-email:{email.strip().lower()}".encode()).hexdigest()[:32]


def parse_clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(moment: datetime, quiet: dict[str, str] | None, tz: str) -> datetime | None:
    """If ``moment`` falls in the quiet hours (local to ``tz``), when they end; else None.

    ``quiet`` is ``{"start": "22:00", "end": "07:00"}``; a span may cross midnight."""
    if not quiet:
        return None
    zone = ZoneInfo(tz)
    local = moment.astimezone(zone)
    start, end = parse_clock(quiet["start"]), parse_clock(quiet["end"])
    if start == end:
        return None
    now = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= now < end
        end_day = local.date()
    else:  # e.g. 22:00-07:00
        inside = now >= start or now < end
        end_day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(moment.tzinfo)


def window_seconds(recipient: dict[str, Any] | None, default: float) -> float:
    """A recipient in digest mode gets a longer window than the default coalescing one."""
    digest = (recipient or {}).get("digest_minutes")
    return max(float(digest) * 60, default) if digest else default


def due_at(now: datetime, recipient: dict[str, Any] | None, priority: str, window: float,
           default_tz: str) -> datetime:
    """When a new message for this recipient may go out, if nothing is pending yet.

    Critical: at once. Otherwise at the end of the recipient's window (so whatever else comes
    in meanwhile is sent with it), pushed past quiet hours."""
    if priority == CRITICAL:
        return now
    due = now + timedelta(seconds=window_seconds(recipient, window))
    return hold_for_quiet(due, recipient, default_tz)


def hold_for_quiet(moment: datetime, recipient: dict[str, Any] | None,
                   default_tz: str) -> datetime:
    recipient = recipient or {}
    end = quiet_until(moment, recipient.get("quiet_hours"), recipient.get("timezone")
                      or default_tz)
    return end or moment


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): doubling, capped."""
    return min(base * (2 ** (attempt - 1)), cap)


def preferred_channels(recipient: dict[str, Any]) -> list[str]:
    """The recipient's channels in order of preference: what they chose, else every channel
    they have an address for."""
    chosen = [c for c in recipient.get("channels") or [] if c in CHANNELS]
    if chosen:
        return chosen
    return [c for c in CHANNELS if recipient.get(ADDRESS_FIELD[c])]


def choose_channel(recipient: dict[str, Any], configured: set[str]) -> tuple[str | None, str]:
    """The first preferred channel that has an address and is configured here.

    Returns ``(channel, address)`` or ``(None, reason)``."""
    preferred = preferred_channels(recipient)
    if not preferred:
        return None, "the recipient has no contact address"
    missing = []
    for channel in preferred:
        address = recipient.get(ADDRESS_FIELD[channel])
        if not address:
            missing.append(f"no {ADDRESS_FIELD[channel]} for {channel}")
            continue
        if channel not in configured:
            missing.append(f"{channel} is not configured")
            continue
        return channel, address
    return None, "; ".join(missing)
