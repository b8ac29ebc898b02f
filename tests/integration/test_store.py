"""Transactions, idempotency and the outbox against the real database and broker."""

import json
from collections import Counter

import eventlet
import pytest
from pymongo import InsertOne, MongoClient, ReplaceOne, UpdateOne
from pymongo.monitoring import CommandListener

from services.accounting.store import AccountingStore
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


def waiting(store):
    """The ids of the events in the outbox, in the order written."""
    return [e["event_id"] for record in store.db.outbox.find({})
            for e in record["envelopes"]]


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
    assert waiting(store) == [env["event_id"]]  # kept, not lost
    assert store.relay.backlog() == 1
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
    assert store.relay.backlog() == 0
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
    # the record keeps only the one not published
    assert waiting(store) == [env[0]["event_id"]] and store.relay.backlog() == 1
    assert json.loads(eventually(lambda: space.get_messages(probe))[0][1])["event_id"] == \
        env[1]["event_id"]


def test_commits_handed_to_the_publisher_go_out_in_order_and_together(space):
    """A running service's relay publishes from a thread of its own: a commit does not wait
    for the broker, and what several commits handed over while it was busy goes out in one
    window, in the order committed; stopping it publishes what was handed over."""
    store = make_store(space, source="handoff")
    probe = space.bind_probe("handoff.events", "need_posted")
    windows = []
    publish = store.relay._window.publish

    def counted(messages):
        windows.append([json.loads(json.dumps(m[0], default=str))["data"]["need_id"]
                        for m in messages])
        return publish(messages)

    store.relay._window.publish = counted
    store.relay.start_publisher(eventlet.spawn)
    emit = [lambda tx, i=i: tx.emit("need_posted", {**NEED, "need_id": f"H{i}"})
            for i in range(5)]
    with store.relay._lock:  # the publisher is busy (as while the broker confirms)
        store.atomically(emit[0])
        eventlet.sleep(0.05)  # it took the first commit's record and waits for the lock
        for work in emit[1:]:
            store.atomically(work)  # each returns at once: committed, handed over
        assert len(waiting(store)) == 5 and windows == []
    eventlet.sleep(0)
    store.relay.stop_publisher(timeout=10)
    assert windows == [["H0"], ["H1", "H2", "H3", "H4"]]
    got = eventually(lambda: (m := space.get_messages(probe)) and len(m) == 5 and m)
    assert [json.loads(b)["data"]["need_id"] for _, b in got] == [f"H{i}" for i in range(5)]
    assert store.db.outbox.count_documents({}) == 0
    # stopped: a commit publishes itself again
    store.atomically(lambda tx: tx.emit("need_posted", {**NEED, "need_id": "H5"}))
    assert windows[-1] == ["H5"] and store.db.outbox.count_documents({}) == 0


def test_the_relay_opens_a_new_connection_after_it_lost_one(space):
    store = make_store(space, source="reopen")
    probe = space.bind_probe("reopen.events", "need_posted")
    store.atomically(lambda tx: tx.emit("need_posted", {**NEED, "need_id": "R1"}))
    store.relay._window._connection.release()  # the broker closed it, as a restart would
    env = store.atomically(lambda tx: tx.emit("need_posted", {**NEED, "need_id": "R2"}))
    # that publish found the connection gone: the event waits in the outbox, and the next
    # publish (the sweeper's) opens a new connection
    assert waiting(store) == [env["event_id"]]
    assert store.relay.publish(list(store.db.outbox.find({}))) == 1
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


class Commands(CommandListener):
    """Counts the write commands a client sends, by collection (pymongo's monitoring)."""

    def __init__(self):
        self.writes = Counter()

    def started(self, event):
        if event.command_name in ("insert", "update", "delete"):
            self.writes[(event.command_name, event.command[event.command_name])] += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_staged_writes_go_in_one_request_per_collection_in_their_last_state(space):
    commands = Commands()
    store = make_store(space, source="staging")
    store.client = MongoClient(space.mongo_uri, tz_aware=True, event_listeners=[commands])
    store.db = store.client[store.db.name]
    store.db.things.insert_many([{"_id": "a", "n": 0}, {"_id": "b", "n": 0}])
    commands.writes.clear()

    def work(tx):
        for i in range(1, 6):  # five events of a batch change one document: written once
            tx.stage("things", "a", ReplaceOne({"_id": "a"}, {"n": i}))
        tx.stage("things", "b", UpdateOne({"_id": "b"}, {"$inc": {"n": 7}}))
        tx.stage("things", "c", InsertOne({"_id": "c", "n": 1}))
        assert store.db.things.find_one({"_id": "c"}, session=tx.session) is None
        assert tx.staged("things", "c") and not tx.staged("things", "d")

    store.atomically(work)
    assert [d["n"] for d in store.db.things.find({}, sort=[("_id", 1)])] == [5, 7, 1]
    # one bulk write: a request per kind of write, however many documents
    assert commands.writes == Counter({("update", "things"): 1, ("insert", "things"): 1})

    def read_after_staging(tx):
        tx.stage("things", "d", InsertOne({"_id": "d"}))
        tx.write_staged("things")  # before a query that must see it
        return store.db.things.find_one({"_id": "d"}, session=tx.session)

    assert store.atomically(read_after_staging) == {"_id": "d"}


def test_a_staged_conditional_write_that_matches_nothing_rolls_everything_back(space):
    store = make_store(space, cls=MatchingStore, source="staged")
    store.db.supply.insert_many([{"_id": "L1", "available": 10}, {"_id": "L2", "available": 5}])

    def take(tx):
        store.claim(tx, "L1", 4)
        store.claim(tx, "L1", 4)  # one write: 8 taken, on condition that 8 are there
        store.claim(tx, "L2", 3)

    store.atomically(take)
    assert {d["_id"]: d["available"] for d in store.db.supply.find({})} == {"L1": 2, "L2": 2}

    def too_much(tx):
        store.claim(tx, "L1", 1)
        store.db.withdrawals.insert_one({"_id": "x"}, session=tx.session)
        store.claim(tx, "L2", 3)  # only 2 left: found as the transaction commits

    with pytest.raises(LotChanged):
        store.atomically(too_much)
    assert {d["_id"]: d["available"] for d in store.db.supply.find({})} == {"L1": 2, "L2": 2}
    assert store.db.withdrawals.find_one({"_id": "x"}) is None


def test_a_record_an_earlier_version_left_in_the_outbox_is_published(space):
    """Before a transaction's events shared one record, each had its own (``envelope``)."""
    store = make_store(space, source="older", outbox_grace_seconds=0)
    probe = space.bind_probe("older.events", "need_posted")
    env = contract.build("need_posted", NEED, "older")
    store.db.outbox.insert_one({"_id": env["event_id"], "envelope": env,
                                "created_at": contract.now()})
    assert store.relay.backlog() == 1
    assert store.relay.sweep() == 1
    got = eventually(lambda: space.get_messages(probe))
    assert json.loads(got[0][1])["event_id"] == env["event_id"]
    assert store.db.outbox.count_documents({}) == 0


def test_a_backlog_of_records_is_swept_a_window_at_a_time(space):
    """After an outage the outbox may hold many records of hundreds of events each: a sweep
    publishes whole records, about a thousand events at a time, never all at once."""
    store = make_store(space, source="backlog", outbox_grace_seconds=0)
    probe = space.bind_probe("backlog.events", "need_posted")
    at = contract.now()
    for r in range(3):
        events = [contract.build("need_posted", {**NEED, "need_id": f"B{r}-{i}"}, "backlog")
                  for i in range(400)]
        store.db.outbox.insert_one({"_id": f"r{r}", "envelopes": events, "n": 400,
                                    "created_at": at})
    assert store.relay.backlog() == 1200
    assert store.relay.sweep() == 800  # two records: a third would pass a thousand
    assert store.relay.backlog() == 400
    assert store.relay.sweep() == 400
    assert store.db.outbox.count_documents({}) == 0
    eventually(lambda: space.queue_depth(probe) == 1200, what="every event published")


@pytest.mark.parametrize("cls, source, collection, fields", [
    (MatchingStore, "matching", "supply", ["category"]),
    (AccountingStore, "accounting", "ledger", ["category", "kind"]),
])
def test_indexes_nothing_queries_are_dropped_at_start(infra, cls, source, collection, fields):
    """Every write of a document rewrites each index of its collection: an earlier
    version's indexes that nothing reads (lots by category, whose entry each claim of stock
    rewrote; ledger entries by category and kind) are dropped when the service starts."""
    space = infra.new_space(f"retired-{source}")
    first = make_store(space, cls=cls, source=source)
    for field in fields:  # as the earlier version made them
        first.db[collection].create_index(field)
    assert len(first.db[collection].index_information()) == 1 + len(fields)
    again = make_store(space, cls=cls, source=source)
    assert sorted(again.db[collection].index_information()) == ["_id_"]

