"""The event contract: the envelope and one marshmallow schema per event's ``data``.

This module is the single source of truth for every event that crosses a service boundary.
``docs/events.asyncapi.yaml`` is generated from it (``python -m services.common.docs``) and a
test fails when the two drift. Change it only by adding: new optional fields, new events.

Schemas load JSON (strings, numbers) into Python values (datetimes) and dump them back.
Unknown fields in event data are ignored (a newer producer may add fields); unknown fields in
HTTP bodies are rejected (see ``services.common.http_contract``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from services.common import units

URGENCIES = ("critical", "high", "normal", "low")
NEED_KINDS = ("goods", "service")
DONOR_KINDS = ("company", "social_organisation", "social_enterprise", "government", "person")
VALUE_METHODS = ("declared", "market", "donor_stated")
TIERS = ("community", "street", "district")
OFFER_OUTCOMES = ("accepted", "declined", "lapsed", "withdrawn")
STOCK_REASONS = ("received", "allocated", "released", "written_off", "transferred")
WRITE_OFF_REASONS = ("expired", "damaged", "lost")
ORGANISATION_ROLES = ("founding", "member")
ORGANISATION_KINDS = ("social_organisation", "social_enterprise", "company")
RESUMPTION = ("suspended", "partial", "resumed")

# Event types that outside systems may publish to the ``relief.intake`` exchange.
INTAKE_TYPES = (
    "need_posted",
    "donation_received",
    "volunteer_registered",
    "hours_logged",
    "health_check_reported",
)

def _id(**kw: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=128), **kw)


def _positive(**kw: Any) -> fields.Float:
    return fields.Float(
        validate=validate.Range(min=0, min_inclusive=False), allow_nan=False, **kw
    )


def _non_negative(**kw: Any) -> fields.Float:
    return fields.Float(validate=validate.Range(min=0), allow_nan=False, **kw)


def _unit(**kw: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(units.KNOWN_UNITS), **kw)


class DataSchema(Schema):
    """Base of every event data schema: unknown fields are ignored, not fatal."""

    class Meta:
        unknown = EXCLUDE


class ContactSchema(DataSchema):
    """A person's contact: personal data, kept only by the services that must reach them."""

    name = fields.String(validate=validate.Length(max=100))
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9 \-]{5,20}$"))
    language = fields.String(validate=validate.OneOf(("zh-CN", "en")))
    email = fields.Email()


class DonorSchema(DataSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf(DONOR_KINDS))
    donor_id = _id()
    contact = fields.Nested(ContactSchema)


class NeedPosted(DataSchema):
    """A community station, street platform or member organisation asks for goods or a service."""

    need_id = _id(required=True)
    community_id = _id(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(NEED_KINDS))
    category = _id(required=True)
    quantity = _positive(required=True)
    unit = _unit(required=True)
    urgency = fields.String(required=True, validate=validate.OneOf(URGENCIES))
    needed_by = fields.AwareDateTime(default_timezone=UTC)
    beneficiaries = fields.Integer(validate=validate.Range(min=0))
    programme = fields.String(validate=validate.Length(max=200))
    contact = fields.Nested(ContactSchema)
    note = fields.String(validate=validate.Length(max=2000))


class DonationReceived(DataSchema):
    """Goods received into a warehouse (district, street or community), valued at intake.

    Cash is a category counted in yuan (its value is its amount). A part of a pledge names
    its ``pledge_id``. Donations also emits this event for the lot a transfer between
    warehouses creates, with ``transfer_of`` naming the source lot: matching picks the new
    lot up like any other, while accounting books it as a movement, never as goods in (the
    goods were counted when they first arrived). Intake never passes ``transfer_of`` on."""

    donation_id = _id(required=True)
    donor = fields.Nested(DonorSchema, required=True)
    location_id = _id(required=True)
    category = _id(required=True)
    quantity = _positive(required=True)
    unit = _unit(required=True)
    value_yuan = _non_negative(required=True)
    value_method = fields.String(validate=validate.OneOf(VALUE_METHODS))
    expires_at = fields.AwareDateTime(default_timezone=UTC)
    programme = fields.String(validate=validate.Length(max=200))
    # Set by the donations service when it records the lot (one lot per goods donation).
    lot_id = _id()
    pledge_id = _id()  # the pledge this donation (part) fulfils
    transfer_of = _id()  # set by donations only: the lot this one was moved out of
    # Goods in boxes declare what one box holds (``box_size`` ``box_unit``: 50 piece, 20 kg).
    # Donations then counts the lot in what the boxes hold when its category is counted so
    # (10 boxes of 50 masks: a lot of 500 pieces) and passes the event on in that unit with
    # ``boxes`` set to the number of boxes received.
    box_size = _positive()
    box_unit = _unit()
    boxes = _positive()  # set by donations only

    @validates_schema
    def _box_declared(self, data: dict[str, Any], **kwargs: Any) -> None:
        size, unit = data.get("box_size"), data.get("box_unit")
        if (size is None) != (unit is None):
            raise ValidationError("box_size and box_unit go together",
                                  "box_unit" if unit is None else "box_size")
        if unit is not None and units.dimension(unit) == "box":
            raise ValidationError("a box is declared in what it holds (piece, kg...)",
                                  "box_unit")
        if data.get("boxes") is not None:
            if size is None:
                raise ValidationError("boxes needs box_size and box_unit", "box_size")
        elif size is not None and units.dimension(data.get("unit") or "box") != "box":
            raise ValidationError("box_size is declared only for goods counted in boxes",
                                  "box_size")


class VolunteerRegistered(DataSchema):
    volunteer_id = _id(required=True)
    home_community_id = _id(required=True)
    skills = fields.List(_id(), load_default=list)
    organisation_id = _id()
    weekly_hours_cap = _positive()
    contact = fields.Nested(ContactSchema)


class HoursLogged(DataSchema):
    hours_id = _id(required=True)
    volunteer_id = _id(required=True)
    hours = fields.Float(required=True, validate=validate.Range(min=0, max=24, min_inclusive=False))
    date = fields.Date(required=True)
    activity = _id()
    programme = fields.String(validate=validate.Length(max=200))
    assignment_id = _id()


class HealthCheckReported(DataSchema):
    volunteer_id = _id(required=True)
    checked_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    temperature_c = fields.Float(required=True, validate=validate.Range(min=30, max=45))
    in_quarantine = fields.Boolean(required=True)


class AssignmentMade(DataSchema):
    """Matching allocated part (or all) of a need from one lot."""

    assignment_id = _id(required=True)
    need_id = _id(required=True)
    community_id = _id(required=True)
    category = _id(required=True)
    quantity = _positive(required=True)  # in the need's unit
    unit = _unit(required=True)
    lot_id = _id(required=True)
    lot_quantity = _positive(required=True)  # the same amount in the lot's unit
    lot_unit = _unit(required=True)
    location_id = _id(required=True)
    tier_distance = fields.Integer(required=True, validate=validate.Range(min=0, max=2))
    value_yuan = _non_negative(required=True)
    programme = fields.String()
    explanation = fields.String()


class NeedFulfilled(DataSchema):
    need_id = _id(required=True)
    community_id = _id(required=True)
    category = _id(required=True)
    quantity = _positive(required=True)
    unit = _unit(required=True)


class NeedEscalated(DataSchema):
    need_id = _id(required=True)
    community_id = _id(required=True)
    category = _id(required=True)
    urgency = fields.String(required=True, validate=validate.OneOf(URGENCIES))
    from_tier = fields.String(required=True, validate=validate.OneOf(TIERS))
    to_tier = fields.String(required=True, validate=validate.OneOf(TIERS))
    area_id = _id(required=True)  # the street or district whose coordinators now own it
    remaining = _non_negative(required=True)
    unit = _unit(required=True)


class NeedExpired(DataSchema):
    need_id = _id(required=True)
    community_id = _id(required=True)
    category = _id(required=True)
    unfulfilled_quantity = _non_negative(required=True)
    unit = _unit(required=True)


class StockChanged(DataSchema):
    lot_id = _id(required=True)
    category = _id(required=True)
    location_id = _id(required=True)
    delta = fields.Float(required=True)  # in the lot's unit; negative when stock leaves
    available = _non_negative(required=True)
    unit = _unit(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(STOCK_REASONS))
    assignment_id = _id()
    # write-offs: why, and the share of the lot's intake value that left with the goods
    write_off_id = _id()
    write_off_reason = fields.String(validate=validate.OneOf(WRITE_OFF_REASONS))
    value_yuan = _non_negative()
    programme = fields.String(validate=validate.Length(max=200))
    # transfers: the movement and where the goods went (the new lot's donation_received
    # carries ``transfer_of``)
    transfer_id = _id()
    to_location_id = _id()


class PledgeMade(DataSchema):
    """A donor promised goods or cash; they arrive later, possibly in parts (each part a
    ``donation_received`` with this ``pledge_id``). The donor's contact stays in donations."""

    pledge_id = _id(required=True)
    donor = fields.Nested(DonorSchema, required=True)
    category = _id(required=True)
    quantity = _positive(required=True)
    unit = _unit(required=True)
    expected_at = fields.Date(required=True)
    location_id = _id()  # the warehouse expected to receive it
    value_yuan = _non_negative()  # the promised value, when known
    programme = fields.String(validate=validate.Length(max=200))


class StaffHealth(DataSchema):
    """How an organisation's staff are: counts only, never names."""

    total = fields.Integer(required=True, validate=validate.Range(min=0))
    healthy = fields.Integer(required=True, validate=validate.Range(min=0))
    fever = fields.Integer(load_default=0, validate=validate.Range(min=0))
    quarantined = fields.Integer(load_default=0, validate=validate.Range(min=0))

    @validates_schema
    def _adds_up(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["healthy"] + data.get("fever", 0) + data.get("quarantined", 0) > data["total"]:
            raise ValidationError("healthy + fever + quarantined exceeds total", "total")


class StatusReported(DataSchema):
    """A member organisation's periodic status report: what it is doing, where, how its
    staff are and whether its own work has resumed."""

    report_id = _id(required=True)
    organisation_id = _id(required=True)
    reported_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    activities = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    area_ids = fields.List(_id(), load_default=list)
    staff = fields.Nested(StaffHealth, required=True)
    resumption = fields.String(required=True, validate=validate.OneOf(RESUMPTION))
    resumed_on = fields.Date()
    note = fields.String(validate=validate.Length(max=2000))


class VolunteerAvailabilityChanged(DataSchema):
    """A volunteer may (or may no longer) be dispatched: a health check, or availability."""

    volunteer_id = _id(required=True)
    available = fields.Boolean(required=True)
    reason = fields.String()
    checked_at = fields.AwareDateTime(default_timezone=UTC)  # the health check behind it


class HoursApproved(DataSchema):
    hours_id = _id(required=True)
    volunteer_id = _id(required=True)
    hours = _positive(required=True)
    date = fields.Date(required=True)
    activity = _id()
    programme = fields.String()
    assignment_id = _id()
    organisation_id = _id()


class HoursRejected(DataSchema):
    """A coordinator rejected logged hours: they never count."""

    hours_id = _id(required=True)
    volunteer_id = _id(required=True)
    hours = _positive(required=True)
    date = fields.Date(required=True)
    activity = _id()
    programme = fields.String()


class OrganisationRegistered(DataSchema):
    """A founding or member organisation of the coalition (its contacts stay in volunteers)."""

    organisation_id = _id(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    role = fields.String(required=True, validate=validate.OneOf(ORGANISATION_ROLES))
    kind = fields.String(required=True, validate=validate.OneOf(ORGANISATION_KINDS))
    area_id = _id()


class TrainingHeld(DataSchema):
    """A training session and how many attended it."""

    session_id = _id(required=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=300))
    date = fields.Date(required=True)
    attendances = fields.Integer(required=True, validate=validate.Range(min=0))
    programme = fields.String(validate=validate.Length(max=200))


class OfferMade(DataSchema):
    """A service need offered to a volunteer, who accepts or declines before it lapses."""

    offer_id = _id(required=True)
    need_id = _id(required=True)
    volunteer_id = _id(required=True)
    community_id = _id(required=True)
    category = _id(required=True)
    quantity = _positive(required=True)
    unit = _unit(required=True)
    expires_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    urgency = fields.String(validate=validate.OneOf(URGENCIES))


class OfferAnswered(DataSchema):
    """An offer accepted by its volunteer, or released (declined, lapsed or withdrawn)."""

    offer_id = _id(required=True)
    need_id = _id(required=True)
    volunteer_id = _id(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(OFFER_OUTCOMES))


class StatusReportMissing(DataSchema):
    """A member organisation's periodic status report did not arrive in time."""

    organisation_id = _id(required=True)
    due_at = fields.AwareDateTime(required=True, default_timezone=UTC)


class NotificationOutcome(DataSchema):
    notification_id = _id(required=True)
    channel = _id(required=True)
    template = _id(required=True)
    reason = fields.String()


EVENT_SCHEMAS: dict[str, type[DataSchema]] = {
    "need_posted": NeedPosted,
    "donation_received": DonationReceived,
    "volunteer_registered": VolunteerRegistered,
    "hours_logged": HoursLogged,
    "health_check_reported": HealthCheckReported,
    "assignment_made": AssignmentMade,
    "need_fulfilled": NeedFulfilled,
    "need_escalated": NeedEscalated,
    "need_expired": NeedExpired,
    "stock_changed": StockChanged,
    "volunteer_availability_changed": VolunteerAvailabilityChanged,
    "hours_approved": HoursApproved,
    "hours_rejected": HoursRejected,
    "organisation_registered": OrganisationRegistered,
    "training_held": TrainingHeld,
    "offer_made": OfferMade,
    "offer_accepted": OfferAnswered,
    "offer_released": OfferAnswered,
    "status_report_missing": StatusReportMissing,
    "status_reported": StatusReported,
    "pledge_made": PledgeMade,
    "notification_sent": NotificationOutcome,
    "notification_failed": NotificationOutcome,
}

# Who publishes what (the exchange is ``<source>.events``; ``relief.intake`` for outsiders).
PRODUCERS: dict[str, tuple[str, ...]] = {
    "intake": INTAKE_TYPES,
    "donations": ("donation_received", "stock_changed", "pledge_made"),
    "volunteers": ("volunteer_registered", "volunteer_availability_changed", "hours_approved",
                   "status_report_missing", "hours_rejected", "organisation_registered",
                   "training_held", "status_reported"),
    "matching": ("assignment_made", "need_fulfilled", "need_escalated", "need_expired",
                 "offer_made", "offer_accepted", "offer_released"),
    "notifications": ("notification_sent", "notification_failed"),
}

CURRENT_VERSION = 1


class EnvelopeSchema(Schema):
    """The envelope every event travels in. Unknown top-level fields are rejected."""

    event_id = fields.UUID(required=True)
    type = fields.String(required=True, validate=validate.OneOf(tuple(EVENT_SCHEMAS)))
    version = fields.Integer(required=True, validate=validate.Equal(CURRENT_VERSION))
    occurred_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    source = fields.String(required=True, validate=validate.Length(min=1, max=100))
    data = fields.Dict(required=True)


class ContractError(ValueError):
    """An event that does not satisfy the contract. ``reason`` is a short readable string."""

    def __init__(self, reason: str, fields_: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.fields = fields_ or {}


@dataclass(frozen=True)
class Event:
    """A validated event: envelope fields plus ``data`` loaded by its schema."""

    event_id: str
    type: str
    version: int
    occurred_at: datetime
    source: str
    data: dict[str, Any]


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, str]:
    """marshmallow's nested error dict -> {"data.quantity": "message"}."""
    out: dict[str, str] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            out.update(flatten_errors(value, f"{prefix}{key}."))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix.rstrip(".")] = "; ".join(messages)
    else:
        out[prefix.rstrip(".")] = str(messages)
    return out


def describe(errors: dict) -> str:
    """A one-line reason from marshmallow's error dict: ``data.quantity: Must be ...``."""
    flat = flatten_errors(errors)
    return ", ".join(f"{k}: {v}" for k, v in sorted(flat.items()))


def parse(envelope: Any) -> Event:
    """Validate an envelope (already decoded from JSON) and its data; raise ContractError."""
    if not isinstance(envelope, dict):
        raise ContractError("the message is not a JSON object")
    try:
        env = EnvelopeSchema().load(envelope)
    except ValidationError as exc:
        raise ContractError(describe(exc.messages), exc.messages) from None
    try:
        data = EVENT_SCHEMAS[env["type"]]().load(env["data"])
    except ValidationError as exc:
        errors = {"data": exc.messages}
        raise ContractError(describe(errors), errors) from None
    return Event(
        event_id=str(env["event_id"]),
        type=env["type"],
        version=env["version"],
        occurred_at=env["occurred_at"],
        source=env["source"],
        data=data,
    )


def now() -> datetime:
    return datetime.now(UTC)


def build(
    type_: str,
    data: dict[str, Any],
    source: str,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """Make a JSON-ready envelope for ``data`` (Python values), checked against its schema."""
    schema = EVENT_SCHEMAS[type_]()
    # optional fields travel absent, not null
    dumped = schema.dump({k: v for k, v in data.items() if v is not None})
    errors = schema.validate(dumped)
    if errors:
        raise ContractError(describe({"data": errors}), {"data": errors})
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": type_,
        "version": CURRENT_VERSION,
        "occurred_at": (occurred_at or now()).isoformat(),
        "source": source,
        "data": dumped,
    }


def derived_id(*parts: str) -> str:
    """A stable event id for an event caused by another: redelivery re-derives the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "relief:" + "/".join(parts)))
