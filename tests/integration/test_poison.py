"""A message whose consumer dies every time it has it cannot stop the queue: after a bounded
number of redeliveries it is dead-lettered as poison (real broker, real database)."""

import eventlet
from nameko.containers import ServiceContainer

from deploy.topology import deploy
from services.common.handler import on_event
from services.common.store import BaseStore, StoreProvider
from tests.support import envelope, eventually

QUEUE = "evt-poison_src-need_posted--poisonprobe.handle"
SEEN: list[str] = []


class PoisonProbe:
    name = "poisonprobe"
    store = StoreProvider(BaseStore, emits=False)

    @on_event("poison_src", "need_posted")
    def handle(self, event):
        SEEN.append(event.data["note"])
        if event.data["note"] == "hang":
            eventlet.sleep(3600)  # as if the process died with the message in hand


def need(note):
    return {"need_id": "N", "community_id": "C", "kind": "goods", "category": "masks",
            "quantity": 1, "unit": "piece", "urgency": "low", "note": note}


def test_a_message_that_kills_its_consumer_each_time_ends_as_a_dead_letter(infra):
    space = infra.new_space("poison")
    config = space.config(poison_redeliveries=3)
    deploy(config, classes=[PoisonProbe])
    poison = envelope("need_posted", need("hang"))
    space.publish("poison_src.events", "need_posted", poison)

    # the consumer "dies" with the message: first delivery and three redeliveries
    for attempt in range(1, 5):
        container = ServiceContainer(PoisonProbe, config)
        container.start()
        eventually(lambda n=attempt: SEEN.count("hang") == n, what=f"delivery {attempt}")
        container.kill()

    container = ServiceContainer(PoisonProbe, config)
    container.start()
    try:
        good = envelope("need_posted", need("ok"))
        space.publish("poison_src.events", "need_posted", good)
        eventually(lambda: "ok" in SEEN, what="the next message")
        letters = eventually(lambda: space.get_messages(f"dlq.{QUEUE}"))
        headers = letters[0][0]
        assert headers["x-relief-error-kind"] == "poison"
        assert "redelivered 4 times" in headers["x-relief-error"]
        assert SEEN.count("hang") == 4  # not handed to a worker a fifth time
    finally:
        container.stop()
