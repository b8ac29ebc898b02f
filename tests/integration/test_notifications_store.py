"""Notifications' storage against the real database: what waits for a subject is never lost
to two transactions overlapping, the periodic sweeps read only what they must (the waiting
records, the pending messages), and documents of older versions are taken over at start."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta

import eventlet
import pytest
from pymongo import MongoClient, monitoring
from pymongo.errors import PyMongoError

from services.common import contract, reference
from services.common.config import settings
from services.common.store import Batch, Tx
from services.notifications import handlers, policy
from services.notifications.courier import Courier
from services.notifications.settings import notify_settings
from services.notifications.store import NotificationsStore, contact_id


class Commands(monitoring.CommandListener):
    """Every command the store's client sends: (name, collection, filter)."""

    def __init__(self):
        self.seen: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()

    def started(self, event):
        name = event.command_name
        coll = event.command.get(name)
        if name == "find":
            shape = event.command.get("filter") or {}
        elif name in ("update", "delete"):
            shape = [u.get("q") for u in event.command.get("updates") or
                     event.command.get("deletes") or []]
        else:
            shape = {}
        with self.lock:
            self.seen.append((name, coll if isinstance(coll, str) else "-", shape))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def clear(self):
        with self.lock:
            self.seen.clear()

    def on(self, collection):
        return [(name, shape) for name, coll, shape in self.seen if coll == collection]


@pytest.fixture
def commands():
    return Commands()


@pytest.fixture
def config(infra):
    space = infra.new_space("notify-store")
    return {**space.config(), "NOTIFICATIONS": {"window_seconds": 60}}


def open_store(config, listener=None):
    client = MongoClient(config["MONGO_URI"], tz_aware=True,
                         event_listeners=[listener] if listener else [])
    cfg = settings(config)
    store = NotificationsStore(client, client[f"{cfg.db_prefix}notifications"], "notifications",
                               None, cfg, config)
    store.ensure_schema()
    store.on_start()
    return store


@pytest.fixture
def store(config, commands):
    s = open_store(config, commands)
    yield s
    s.client.close()


@pytest.fixture
def ctx(store, config):
    return handlers.Context(store, notify_settings(config),
                            reference.load(settings(config).reference_dir), contract.now())


def event(type_, data, source="matching"):
    return contract.parse(contract.build(type_, data, source))


def posted(need_id, phone):
    return event("need_posted", {
        "need_id": need_id, "community_id": "QY-S01-C01", "kind": "goods",
        "category": "masks", "quantity": 100, "unit": "piece", "urgency": "high",
        "contact": {"name": "王芳", "phone": phone}}, source="intake")


def assigned(need_id, quantity=60):
    return event("assignment_made", {
        "assignment_id": f"A-{uuid.uuid4().hex[:8]}", "need_id": need_id,
        "community_id": "QY-S01-C01", "category": "masks", "quantity": quantity,
        "unit": "piece", "lot_id": "D-1", "lot_quantity": quantity, "lot_unit": "piece",
        "location_id": "QY-S01-C01", "tier_distance": 0, "value_yuan": 30.0})


def fulfilled(need_id):
    return event("need_fulfilled", {"need_id": need_id, "community_id": "QY-S01-C01",
                                    "category": "masks", "quantity": 100, "unit": "piece"})


def handle(store, ctx, use_case, ev):
    """As the service does: in the event's transaction, then what it may remember."""
    def work(tx):
        ctx.after_commit.clear()
        return use_case(ctx, tx, ev)

    result = store.atomically(work, event=ev, consumer=use_case.__name__)
    for remember in ctx.after_commit:
        remember()
    return result


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def phone():
    return "138" + str(uuid.uuid4().int)[:8]


def test_messages_waiting_for_a_need_are_adopted_even_when_its_posting_overlaps_one(
        store, ctx):
    """The need's second message is stored while its need_posted is being handled: the two
    transactions conflict (one retries and sees the other), so nothing waits for ever."""
    nid = uid("N")
    handle(store, ctx, handlers.on_assignment_made, assigned(nid))  # overtook need_posted

    with store.client.start_session() as first, store.client.start_session() as second:
        first.start_transaction()
        one = Tx(store.db, first, "notifications")
        handlers.on_need_fulfilled(ctx, one, fulfilled(nid))
        one.flush()  # what a transaction writes as it commits
        second.start_transaction()
        with pytest.raises(PyMongoError) as caught:
            other = Tx(store.db, second, "notifications")
            handlers.on_need_posted(ctx, other, posted(nid, phone()))
            other.flush()
            second.commit_transaction()
        assert caught.value.has_error_label("TransientTransactionError")
        if second.in_transaction:
            try:
                second.abort_transaction()
            except PyMongoError:
                pass
        first.commit_transaction()

    handle(store, ctx, handlers.on_need_posted, posted(nid, phone()))  # as a retry would
    shown = store.messages_for_need(nid)
    assert sorted(m["template"] for m in shown) == ["assignment_made", "need_fulfilled"]
    assert all(m["recipient"] and m.get("due_at") and "awaiting" not in m for m in shown)
    assert store.db.awaiting.find_one({"_id": f"need:{nid}"}) is None


def test_the_awaiting_sweep_reads_only_the_awaiting_records(store, ctx, config, commands):
    old, young = uid("N"), uid("N")
    for nid in (old, young):
        handle(store, ctx, handlers.on_assignment_made, assigned(nid))
    # what a long-running system holds: many messages long delivered
    store.db.messages.insert_many([{"_id": uid("sent"), "state": "sent", "template": "x",
                                    "created_at": contract.now()} for _ in range(50)])
    hours_ago = contract.now() - timedelta(hours=2)
    [waiting] = store.messages_for_need(old)
    store.db.messages.update_one({"_id": waiting["_id"]}, {"$set": {"created_at": hours_ago}})
    store.db.awaiting.update_one({"_id": f"need:{old}"}, {"$set": {"since": hours_ago}})

    commands.clear()
    courier = Courier(notify_settings({**config, "NOTIFICATIONS": {
        "orphan_timeout_seconds": 3600}}), {})
    assert courier.sweep_orphans(store, contract.now()) == 1

    assert [shape for name, shape in commands.on("awaiting") if name == "find"][0] == {}
    for name, shape in commands.on("messages"):
        shapes = shape if isinstance(shape, list) else [shape]
        assert all(set(s) <= {"_id", "state"} and "_id" in s for s in shapes), (name, shape)
    dead = store.message(waiting["_id"])
    assert dead["state"] == "dead" and "awaiting" not in dead
    assert dead["reason"] == f"its recipient never became known (nothing arrived for " \
                             f"need:{old})"
    assert store.messages_for_need(young)[0]["state"] == "queued"
    assert store.db.awaiting.find_one({"_id": f"need:{old}"}) is None
    assert store.db.awaiting.find_one({"_id": f"need:{young}"})


def test_the_courier_finds_due_messages_by_their_state_not_by_a_range(store, ctx, commands):
    nid = uid("N")
    handle(store, ctx, handlers.on_need_posted, posted(nid, phone()))
    handle(store, ctx, handlers.on_need_fulfilled, fulfilled(nid))
    store.db.messages.insert_many([{"_id": uid("sent"), "state": "sent", "template": "x",
                                    "created_at": contract.now()} for _ in range(50)])
    recipient = store.messages_for_need(nid)[0]["recipient"]
    commands.clear()
    later = contract.now() + timedelta(minutes=5)  # past the window
    assert [m["recipient"] for m in store.due_messages(later)] == [recipient]
    assert store.due_messages(contract.now()) == []  # within its window: not due yet
    finds = [shape for name, shape in commands.on("messages") if name == "find"]
    assert finds and all(shape == {"state": {"$in": ["queued", "failed"]}} for shape in finds)


def test_a_repeated_assignment_is_counted_once_and_told_once(store, ctx):
    nid = uid("N")
    handle(store, ctx, handlers.on_need_posted, posted(nid, phone()))
    first = assigned(nid, quantity=60)
    handle(store, ctx, handlers.on_assignment_made, first)
    again = event("assignment_made", first.data)  # the same assignment, a new event id
    handle(store, ctx, handlers.on_assignment_made, again)
    handle(store, ctx, handlers.on_assignment_made, assigned(nid, quantity=40))
    shown = sorted(store.messages_for_need(nid), key=lambda m: m["params"]["assigned"])
    assert [(m["params"]["assigned"], m["params"]["partial"]) for m in shown] == [
        (60, True), (100, False)]


def test_documents_of_the_previous_version_are_taken_over_at_start(config):
    """Messages that waited before ``awaiting`` records existed get one, and a contact whose
    phone a managed recipient has points at it."""
    plain = MongoClient(config["MONGO_URI"], tz_aware=True)
    db = plain[f"{settings(config).db_prefix}notifications"]
    nid, p = uid("N"), phone()
    key = policy.phone_key(p)
    db.messages.insert_one({"_id": uid("m"), "template": "need_fulfilled", "recipient": None,
                            "priority": "normal", "language": "zh-CN", "state": "queued",
                            "params": {"need_id": nid, "quantity": 100, "unit": "piece",
                                       "category": "masks"},
                            "awaiting": f"need:{nid}", "attempts": 0,
                            "created_at": contract.now(), "need_id": nid})
    db.recipients.insert_one({"_id": "coord-old", "managed": True, "kind": "managed",
                              "phone": p, "phone_key": key, "email": "old@example.org"})
    db.messages.create_index("awaiting")  # what the previous version queried
    db.messages.create_index("topic")  # what it indexed for every message, not sparse
    store = open_store(config)
    try:
        assert store.db.awaiting.find_one({"_id": f"need:{nid}"})
        assert store.recipient(contact_id(key))["managed_by"] == "coord-old"
        ctx = handlers.Context(store, notify_settings(config),
                               reference.load(settings(config).reference_dir), contract.now())
        handle(store, ctx, handlers.on_need_posted, posted(nid, p))
        [message] = store.messages_for_need(nid)
        assert message["recipient"] == "coord-old" and "awaiting" not in message
        indexes = store.db.messages.index_information()
        assert "awaiting_1" not in indexes and "topic_1" not in indexes
        assert indexes["topic_sparse"].get("sparse") is True
    finally:
        store.client.close()
        plain.close()


def test_news_for_a_donor_who_left_no_contact_needs_no_transaction(store, ctx, commands):
    def donation(lot, contact=None):
        donor = {"name": "成都启毅农业科技有限公司", "kind": "company"}
        if contact:
            donor["contact"] = contact
        return event("donation_received", {"donation_id": lot, "donor": donor,
                                           "location_id": "QY-S01", "category": "masks",
                                           "quantity": 100, "unit": "piece",
                                           "value_yuan": 50}, source="intake")

    def dispatched(lot, reason="allocated"):
        return event("stock_changed", {"lot_id": lot, "category": "masks",
                                       "location_id": "QY-S01", "delta": -60,
                                       "available": 40, "unit": "piece", "reason": reason,
                                       "assignment_id": uid("A")}, source="donations")

    anonymous, known, unseen = uid("D"), uid("D"), uid("D")
    handle(store, ctx, handlers.on_donation_received, donation(anonymous))
    handle(store, ctx, handlers.on_donation_received,
           donation(known, {"name": "赵强", "phone": phone()}))
    commands.clear()
    assert handlers.changes_nothing(store, dispatched(anonymous))
    assert handlers.changes_nothing(store, dispatched(known, reason="written_off"))
    assert not handlers.changes_nothing(store, dispatched(known))
    assert not handlers.changes_nothing(store, dispatched(unseen))  # in doubt: handled
    assert commands.seen == []  # decided without a request


def test_a_mailbox_is_held_by_one_courier_at_a_time(store, commands):
    first, second, third, now = uid("r"), uid("r"), uid("r"), contract.now()
    lease = now + timedelta(seconds=30)
    assert store.claim_mailboxes([first], now, lease, "a") == {first}  # created by the claim
    assert store.claim_mailboxes([first, second], now, lease, "b") == {second}
    store.release_mailboxes(None, "b", {first: None})  # not b's to release
    assert store.claim_mailboxes([first, second], now, lease, "b") == set()
    store.release_mailboxes(None, "a", {first: {"last_sent_at": now}})
    assert store.db.mailboxes.find_one({"_id": first})["last_sent_at"] is not None
    commands.clear()
    assert store.claim_mailboxes([first, second, third], now, lease, "c") == {first, third}
    assert len(commands.seen) <= 4  # however many recipients
    # a lease left by a courier that died is someone else's once it ran out
    later = lease + timedelta(seconds=1)
    assert store.claim_mailboxes([first, second, third], later, later + timedelta(seconds=30),
                                 "a") == {first, second, third}


def test_two_couriers_claiming_at_once_share_no_mailbox(store):
    recipients, now = [uid("r") for _ in range(40)], contract.now()
    lease = now + timedelta(seconds=30)
    store.claim_mailboxes(recipients[::2], now, now - timedelta(seconds=1), "old")  # past leases
    pool = eventlet.GreenPool()
    won = list(pool.imap(lambda owner: store.claim_mailboxes(recipients, now, lease, owner),
                         ["a", "b", "c"]))
    assert set().union(*won) == set(recipients)
    assert sum(len(w) for w in won) == len(recipients)  # each mailbox to one courier
    owners = {d["_id"]: d["lease_owner"] for d in store.db.mailboxes.find(
        {"_id": {"$in": recipients}})}
    assert all(owners[r] == owner for w, owner in zip(won, "abc", strict=True) for r in w)


def handle_batch(store, ctx, items):
    """As the batch consumer does: one transaction, what its events will look up read first,
    each handler joining it, one commit."""
    batch = Batch(store)
    batch.mark([(f"{use_case.__name__}:{ev.event_id}", ev) for use_case, ev in items])
    batch.prefetch([ev for _, ev in items])
    for use_case, ev in items:
        view = store.for_worker(batch, use_case.__name__)

        def work(tx, use_case=use_case, ev=ev):
            ctx.after_commit = tx.after_commit
            return use_case(ctx, tx, ev)

        view.atomically(work, event=ev)
    batch.commit()


def test_a_batch_adopts_what_waited_for_its_needs_and_writes_each_collection_once(
        store, ctx, commands):
    waited, told_first, fresh = uid("N"), uid("N"), uid("N")
    handle(store, ctx, handlers.on_assignment_made, assigned(waited))  # overtook need_posted
    commands.clear()
    handle_batch(store, ctx, [
        (handlers.on_need_posted, posted(waited, phone())),
        (handlers.on_assignment_made, assigned(told_first)),  # overtakes in the batch itself
        (handlers.on_need_fulfilled, fulfilled(told_first)),
        (handlers.on_need_posted, posted(told_first, phone())),
        (handlers.on_need_posted, posted(fresh, phone())),
        (handlers.on_assignment_made, assigned(fresh)),
    ])
    on_subjects = [name for name, _ in commands.on("subjects")]
    inserts = [1 for name, _ in commands.on("messages") if name == "insert"]
    for nid, templates in ((waited, ["assignment_made"]),
                           (told_first, ["assignment_made", "need_fulfilled"]),
                           (fresh, ["assignment_made"])):
        shown = store.messages_for_need(nid)
        assert sorted(m["template"] for m in shown) == templates, nid
        assert all(m["state"] == "queued" and m["recipient"] and m.get("due_at")
                   and "awaiting" not in m for m in shown), shown
        assert store.db.awaiting.find_one({"_id": f"need:{nid}"}) is None
        assert store.db.subjects.find_one({"_id": f"need:{nid}"})["known"] is True
    # the subjects read at once, and written once each in one request
    assert on_subjects == ["find", "update"]
    assert len(inserts) <= 2  # the new messages: before the first adoption, and at commit


@pytest.mark.parametrize("order", ["told_then_posted", "posted_then_told"])
def test_a_batch_adopts_what_waited_from_before_and_what_it_tells_itself(store, ctx, order):
    nid = uid("N")
    handle(store, ctx, handlers.on_need_fulfilled, fulfilled(nid))  # waits: need unknown
    items = [(handlers.on_assignment_made, assigned(nid)),
             (handlers.on_need_posted, posted(nid, phone()))]
    handle_batch(store, ctx, items if order == "told_then_posted" else items[::-1])
    shown = store.messages_for_need(nid)
    assert sorted(m["template"] for m in shown) == ["assignment_made", "need_fulfilled"]
    assert all(m["recipient"] and "awaiting" not in m for m in shown), shown
    assert store.db.awaiting.find_one({"_id": f"need:{nid}"}) is None


def test_batches_in_any_order_adopt_every_message_that_waited(store, ctx):
    """A burst after an outage: a need's news and its posting arrive in any order, split
    into batches anywhere; every message finds its recipient and nothing is left waiting."""
    rnd = random.Random(7)
    contact = phone()
    for _ in range(6):
        needs = [uid("N") for _ in range(8)]
        items = [item for nid in needs for item in (
            (handlers.on_need_fulfilled, fulfilled(nid)),
            (handlers.on_assignment_made, assigned(nid)),
            (handlers.on_need_posted, posted(nid, contact)))]
        rnd.shuffle(items)
        first, second = sorted(rnd.sample(range(1, len(items)), 2))
        for part in (items[:first], items[first:second], items[second:]):
            handle_batch(store, ctx, part)
        left = [(m["template"], m["need_id"]) for nid in needs
                for m in store.messages_for_need(nid)
                if not m.get("recipient") or "awaiting" in m]
        assert left == []
        assert all(store.db.awaiting.find_one({"_id": f"need:{nid}"}) is None for nid in needs)


def test_another_posting_under_a_need_id_is_refused_by_a_store_that_never_read_it(
        store, ctx, config):
    """A second publisher's need under the first one's id never changes who is told: a
    store that read nothing lately (just started, say) has the database judge it."""
    nid, first_phone = uid("N"), phone()
    handle(store, ctx, handlers.on_need_posted, posted(nid, first_phone))
    told = store.db.subjects.find_one({"_id": f"need:{nid}"})
    fresh = open_store(config)
    try:
        fresh_ctx = handlers.Context(fresh, ctx.cfg, ctx.reference, contract.now())
        with pytest.raises(contract.IdReused, match="already used for a different need"):
            handle(fresh, fresh_ctx, handlers.on_need_posted, posted(nid, phone()))
        handle(fresh, fresh_ctx, handlers.on_need_posted, posted(nid, first_phone))  # again
        # now that it has read the first posting, it judges another one from that
        with pytest.raises(contract.IdReused):
            handle(fresh, fresh_ctx, handlers.on_need_posted, posted(nid, phone()))
    finally:
        fresh.client.close()
    now = store.db.subjects.find_one({"_id": f"need:{nid}"})
    assert now["recipient"] == told["recipient"] and now["posting"] == told["posting"]
