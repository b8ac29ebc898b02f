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


def test_the_needs_that_can_reach_a_warehouse_are_read_without_the_rest(infra):
    space = infra.new_space("reaching")
    store = make_store(space, cls=MatchingStore, source="matching")
    category = "reach-masks"
    needs = [("home", "QY-S01-C01", "community"), ("neighbour", "QY-S01-C02", "community"),
             ("neighbour-street", "QY-S01-C02", "street"), ("far", "QY-S02-C01", "community"),
             ("far-district", "QY-S02-C01", "district")]
    store.db.needs.insert_many([
        {"_id": nid, "category": category, "open_category": category, "community_id": c,
         "tier": tier, "kind": "goods", "quantity_milli": 1000, "fulfilled_milli": 0,
         "unit": "piece", "urgency": "low", "status": "open", "assignments": []}
        for nid, c, tier in needs])
    store.db.needs.insert_many([  # many more, in a street no warehouse here belongs to
        {"_id": f"other-{i}", "category": category, "open_category": category,
         "community_id": "QY-S03-C01", "tier": "community", "kind": "goods",
         "quantity_milli": 1000, "fulfilled_milli": 0, "unit": "piece", "urgency": "low",
         "status": "open", "assignments": []} for i in range(300)])

    def reaching(locations):
        return sorted(d["_id"] for d in store.atomically(
            lambda tx: store.open_needs_reaching(tx, category, locations)))

    # a community's warehouse: its own needs, its street's needs escalated to the street,
    # every need escalated to the district
    assert reaching(["QY-S01-C01"]) == ["far-district", "home", "neighbour-street"]
    assert reaching(["QY-S01"]) == ["far-district", "home", "neighbour", "neighbour-street"]
    assert reaching(["QY-S02-C01"]) == ["far", "far-district"]
    assert len(reaching(["QY"])) == 305  # the district's warehouse: every open need

    def read(locations):
        def work(tx):
            store.open_needs_reaching(tx, category, locations)
            return tx.shared["open_needs"][category]["docs"]
        return store.atomically(work)

    assert not any(nid.startswith("other-") for nid in read(["QY-S01-C01", "QY-S02-C01"]))
