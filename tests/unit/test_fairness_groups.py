"""Only contended stock is shared by the fairness rule (pure: engine types, no database)."""

from datetime import UTC, datetime

from services.common import reference, units
from services.matching import engine, handlers

REF = reference.load("deploy/reference")
NOW = datetime(2026, 2, 10, tzinfo=UTC)


def doc(need_id, community, qty, beneficiaries=None):
    return {"_id": need_id, "community_id": community, "category": "masks", "kind": "goods",
            "unit": "piece", "quantity": qty, "quantity_milli": units.to_milli(qty, "piece"),
            "fulfilled_milli": 0, "urgency": "high", "posted_at": NOW,
            "beneficiaries": beneficiaries, "assignments": []}


def lot(lot_id, location, qty):
    milli = units.to_milli(qty, "piece")
    return {"_id": lot_id, "category": "masks", "location_id": location, "unit": "piece",
            "available": milli, "quantity": milli, "value_yuan": 0.0}


def caps(docs, lots):
    needs = [handlers.as_engine_need(d) for d in docs]
    stock = engine.stock_of((engine.Lot(x["_id"], x["category"], x["location_id"],
                                        x["available"], x["unit"]) for x in lots),
                            "masks", "piece")
    return engine.contended_caps(needs, {d["_id"]: d["beneficiaries"] for d in docs}, stock,
                                 REF.areas, NOW)


def test_a_lot_only_one_community_can_reach_is_not_held_back():
    docs = [doc("far", "QY-S02-C03", 20), doc("here", "QY-S04-C01", 5)]
    assert caps(docs, [lot("L", "QY-S04-C01", 5)]) is None


def test_shared_stock_is_split_after_each_community_uses_its_own():
    docs = [doc("a", "QY-S01-C01", 100), doc("b", "QY-S02-C01", 100)]
    got = caps(docs, [lot("own-a", "QY-S01-C01", 60), lot("district", "QY", 60)])
    # 120 reachable, 100 asked by each: a's fair share (60) is its own stock, b takes the 60
    # shared ones
    assert got == {"QY-S01-C01": units.to_milli(60, "piece"),
                   "QY-S02-C01": units.to_milli(60, "piece")}


def test_own_stock_beyond_the_fair_share_is_still_used():
    docs = [doc("a", "QY-S01-C01", 100), doc("b", "QY-S02-C01", 100)]
    got = caps(docs, [lot("own-a", "QY-S01-C01", 90), lot("district", "QY", 20)])
    assert got == {"QY-S01-C01": units.to_milli(90, "piece"),
                   "QY-S02-C01": units.to_milli(55, "piece")}
