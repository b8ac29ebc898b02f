"""The ledger against the real broker and database: fed only by events, idempotent (the same
event twice, or the same cause under a new event id, adds nothing), and an unapproved or
rejected hour never reaches a figure."""

import uuid

import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy

from deploy.local import free_port
from deploy.topology import deploy
from services.accounting.service import AccountingService
from tests.support import envelope, eventually


@pytest.fixture(scope="module")
def ledger(infra):
    space = infra.new_space("ledger")
    config = {**space.config(), "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}
    deploy(config, classes=[AccountingService])
    container = ServiceContainer(AccountingService, config)
    container.start()
    yield space
    container.stop()


def send(space, source, type_, data, event_id=None):
    env = envelope(type_, data, event_id, source=source)
    space.publish(f"{source}.events", type_, env)
    return env["event_id"]


def entries(space):
    return {e["_id"]: e for e in space.db("accounting").ledger.find({})}


def test_replayed_events_add_nothing_and_only_approved_hours_count(ledger):
    space = ledger
    lot = f"D-{uuid.uuid4().hex[:6]}"
    donation = {"donation_id": lot, "lot_id": lot, "donor": {"name": "好医生集团",
                                                            "kind": "company"},
                "location_id": "QY-S01-C01", "category": "medicine", "quantity": 38810,
                "unit": "box", "value_yuan": 1112000}
    assignment = {"assignment_id": "N-1#1", "need_id": "N-1", "community_id": "QY-S01-C02",
                  "category": "medicine", "quantity": 10, "unit": "box", "lot_id": lot,
                  "lot_quantity": 10, "lot_unit": "box", "location_id": "QY-S01-C01",
                  "tier_distance": 1, "value_yuan": 286.52}
    write_off = {"lot_id": lot, "category": "medicine", "location_id": "QY-S01-C01",
                 "delta": -5, "available": 38795, "unit": "box", "reason": "written_off",
                 "write_off_id": "WO-1", "write_off_reason": "expired", "value_yuan": 143.26}
    allocated_stock = {**write_off, "reason": "allocated", "delta": -10,
                       "assignment_id": "N-1#1"}
    approved = {"hours_id": "H-1", "volunteer_id": "V-1", "hours": 6, "date": "2020-02-11",
                "activity": "counselling"}
    rejected = {**approved, "hours_id": "H-2", "hours": 8}
    sent = [("donations", "donation_received", donation),
            ("matching", "assignment_made", assignment),
            ("donations", "stock_changed", write_off),
            ("donations", "stock_changed", allocated_stock),
            ("volunteers", "hours_approved", approved),
            ("volunteers", "hours_rejected", rejected)]
    ids = [send(space, *s) for s in sent]
    eventually(lambda: len(entries(space)) == 5, what="five ledger entries")
    for s, event_id in zip(sent, ids, strict=True):
        send(space, *s, event_id=event_id)  # redelivered
        send(space, *s)  # the same cause under a new event id
    marker = {**approved, "hours_id": "H-3", "hours": 1}
    send(space, "volunteers", "hours_approved", marker)
    eventually(lambda: "hours:H-3" in entries(space), what="the marker behind the replay")
    assert set(entries(space)) == {f"in:{lot}", "allocated:N-1#1", "written_off:WO-1",
                                   "hours:H-1", "rejected:H-2", "hours:H-3"}
    # by the entries' ids alone: no processed marker was written for any of it
    assert space.db("accounting").processed.count_documents({}) == 0

    with ClusterRpcProxy({"AMQP_URI": space.amqp_uri, "serializer": "json"}) as rpc:
        rows = {(r["kind"], r["category"]): r for r in rpc.accounting.totals()["rows"]}
        bulletin = rpc.accounting.bulletin("zh-CN")
    assert rows[("goods_in", "medicine")]["quantity"] == 38810
    assert rows[("goods_allocated", "medicine")]["quantity"] == 10
    assert rows[("goods_written_off", "medicine")]["value_yuan"] == 143.26
    assert rows[("hours", "counselling")]["quantity"] == 7  # 6 + the marker's 1; never 8
    [medicine] = bulletin["goods"]
    assert (medicine["received"], medicine["allocated"], medicine["written_off"],
            medicine["in_stock"]) == (38810, 10, 5, 38795)
    assert bulletin["volunteers"]["hours"] == 7
