"""HTTP bodies: the event data schemas of the contract, strict (unknown fields rejected)."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from services.common import contract


class NeedBody(contract.NeedPosted):
    class Meta:
        unknown = RAISE


class DonationBody(contract.DonationReceived):
    class Meta:
        unknown = RAISE
        exclude = ("lot_id", "transfer_of", "boxes")


class StockQuery(Schema):
    class Meta:
        unknown = RAISE

    category = fields.String(validate=validate.Length(min=1, max=128))


class Accepted(Schema):
    """202 answer to a POST: the event is accepted; its effects follow asynchronously."""

    event_id = fields.UUID(required=True)
    duplicate = fields.Boolean(required=True)
    status_url = fields.String()


class Error(Schema):
    error = fields.String(required=True)
    fields = fields.Dict()


BODIES = {"need_posted": NeedBody, "donation_received": DonationBody}
