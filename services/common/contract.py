"""The event contract: the envelope and one marshmallow schema per event's ``data``.

This module is the single source of truth for every event that crosses a service boundary.
``docs/events.asyncapi.yaml`` is generated from it (``python -m services.docs``) and a
test fails when the two drift. Change it only by adding: new optional fields, new events.

Schemas load JSON (strings, numbers) into Python values (datetimes) and dump them back.
Unknown fields in event data are ignored (a newer producer may add fields); unknown fields in
HTTP bodies are rejected (:class:`Strict`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

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
# how goods came in: given to the coalition, or bought through the coalition's links (counted
# apart: a purchase is not "募集物资")
ACQUISITIONS = ("donated", "purchased")

# Event types that outside systems may publish to the ``relief.intake`` exchange.
INTAKE_TYPES = (
    "need_posted",
    "donation_received",
    "volunteer_registered",
    "hours_logged",
    "health_check_reported",
)

# Every number has bounds: a count or an amount larger than these is a mistake (or an attack),
# and the bounds keep every product the services compute (thousandths, fen) exact and finite.
QUANTITY_MAX = 1e9  # in the event's own unit: a billion pieces, a million tonnes
VALUE_MAX_YUAN = 1e11  # a hundred billion yuan
COUNT_MAX = 10_000_000  # people, attendances, staff

# ids name documents and travel in URLs and logs: printable, no control characters
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$(?!\n)"


def _id(**kw: Any) -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=128),
                                   validate.Regexp(ID_PATTERN,
                                                   error="must not contain control characters")],
                         **kw)


def _positive(maximum: float = QUANTITY_MAX, **kw: Any) -> fields.Float:
    return fields.Float(
        validate=validate.Range(min=0, max=maximum, min_inclusive=False), allow_nan=False, **kw
    )


def _non_negative(maximum: float = QUANTITY_MAX, **kw: Any) -> fields.Float:
    return fields.Float(validate=validate.Range(min=0, max=maximum), allow_nan=False, **kw)


def _money(**kw: Any) -> fields.Float:
    return _non_negative(VALUE_MAX_YUAN, **kw)


def _count(maximum: int = COUNT_MAX, **kw: Any) -> fields.Integer:
    """A whole number of things: JSON integers only (2.5 people is refused)."""
    return fields.Integer(strict=True, validate=validate.Range(min=0, max=maximum), **kw)


def _unit(**kw: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(units.KNOWN_UNITS), **kw)


# The same bounded fields for HTTP bodies that are not events (write-offs, transfers...).
identifier, quantity, amount, unit = _id, _positive, _money, _unit


class DataSchema(Schema):
    """Base of every event data schema: unknown fields are ignored, not fatal."""

    class Meta:
        unknown = EXCLUDE

    @validates_schema
    def _measurable(self, data: dict[str, Any], **kwargs: Any) -> None:
        # quantities are kept in thousandths of their base unit: a smaller one would be 0
        quantity, unit = data.get("quantity"), data.get("unit")
        if (isinstance(quantity, float) and quantity > 0 and unit in units.KNOWN_UNITS
                and units.to_milli(quantity, unit) < 1):
            raise ValidationError(f"too small to count in {unit}", "quantity")


class Strict(Schema):
    """Base of every HTTP body and query the API takes: an unknown field is refused (a 400
    that names it), where event data ignores one. An HTTP body made of an event's data puts
    it first: ``class NeedBody(Strict, NeedPosted)``."""

    class Meta:
        unknown = RAISE


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
    """A community station, street platform or member organisation asks for goods or a service.

    One need per ``need_id``: the same posting again under a new event id is harmless; another
    need under an id already used is refused (dead-lettered, the first stands)."""

    need_id = _id(required=True)
    community_id = _id(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(NEED_KINDS))
    category = _id(required=True)
    quantity = _positive(required=True)
    unit = _unit(required=True)
    urgency = fields.String(required=True, validate=validate.OneOf(URGENCIES))
    needed_by = fields.AwareDateTime(default_timezone=UTC)
    beneficiaries = _count()
    programme = fields.String(validate=validate.Length(max=200))
    contact = fields.Nested(ContactSchema)
    note = fields.String(validate=validate.Length(max=2000))


class DonationReceived(DataSchema):
    """Goods received into a warehouse (district, street or community), valued at intake.

    One donation per ``donation_id``: the same posting again under a new event id is
    harmless; another donation under an id already used is refused (dead-lettered, the first
    stands).

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
    # Absent (or null) when nobody stated a value: the lot then counts at 0 yuan and every
    # total says how many categories it leaves unvalued. Donations passes the event on with
    # ``value_yuan`` 0 and ``value_known`` false, so consumers always find a number.
    value_yuan = _money(allow_none=True)
    value_known = fields.Boolean()  # set by donations only: false when no value was stated
    value_method = fields.String(validate=validate.OneOf(VALUE_METHODS))
    expires_at = fields.AwareDateTime(default_timezone=UTC)
    programme = fields.String(validate=validate.Length(max=200))
    # ``purchased``: bought through the coalition's links (``donor`` then names the seller or
    # the partner it was bought through); counted apart from what was donated. Absent: donated.
    acquisition = fields.String(validate=validate.OneOf(ACQUISITIONS))
    # What one unit stands for beyond its own value, as the giver states it: an insurance
    # policy's cover, a card's or an account's face value. Reported beside the quantity,
    # never added to any total of value.
    face_value_yuan = _money(allow_none=True)
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
    weekly_hours_cap = _positive(7 * 24)
    contact = fields.Nested(ContactSchema)


class HoursLogged(DataSchema):
    hours_id = _id(required=True)
    volunteer_id = _id(required=True)
    hours = _positive(24, required=True)
    date = fields.Date(required=True)
    activity = _id()
    programme = fields.String(validate=validate.Length(max=200))
    assignment_id = _id()


class HealthCheckReported(DataSchema):
    volunteer_id = _id(required=True)
    checked_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    temperature_c = fields.Float(required=True, allow_nan=False,
                                 validate=validate.Range(min=30, max=45))
    in_quarantine = fields.Boolean(required=True)


class AssignmentMade(DataSchema):
    """Matching allocated part (or all) of a need from one lot. need_quantity is what the
    need asks and need_assigned what it has been given with this assignment counted, both in
    the need's unit (optional: events published before they existed lack them)."""

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
    value_yuan = _money(required=True)
    programme = fields.String()
    explanation = fields.String()
    need_quantity = _positive()
    need_assigned = _positive()


class NeedFulfilled(DataSchema):
    need_id = _id(required=True)
    community_id = _id(required=True)
    category = _id(required=True)
    quantity = _positive(required=True)
    unit = _unit(required=True)
    # a service need served by a volunteer (the offer accepted): what accounting counts as
    # a service delivered to the need's programme
    programme = fields.String(validate=validate.Length(max=200))
    beneficiaries = _count()
    volunteer_id = _id()
    # a goods need: the assignment that met it, whose ``assignment_made`` carries the need's
    # totals (``need_assigned`` = ``need_quantity``); what was told of that assignment told
    # that the need is fully met
    completed_by = _id()


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
    # in the lot's unit; negative when stock leaves
    delta = fields.Float(required=True, allow_nan=False,
                         validate=validate.Range(min=-QUANTITY_MAX, max=QUANTITY_MAX))
    available = _non_negative(required=True)
    unit = _unit(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(STOCK_REASONS))
    assignment_id = _id()
    # write-offs: why, and the share of the lot's intake value that left with the goods
    write_off_id = _id()
    write_off_reason = fields.String(validate=validate.OneOf(WRITE_OFF_REASONS))
    value_yuan = _money()
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
    value_yuan = _money()  # the promised value, when known
    programme = fields.String(validate=validate.Length(max=200))


class StaffHealth(DataSchema):
    """How an organisation's staff are: counts only, never names."""

    total = _count(required=True)
    healthy = _count(required=True)
    fever = _count(load_default=0)
    quarantined = _count(load_default=0)

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
    hours = _positive(24, required=True)
    date = fields.Date(required=True)
    activity = _id()
    programme = fields.String()
    assignment_id = _id()
    organisation_id = _id()


class HoursRejected(DataSchema):
    """A coordinator rejected logged hours: they never count."""

    hours_id = _id(required=True)
    volunteer_id = _id(required=True)
    hours = _positive(24, required=True)
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
    attendances = _count(required=True)
    programme = fields.String(validate=validate.Length(max=200))


class ServiceDelivered(DataSchema):
    """Services a programme delivered in a period (haircuts, repairs, counselling...): how
    many sessions, how many people they served and how many people provided them. ``date``
    is the day (or the last day) they are counted for; ``approximate``: the figures are
    lower bounds ("400 余人次", "400+")."""

    delivery_id = _id(required=True)
    programme = fields.String(required=True, validate=validate.Length(min=1, max=200))
    category = _id()  # a service category of the catalogue (haircut, repair...)
    date = fields.Date(required=True)
    sessions = _count(load_default=0)
    people_served = _count(load_default=0)
    providers = _count(load_default=0)
    organisation_id = _id()
    community_ids = fields.List(_id(), validate=validate.Length(max=1000), load_default=list)
    approximate = fields.Boolean(load_default=False)
    note = fields.String(validate=validate.Length(max=2000))


class ProgrammeOutput(DataSchema):
    """Something a programme produced, counted in its own unit: 100 t of vegetables sold."""

    description = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description_en = fields.String(validate=validate.Length(max=200))
    quantity = _non_negative(required=True)
    unit = _unit()


class ProgrammeRecorded(DataSchema):
    """A programme (a service plan or a named action within one) as its coordinators last
    recorded it: its activities, the communities and groups taking part, and its reach.
    Recording it again replaces the earlier figures (the latest ``recorded_at`` counts).
    ``name`` is what needs, donations, hours and training name in their ``programme``."""

    programme_id = _id(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    name_en = fields.String(validate=validate.Length(max=200))
    plan = fields.String(validate=validate.Length(max=200))  # the plan it belongs to
    recorded_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    organisation_ids = fields.List(_id(), validate=validate.Length(max=1000),
                                   load_default=list)
    activities = _count(load_default=0)  # sessions, classes, sharing meetings held
    communities = _count(load_default=0)  # communities taking part
    groups = _count(load_default=0)  # self-organised groups taking part
    participants = _count(load_default=0)  # people who joined the action to run it
    reach = _count(load_default=0)  # people served or attending (person-times)
    outputs = fields.List(fields.Nested(ProgrammeOutput), validate=validate.Length(max=20),
                          load_default=list)
    approximate = fields.Boolean(load_default=False)  # figures are lower bounds ("余")
    note = fields.String(validate=validate.Length(max=2000))


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


# -- lists (HTTP queries; unknown parameters are refused by the gateway's subclasses) -----
LIST_PAGE_MAX = 200  # bounded pages: a list never answers with a whole collection


class ListQuery(Schema):
    """Filters and the page of a list: ``area`` (a district, street or community: it and
    everything below it), ``category``, ``programme``, ``from``/``to`` (ISO days, inclusive),
    ``after`` (the ``next`` cursor of the previous page) and ``limit`` (1-200, 50)."""

    area = _id()
    category = _id()
    programme = fields.String(validate=validate.Length(min=1, max=200))
    from_ = fields.Date(data_key="from")
    to = fields.Date()
    after = _id()
    limit = fields.Integer(strict=False, load_default=50,
                           validate=validate.Range(min=1, max=LIST_PAGE_MAX))


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
    "service_delivered": ServiceDelivered,
    "programme_recorded": ProgrammeRecorded,
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
                   "training_held", "status_reported", "service_delivered",
                   "programme_recorded"),
    "matching": ("assignment_made", "need_fulfilled", "need_escalated", "need_expired",
                 "offer_made", "offer_accepted", "offer_released"),
    # delivery outcomes are kept with each message (GET /api/notifications), not published:
    # nothing consumed them, so they only filled the unroutable exchange
    "notifications": (),
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
    # who published it, as the broker authenticated them (the AMQP ``user_id`` property,
    # which RabbitMQ checks against the connection's user); None when not said
    publisher: str | None = None


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


@functools.cache
def _schema(cls: type[Schema]) -> Schema:
    """One instance per schema class: building one copies every declared field, which cost
    more than loading an event; the contract's schemas keep no state between loads."""
    return cls()


def parse(envelope: Any) -> Event:
    """Validate an envelope (already decoded from JSON) and its data; raise ContractError."""
    if not isinstance(envelope, dict):
        raise ContractError("the message is not a JSON object")
    try:
        env = _schema(EnvelopeSchema).load(envelope)
    except ValidationError as exc:
        raise ContractError(describe(exc.messages), exc.messages) from None
    try:
        data = _schema(EVENT_SCHEMAS[env["type"]]).load(env["data"])
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
    schema = _schema(EVENT_SCHEMAS[type_])
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


# -- one id, one thing -------------------------------------------------------------------------
class IdReused(ValueError):
    """An event names a need or a donation by an id already used for a different one.

    The first stands, everywhere: a consumer that finds the id taken by other content
    refuses the event (it is dead-lettered with this reason) instead of ignoring it or, worse,
    letting it change what the first one said (who is told about it, say). The same content
    again under a new event id is a repost, and is harmless."""

    def __init__(self, name: str, value: str, differs: list[str]):
        what = f": it differs in {', '.join(differs)}" if differs else ""
        super().__init__(f"{name} {value!r} is already used for a different "
                         f"{name.removesuffix('_id')}{what}; the first stands")


def _plain(value: Any) -> Any:
    """A value as it compares across a stored copy: datetimes in UTC to the millisecond (what
    the database keeps), numbers as floats (1 and 1.0 are the same quantity)."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        return value.replace(microsecond=value.microsecond // 1000 * 1000).isoformat()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def differences(first: Any, again: Any, names: Any) -> list[str]:
    """Which of ``names`` differ between two postings of one thing (absent and None alike)."""
    return [name for name in names
            if _plain(first.get(name)) != _plain(again.get(name))]


def fingerprint(data: Any) -> str:
    """A short digest of a posting's data: equal for the same content, whatever its event."""
    plain = json.dumps(_plain(dict(data)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(plain.encode()).hexdigest()[:32]
