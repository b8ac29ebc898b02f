"""A need posted while a lot of its category arrives must meet it (no write skew)."""

import eventlet

from services.common import reference
from services.common.store import Relay
from services.common.uow import Scope
from services.matching import handlers
from services.matching.store import MatchingStore
from tests.integration.test_store import make_store

REF = reference.load("deploy/reference")


def test_concurrent_need_and_lot_always_meet(infra):
    space = infra.new_space("race")
    store = make_store(space, cls=MatchingStore, source="matching")
    store.relay = None  # this test is about the database, not publishing
    assert not isinstance(store.relay, Relay)
    scope = Scope(store, REF, store.cfg)
    now = handlers.contract.now()
    rounds = 15
    for i in range(rounds):
        need = {"need_id": f"N{i}", "community_id": "QY-S01-C01", "kind": "goods",
                "category": f"cat{i}", "quantity": 5, "unit": "piece", "urgency": "high"}
        lot = {"donation_id": f"L{i}", "lot_id": f"L{i}", "location_id": "QY-S01-C01",
               "category": f"cat{i}", "quantity": 5, "unit": "piece", "value_yuan": 1.0}
        pool = eventlet.GreenPool()
        pool.spawn(scope.atomically, lambda u, n=need: handlers.post_need(u, n, now))
        pool.spawn(scope.atomically, lambda u, lot=lot: handlers.add_lot(u, lot))
        pool.waitall()
    statuses = [store.db.needs.find_one({"_id": f"N{i}"})["status"] for i in range(rounds)]
    assert statuses == ["fulfilled"] * rounds
    assert [store.db.supply.find_one({"_id": f"L{i}"})["available"] for i in range(rounds)] == [
        0] * rounds
