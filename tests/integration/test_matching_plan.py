"""One matching decision over several waiting needs, against the real database: the batch is
planned together, so an urgent need with other stock in reach leaves the stock that only a
later need can reach to that need (and its record says why)."""

from datetime import timedelta

from services.common import contract, reference
from services.common.uow import Scope
from services.matching import handlers
from services.matching.store import MatchingStore
from tests.integration.test_store import make_store

REF = reference.load("deploy/reference")


def test_a_batch_covers_both_needs_and_the_moved_one_says_why(infra):
    space = infra.new_space("plan")
    store = make_store(space, cls=MatchingStore, source="matching")
    store.relay = None  # about the decision and its records, not publishing
    scope = Scope(store, REF, store.cfg)
    now = contract.now()
    category = "plan-masks"

    def post(need_id, urgency, minutes_ago):
        data = {"need_id": need_id, "community_id": "QY-S01-C01", "kind": "goods",
                "category": category, "quantity": 10, "unit": "piece", "urgency": urgency}
        scope.atomically(lambda u: handlers.post_need(
            u, data, now - timedelta(minutes=minutes_ago)))

    post("crit", "critical", 30)
    post("local", "normal", 20)
    for _ in range(2):  # nothing in reach: the critical need goes to the street, the district
        scope.atomically(lambda u: handlers.escalate(u, "crit"), now=now)
    assert store.db.needs.find_one({"_id": "crit"})["tier"] == "district"

    # two lots become known to matching in one go (as after an outage), then one decision
    for lot_id, location in (("own", "QY-S01-C01"), ("far", "QY-S05-C02")):
        lot = {"_id": lot_id, "category": category, "location_id": location, "unit": "piece",
               "quantity": 10_000, "available": 10_000, "value_yuan": 20.0,
               "expires_at": None, "received_at": now, "programme": None}
        store.atomically(lambda tx, lot=lot: store.insert_lot(tx, lot))
    made = scope.atomically(lambda u: handlers.fill(u, store.open_needs(u.tx, category)))

    assert made == 2
    crit, local = (store.db.needs.find_one({"_id": i}) for i in ("crit", "local"))
    assert (crit["status"], local["status"]) == ("fulfilled", "fulfilled")
    assert [(a["lot_id"], a["tier_distance"]) for a in crit["assignments"]] == [("far", 2)]
    assert [(a["lot_id"], a["tier_distance"]) for a in local["assignments"]] == [("own", 0)]
    assert crit["assignments"][0]["score"]["moved_for"] == "coverage"
    assert "can reach no other" in crit["assignments"][0]["explanation"]
    assert [store.db.supply.find_one({"_id": i})["available"] for i in ("own", "far")] == [0, 0]
