"""Invitations of new coordinators: the body that asks for one, when a token may be
accepted, the message (its link delivered, masked where on-call reads it), sent once."""

from datetime import UTC, datetime, timedelta

import pytest
from marshmallow import ValidationError

from services.common import reference
from services.gateway import policy, schemas
from services.notifications import channels, handlers, texts
from services.notifications.settings import notify_settings
from tests.unit.fakes_notifications import FakeNotificationsStore

REF = reference.load("deploy/reference")
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
LINK = "https://relief.example.org/console#invite=ri_" + "s" * 43
PARAMS = {"role": "community_coordinator", "area_id": "QY-S01-C01", "invite_url": LINK}
ACCOUNT = {"account_id": "c01-wang", "role": "community_coordinator", "area_id": "QY-S01-C01"}


def test_an_account_has_a_password_or_an_invitation_not_both_nor_neither():
    body = schemas.AccountBody().load({**ACCOUNT, "invite": {"email": "wang@example.org"}})
    assert body["invite"] == {"email": "wang@example.org", "language": "zh-CN"}
    assert "password" not in body
    for wrong in ({**ACCOUNT}, {**ACCOUNT, "password": "a long password",
                                 "invite": {"phone": "13700001111"}}):
        with pytest.raises(ValidationError) as exc:
            schemas.AccountBody().load(wrong)
        assert exc.value.messages == {"_schema": ["give exactly one of password, invite"]}


def test_an_invitation_goes_to_exactly_one_address_in_a_language_we_write():
    assert schemas.InviteBody().load({"phone": "+86 137-0000-1111", "language": "en"})
    for wrong in ({}, {"email": "a@example.org", "phone": "13700001111"},
                  {"email": "not an address"}, {"email": "a@example.org", "language": "fr"}):
        with pytest.raises(ValidationError):
            schemas.InviteBody().load(wrong)


def test_accepting_takes_the_same_passwords_as_accounts():
    with pytest.raises(ValidationError):
        schemas.AcceptBody().load({"password": "short"})
    assert schemas.AcceptBody().load({"password": "long enough now"})


def invitation(**changes):
    return {"_id": "digest", "invitation_id": "i1", "account_id": "c01-wang",
            "expires_at": NOW + timedelta(hours=1), "used_at": None, "voided_at": None,
            **changes}


ACCOUNT_DOC = {"_id": "c01-wang", "invited": True, "disabled": False}


def test_an_open_invitation_may_be_accepted_once_before_it_expires():
    assert policy.invitation_refusal(invitation(), ACCOUNT_DOC, NOW) is None
    assert policy.invitation_refusal(None, None, NOW)[0] == 404
    for over, words in ((invitation(used_at=NOW), "used already"),
                        (invitation(voided_at=NOW), "replaced by a newer one"),
                        (invitation(expires_at=NOW), "expired")):
        status, message = policy.invitation_refusal(over, ACCOUNT_DOC, NOW)
        assert status == 410 and words in message
    status, message = policy.invitation_refusal(invitation(), {**ACCOUNT_DOC, "disabled": True},
                                                NOW)
    assert status == 410 and "disabled" in message


@pytest.mark.parametrize("language", texts.LANGUAGES)
def test_the_invitation_says_to_be_what_and_where_and_carries_the_link(language):
    out = texts.render("invitation", language, PARAMS, REF, name="王芳")
    area = REF.areas.areas["QY-S01-C01"]
    assert (area.name if language == "zh-CN" else area.name_en) in out.subject
    assert ("社区协调员" if language == "zh-CN" else "community coordinator") in out.body
    assert LINK in out.body and LINK in out.line
    assert channels.sms_fits(out.line, 3)  # the SMS is the line, with the link whole


def test_the_stored_text_has_the_link_masked():
    out = texts.render("invitation", "zh-CN", texts.masked(PARAMS), REF)
    assert "invite=" not in out.body + out.line + out.subject and texts.MASK in out.body
    assert texts.masked({"need_id": "N-1"}) == {"need_id": "N-1"}


def test_one_invitation_is_one_message_due_at_once_with_the_link_in_its_params_only():
    store = FakeNotificationsStore()
    ctx = handlers.Context(store, notify_settings({}), REF, NOW)
    contact = {"email": "wang@example.org", "language": "en", "name": "Wang Fang"}
    first = store.atomically(lambda tx: handlers.invite(ctx, tx, "i1", contact, PARAMS))
    again = store.atomically(lambda tx: handlers.invite(ctx, tx, "i1", contact, PARAMS))
    assert first == again
    [message] = store.messages_of("invitation")
    assert message["_id"] == first and message["language"] == "en"
    assert message["due_at"] <= datetime.now(UTC) and message["state"] == "queued"
    assert message["params"]["invite_url"] == LINK
    assert "invite=" not in message["text"] + message["subject"]
    recipient = store.recipient(message["recipient"])
    assert recipient["email"] == "wang@example.org" and recipient["language"] == "en"
    other = store.atomically(lambda tx: handlers.invite(ctx, tx, "i2", contact, PARAMS))
    assert other != first  # a new invitation is a new message
    assert store.atomically(lambda tx: handlers.invite(ctx, tx, "i3", {}, PARAMS)) is None
