"""The handler base against the real broker: dead letters with reasons, bounded retries."""

import json
from collections import Counter

import pytest
from nameko.containers import ServiceContainer

from deploy.topology import deploy
from services.common.handler import Retry, on_event
from tests.support import envelope, eventually

ATTEMPTS: Counter = Counter()
HANDLED: list[str] = []
QUEUE = "evt-probe_src-need_posted--probe.handle"
DLQ = f"dlq.{QUEUE}"


class Probe:
    name = "probe"

    @on_event("probe_src", "need_posted")
    def handle(self, event):
        ATTEMPTS[event.event_id] += 1
        behaviour = event.data.get("note", "ok")
        if behaviour == "boom":
            raise ValueError("boom")
        if behaviour.startswith("retry:"):
            if ATTEMPTS[event.event_id] <= int(behaviour.split(":")[1]):
                raise Retry("not yet")
        HANDLED.append(event.event_id)


def need(note):
    return {"need_id": "N", "community_id": "C", "kind": "goods", "category": "masks",
            "quantity": 1, "unit": "piece", "urgency": "low", "note": note}


@pytest.fixture(scope="module")
def probe(infra):
    space = infra.new_space("handler")
    config = space.config(retry_attempts=3)
    deploy(config, classes=[Probe])
    container = ServiceContainer(Probe, config)
    container.start()
    yield space
    container.stop()


def publish(space, body):
    space.publish("probe_src.events", "need_posted", body)


def dead_letters(space):
    return [(h, json.loads(b) if b.startswith(b"{") else b) for h, b in
            space.get_messages(DLQ)]


def test_not_json_is_dead_lettered_with_its_reason_and_the_queue_goes_on(probe):
    publish(probe, b"\xff not json")
    good = envelope("need_posted", need("ok"))
    publish(probe, good)
    eventually(lambda: good["event_id"] in HANDLED, what="the next good message")
    letters = eventually(lambda: [h for h, b in dead_letters(probe)
                                  if b == b"\xff not json"])
    assert letters[0]["x-relief-error"].startswith("not valid JSON")
    assert letters[0]["x-relief-error-kind"] == "invalid"
    assert letters[0]["x-relief-queue"] == QUEUE


def test_a_contract_violation_names_the_field(probe):
    bad = envelope("need_posted", {**need("ok"), "quantity": "many"})
    publish(probe, bad)
    letter = eventually(lambda: [h for h, b in dead_letters(probe)
                                 if isinstance(b, dict) and b["event_id"] == bad["event_id"]])
    assert "data.quantity" in letter[0]["x-relief-error"]
    assert ATTEMPTS[bad["event_id"]] == 0  # never reached the handler


def test_a_failing_handler_dead_letters_instead_of_dropping(probe):
    bad = envelope("need_posted", need("boom"))
    publish(probe, bad)
    letter = eventually(lambda: [h for h, b in dead_letters(probe)
                                 if isinstance(b, dict) and b["event_id"] == bad["event_id"]])
    assert letter[0]["x-relief-error"] == "ValueError: boom"
    assert letter[0]["x-relief-error-kind"] == "error"
    assert ATTEMPTS[bad["event_id"]] == 1  # not retried: retrying would not help


def test_transient_failures_are_retried_then_succeed(probe):
    flaky = envelope("need_posted", need("retry:2"))
    publish(probe, flaky)
    eventually(lambda: flaky["event_id"] in HANDLED)
    assert ATTEMPTS[flaky["event_id"]] == 3
    assert not [b for h, b in dead_letters(probe)
                if isinstance(b, dict) and b["event_id"] == flaky["event_id"]]


def test_transient_failures_are_bounded_then_dead_lettered(probe):
    stuck = envelope("need_posted", need("retry:99"))
    publish(probe, stuck)
    letter = eventually(lambda: [h for h, b in dead_letters(probe)
                                 if isinstance(b, dict) and b["event_id"] == stuck["event_id"]])
    assert letter[0]["x-relief-error-kind"] == "transient"
    assert letter[0]["x-relief-attempts"] == 3
    assert ATTEMPTS[stuck["event_id"]] == 3
    assert probe.queue_depth(QUEUE) == 0  # nothing left unacked or requeued


def test_an_event_of_another_type_on_the_queue_is_dead_lettered(probe):
    other = envelope("need_fulfilled", {"need_id": "N", "community_id": "C",
                                        "category": "masks", "quantity": 1, "unit": "piece"})
    publish(probe, other)
    letter = eventually(lambda: [h for h, b in dead_letters(probe)
                                 if isinstance(b, dict) and b["event_id"] == other["event_id"]])
    assert "need_fulfilled" in letter[0]["x-relief-error"]
