"""Transactions, idempotency and the outbox against the real database and broker."""

import json

import eventlet
import pytest
from pymongo import MongoClient

from services.common import contract
from services.common.config import settings
from services.common.store import DUPLICATE, BaseStore, Relay
from services.matching.store import LotChanged, MatchingStore
from tests.support import envelope, eventually

NEED = {"need_id": "N", "community_id": "QY-S01-C01", "kind": "goods", "category": "masks",
        "quantity": 1, "unit": "piece", "urgency": "low"}


class Things(BaseStore):
    collections = {"things": []}


def make_store(space, cls=Things, source="probe", amqp_uri=None, **relief):
    config = space.config(**relief)
    cfg = settings(config)
    client = MongoClient(space.mongo_uri, tz_aware=True)
    db = client[f"{space.db_prefix}{source}"]
    relay = Relay(amqp_uri or space.amqp_uri, db, source, cfg)
    store = cls(client, db, source, relay, cfg, config)
    store.ensure_schema()
    return store


@pytest.fixture(scope="module")
def space(infra):
    return infra.new_space("store")


def test_a_redelivered_event_changes_nothing(space):
    store = make_store(space)
    event = contract.parse(envelope("need_posted", NEED))

    def work(tx):
        store.db.things.update_one({"_id": "counter"}, {"$inc": {"n": 1}}, upsert=True,
                                   session=tx.session)
        return "done"

    assert store.atomically(work, event=event, consumer="c") == "done"
    assert store.atomically(work, event=event, consumer="c") is DUPLICATE
    assert store.db.things.find_one({"_id": "counter"})["n"] == 1
    # another consumer of the same event is independent
    assert store.atomically(work, event=event, consumer="other") == "done"


def test_a_failed_transaction_leaves_no_effect_no_marker_no_event(space):
    store = make_store(space)
    event = contract.parse(envelope("need_posted", NEED))

    def work(tx):
        store.db.things.insert_one({"_id": "half"}, session=tx.session)
        tx.emit("need_posted", NEED)
        raise RuntimeError("crash mid-way")

    with pytest.raises(RuntimeError):
        store.atomically(work, event=event, consumer="c")
    assert store.db.things.find_one({"_id": "half"}) is None
    assert store.db.outbox.count_documents({}) == 0
    assert store.db.processed.find_one({"_id": f"c:{event.event_id}"}) is None


def test_emitted_events_are_published_after_commit_and_leave_the_outbox(space):
    store = make_store(space, source="pub")
    probe = space.bind_probe("pub.events", "need_posted")
    env = store.atomically(lambda tx: tx.emit("need_posted", NEED))
    got = eventually(lambda: space.get_messages(probe))
    assert json.loads(got[0][1])["event_id"] == env["event_id"]
    assert store.db.outbox.count_documents({}) == 0


def test_events_survive_a_broker_outage_and_the_sweeper_sends_them(space):
    from deploy.local import free_port

    down = f"amqp://guest:guest@127.0.0.1:{free_port()}/"  # nothing listens there
    store = make_store(space, source="outage", amqp_uri=down, outbox_grace_seconds=0)
    probe = space.bind_probe("outage.events", "need_posted")
    env = store.atomically(lambda tx: tx.emit("need_posted", NEED))
    assert store.db.outbox.find_one({"_id": env["event_id"]}) is not None  # kept, not lost
    assert space.get_messages(probe) == []

    back = Relay(space.amqp_uri, store.db, "outage", store.cfg)  # the broker is back
    assert back.sweep() == 1
    got = eventually(lambda: space.get_messages(probe))
    assert json.loads(got[0][1])["event_id"] == env["event_id"]
    assert store.db.outbox.count_documents({}) == 0


def test_a_window_of_events_is_published_with_one_wait_and_arrives_as_sent(space):
    store = make_store(space, source="window")
    probe = space.bind_probe("window.events", "need_posted")
    envs = store.atomically(lambda tx: [tx.emit("need_posted", {**NEED, "need_id": f"W{i}"})
                                        for i in range(150)])
    assert store.db.outbox.count_documents({}) == 0  # every one confirmed, then deleted
    got = eventually(lambda: (m := space.get_messages(probe, limit=200)) and len(m) == 150
                     and m)
    assert [json.loads(body) for _, body in got] == [json.loads(json.dumps(e, default=str))
                                                     for e in envs]
    assert {h["x-relief-source"] for h, _ in got} == {"window"}


def test_an_event_the_broker_cannot_route_stays_in_the_outbox(space):
    """No queue is bound and no alternate exchange is set for this exchange: the broker
    returns the event, so it is not counted as published (the sweeper tries again)."""
    store = make_store(space, source="nowhere")
    probe = space.bind_probe("nowhere.events", "need_fulfilled")  # binds another type only
    fulfilled = {"need_id": "N", "community_id": "QY-S01-C01", "quantity": 1, "unit": "piece",
                 "category": "masks"}
    env = store.atomically(lambda tx: [tx.emit("need_posted", NEED),
                                       tx.emit("need_fulfilled", fulfilled)])
    assert [d["_id"] for d in store.db.outbox.find({})] == [env[0]["event_id"]]
    assert json.loads(eventually(lambda: space.get_messages(probe))[0][1])["event_id"] == \
        env[1]["event_id"]


def test_the_relay_opens_a_new_connection_after_it_lost_one(space):
    store = make_store(space, source="reopen")
    probe = space.bind_probe("reopen.events", "need_posted")
    store.atomically(lambda tx: tx.emit("need_posted", {**NEED, "need_id": "R1"}))
    store.relay._window._connection.release()  # the broker closed it, as a restart would
    env = store.atomically(lambda tx: tx.emit("need_posted", {**NEED, "need_id": "R2"}))
    # that publish found the connection gone: the event waits in the outbox, and the next
    # publish (the sweeper's) opens a new connection
    assert [d["_id"] for d in store.db.outbox.find({})] == [env["event_id"]]
    assert store.relay.publish([env]) == 1
    ids = eventually(lambda: (m := space.get_messages(probe)) and len(m) == 2
                     and [json.loads(b)["data"]["need_id"] for _, b in m])
    assert ids == ["R1", "R2"]
    assert store.db.outbox.count_documents({}) == 0


def test_concurrent_claims_never_take_a_lot_below_zero(space):
    store = make_store(space, cls=MatchingStore, source="claims")
    store.db.supply.insert_one({"_id": "L", "available": 100_000})
    outcomes = []

    def claim():
        try:
            store.atomically(lambda tx: store.claim(tx, "L", 15_000))
            outcomes.append("ok")
        except LotChanged:
            outcomes.append("short")

    pool = eventlet.GreenPool()
    for _ in range(10):
        pool.spawn(claim)
    pool.waitall()
    assert outcomes.count("ok") == 6 and outcomes.count("short") == 4
    assert store.db.supply.find_one({"_id": "L"})["available"] == 10_000
