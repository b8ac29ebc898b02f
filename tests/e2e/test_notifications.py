"""Notifications through the whole system, every service its own process: events in through
``relief.intake``, recipients through the gateway, mail read from the local mail sink, SMS
through its webhook (the sink's HTTP side)."""

import json
import uuid

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from deploy.local import free_port
from deploy.mail_sink import MailSink
from tests.support import System, eventually


@pytest.fixture(scope="module")
def sink(infra):
    base = infra.base / "mail" / uuid.uuid4().hex[:6]
    s = MailSink(base / "box", port=free_port(), http_port=free_port()).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def system(infra, sink):
    """The whole system, pointed at the mail sink through the environment, as ``make run``
    does; a short coalescing window so that the test does not wait a minute."""
    space = infra.new_space("notifications-e2e")
    sys_ = System(space, infra.base / "logs" / space.vhost)
    sys_.env.update(sink.env())
    sys_.env.update({"NOTIFY_WINDOW_SECONDS": "2", "NOTIFY_POLL_SECONDS": "0.3",
                     "NOTIFY_RETRY_BACKOFF": "0.5", "SMS_WEBHOOK_SECRET": "e2e-secret"})
    sys_.start()
    yield sys_
    sys_.stop()


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def phone():
    return "137" + str(uuid.uuid4().int)[:8]


def donation(lot, location, qty, contact=None):
    donor = {"name": "成都启毅农业科技有限公司", "kind": "company"}
    if contact:
        donor["contact"] = contact
    return {"donation_id": lot, "donor": donor, "location_id": location,
            "category": "masks", "quantity": qty, "unit": "piece", "value_yuan": 50.0}


def need(nid, community, qty, contact_phone):
    return {"need_id": nid, "community_id": community, "kind": "goods", "category": "masks",
            "quantity": qty, "unit": "piece", "urgency": "high",
            "contact": {"name": "王芳", "phone": contact_phone}}


def mail_to(sink, address):
    return [m for m in sink.mail() if address in m["rcpt_to"]]


def test_an_assignment_sends_the_poster_one_email_in_their_language(system, sink):
    station, address, p = uid("station"), f"{uid('station')}@example.org", phone()
    put = system.api("PUT", f"/api/recipients/{station}", json={
        "name": "Wang Fang", "phone": p, "email": address, "language": "en",
        "channels": ["email"], "areas": ["QY-S06-C01"]})
    assert put.status_code == 201, put.text
    probe = system.space.bind_probe("matching.events", "assignment_made")

    lot, nid = uid("D"), uid("N")
    system.space.intake("donation_received", donation(lot, "QY-S06-C01", 60))
    eventually(lambda: lot in system.lots("masks"), what="the lot")
    need_event = system.space.intake("need_posted", need(nid, "QY-S06-C01", 100, p))

    mails = eventually(lambda: mail_to(sink, address), what="the email in the mail sink")
    assert len(mails) == 1
    assert mails[0]["subject"] == f"Need {nid} matched (partly)"
    assert "Hello Wang Fang" in mails[0]["body"] and "60 of 100" in mails[0]["body"]
    assert p not in mails[0]["body"]

    # redelivered: the need again, the assignment event again (same event id)
    system.space.intake("need_posted", need(nid, "QY-S06-C01", 100, p), event_id=need_event)
    assignment = next(json.loads(body) for _, body in system.space.get_messages(probe)
                      if json.loads(body)["data"]["need_id"] == nid)
    system.space.publish("matching.events", "assignment_made", assignment)
    # a marker behind them: another need by the same person, in another street (so that the
    # first need, still open, cannot take its lot); its email proves they were read
    marker, marker_lot = uid("N"), uid("D")
    system.space.intake("donation_received", donation(marker_lot, "QY-S09-C01", 5))
    eventually(lambda: marker_lot in system.lots("masks"), what="the marker's lot")
    system.space.intake("need_posted", need(marker, "QY-S09-C01", 5, p))
    eventually(lambda: any(marker in m["body"] for m in mail_to(sink, address)),
               what="the marker's email")
    assert sum(nid in m["body"] for m in mail_to(sink, address)) == 1

    # what the API shows: state, channel, the text, no address
    with ClusterRpcProxy({"AMQP_URI": system.space.amqp_uri}) as rpc:
        shown = rpc.notifications.messages_for_need(nid)
    assert [m["template"] for m in shown] == ["assignment_made"]
    assert shown[0]["state"] == "sent" and shown[0]["channel"] == "email"
    listed = system.api("GET", f"/api/notifications?need_id={nid}").json()["notifications"]
    assert [m["notification_id"] for m in listed] == [shown[0]["notification_id"]]
    assert address not in json.dumps(listed) and p not in json.dumps(listed)


def test_the_donor_is_told_by_sms_with_the_receipt_and_nothing_about_the_resident(
        system, sink):
    donor_phone, resident_phone = phone(), phone()
    lot, nid = uid("D"), uid("N")
    system.space.intake("donation_received", donation(
        lot, "QY-S08-C02", 30, contact={"name": "赵强", "phone": donor_phone,
                                        "language": "zh-CN"}))
    eventually(lambda: lot in system.lots("masks"), what="the lot")
    system.space.intake("need_posted", need(nid, "QY-S08-C02", 30, resident_phone))

    def sms():
        return [h for h in sink.webhooks() if h["path"] == "/sms"
                and h["body"]["to"] == donor_phone]

    hooks = eventually(sms, what="the donor's SMS")
    assert len(hooks) == 1
    text = hooks[0]["body"]["text"]
    assert lot in text and "已从" in text
    assert resident_phone not in json.dumps(hooks) and "王芳" not in json.dumps(hooks)
    assert hooks[0]["headers"]["X-Relief-Signature"].startswith("sha256=")


def test_a_message_that_cannot_arrive_is_visible_to_on_call(system):
    org = uid("ORG")
    envelope = {"event_id": str(uuid.uuid4()), "type": "status_report_missing", "version": 1,
                "occurred_at": "2020-02-10T10:00:00+00:00", "source": "volunteers",
                "data": {"organisation_id": org, "due_at": "2020-02-10T10:00:00+00:00"}}
    system.space.publish("volunteers.events", "status_report_missing", envelope)

    def dead():
        rows = system.api("GET", "/api/notifications?state=dead").json()["notifications"]
        return [r for r in rows if r.get("group") == f"organisation:{org}"]

    row = eventually(dead, what="the dead message")[0]
    assert row["reason"] == f"no contact is registered for organisation {org}"
