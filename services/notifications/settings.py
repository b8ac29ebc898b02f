"""The ``NOTIFICATIONS`` block of the nameko config (``deploy/config.yaml``), typed.

Every host, port, timeout, window and retry bound of the notifications service comes from
there; the defaults below apply only when a key is absent or empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 1025
    sender: str = "Relief Exchange <noreply@relief.local>"
    user: str = ""
    password: str = ""
    starttls: bool = False
    timeout_seconds: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.host and self.port)


@dataclass(frozen=True)
class WebhookSettings:
    url: str = ""
    secret: str = ""
    timeout_seconds: float = 5.0

    @property
    def configured(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class NotifySettings:
    poll_seconds: float = 1.0  # how often the courier looks for due mailboxes
    window_seconds: float = 60.0  # at most one message per recipient per window
    max_attempts: int = 5  # delivery attempts before a message is dead
    retry_backoff_seconds: float = 5.0  # first back-off after a transient failure; doubles
    retry_backoff_max_seconds: float = 600.0
    lease_seconds: float = 120.0  # a claimed mailbox is someone else's after this
    orphan_timeout_seconds: float = 3600.0  # a message whose recipient never became known
    concurrency: int = 8  # mailboxes delivered in parallel per tick
    # recipients and known subjects read by event handlers are reused for this long (the
    # courier always reads a recipient afresh before delivering); 0: read every time
    cache_seconds: float = 10.0
    default_timezone: str = "Asia/Shanghai"
    default_language: str = "zh-CN"
    public_url: str = "http://127.0.0.1:8000"  # base of accept/decline links: the gateway
    # signs those links; empty: RELIEF.link_secret (or the admin token), as the gateway checks
    link_secret: str = ""
    # what one delivery may carry, per channel: a digest is summarised to fit (counts by
    # kind, the most urgent items by name, a signed link to the full list)
    sms_max_segments: int = 3  # billed SMS segments (GSM-7 160/153, UCS-2 70/67)
    email_max_chars: int = 20000
    wechat_max_chars: int = 2000
    digest_urgent_items: int = 3  # items named in an SMS digest, at most
    # a link answers its one offer with its one answer until the offer lapses and this long
    # after (a volunteer who opens it late is told the offer is gone, not that it is forged)
    link_grace_seconds: float = 3600.0
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    sms: WebhookSettings = field(default_factory=WebhookSettings)
    wechat: WebhookSettings = field(default_factory=WebhookSettings)


def _typed(cls: type, section: dict[str, Any] | None) -> Any:
    """Build a settings dataclass from a config dict: known keys only, cast to the default's
    type, empty values (``${VAR:}``) left at their default."""
    section = section or {}
    defaults = cls()
    values: dict[str, Any] = {}
    for name in cls.__dataclass_fields__:
        raw = section.get(name)
        if raw is None or raw == "":
            continue
        default = getattr(defaults, name)
        if isinstance(default, SmtpSettings | WebhookSettings):
            values[name] = _typed(type(default), raw)
        elif isinstance(default, bool):
            values[name] = raw if isinstance(raw, bool) else str(raw).lower() in (
                "1", "true", "yes", "on")
        else:
            values[name] = type(default)(raw)
    return cls(**values)


def notify_settings(config: dict[str, Any]) -> NotifySettings:
    """The ``NOTIFICATIONS`` section of a nameko config, typed, defaults filled in."""
    return _typed(NotifySettings, config.get("NOTIFICATIONS"))
