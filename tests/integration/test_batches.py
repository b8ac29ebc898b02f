"""Batch consumers against the real broker and database: many events in one transaction,
the same outcome as one by one (each event once, a failing one dead-lettered alone, a
duplicate changes nothing, every emitted event published)."""

import json
from collections import Counter

import pytest
from nameko.containers import ServiceContainer
from pymongo import UpdateOne

from deploy.topology import deploy
from services.common.handler import on_event
from services.common.store import BaseStore, StoreProvider
from tests.support import envelope, eventually

QUEUE = "evt-batch_src-need_posted--batchprobe.handle"
DLQ = f"dlq.{QUEUE}"
REMEMBERED: Counter = Counter()


class ProbeStore(BaseStore):
    collections = {"seen": [], "totals": []}

    def prefetch(self, tx, events):
        # a bug in a store's batch read: its batch must go one by one, nothing lost
        if any(e.data.get("note") == "prefetch-bug" for e in events):
            raise KeyError("prefetch-bug")


class BatchProbe:
    name = "batchprobe"

    store: ProbeStore = StoreProvider(ProbeStore)

    @on_event("batch_src", "need_posted", batch=True)
    def handle(self, event):
        if event.data.get("note") == "boom":
            raise ValueError("boom")
        batch = self.store.batch.id if self.store.batch is not None else None

        def work(tx):
            tx.db.seen.update_one({"_id": event.event_id},
                                  {"$inc": {"n": 1}, "$push": {"batches": batch}},
                                  upsert=True, session=tx.session)
            tx.emit("need_fulfilled", {"need_id": event.data["need_id"], "community_id": "C",
                                       "category": "masks", "quantity": 1, "unit": "piece"})
            tx.after_commit.append(lambda: REMEMBERED.update([event.event_id]))
            # a document the events of a transaction share, written once as it commits
            tx.shared["counted"] = tx.shared.get("counted", 0) + 1
            tx.stage("totals", "total", UpdateOne(
                {"_id": "total"}, {"$inc": {"events": tx.shared["counted"], "writes": 1}},
                upsert=True))

        self.store.atomically(work, event=event)  # marked as the "handle" consumer's


def need(i, note="ok"):
    return {"need_id": f"N-{i}", "community_id": "C", "kind": "goods", "category": "masks",
            "quantity": 1, "unit": "piece", "urgency": "low", "note": note}


@pytest.fixture(scope="module")
def space(infra):
    return infra.new_space("batches")


def run_burst(space, events, extra_bodies=()):
    """Queue every event first, then start the service (so they arrive together)."""
    config = space.config(retry_attempts=2, batch_max_events=10)
    deploy(config, classes=[BatchProbe])
    probe = space.bind_probe("batchprobe.events", "need_fulfilled")
    for body in [*events, *extra_bodies]:
        space.publish("batch_src.events", "need_posted", body)
    container = ServiceContainer(BatchProbe, config)
    container.start()
    return container, probe


def test_a_burst_is_handled_in_batches_with_the_same_outcome_as_one_by_one(space):
    good = [envelope("need_posted", need(i)) for i in range(40)]
    good[30] = envelope("need_posted", need(30, note="prefetch-bug"))
    bad = envelope("need_posted", need("x", note="boom"))
    events = [*good[:20], bad, *good[20:]]
    container, probe = run_burst(space, events, extra_bodies=[good[3]])  # a duplicate
    try:
        db = space.db("batchprobe")
        eventually(lambda: db.seen.count_documents({}) == len(good), timeout=60,
                   what="every good event handled")
        letters = eventually(lambda: space.get_messages(DLQ), what="the failing one")
        eventually(lambda: space.queue_depth(probe) == len(good), what="every event emitted")
        eventually(lambda: space.queue_depth(QUEUE) == 0, what="the queue drained")
        # each event's processed marker is keyed by its handler's name, in a batch or alone
        markers = {d["_id"] for d in db.processed.find({}, {"_id": 1})}
        assert markers == {f"handle:{e['event_id']}" for e in good}
    finally:
        container.stop()

    seen = {d["_id"]: d for d in db.seen.find({})}
    assert set(seen) == {e["event_id"] for e in good}
    assert all(d["n"] == 1 for d in seen.values())  # once each, the duplicate included
    batched = Counter(b for d in seen.values() for b in d["batches"] if b is not None)
    assert batched and max(batched.values()) > 1  # events shared a transaction
    assert [json.loads(b)["event_id"] for _, b in letters] == [bad["event_id"]]
    assert letters[0][0]["x-relief-error"] == "ValueError: boom"
    published = [json.loads(b)["data"]["need_id"] for _, b in
                 space.get_messages(probe, limit=200)]
    assert sorted(published) == sorted(e["data"]["need_id"] for e in good)
    assert db.outbox.count_documents({}) == 0
    # the deferred write counted every event once, in fewer writes than events
    total = db.totals.find_one({"_id": "total"})
    assert total["events"] == len(good)
    assert total["writes"] == len(good) - sum(n - 1 for n in batched.values())
    assert {k: REMEMBERED[k] for k in seen} == {k: 1 for k in seen}  # after commit, once
