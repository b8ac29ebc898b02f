"""Notifications against the real broker, database, SMTP server (the mail sink) and an HTTP
receiver started here: one message per (event, recipient), coalescing, retries, dead
messages, quiet hours, escalations, offers, donors."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from nameko.containers import ServiceContainer
from nameko.testing.services import entrypoint_hook

from deploy.local import free_port
from deploy.mail_sink import MailSink
from deploy.topology import deploy
from services.common import contract, links
from services.notifications import channels
from services.notifications.service import NotificationsService
from tests.support import eventually

WINDOW = 2.0
SECRET = "test-webhook-secret"


class Receiver:
    """An HTTP endpoint standing in for an SMS or WeChat provider. ``script[path]`` lists the
    statuses to answer, in order; once used up it answers 200."""

    def __init__(self):
        self.script: dict[str, list[int]] = defaultdict(list)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                script = receiver.script[self.path]
                status = script.pop(0) if script else 200
                receiver.requests.append({"path": self.path, "status": status, "body": body,
                                          "headers": dict(self.headers)})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def accepted(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path and 200 <= r["status"] < 300]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def sink(infra, tmp_path_factory):
    s = MailSink(tmp_path_factory.mktemp("mail") / "box", port=free_port()).start()
    yield s
    s.stop()


def notifications_config(space, sink, receiver, **overrides):
    config = space.config()
    config["WEB_SERVER_ADDRESS"] = f"127.0.0.1:{free_port()}"  # /metrics, /healthz
    config["NOTIFICATIONS"] = {
        "poll_seconds": 0.2, "window_seconds": WINDOW, "max_attempts": 3,
        "retry_backoff_seconds": 0.3, "retry_backoff_max_seconds": 1, "lease_seconds": 30,
        "public_url": "https://relief.example.org", "link_secret": "link-secret",
        "smtp": {"host": "127.0.0.1", "port": sink.port, "timeout_seconds": 5},
        "sms": {"url": f"{receiver.url}/sms", "secret": SECRET, "timeout_seconds": 2},
        "wechat": {"url": f"{receiver.url}/wechat", "secret": SECRET, "timeout_seconds": 2},
        **overrides}
    return config


@pytest.fixture(scope="module")
def space(infra):
    return infra.new_space("notify")


@pytest.fixture(scope="module")
def service(space, sink, receiver):
    config = notifications_config(space, sink, receiver)
    deploy(config, classes=[NotificationsService])
    container = ServiceContainer(NotificationsService, config)
    container.start()
    yield container
    container.stop()


# -- helpers ---------------------------------------------------------------------------------
def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def phone():
    return "139" + str(uuid.uuid4().int)[:8]


def publish(space, source, type_, data, event_id=None):
    envelope = contract.build(type_, data, source, event_id=event_id)
    space.publish(f"{source}.events", type_, envelope)
    return envelope


def rpc(container, method, *args, **kwargs):
    with entrypoint_hook(container, method) as call:
        return call(*args, **kwargs)


def register(container, recipient_id, **body):
    answer = rpc(container, "put_recipient", recipient_id, body)
    assert "error" not in answer, answer
    return answer["recipient"]


def need(need_id, contact_phone, urgency="high", quantity=100, language=None, **kw):
    contact = {"name": "王芳", "phone": contact_phone}
    if language:
        contact["language"] = language
    return {"need_id": need_id, "community_id": "QY-S01-C01", "kind": "goods",
            "category": "masks", "quantity": quantity, "unit": "piece", "urgency": urgency,
            "contact": contact, **kw}


def assignment(need_id, quantity=60, **kw):
    return {"assignment_id": uid("A"), "need_id": need_id, "community_id": "QY-S01-C01",
            "category": "masks", "quantity": quantity, "unit": "piece", "lot_id": uid("D"),
            "lot_quantity": quantity, "lot_unit": "piece", "location_id": "QY-S01-C01",
            "tier_distance": 0, "value_yuan": 30.0, **kw}


def mail_to(sink, address):
    return [m for m in sink.mail() if address in m["rcpt_to"]]


def messages(container, **query):
    return rpc(container, "list_messages", **query)


def state_of(container, notification_id):
    return rpc(container, "get_message", notification_id)


def known(container, need_id):
    """The need_posted has been handled: a probe that its contact is stored."""
    return rpc(container, "messages_for_need", need_id) is not None


# -- the acceptance criteria -------------------------------------------------------------------
def test_an_assignment_sends_one_email_to_the_poster_in_their_language(service, space, sink):
    address = f"{uid('station')}@example.org"
    p = phone()
    register(service, uid("station"), name="Wang Fang", phone=p, email=address,
             language="en", channels=["email"])
    nid = uid("N")
    publish(space, "intake", "need_posted", need(nid, p, quantity=100))
    a = assignment(nid, quantity=60)
    event = publish(space, "matching", "assignment_made", a)

    mails = eventually(lambda: mail_to(sink, address), what="the email")
    assert len(mails) == 1
    mail = mails[0]
    assert mail["subject"] == f"Need {nid} matched (partly)"
    assert "Hello Wang Fang" in mail["body"]
    assert "60 pieces of protective masks" in mail["body"]
    assert "60 of 100" in mail["body"]
    assert p not in mail["body"]

    # the same event again, and the same assignment under a new event id: nothing more
    space.publish("matching.events", "assignment_made", event)
    publish(space, "matching", "assignment_made", a)
    # a marker behind them, to the same poster, proves they were handled
    nid2 = uid("N")
    publish(space, "intake", "need_posted", need(nid2, p))
    publish(space, "matching", "need_fulfilled", {"need_id": nid2, "community_id": "QY-S01-C01",
                                                  "category": "masks", "quantity": 100,
                                                  "unit": "piece"})
    eventually(lambda: len(mail_to(sink, address)) == 2, what="the marker's email")
    bodies = [m["body"] for m in mail_to(sink, address)]
    assert sum(a["assignment_id"] in b or nid in b for b in bodies) == 1
    shown = rpc(service, "messages_for_need", nid)
    assert [m["template"] for m in shown] == ["assignment_made"]
    assert shown[0]["state"] == "sent" and shown[0]["channel"] == "email"
    assert p not in json.dumps(shown) and address not in json.dumps(shown)


def test_twenty_assignments_in_a_window_make_one_digest(service, space, sink):
    address = f"{uid('coord')}@example.org"
    p = phone()
    register(service, uid("coord"), name="李敏", phone=p, email=address, language="zh-CN")
    needs = [uid("N") for _ in range(20)]
    for nid in needs:
        publish(space, "intake", "need_posted", need(nid, p, quantity=10))
    eventually(lambda: all(rpc(service, "messages_for_need", n) == [] for n in needs))
    # the twenty assignments arrive within one window
    conn, ch = space.channel()
    try:
        for nid in needs:
            env = contract.build("assignment_made", assignment(nid, quantity=10), "matching")
            ch.basic_publish("matching.events", "assignment_made", json.dumps(env))
    finally:
        conn.close()

    def all_sent():
        states = [m["state"] for n in needs for m in rpc(service, "messages_for_need", n)]
        return len(states) == 20 and set(states) == {"sent"}

    eventually(all_sent, what="twenty messages sent")
    mails = mail_to(sink, address)
    assert len(mails) == 1, [m["subject"] for m in mails]
    assert mails[0]["subject"] == "社区抗疫物资协调平台：20 条更新"
    assert "李敏，您好" in mails[0]["body"]
    assert all(nid in mails[0]["body"] for nid in needs)
    delivery_ids = {m["delivery_id"] for n in needs for m in rpc(service, "messages_for_need", n)}
    assert len(delivery_ids) == 1


def test_a_webhook_failing_twice_then_succeeding_receives_the_message_once(
        service, space, receiver):
    p = phone()
    recipient = uid("sms")
    register(service, recipient, phone=p, channels=["sms"], language="zh-CN")
    receiver.script["/sms"] = [500, 503]
    nid = uid("N")
    publish(space, "intake", "need_posted", need(nid, p))
    publish(space, "matching", "need_expired", {"need_id": nid, "community_id": "QY-S01-C01",
                                                "category": "masks",
                                                "unfulfilled_quantity": 40, "unit": "piece"})

    def sent():
        shown = rpc(service, "messages_for_need", nid)
        return shown and shown[0]["state"] == "sent" and shown[0]

    message = eventually(sent, what="sent after two failures")
    assert message["attempts"] == 3
    tries = [r for r in receiver.requests if p.encode() in r["body"]]
    assert [r["status"] for r in tries] == [500, 503, 200]
    assert len({r["headers"]["X-Relief-Delivery"] for r in tries}) == 1  # same delivery id
    accepted = tries[-1]
    assert channels.verify(SECRET, accepted["headers"]["X-Relief-Timestamp"], accepted["body"],
                           accepted["headers"]["X-Relief-Signature"])
    payload = json.loads(accepted["body"])
    assert payload["to"] == p and "已过期" in payload["text"] and nid in payload["text"]
    assert message["channel"] == "sms"


def test_a_webhook_that_always_fails_leaves_a_dead_message_with_its_reason(
        service, space, receiver):
    p = phone()
    register(service, uid("wx"), wechat=f"wx-{uuid.uuid4().hex[:6]}", phone=p,
             channels=["wechat"])
    receiver.script["/wechat"] = [502] * 10
    nid = uid("N")
    publish(space, "intake", "need_posted", need(nid, p))
    publish(space, "matching", "need_fulfilled", {"need_id": nid, "community_id": "QY-S01-C01",
                                                  "category": "masks", "quantity": 100,
                                                  "unit": "piece"})

    def dead():
        shown = rpc(service, "messages_for_need", nid)
        return shown and shown[0]["state"] == "dead" and shown[0]

    try:
        message = eventually(dead, what="a dead message")
    except AssertionError:
        print("DEBUG", rpc(service, "messages_for_need", nid), receiver.requests[-3:])
        raise
    assert message["attempts"] == 3
    assert message["reason"] == "gave up after 3 attempts: wechat webhook answered HTTP 502"
    assert message["notification_id"] in {m["notification_id"]
                                           for m in messages(service, state="dead")}
    assert message["channel"] == "wechat"
    receiver.script["/wechat"] = []


def test_a_permanent_refusal_is_dead_at_once(service, space, receiver):
    p = phone()
    register(service, uid("sms"), phone=p, channels=["sms"])
    receiver.script["/sms"] = [400]
    nid = uid("N")
    publish(space, "intake", "need_posted", need(nid, p))
    publish(space, "matching", "need_fulfilled", {"need_id": nid, "community_id": "QY-S01-C01",
                                                  "category": "masks", "quantity": 100,
                                                  "unit": "piece"})
    message = eventually(lambda: (m := rpc(service, "messages_for_need", nid)) and
                         m[0]["state"] == "dead" and m[0])
    assert message["attempts"] == 1 and "HTTP 400" in message["reason"]


def quiet_now(tz="Asia/Shanghai"):
    local = datetime.now(ZoneInfo(tz))
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=2)).strftime("%H:%M")
    return {"start": start, "end": end}


def test_quiet_hours_hold_a_normal_message_and_let_a_critical_one_through(
        service, space, sink):
    address = f"{uid('night')}@example.org"
    p = phone()
    register(service, uid("night"), phone=p, email=address, quiet_hours=quiet_now(),
             language="en")
    normal, critical = uid("N"), uid("N")
    publish(space, "intake", "need_posted", need(normal, p, urgency="normal"))
    publish(space, "intake", "need_posted", need(critical, p, urgency="critical"))
    publish(space, "matching", "assignment_made", assignment(normal))
    publish(space, "matching", "assignment_made", assignment(critical))

    mails = eventually(lambda: mail_to(sink, address), what="the critical message")
    assert len(mails) == 1 and critical in mails[0]["subject"]
    held = rpc(service, "messages_for_need", normal)[0]
    assert held["state"] == "queued"
    due = space.db("notifications").messages.find_one({"_id": held["notification_id"]})
    assert due["due_at"] > datetime.now(UTC) + timedelta(minutes=100)  # when quiet ends
    eventually(lambda: True, timeout=2 * WINDOW)  # a window later: still held
    assert rpc(service, "messages_for_need", normal)[0]["state"] == "queued"
    assert len(mail_to(sink, address)) == 1


def test_an_assignment_before_its_need_is_known_waits_for_the_contact(service, space, sink):
    address = f"{uid('late')}@example.org"
    p = phone()
    register(service, uid("late"), phone=p, email=address)
    nid = uid("N")
    publish(space, "matching", "assignment_made", assignment(nid))
    waiting = eventually(lambda: rpc(service, "messages_for_need", nid))
    assert waiting[0]["state"] == "queued" and "recipient" not in waiting[0]
    publish(space, "intake", "need_posted", need(nid, p))
    mails = eventually(lambda: mail_to(sink, address), what="the adopted message")
    assert nid in mails[0]["subject"]


def test_a_need_without_contact_is_nobody_to_tell(service, space):
    nid = uid("N")
    data = need(nid, phone())
    del data["contact"]
    publish(space, "matching", "assignment_made", assignment(nid))
    eventually(lambda: rpc(service, "messages_for_need", nid))
    publish(space, "intake", "need_posted", data)
    skipped = eventually(lambda: (m := rpc(service, "messages_for_need", nid)) and
                         m[0]["state"] == "skipped" and m[0])
    assert skipped["reason"] == "no contact was given"


def test_a_posters_phone_registered_as_a_coordinator_is_reached_as_them_until_it_is_not(
        service, space):
    p = phone()
    subjects = space.db("notifications").subjects

    def tell(need_id):
        publish(space, "intake", "need_posted", need(need_id, p))
        eventually(lambda: (subjects.find_one({"_id": f"need:{need_id}"}) or {}).get("known"),
                   what="the need known")
        publish(space, "matching", "need_fulfilled", {
            "need_id": need_id, "community_id": "QY-S01-C01", "category": "masks",
            "quantity": 100, "unit": "piece"})
        return eventually(lambda: rpc(service, "messages_for_need", need_id),
                          what="its message")[0]["recipient"]

    assert tell(uid("N")).startswith("contact:")  # a poster known from events only
    coordinator = uid("coord")
    register(service, coordinator, phone=p, email=f"{coordinator}@example.org")
    assert tell(uid("N")) == coordinator
    register(service, coordinator, phone=phone(), email=f"{coordinator}@example.org")
    assert tell(uid("N")).startswith("contact:")  # the phone is no longer theirs
    other = uid("coord")
    register(service, other, phone=p, email=f"{other}@example.org")
    assert tell(uid("N")) == other
    assert rpc(service, "delete_recipient", other) is True
    assert tell(uid("N")).startswith("contact:")


# -- who hears what ----------------------------------------------------------------------------
def test_escalation_reaches_the_areas_coordinators_and_nobody_registered_is_dead(
        service, space, sink):
    street = "QY-S07"
    first, second = f"{uid('s7a')}@example.org", f"{uid('s7b')}@example.org"
    register(service, uid("s7a"), email=first, areas=[street], language="zh-CN")
    register(service, uid("s7b"), email=second, areas=[street, "QY"], language="en")
    nid = uid("N")
    escalation = {"need_id": nid, "community_id": "QY-S07-C01", "category": "thermometers",
                  "urgency": "critical", "from_tier": "community", "to_tier": "street",
                  "area_id": street, "remaining": 5, "unit": "piece"}
    publish(space, "matching", "need_escalated", escalation)
    zh = eventually(lambda: mail_to(sink, first))
    en = eventually(lambda: mail_to(sink, second))
    assert zh[0]["subject"] == f"【紧急】需求 {nid} 已上报至金沙街道"
    assert "测温仪" in zh[0]["body"] and "仍缺 5 件" in zh[0]["body"]
    assert en[0]["subject"].startswith("[CRITICAL] Need") and "thermometers" in en[0]["body"]

    # an area nobody coordinates: the message cannot arrive, and on-call sees why
    lonely = {**escalation, "need_id": uid("N"), "area_id": "QY-S11"}
    publish(space, "matching", "need_escalated", lonely)
    dead = eventually(lambda: [m for m in messages(service, state="dead")
                               if m.get("need_id") == lonely["need_id"]])
    assert dead[0]["reason"] == "no coordinator is registered for QY-S11"
    # once someone is registered, on-call retries it
    third = f"{uid('s11')}@example.org"
    register(service, uid("s11"), email=third, areas=["QY-S11"])
    answer = rpc(service, "retry_message", dead[0]["notification_id"])
    assert len(answer["queued"]) == 1
    eventually(lambda: mail_to(sink, third), what="the retried escalation")


def test_the_donor_hears_their_goods_went_out_with_the_receipt_and_no_residents_data(
        service, space, sink):
    address = f"{uid('donor')}@example.org"
    donor_phone, resident_phone = phone(), phone()
    register(service, uid("donor"), phone=donor_phone, email=address, language="zh-CN")
    lot = uid("D")
    publish(space, "intake", "donation_received", {
        "donation_id": lot, "donor": {"name": "成都启毅农业科技有限公司", "kind": "company",
                                      "contact": {"name": "赵强", "phone": donor_phone}},
        "location_id": "QY-S01", "category": "masks", "quantity": 100, "unit": "piece",
        "value_yuan": 50})
    nid = uid("N")
    publish(space, "intake", "need_posted", need(nid, resident_phone))
    a = assignment(nid, lot_id=lot)
    publish(space, "matching", "assignment_made", a)
    publish(space, "donations", "stock_changed", {
        "lot_id": lot, "category": "masks", "location_id": "QY-S01", "delta": -60,
        "available": 40, "unit": "piece", "reason": "allocated",
        "assignment_id": a["assignment_id"]})
    mail = eventually(lambda: mail_to(sink, address), what="the donor's email")[0]
    assert f"回执号 {lot}" in mail["subject"]
    assert "60 件防护口罩" in mail["body"] and "即您的捐赠编号" in mail["body"]
    assert resident_phone not in mail["body"] and "王芳" not in mail["body"]
    assert nid not in mail["body"]


def test_the_volunteer_gets_an_offer_with_links_and_its_release(service, space, sink):
    address = f"{uid('vol')}@example.org"
    p = phone()
    register(service, uid("vol"), phone=p, email=address, language="en")
    vid = uid("V")
    publish(space, "intake", "volunteer_registered", {
        "volunteer_id": vid, "home_community_id": "QY-S01-C01", "skills": ["screening"],
        "contact": {"name": "Li Lei", "phone": p}})
    offer = {"offer_id": uid("O"), "need_id": uid("N"), "volunteer_id": vid,
             "community_id": "QY-S01-C02", "category": "screening", "quantity": 2,
             "unit": "hour", "expires_at": datetime.now(UTC) + timedelta(hours=2)}
    publish(space, "matching", "offer_made", offer)
    mail = eventually(lambda: mail_to(sink, address), what="the offer")[0]
    accept = re.search(r"https://relief\.example\.org/api/offers/([^/]+)/accept\?sig=(\w+)",
                       mail["body"])
    assert accept and accept.group(1) == offer["offer_id"]
    # as the gateway checks: this offer, this answer, until the offer lapses (and a grace)
    assert links.verify(offer["offer_id"], "accept", accept.group(2), "link-secret")
    assert not links.verify(offer["offer_id"], "decline", accept.group(2), "link-secret")
    assert not links.verify(offer["offer_id"], "accept", accept.group(2), "link-secret",
                            now=offer["expires_at"] + timedelta(hours=2))
    assert f"/api/offers/{offer['offer_id']}/decline?sig=" in mail["body"]
    publish(space, "matching", "offer_released", {"offer_id": offer["offer_id"],
                                                  "need_id": offer["need_id"],
                                                  "volunteer_id": vid, "outcome": "withdrawn"})
    released = eventually(lambda: len(mail_to(sink, address)) == 2 and mail_to(sink, address))
    assert "withdrawn" in released[1]["body"] and "you need not go" in released[1]["body"]


def test_an_offer_answered_before_it_went_out_is_not_sent(service, space, sink):
    address = f"{uid('vol')}@example.org"
    p = phone()
    register(service, uid("vol"), phone=p, email=address, quiet_hours=quiet_now())
    vid = uid("V")
    publish(space, "intake", "volunteer_registered", {
        "volunteer_id": vid, "home_community_id": "QY-S01-C01",
        "contact": {"name": "Li Lei", "phone": p}})
    offer = {"offer_id": uid("O"), "need_id": uid("N"), "volunteer_id": vid,
             "community_id": "QY-S01-C02", "category": "screening", "quantity": 2,
             "unit": "hour", "expires_at": datetime.now(UTC) + timedelta(hours=1)}
    publish(space, "matching", "offer_made", offer)  # held: quiet hours
    publish(space, "matching", "offer_released", {**{k: offer[k] for k in (
        "offer_id", "need_id", "volunteer_id")}, "outcome": "lapsed"})

    # the two events travel on different queues: either the offer's message was stored and
    # then cancelled, or the release arrived first and the offer was never stored at all
    subjects = space.db("notifications").subjects
    eventually(lambda: (subjects.find_one({"_id": f"offer:{offer['offer_id']}"}) or {}).get(
        "answered") == "lapsed", what="the release handled")

    def offer_messages():
        return [m for m in messages(service)
                if m["template"] == "offer_made" and (offer["offer_id"] in m["text"]
                                                      or offer["need_id"] in m["text"])]

    subject = subjects.find_one({"_id": f"offer:{offer['offer_id']}"})
    if subject.get("made"):
        found = eventually(lambda: [m for m in offer_messages() if m["state"] == "cancelled"],
                           what="the offer cancelled")
        assert "lapsed" in found[0]["reason"]
    else:
        assert offer_messages() == []
    eventually(lambda: True, timeout=WINDOW)
    assert mail_to(sink, address) == []


def test_organisation_contacts_hear_of_a_missing_status_report(service, space, sink):
    address = f"{uid('org')}@example.org"
    register(service, uid("org"), email=address, organisations=["ORG-042"], language="zh-CN")
    publish(space, "volunteers", "status_report_missing", {
        "organisation_id": "ORG-042", "due_at": datetime(2020, 2, 10, 10, 0, tzinfo=UTC)})
    mail = eventually(lambda: mail_to(sink, address))[0]
    assert "ORG-042" in mail["subject"] and "2020-02-10 18:00" in mail["body"]


def test_smtp_refusing_for_a_while_is_retried(infra, space, receiver, tmp_path):
    """A mail server that answers 451 twice: the message arrives once, on the third try."""
    flaky = MailSink(tmp_path / "flaky", port=free_port(), tempfail=2).start()
    other = infra.new_space("notify-smtp")
    config = notifications_config(other, flaky, receiver)
    deploy(config, classes=[NotificationsService])
    container = ServiceContainer(NotificationsService, config)
    container.start()
    try:
        address = "retry@example.org"
        p = phone()
        register(container, "retry", phone=p, email=address)
        nid = uid("N")
        publish(other, "intake", "need_posted", need(nid, p))
        publish(other, "matching", "need_fulfilled", {"need_id": nid,
                                                      "community_id": "QY-S01-C01",
                                                      "category": "masks", "quantity": 1,
                                                      "unit": "piece"})
        eventually(lambda: mail_to(flaky, address), what="the mail after two refusals")
        shown = rpc(container, "messages_for_need", nid)[0]
        assert shown["state"] == "sent" and shown["attempts"] == 3
        assert len(mail_to(flaky, address)) == 1
    finally:
        container.stop()
        flaky.stop()


def test_two_instances_send_each_message_once(infra, receiver, tmp_path):
    box = MailSink(tmp_path / "two", port=free_port()).start()
    other = infra.new_space("notify-two")
    config = notifications_config(other, box, receiver, window_seconds=0.5,
                                  poll_seconds=0.05)
    deploy(config, classes=[NotificationsService])
    containers = [ServiceContainer(NotificationsService, {
        **config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}) for _ in range(2)]
    for c in containers:
        c.start()
    try:
        posters = []
        for i in range(12):
            p = phone()
            address = f"poster{i}@example.org"
            register(containers[0], f"poster-{i}", phone=p, email=address)
            nid = uid("N")
            posters.append((nid, address))
            publish(other, "intake", "need_posted", need(nid, p))
            publish(other, "matching", "need_fulfilled", {"need_id": nid,
                                                          "community_id": "QY-S01-C01",
                                                          "category": "masks", "quantity": 1,
                                                          "unit": "piece"})

        def all_sent():
            return all(rpc(containers[1], "messages_for_need", nid)[:1] and
                       rpc(containers[1], "messages_for_need", nid)[0]["state"] == "sent"
                       for nid, _ in posters)

        eventually(all_sent, what="every message sent")
        eventually(lambda: True, timeout=1.5)
        for _, address in posters:
            assert len(mail_to(box, address)) == 1, address
    finally:
        for c in containers:
            c.stop()
        box.stop()
