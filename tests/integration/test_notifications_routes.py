"""The gateway's recipient and notification routes, over HTTP, against the real
notifications service (in-process containers, real broker and database, the mail sink)."""

from __future__ import annotations

import uuid

import pytest
import requests
from nameko.containers import ServiceContainer

from deploy.local import free_port
from deploy.mail_sink import MailSink
from deploy.topology import deploy
from services.common import contract
from services.common.deps import Config
from services.gateway.notifications_routes import NotificationRoutes
from services.notifications.service import NotificationsService
from tests.support import eventually

TOKEN = "routes-token"


class GatewayProbe(NotificationRoutes):
    """Only the notification routes, as the gateway mixes them in."""

    name = "gateway_probe"
    config_ = Config()


@pytest.fixture(scope="module")
def api(infra, tmp_path_factory):
    space = infra.new_space("notify-routes")
    sink = MailSink(tmp_path_factory.mktemp("mail") / "box", port=free_port()).start()
    port = free_port()
    config = space.config(admin_token=TOKEN)
    config["WEB_SERVER_ADDRESS"] = f"127.0.0.1:{port}"
    config["NOTIFICATIONS"] = {"poll_seconds": 0.2, "window_seconds": 0.5,
                               "smtp": {"host": "127.0.0.1", "port": sink.port}}
    deploy(config, classes=[NotificationsService])
    containers = [ServiceContainer(NotificationsService, {
        **config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}),
        ServiceContainer(GatewayProbe, config)]
    for c in containers:
        c.start()

    def call(method, path, token=TOKEN, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, f"http://127.0.0.1:{port}{path}", headers=headers,
                                timeout=15, **kw)

    call.space = space
    call.sink = sink
    yield call
    for c in containers:
        c.stop()
    sink.stop()


def rid(prefix="coord"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_token_is_required(api):
    assert api("GET", "/api/notifications", token=None).status_code == 401
    assert api("PUT", f"/api/recipients/{rid()}", token="wrong",
               json={"email": "a@b.org"}).status_code == 401


def test_register_read_update_and_delete_a_coordinator(api):
    recipient = rid()
    body = {"name": "李敏", "email": "li.min@example.org", "phone": "13912345678",
            "language": "en", "channels": ["email"], "areas": ["QY-S01"],
            "quiet_hours": {"start": "22:00", "end": "07:00"}, "digest_minutes": 120}
    created = api("PUT", f"/api/recipients/{recipient}", json=body)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["recipient_id"] == recipient and shown["areas"] == ["QY-S01"]
    assert "13912345678" not in created.text and "li.min@" not in created.text
    assert "李敏" not in created.text
    assert api("PUT", f"/api/recipients/{recipient}",
               json={**body, "language": "zh-CN"}).status_code == 200
    assert api("GET", f"/api/recipients/{recipient}").json()["language"] == "zh-CN"
    assert api("DELETE", f"/api/recipients/{recipient}").status_code == 204
    assert api("GET", f"/api/recipients/{recipient}").status_code == 404
    assert api("DELETE", f"/api/recipients/{recipient}").status_code == 404


def test_bad_recipients_are_refused_with_the_field_named(api):
    cases = [
        ({"email": "a@b.org", "areas": ["QY-S99"]}, "areas"),
        ({"email": "a@b.org", "favourite": 1}, "favourite"),
        ({"email": "not-an-address"}, "email"),
        ({"phone": "13912345678", "channels": ["email"]}, "channels"),
    ]
    for body, field in cases:
        answer = api("PUT", f"/api/recipients/{rid()}", json=body)
        assert answer.status_code == 400, body
        assert field in answer.json()["fields"], answer.json()
    assert api("PUT", "/api/recipients/contact:abc", json={"email": "a@b.org"}
               ).status_code == 400
    assert api("PUT", f"/api/recipients/{rid()}", data="[1]").status_code == 400


def test_on_call_sees_a_dead_message_and_retries_it_once_someone_can_hear_it(api):
    area = "QY-S12"
    nid = f"N-{uuid.uuid4().hex[:8]}"
    envelope = contract.build("need_escalated", {
        "need_id": nid, "community_id": "QY-S12-C01", "category": "masks",
        "urgency": "high", "from_tier": "community", "to_tier": "street", "area_id": area,
        "remaining": 10, "unit": "piece"}, "matching")
    api.space.publish("matching.events", "need_escalated", envelope)

    def dead():
        rows = api("GET", "/api/notifications?state=dead").json()["notifications"]
        return [r for r in rows if r.get("need_id") == nid]

    row = eventually(dead, what="the dead escalation")[0]
    assert row["reason"] == f"no coordinator is registered for {area}"
    assert api("GET", f"/api/notifications/{row['notification_id']}").json()["state"] == "dead"
    refused = api("POST", f"/api/notifications/{row['notification_id']}/retry")
    assert refused.status_code == 409 and "nobody" in refused.json()["error"]

    address = f"{rid('s12')}@example.org"
    assert api("PUT", f"/api/recipients/{rid('s12')}",
               json={"email": address, "areas": [area]}).status_code == 201
    retried = api("POST", f"/api/notifications/{row['notification_id']}/retry")
    assert retried.status_code == 202 and len(retried.json()["queued"]) == 1
    mails = eventually(lambda: [m for m in api.sink.mail() if address in m["rcpt_to"]])
    assert nid in mails[0]["subject"]
    sent = api("GET", f"/api/notifications/{retried.json()['queued'][0]}").json()
    assert sent["state"] == "sent" and sent["channel"] == "email"
    assert api("POST", "/api/notifications/nope/retry").status_code == 404


def test_the_message_list_is_filtered_and_checked(api):
    assert api("GET", "/api/notifications?state=lost").status_code == 400
    assert api("GET", "/api/notifications?limit=0").status_code == 400
    listed = api("GET", "/api/notifications?state=sent&limit=5")
    assert listed.status_code == 200
    assert all(r["state"] == "sent" for r in listed.json()["notifications"])
