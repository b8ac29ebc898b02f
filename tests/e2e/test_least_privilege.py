"""Each service on its own broker user, allowed only its own queues and exchange, set up the
way `make run` does it (``deploy.local.BrokerUsers`` and ``relief-deploy``): the first chain
still flows end to end, and a service cannot read another's queue."""

import json
import uuid

import pika
import pytest
import requests

from deploy.local import BrokerUsers, deploy_topology
from services.common.topology import MONITOR_USER, SERVICES, user_name
from tests.support import System, envelope, eventually

PARTNER = "hospital-erp"


@pytest.fixture(scope="module")
def locked_system(infra):
    space = infra.new_space("least-privilege")
    system = System(space, infra.base / "logs" / space.vhost)
    users = BrokerUsers(infra.base / f"{space.vhost}-broker-users.json",
                        publishers=(PARTNER,))
    # as the operator (the administrator): topology, then every service's user and the monitor
    deploy_topology({**system.env, **users.deploy_env()})
    system.services.service_env.update(users.service_env(infra.broker, space.vhost))
    system.start()
    system.publisher_passwords = users.publisher_passwords()
    yield system, users.passwords()
    system.stop()


def test_the_chain_flows_with_least_privilege_users(locked_system):
    system, _ = locked_system
    lot, need = f"D-{uuid.uuid4().hex[:6]}", f"N-{uuid.uuid4().hex[:6]}"
    system.space.intake("donation_received", {
        "donation_id": lot, "donor": {"name": "成都心悦社会工作服务中心",
                                      "kind": "social_organisation"},
        "location_id": "QY-S03-C03", "category": "masks", "quantity": 10, "unit": "piece",
        "value_yuan": 5})
    system.space.intake("need_posted", {
        "need_id": need, "community_id": "QY-S03-C03", "kind": "goods", "category": "masks",
        "quantity": 4, "unit": "piece", "urgency": "normal"})
    eventually(lambda: (n := system.need(need)) and n["status"] == "fulfilled")
    eventually(lambda: system.lots("masks")[lot]["available"] == 6)
    health = system.api("GET", "/health", token=None).json()
    assert health["broker"]["reachable"]  # the read-only monitoring user sees the queues


def test_a_service_cannot_read_another_services_queue(locked_system):
    system, passwords = locked_system
    broker = system.space.infra.broker
    url = (f"amqp://{user_name('matching')}:{passwords['matching']}@127.0.0.1:{broker.port}/"
           f"{system.space.vhost}")
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            channel.basic_get("evt-matching-assignment_made--donations.on_assignment_made")
        assert info.value.reply_code == 403
    finally:
        conn.close()


def test_every_service_is_connected_as_its_own_user_and_none_as_the_administrator(
        locked_system):
    system, passwords = locked_system
    assert set(passwords) == {*SERVICES, "monitor"}
    assert len(set(passwords.values())) == len(passwords)
    mgmt = system.space.management_uri.replace("guest:guest@", "")

    def users() -> set[str]:
        rows = requests.get(f"{mgmt}/api/vhosts/{system.space.vhost}/connections",
                            auth=("guest", "guest"), timeout=10).json()
        return {row["user"] for row in rows}

    connected = eventually(lambda: (u := users()) >= {user_name(s) for s in SERVICES} and u,
                           what="every service connected")
    assert "guest" not in connected
    tags = requests.get(f"{mgmt}/api/users/{MONITOR_USER}", auth=("guest", "guest"),
                        timeout=10).json()["tags"]
    assert tags in ("monitoring", ["monitoring"])


def test_a_partner_publishes_to_intake_only_and_intake_records_who_it_was(locked_system):
    system, _ = locked_system
    broker, vhost = system.space.infra.broker, system.space.vhost
    password = system.publisher_passwords[PARTNER]
    url = f"amqp://{PARTNER}:{password}@127.0.0.1:{broker.port}/{vhost}"
    need = {"need_id": f"N-{uuid.uuid4().hex[:6]}", "community_id": "QY-S02-C01",
            "kind": "goods", "category": "masks", "quantity": 5, "unit": "piece",
            "urgency": "normal"}
    event = envelope("need_posted", need, source="gateway")  # it claims to be someone else

    def publish(exchange, user_id, body=event):
        conn = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = conn.channel()
            channel.confirm_delivery()
            channel.basic_publish(exchange, "need_posted", json.dumps(body), pika.BasicProperties(
                content_type="application/json", delivery_mode=2, user_id=user_id))
        finally:
            if conn.is_open:
                conn.close()

    publish("relief.intake", PARTNER)
    # the broker refuses a user_id that is not the connection's, and any other exchange
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        publish("relief.intake", user_name("intake"), envelope("need_posted", need))
    assert info.value.reply_code == 406
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        publish("intake.events", PARTNER)
    assert info.value.reply_code == 403

    eventually(lambda: system.need(need["need_id"]), what="the partner's need")
    received = system.space.db("intake").processed  # an accepted event's marker says who
    row = eventually(lambda: received.find_one({"_id": f"intake:{event['event_id']}"}))
    assert (row["source"], row["publisher"], row["claimed_source"]) == (PARTNER, PARTNER,
                                                                          "gateway")
    # what comes through the gateway is recorded with who the gateway authenticated
    mine = {**need, "need_id": f"N-{uuid.uuid4().hex[:6]}"}
    answer = system.api("POST", "/api/needs", json=mine).json()
    row = eventually(lambda: received.find_one({"_id": f"intake:{answer['event_id']}"}))
    assert row["source"] == "gateway:operator"
