"""The deploy step against the real broker: queues before the first event, dead-lettering by
policy, and the migration that removes a renamed handler's queues."""

import pika
import pytest

from deploy.topology import deploy, prune
from services.common.config import settings
from services.common.topology import Management, consumer_specs


@pytest.fixture(scope="module")
def deployed(infra):
    space = infra.new_space("topology")
    config = space.config()
    specs = deploy(config)
    return space, specs, Management(settings(config).management_uri, space.amqp_uri)


def test_every_handler_queue_exists_before_any_service_starts(deployed):
    space, specs, _ = deployed
    assert specs == consumer_specs()
    for spec in specs:
        assert space.queue_depth(spec.name) == 0  # passive declare: raises if missing
        assert space.queue_depth(spec.dlq) == 0
    # so an event published now waits for its consumer instead of vanishing
    space.publish("intake.events", "need_posted", b"{}")
    assert space.queue_depth("evt-intake-need_posted--matching.on_need_posted") == 1


def test_a_rejected_message_is_dead_lettered_by_policy(deployed):
    space, _, _ = deployed
    queue = "evt-intake-need_posted--notifications.on_need_posted"
    space.publish("intake.events", "need_posted", b"{}")
    conn, ch = space.channel()
    try:
        method, _, _ = ch.basic_get(queue)
        ch.basic_reject(method.delivery_tag, requeue=False)
    finally:
        conn.close()
    assert space.queue_depth(f"dlq.{queue}") == 1


def test_prune_removes_a_renamed_handlers_empty_queues_and_keeps_a_full_one(deployed):
    space, specs, mgmt = deployed
    conn, ch = space.channel()
    try:
        for name in ("evt-intake-need_posted--matching.old_name",
                     "dlq.evt-intake-need_posted--matching.old_name",
                     "evt-intake-need_posted--matching.with_backlog"):
            ch.queue_declare(name, durable=True)
        ch.basic_publish("", "evt-intake-need_posted--matching.with_backlog", b"{}",
                         pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()
    deleted, kept = prune(mgmt, specs)
    assert sorted(deleted) == ["dlq.evt-intake-need_posted--matching.old_name",
                               "evt-intake-need_posted--matching.old_name"]
    assert kept == ["evt-intake-need_posted--matching.with_backlog (not empty)"]
    names = {q["name"] for q in mgmt.queues()}
    assert "evt-intake-need_posted--matching.old_name" not in names
    assert {s.name for s in specs} <= names  # nothing current was touched
