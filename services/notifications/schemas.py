"""What the API accepts for a recipient, and what it answers (masked: an answer never
carries a phone number, an address or a full name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from services.common.contract import Strict
from services.common.logs import mask_email, mask_name, mask_phone
from services.notifications import policy, texts

RECIPIENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
RESERVED_PREFIXES = ("contact:",)  # recipients known from events
STATES = ("queued", "failed", "sent", "dead", "skipped", "cancelled")
_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"


class QuietHours(Strict):
    start = fields.String(required=True, validate=validate.Regexp(_CLOCK))
    end = fields.String(required=True, validate=validate.Regexp(_CLOCK))


class RecipientBody(Strict):
    """``PUT /api/recipients/<id>``: a coordinator or an organisation contact."""

    name = fields.String(validate=validate.Length(min=1, max=100))
    email = fields.Email(validate=validate.Length(max=254))
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9 \-]{5,20}$"))
    wechat = fields.String(validate=validate.Length(min=1, max=128))
    language = fields.String(load_default=texts.DEFAULT_LANGUAGE,
                             validate=validate.OneOf(texts.LANGUAGES))
    timezone = fields.String(validate=validate.Length(max=64))
    channels = fields.List(fields.String(validate=validate.OneOf(policy.CHANNELS)),
                           validate=validate.Length(max=len(policy.CHANNELS)))
    quiet_hours = fields.Nested(QuietHours, allow_none=True)
    # digest mode: at most one message every so many minutes, summarising what happened
    digest_minutes = fields.Integer(allow_none=True,
                                    validate=validate.Range(min=1, max=7 * 24 * 60))
    areas = fields.List(fields.String(validate=validate.Length(min=1, max=128)),
                        load_default=list)
    organisations = fields.List(fields.String(validate=validate.Length(min=1, max=128)),
                                load_default=list)

    @validates("timezone")
    def _timezone(self, value: str, **_: Any) -> None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"unknown time zone {value!r}") from None

    @validates_schema
    def _reachable(self, data: dict[str, Any], **_: Any) -> None:
        channels = data.get("channels") or []
        if len(set(channels)) != len(channels):
            raise ValidationError("a channel is listed twice", "channels")
        for channel in channels:
            if not data.get(policy.ADDRESS_FIELD[channel]):
                raise ValidationError(
                    f"channel {channel} needs {policy.ADDRESS_FIELD[channel]}", "channels")
        if not any(data.get(f) for f in ("email", "phone", "wechat")):
            raise ValidationError("give at least one of email, phone, wechat", "_schema")


class MessageQuery(Strict):
    state = fields.String(validate=validate.OneOf(STATES))
    recipient = fields.String(validate=validate.Length(min=1, max=128))
    need_id = fields.String(validate=validate.Length(min=1, max=128))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class DeliveryGroup(Schema):
    title = fields.String(allow_none=True)  # a need: "需求 N-1（防护口罩）：已全部满足"
    lines = fields.List(fields.String(), required=True)


class DeliveryView(Schema):
    """The full list behind a digest's link (``GET /digest/<id>`` on the gateway): what went
    out in one delivery, grouped by need, most urgent first. Texts without a greeting name;
    no addresses."""

    language = fields.String(required=True, validate=validate.OneOf(texts.LANGUAGES))
    sent_at = fields.DateTime(allow_none=True)
    count = fields.Integer(required=True)
    counts = fields.String(required=True)  # "30 项需求已全部满足，另有 2 项部分满足"
    groups = fields.List(fields.Nested(DeliveryGroup), required=True)


def recipient_view(doc: dict[str, Any]) -> dict[str, Any]:
    out = {
        "recipient_id": doc["_id"],
        "managed": bool(doc.get("managed")),
        "name": mask_name(doc.get("name")),
        "email": mask_email(doc.get("email")),
        "phone": mask_phone(doc.get("phone")),
        "wechat": mask_name(doc.get("wechat")),
        "language": doc.get("language", texts.DEFAULT_LANGUAGE),
        "timezone": doc.get("timezone"),
        "channels": policy.preferred_channels(doc),
        "quiet_hours": doc.get("quiet_hours"),
        "digest_minutes": doc.get("digest_minutes"),
        "areas": doc.get("areas", []),
        "organisations": doc.get("organisations", []),
        "updated_at": doc.get("updated_at"),
    }
    return {k: _plain(v) for k, v in out.items() if v not in ("", None)}


MESSAGE_FIELDS = ("template", "state", "priority", "recipient", "channel", "language",
                  "subject", "text", "need_id", "reason", "attempts", "created_at",
                  "sent_at", "next_attempt_at", "dead_at", "delivery_id", "cause_type",
                  "cause_event_id", "group")


def message_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A message as the API and RPC show it: its text as stored (no greeting name),
    no address."""
    out = {"notification_id": doc["_id"]}
    out.update({k: _plain(doc[k]) for k in MESSAGE_FIELDS if doc.get(k) is not None})
    return out


def _plain(value: Any) -> Any:
    """JSON-ready: the same answer through RPC, HTTP or a direct call."""
    return value.isoformat() if isinstance(value, datetime) else value
