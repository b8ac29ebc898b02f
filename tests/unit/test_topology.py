import re

import pytest

from services.common.config import Settings
from services.common.topology import INTAKE_DLQ, INTAKE_QUEUE, consumer_specs, policies


def test_every_handler_has_a_queue_and_a_dead_letter_queue():
    specs = {s.name: s for s in consumer_specs()}
    matching = specs["evt-intake-need_posted--matching.on_need_posted"]
    assert matching.exchange == "intake.events" and matching.routing_keys == ("need_posted",)
    assert matching.dlq == "dlq.evt-intake-need_posted--matching.on_need_posted"
    assert specs[INTAKE_QUEUE].dlq == INTAKE_DLQ
    assert specs[INTAKE_QUEUE].routing_keys == ("#",)  # unknown types reach intake, then DLQ
    # the first chain is wired: assignment_made reaches donations, notifications, accounting
    consumers = {s.name.split("--")[1].split(".")[0] for s in specs.values()
                 if s.name.startswith("evt-matching-assignment_made")}
    assert consumers == {"donations", "notifications", "accounting"}


def test_policies_dead_letter_each_queue_by_name():
    specs = consumer_specs()
    bodies = policies(specs, Settings())
    for spec in specs:
        body = bodies[f"relief-dlx-{spec.name}"]
        assert body["definition"]["dead-letter-exchange"] == "relief.dlx"
        assert body["definition"]["dead-letter-routing-key"] == spec.name
        assert "delivery-limit" not in body["definition"]
    assert bodies["relief-alternate-exchange"]["definition"] == {
        "alternate-exchange": "relief.unroutable"}


def test_quorum_queues_get_a_delivery_limit():
    bodies = policies(consumer_specs(), Settings(queue_type="quorum", delivery_limit=7))
    assert bodies[f"relief-dlx-{INTAKE_QUEUE}"]["definition"]["delivery-limit"] == 7


def test_a_partner_publisher_may_write_to_relief_intake_only():
    from deploy.topology import publisher_permissions, publishers

    perms = publisher_permissions()
    assert perms["configure"] == perms["read"] == "^$"
    write = re.compile(perms["write"])
    assert write.match("relief.intake") and write.match("relief.unroutable")
    assert not write.match("intake.events") and not write.match("relief.intake.dlq")
    assert publishers({"RELIEF_PUBLISHERS": "hospital-erp:s3:cret, ngo-b:x"}) == {
        "hospital-erp": "s3:cret", "ngo-b": "x"}
    assert publishers({}) == {}
    for bad in ("relief-intake:pw", "Hospital:pw", "nopassword", "a:"):
        with pytest.raises(ValueError):
            publishers({"RELIEF_PUBLISHERS": bad})
