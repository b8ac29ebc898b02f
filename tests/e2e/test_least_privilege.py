"""Each service on its own broker user, allowed only its own queues and exchange: the first
chain still flows end to end, and a service cannot read another's queue."""

import uuid

import pika
import pytest

from services.common.topology import (
    SERVICES,
    Management,
    provision_monitor,
    provision_users,
    user_name,
)
from tests.support import System, eventually


@pytest.fixture(scope="module")
def locked_system(infra):
    space = infra.new_space("least-privilege")
    system = System(space, infra.base / "logs" / space.vhost)
    passwords = {name: uuid.uuid4().hex for name in SERVICES}
    mgmt = Management(space.management_uri, space.amqp_uri)
    from deploy.local import deploy_topology

    deploy_topology(system.env)  # as the operator (admin) does
    provision_users(mgmt, passwords)
    provision_monitor(mgmt, "monitor-secret")
    broker = infra.broker
    for name, password in passwords.items():
        system.services.service_env[name] = {
            "AMQP_URI": f"amqp://{user_name(name)}:{password}@127.0.0.1:{broker.port}/"
                        f"{space.vhost}"}
    system.services.service_env["gateway"]["RABBIT_MANAGEMENT_URI"] = (
        f"http://relief-monitor:monitor-secret@127.0.0.1:{broker.management_port}")
    system.start()
    yield system, passwords
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
