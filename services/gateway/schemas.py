"""HTTP bodies: the event data schemas of the contract, strict (unknown fields rejected)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from services.common import contract
from services.gateway import policy


class NeedBody(contract.Strict, contract.NeedPosted):
    pass


class DonationBody(contract.Strict, contract.DonationReceived):
    class Meta(contract.Strict.Meta):
        exclude = ("lot_id", "transfer_of", "boxes", "value_known")


NEED_STATUSES = ("open", "offered", "partial", "fulfilled", "expired")


class NeedsQuery(contract.Strict):
    """My area's needs: one community of it, or all of them; newest first."""

    community_id = contract.identifier()
    status = fields.String(validate=validate.OneOf(NEED_STATUSES))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class StockQuery(contract.Strict):
    category = fields.String(validate=validate.Length(min=1, max=128))


class DigestQuery(contract.Strict):
    """``GET /digest/<id>``: the link's signature, and a language to read it in."""

    sig = fields.String(required=True, validate=validate.Length(min=1, max=128))
    lang = fields.String(validate=validate.OneOf(("zh-CN", "en")))


class HistoryQuery(contract.Strict):
    hours = fields.Integer(load_default=24, validate=validate.Range(min=1, max=24))


class HistorySample(Schema):
    """The dashboard's key figures at one minute (None: its source could not be read)."""

    at = fields.DateTime(required=True)
    open_needs = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True)
    dead_letters = fields.Integer(allow_none=True)
    assignments = fields.Integer(allow_none=True)  # made in that UTC hour, so far
    queue_depth = fields.Integer(allow_none=True)  # messages in the queues that do the work


class History(Schema):
    """``GET /api/history``: minute samples of the last ``hours`` hours, oldest first."""

    hours = fields.Integer(required=True)
    until = fields.DateTime(required=True)
    samples = fields.List(fields.Nested(HistorySample), required=True)


class Accepted(Schema):
    """202 answer to a POST: the event is accepted; its effects follow asynchronously."""

    event_id = fields.UUID(required=True)
    duplicate = fields.Boolean(required=True)
    status_url = fields.String()


class Error(Schema):
    error = fields.String(required=True)
    fields = fields.Dict()


# -- people: accounts, sessions, API keys, the audit log ---------------------------------------
ACCOUNT_ID = r"^[a-z0-9][a-z0-9._@-]{2,63}$"
PASSWORD_MIN, PASSWORD_MAX = 10, 256


def _password(**kw):
    return fields.String(validate=validate.Length(min=PASSWORD_MIN, max=PASSWORD_MAX), **kw)


class SignInBody(contract.Strict):
    """Sign in: an account and its password, for a session token that expires."""

    account_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=PASSWORD_MAX))


INVITE_LANGUAGES = ("zh-CN", "en")


class InviteBody(contract.Strict):
    """Where an invitation goes instead of a first password: an e-mail address or a phone
    (SMS), exactly one; the language of the message (zh-CN unless en is asked for)."""

    email = fields.Email(validate=validate.Length(max=254))
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9 \-]{5,20}$"))
    language = fields.String(load_default="zh-CN", validate=validate.OneOf(INVITE_LANGUAGES))

    @validates_schema
    def _one_address(self, data: dict[str, Any], **_: Any) -> None:
        """exactly one of email, phone"""
        if bool(data.get("email")) == bool(data.get("phone")):
            raise ValidationError("give exactly one of email, phone", "_schema")


class AccountBody(contract.Strict):
    """A new account (by an admin). Coordinators name the one area they coordinate (a
    district, street or community id, by role); an organisation its organisation_id;
    ``permissions: ["replay"]`` lets on-call staff send dead messages and dead letters
    again, ``["purge"]`` purge dead letters. Either a first ``password`` or an ``invite``
    (the new coordinator chooses their password from the link they receive), not both."""

    account_id = fields.String(required=True, validate=validate.Regexp(
        ACCOUNT_ID, error="3-64 of a-z 0-9 . _ @ -, starting with a letter or digit"))
    role = fields.String(required=True, validate=validate.OneOf(policy.ROLES))
    password = _password()
    invite = fields.Nested(InviteBody)
    name = fields.String(validate=validate.Length(max=100))
    area_id = contract.identifier()
    organisation_id = contract.identifier()
    permissions = fields.List(fields.String(validate=validate.OneOf(policy.PERMISSIONS)),
                              validate=validate.Length(max=len(policy.PERMISSIONS)),
                              load_default=list)

    @validates_schema
    def _password_or_invite(self, data: dict[str, Any], **_: Any) -> None:
        """exactly one of password, invite"""
        if ("password" in data) == ("invite" in data):
            raise ValidationError("give exactly one of password, invite", "_schema")


class PasswordBody(contract.Strict):
    """A new password (an admin's reset): every session of the account ends."""

    password = _password(required=True)


class AcceptBody(contract.Strict):
    """Accepting an invitation: the password the new coordinator chose."""

    password = _password(required=True)


class KeyBody(contract.Strict):
    """An API key for a partner system or a script: what it may do (actions, or the event
    types it posts: need_posted, donation_received, hours_logged) and where (areas; none:
    everywhere), optionally for one organisation."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    scopes = fields.List(fields.String(validate=validate.OneOf(policy.SCOPES)),
                         required=True, validate=validate.Length(min=1, max=len(policy.SCOPES)))
    areas = fields.List(contract.identifier(), validate=validate.Length(max=100),
                        load_default=list)
    organisation_id = contract.identifier()


QUEUE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$"


class ReplayBody(contract.Strict):
    """Which dead letters on-call replays: the ids ``relief-ops dlq list`` shows (an event
    id, or sha1:... for a message that is not an event); none given means every one."""

    messages = fields.List(fields.String(validate=validate.Length(min=1, max=200)),
                           validate=validate.Length(min=1, max=1000))


class AuditQuery(contract.Strict):
    since = fields.AwareDateTime()
    actor = fields.String(validate=validate.Length(min=1, max=128))
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class Session(Schema):
    """A session: its token (shown once), when it expires, and whose it is."""

    token = fields.String(required=True)
    expires_at = fields.AwareDateTime(required=True)
    account = fields.Dict(required=True)
