"""Notifications through the whole system, every service its own process: events in through
``relief.intake``, recipients through the gateway, mail read from the local mail sink, SMS
through its webhook (the sink's HTTP side)."""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from services.notifications import channels
from tests.support import System, envelope, eventually

ROOT = Path(__file__).resolve().parents[2]


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


def ops_status(system, *args):
    """``relief-ops status`` as on-call runs it against this system."""
    space = system.space
    env = {**os.environ, "RABBIT_MANAGEMENT_URI": space.management_uri,
           "AMQP_URI": space.amqp_uri, "RELIEF_GATEWAY_URL": system.url,
           "RELIEF_ADMIN_TOKEN": System.TOKEN, "PYTHONWARNINGS": "ignore",
           "RELIEF_LANG": "en"}  # its words are checked
    return subprocess.run([sys.executable, "-m", "services.ops.cli", "status", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


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
    # told once by its key (cause and recipient), not by a processed marker: none is written
    processed = system.space.db("notifications").processed
    assert processed.find_one({"_id": f"on_assignment_made:{assignment['event_id']}"}) is None
    assert processed.find_one({"_id": f"on_need_posted:{need_event}"}) is None

    # what the API shows: state, channel, the text, no address
    with ClusterRpcProxy({"AMQP_URI": system.space.amqp_uri}) as rpc:
        shown = rpc.notifications.messages_for_need(nid)
    assert [m["template"] for m in shown] == ["assignment_made"]
    assert shown[0]["state"] == "sent" and shown[0]["channel"] == "email"
    listed = system.api("GET", f"/api/notifications?need_id={nid}").json()["notifications"]
    assert [m["notification_id"] for m in listed] == [shown[0]["notification_id"]]
    assert address not in json.dumps(listed) and p not in json.dumps(listed)
    # a delivery publishes nothing: the unroutable tap stays empty, so a misroute stands out
    assert system.space.queue_depth("relief.unroutable") == 0


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


def test_an_escalation_to_an_area_without_coordinators_is_an_on_call_problem(system):
    """Nobody is registered for the street a need escalated to: relief-ops status fails
    naming the area (and the dashboard's report agrees) until a coordinator is registered
    and the message is sent again."""
    street, nid = "QY-S11", uid("N")
    system.space.publish("matching.events", "need_escalated", envelope("need_escalated", {
        "need_id": nid, "community_id": f"{street}-C01", "category": "masks",
        "urgency": "critical", "from_tier": "community", "to_tier": "street",
        "area_id": street, "remaining": 40, "unit": "piece"}, source="matching"))

    def named():
        result = ops_status(system, "--quiet")
        return result.returncode == 1 and street in result.stdout and result

    result = eventually(named, what="the escalation to nobody named by relief-ops")
    assert result.stdout.startswith("PROBLEMS")
    assert f"escalation(s) to street {street} ({nid}) reached nobody" in result.stdout
    report = json.loads(ops_status(system, "--json").stdout)
    assert ("escalation", street) in {(p["check"], p["subject"]) for p in report["problems"]}
    [row] = [r for r in report["unaddressed_escalations"] if r["area_id"] == street]
    assert row["need_ids"] == [nid] and row["coordinators"] == 0
    dashboard = system.api("GET", "/api/dashboard").json()
    assert ("escalation", street) in {(p["check"], p["subject"])
                                      for p in dashboard["problems"]}
    port = system.services.web_ports["notifications"]
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "relief_escalations_unaddressed 1" in metrics

    # on-call registers the street's coordinator and sends the message again
    coordinator = uid("coord")
    put = system.api("PUT", f"/api/recipients/{coordinator}", json={
        "name": "Chen Jing", "email": f"{coordinator}@example.org", "channels": ["email"],
        "areas": [street]})
    assert put.status_code == 201, put.text
    assert "a coordinator is registered now" in ops_status(system, "--quiet").stdout
    retry = system.api("POST", f"/api/notifications/{row['notification_ids'][0]}/retry")
    assert retry.status_code == 202, retry.text
    eventually(lambda: ops_status(system, "--quiet").returncode == 0,
               what="all clear once the coordinator was told")


def test_thirty_needs_met_for_one_contact_are_one_sms_of_three_segments_at_most(system, sink):
    """One community contact posts 30 needs and each is met by one assignment: 30
    messages (the assignment that meets a need says so), one SMS that says so in at most 3
    segments and links to the full list. Runs last in this module:
    notifications is restarted with a window that holds the whole burst (it stays so)."""
    contact, community, lot = phone(), "QY-S10-C01", uid("D")
    system.services.kill("notifications", signal.SIGTERM)
    system.services.service_env["notifications"] = {"NOTIFY_WINDOW_SECONDS": "10"}
    system.space.intake("donation_received", donation(lot, community, 300))
    needs = [uid("N-NP") for _ in range(30)]
    eventually(lambda: lot in system.lots("masks"), what="the lot")
    for nid in needs:
        system.space.intake("need_posted", need(nid, community, 10, contact))
    eventually(lambda: all((system.need(n) or {}).get("status") == "fulfilled" for n in needs),
               timeout=60, what="30 needs met")
    system.services.start("notifications")
    system.wait_consumers(["notifications"])

    def sent() -> list[dict]:
        return [h for h in sink.webhooks() if h["path"] == "/sms"
                and h["body"]["to"] == contact]

    [sms] = eventually(sent, timeout=60, what="the poster's SMS")
    text = sms["body"]["text"]
    assert channels.sms_segments(text) <= 3, text
    assert "30 条更新：30 项需求已全部满足。" in text, text
    assert "王芳" not in text and contact not in text
    # every message of the 30 needs went in that one delivery (recorded just after the
    # webhook answered)
    with ClusterRpcProxy({"AMQP_URI": system.space.amqp_uri}) as rpc:
        def recorded() -> list[dict]:
            found = [m for nid in needs for m in rpc.notifications.messages_for_need(nid)]
            return found if {m["state"] for m in found} == {"sent"} else []

        messages = eventually(recorded, what="the delivery recorded")
    assert len(messages) == 30
    assert {m["delivery_id"] for m in messages} == {sms["body"]["delivery_id"]}
    # the link opens the full list on the gateway, signed, without an account
    path = text[text.index("/digest/"):]
    page = requests.get(system.url + path, timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert all(nid in page.text for nid in needs) and "已全部满足" in page.text
    assert contact not in page.text and "王芳" not in page.text
    assert requests.get(system.url + path[:-2], timeout=10).status_code == 401
    assert len(sent()) == 1
