"""The channels, the only code here that talks to the outside: email over SMTP, and SMS and
WeChat through HTTP webhooks (a provider's gateway) with a signed body.

Each ``send`` returns on success or raises :class:`Transient` (worth retrying: connection
refused, timeout, 4xx SMTP reply, HTTP 5xx / 429 / 408) or :class:`Permanent` (retrying
would not help: 5xx SMTP reply, other HTTP 4xx).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol

import requests

from services.notifications.settings import NotifySettings, SmtpSettings, WebhookSettings

SIGNATURE_HEADER = "X-Relief-Signature"
TIMESTAMP_HEADER = "X-Relief-Timestamp"
DELIVERY_HEADER = "X-Relief-Delivery"


# -- what a channel carries ---------------------------------------------------------------
# GSM 03.38: the basic set (one septet each) and the extension table (an escape and a septet)
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
SMS_SINGLE = {"gsm7": 160, "ucs2": 70}  # units in a message of one segment
SMS_PART = {"gsm7": 153, "ucs2": 67}  # units per segment of a longer one (the rest: header)


def sms_encoding(text: str) -> str:
    """``gsm7`` when every character is in the GSM 7-bit alphabet, else ``ucs2`` (any
    Chinese character makes the whole message UCS-2)."""
    return "gsm7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else "ucs2"


def sms_units(text: str) -> tuple[str, int]:
    """``(encoding, units)``: septets (an extension character takes two) or UTF-16 code
    units (a character beyond the BMP takes two)."""
    encoding = sms_encoding(text)
    if encoding == "gsm7":
        return encoding, sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    return encoding, len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> int:
    """How many SMS segments (billed messages) ``text`` takes: GSM-7 160 in one, else 153
    per segment; UCS-2 70 in one, else 67 per segment."""
    encoding, units = sms_units(text)
    if units <= SMS_SINGLE[encoding]:
        return 1 if units else 0
    return -(-units // SMS_PART[encoding])


def sms_fits(text: str, segments: int) -> bool:
    return sms_segments(text) <= segments


class DeliveryError(Exception):
    transient = False


class Transient(DeliveryError):
    transient = True


class Permanent(DeliveryError):
    transient = False


@dataclass(frozen=True)
class Outgoing:
    """One delivery: a single message or a digest, to one address on one channel."""

    delivery_id: str
    address: str
    subject: str
    body: str
    short: str  # for SMS
    language: str


class Channel(Protocol):
    name: str

    def send(self, out: Outgoing) -> None: ...


class EmailChannel:
    name = "email"

    def __init__(self, cfg: SmtpSettings):
        self.cfg = cfg

    def message(self, out: Outgoing) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.cfg.sender
        msg["To"] = out.address
        msg["Subject"] = out.subject
        msg["Date"] = formatdate(localtime=False)
        # the same delivery retried keeps its Message-ID: a mail system can drop the repeat
        msg["Message-ID"] = f"<{out.delivery_id}@relief-exchange>"
        msg["Content-Language"] = out.language
        msg[DELIVERY_HEADER] = out.delivery_id
        msg.set_content(out.body, charset="utf-8")
        return msg

    def send(self, out: Outgoing) -> None:
        msg = self.message(out)
        try:
            with smtplib.SMTP(self.cfg.host, self.cfg.port,
                              timeout=self.cfg.timeout_seconds) as smtp:
                if self.cfg.starttls:
                    smtp.starttls()
                if self.cfg.user:
                    smtp.login(self.cfg.user, self.cfg.password)
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            cls = Permanent if codes and all(c >= 500 for c in codes) else Transient
            raise cls(f"smtp refused the recipient ({', '.join(map(str, codes))})") from None
        except smtplib.SMTPResponseException as exc:
            cls = Permanent if exc.smtp_code >= 500 else Transient
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            raise cls(f"smtp {exc.smtp_code}: {text[:200]}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise Transient(f"smtp {self.cfg.host}:{self.cfg.port}: "
                            f"{type(exc).__name__}: {exc}") from None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str,
           max_age_seconds: float = 300, now: float | None = None) -> bool:
    """What a webhook receiver does with our headers (and what the tests check)."""
    try:
        age = abs((now or time.time()) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= max_age_seconds and hmac.compare_digest(sign(secret, timestamp, body),
                                                          signature or "")


class WebhookChannel:
    """POSTs ``{"delivery_id", "channel", "to", "subject", "text", "language"}`` as JSON to a
    provider's gateway, signed with HMAC (headers ``X-Relief-Timestamp``,
    ``X-Relief-Signature``); ``X-Relief-Delivery`` lets the receiver drop a repeat."""

    def __init__(self, name: str, cfg: WebhookSettings):
        self.name = name
        self.cfg = cfg
        # kept open between deliveries (a connection per POST cost a third of the
        # courier's time in a burst); a connection the provider closed is made again
        self.session = requests.Session()

    def payload(self, out: Outgoing) -> dict[str, Any]:
        return {"delivery_id": out.delivery_id, "channel": self.name, "to": out.address,
                "subject": out.subject,
                "text": out.short if self.name == "sms" else out.body,
                "language": out.language}

    def send(self, out: Outgoing) -> None:
        body = json.dumps(self.payload(out), ensure_ascii=False).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8",
                   DELIVERY_HEADER: out.delivery_id, TIMESTAMP_HEADER: timestamp}
        if self.cfg.secret:
            headers[SIGNATURE_HEADER] = sign(self.cfg.secret, timestamp, body)
        try:
            response = self.session.post(self.cfg.url, data=body, headers=headers,
                                         timeout=self.cfg.timeout_seconds,
                                         allow_redirects=False)
        except requests.Timeout:
            raise Transient(f"{self.name} webhook timed out after "
                            f"{self.cfg.timeout_seconds:g}s") from None
        except requests.RequestException as exc:
            raise Transient(f"{self.name} webhook unreachable: {type(exc).__name__}") from None
        if 200 <= response.status_code < 300:
            return
        detail = f"{self.name} webhook answered HTTP {response.status_code}"
        text = (response.text or "").strip()[:200]
        if text:
            detail += f": {text}"
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise Transient(detail)
        raise Permanent(detail)


def build(cfg: NotifySettings) -> dict[str, Channel]:
    """The channels configured here (a webhook without a URL is not a channel)."""
    channels: dict[str, Channel] = {}
    if cfg.smtp.configured:
        channels["email"] = EmailChannel(cfg.smtp)
    if cfg.sms.configured:
        channels["sms"] = WebhookChannel("sms", cfg.sms)
    if cfg.wechat.configured:
        channels["wechat"] = WebhookChannel("wechat", cfg.wechat)
    return channels
