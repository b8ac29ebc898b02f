"""A new coordinator invited by e-mail: the admin makes the account with an invitation, the
mail sink receives the link, the invitee chooses a password through it and signs in; the
link works once and not after it expired; the audit log has both steps; what on-call reads
of the message never carries the token."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import System, eventually

LINK = re.compile(r"(\S+)/console#invite=(ri_[A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
def system(infra, sink):
    """The whole system, its mail sent to the sink (as ``make run`` does)."""
    space = infra.new_space("invitations-e2e")
    sys_ = System(space, infra.base / "logs" / space.vhost)
    sys_.env.update(sink.env())
    sys_.env.update({"NOTIFY_POLL_SECONDS": "0.3"})
    sys_.start()
    yield sys_
    sys_.stop()


def invite(system, account_id, address, **extra):
    r = system.api("POST", "/api/accounts", json={
        "account_id": account_id, "role": "community_coordinator", "area_id": "QY-S01-C01",
        "name": "王芳", "invite": {"email": address}, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def mailed_token(sink, address, count=1):
    mails = eventually(lambda: (m := [m for m in sink.mail() if address in m["rcpt_to"]])
                       and len(m) >= count and m, what="the invitation in the mail sink")
    return mails, LINK.search(mails[-1]["body"]).group(2)


def sign_in(system, account_id, password):
    return system.api("POST", "/api/session", token=None,
                      json={"account_id": account_id, "password": password})


def test_an_invited_coordinator_chooses_a_password_through_the_link_once(system, sink):
    tag = uuid.uuid4().hex[:6]
    account_id, address = f"c01-{tag}", f"wang.{tag}@example.org"
    made = invite(system, account_id, address)
    assert made["invited"] is True and "token" not in str(made)
    assert made["invitation"]["channel"] == "email"
    assert address not in str(made)  # masked
    assert sign_in(system, account_id, "anything at all").status_code == 401  # not yet

    mails, token = mailed_token(sink, address)
    assert len(mails) == 1
    mail = mails[0]
    assert "社区协调员" in mail["subject"] and "王芳，您好" in mail["body"]  # zh-CN
    assert LINK.search(mail["body"]).group(1).startswith("http")  # the gateway's address

    r = system.api("POST", f"/api/invitations/{token}", token=None,
                   json={"password": "short"})
    assert r.status_code == 400  # the same rules as accounts' passwords
    r = system.api("POST", f"/api/invitations/{token}", token=None,
                   json={"password": "my own long password"})
    assert r.status_code == 201, r.text
    session = r.json()
    assert session["account"]["account_id"] == account_id
    assert session["account"]["invited"] is False
    assert system.api("GET", "/api/me", token=session["token"]).json()["areas"] == [
        "QY-S01-C01"]
    assert sign_in(system, account_id, "my own long password").status_code == 201

    again = system.api("POST", f"/api/invitations/{token}", token=None,
                       json={"password": "another long password"})
    assert again.status_code == 410 and "used already" in again.json()["error"]
    unknown = system.api("POST", "/api/invitations/ri_nothing-of-the-kind", token=None,
                         json={"password": "another long password"})
    assert unknown.status_code == 404 and "no such invitation" in unknown.json()["error"]

    # the audit log: the invitation (by the operator) and its acceptance, never the token
    entries = system.api("GET", "/api/audit?limit=1000").json()["entries"]
    made_entry = [e for e in entries if e.get("target", {}).get("account_id") == account_id
                  and e["action"] == "accounts.manage"]
    assert [e["status"] for e in made_entry] == [201]
    assert made_entry[0]["target"]["invitation_id"] == made["invitation"]["invitation_id"]
    accepted = [e for e in entries if e["action"] == "invitations.accept"
                and e.get("target", {}).get("account_id") == account_id]
    assert [e["status"] for e in accepted] == [201, 410]
    assert accepted[0]["actor"] == account_id
    assert token not in str(entries)

    # what on-call reads of the message: sent, in zh-CN, without the link
    listed = system.api("GET", "/api/notifications?limit=1000")
    assert listed.status_code == 200 and token not in listed.text
    shown = [n for n in listed.json()["notifications"] if n["template"] == "invitation"
             and n["notification_id"] == made["invitation"]["notification_id"]]
    assert shown and shown[0]["state"] == "sent" and shown[0]["language"] == "zh-CN"
    assert "invite=" not in shown[0]["text"]


def test_an_expired_or_replaced_invitation_is_refused_and_a_new_one_works(system, sink):
    tag = uuid.uuid4().hex[:6]
    account_id, address = f"c01-{tag}", f"li.{tag}@example.org"
    invite(system, account_id, address, name="Li Lei")
    _, first = mailed_token(sink, address)
    # expired: moved into the past in the gateway's database, not waited for
    system.space.db("gateway").invitations.update_many(
        {"account_id": account_id},
        {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    r = system.api("POST", f"/api/invitations/{first}", token=None,
                   json={"password": "a long password"})
    assert r.status_code == 410 and "expired" in r.json()["error"]

    r = system.api("POST", f"/api/accounts/{account_id}/invitation")
    assert r.status_code == 201, r.text
    _, second = mailed_token(sink, address, count=2)
    assert second != first
    r = system.api("POST", f"/api/accounts/{account_id}/invitation")
    assert r.status_code == 201
    _, third = mailed_token(sink, address, count=3)
    r = system.api("POST", f"/api/invitations/{second}", token=None,
                   json={"password": "a long password"})
    assert r.status_code == 410 and "replaced" in r.json()["error"]  # voided by the third
    r = system.api("POST", f"/api/invitations/{third}", token=None,
                   json={"password": "a long password"})
    assert r.status_code == 201, r.text
    assert system.api("POST", f"/api/accounts/{account_id}/invitation").status_code == 409


def test_the_console_opens_the_link_asks_for_the_password_and_signs_in(system, sink):
    from tests.e2e.test_dashboard import Browser

    tag = uuid.uuid4().hex[:6]
    account_id, address = f"c01-{tag}", f"zhao.{tag}@example.org"
    invite(system, account_id, address, name="Zhao Min")
    _, token = mailed_token(sink, address)
    browser = Browser()
    try:
        browser.goto(f"{system.url}/console#invite={token}")
        browser.wait("document.body.dataset.view === 'invite'")
        assert token not in browser.js("location.href")  # out of the address bar
        browser.js("document.getElementById('new-password').value = 'chosen in the console';"
                   "document.getElementById('new-password-again').value = "
                   "'chosen in the console';"
                   "document.querySelector('#invite-form button').click(); 1")
        browser.wait("document.body.dataset.view === 'needs' && "
                     "!document.getElementById('nav').hidden")
        assert account_id in browser.js("document.getElementById('whoami').textContent")
    finally:
        browser.close()
    assert sign_in(system, account_id, "chosen in the console").status_code == 201
