from datetime import UTC, datetime, timedelta

from services.common import reference, units
from services.matching import engine

AREAS = reference.load("deploy/reference").areas
NOW = datetime(2026, 2, 10, 9, tzinfo=UTC)
C = "QY-S01-C01"


def lot(lot_id, location, qty, unit="piece", category="masks", expires=None):
    return engine.Lot(lot_id, category, location, units.to_milli(qty, unit), unit, expires)


def need(qty, unit="piece", category="masks", community=C, tier="community", **kw):
    return engine.Need("N", category, community, units.to_milli(qty, unit), unit, tier=tier,
                       **kw)


def taken(allocations, unit="piece"):
    return [(a.lot_id, units.from_milli(a.quantity, unit)) for a in allocations]


def test_nearest_tier_first_community_then_street_then_district():
    lots = [lot("district", "QY", 100), lot("street", "QY-S01", 100), lot("own", C, 30)]
    out = engine.allocate(need(150), lots, AREAS, NOW)
    assert taken(out) == [("own", 30), ("street", 100), ("district", 20)]
    assert [a.tier_distance for a in out] == [0, 1, 2]
    assert "same community" in out[0].explanation


def test_partial_fulfilment_leaves_the_rest_open():
    out = engine.allocate(need(100), [lot("own", C, 40)], AREAS, NOW)
    assert taken(out) == [("own", 40)]


def test_never_more_than_asked():
    out = engine.allocate(need(10), [lot("own", C, 40), lot("street", "QY-S01", 40)], AREAS, NOW)
    assert taken(out) == [("own", 10)]


def test_other_communities_only_after_escalation():
    neighbour = lot("neighbour", "QY-S01-C02", 50)
    other_street = lot("far", "QY-S02-C01", 50)
    assert engine.allocate(need(20), [neighbour, other_street], AREAS, NOW) == []
    street = engine.allocate(need(20, tier="street"), [neighbour, other_street], AREAS, NOW)
    assert taken(street) == [("neighbour", 20)]
    district = engine.allocate(need(80, tier="district"), [neighbour, other_street], AREAS, NOW)
    assert taken(district) == [("neighbour", 50), ("far", 30)]


def test_units_convert_jin_from_tonnes():
    out = engine.allocate(need(200, unit="jin", category="vegetables"),
                          [lot("veg", C, 1, unit="t", category="vegetables")], AREAS, NOW)
    assert taken(out, unit="jin") == [("veg", 200)]
    assert taken(out, unit="kg") == [("veg", 100)]


def test_incompatible_units_and_other_categories_are_ignored():
    lots = [lot("boxes", C, 10, unit="box"), lot("gloves", C, 10, category="gloves")]
    assert engine.allocate(need(5), lots, AREAS, NOW) == []


def test_perishables_earliest_expiry_first_and_expired_never():
    soon = lot("soon", C, 10, unit="kg", category="vegetables", expires=NOW + timedelta(days=1))
    later = lot("later", C, 10, unit="kg", category="vegetables", expires=NOW + timedelta(days=5))
    gone = lot("gone", C, 10, unit="kg", category="vegetables", expires=NOW - timedelta(hours=1))
    out = engine.allocate(need(15, unit="kg", category="vegetables"), [later, gone, soon],
                          AREAS, NOW)
    assert taken(out, unit="kg") == [("soon", 10), ("later", 5)]
    assert out[0].score["expiry_days"] == 1.0


def test_needs_are_served_by_urgency_then_deadline_then_age():
    def n(i, urgency, needed_by=None, posted=0):
        return engine.Need(i, "masks", C, 1000, "piece", urgency, needed_by,
                           NOW + timedelta(minutes=posted))

    needs = [n("low", "low"), n("late", "high", NOW + timedelta(days=2)),
             n("soon", "high", NOW + timedelta(hours=2)), n("crit", "critical", posted=5),
             n("old", "normal", posted=-10), n("new", "normal", posted=10)]
    assert [x.need_id for x in engine.order_needs(needs)] == [
        "crit", "soon", "late", "old", "new", "low"]


def test_score_breakdown_is_complete():
    out = engine.allocate(need(5, needed_by=NOW + timedelta(hours=6)), [lot("own", C, 10)],
                          AREAS, NOW)
    assert set(out[0].score) == {"tier_distance", "urgency", "deadline_slack_hours",
                                 "expiry_days", "fairness"}
    assert out[0].score["deadline_slack_hours"] == 6.0


def test_fair_caps_are_none_when_supply_suffices():
    assert engine.fair_caps({"A": 10, "B": 10}, {"A": 10, "B": 10}, 20) is None


def test_fair_caps_share_by_weight_and_refill_what_small_askers_leave():
    caps = engine.fair_caps({"A": 100_000, "B": 50_000, "C": 10_000},
                            {"A": 100, "B": 50, "C": 10}, 90_000, grain=1000)
    # C asks 10, more than its share (5.6): all three are capped; the spare piece goes to
    # the largest remainder (C)
    assert caps == {"A": 56_000, "B": 28_000, "C": 6_000}
    assert sum(caps.values()) == 90_000


def test_fair_caps_give_small_askers_all_they_ask():
    caps = engine.fair_caps({"A": 100_000, "B": 5_000}, {"A": 1, "B": 1}, 60_000, grain=1000)
    assert caps == {"A": 55_000, "B": 5_000}


def test_beneficiaries_weigh_in():
    caps = engine.fair_caps({"A": 50_000, "B": 50_000}, {"A": 50, "B": 150}, 40_000, grain=1000)
    assert caps == {"A": 10_000, "B": 30_000}


def test_a_capped_need_takes_no_more_than_its_share():
    out = engine.allocate(need(100), [lot("d", "QY", 100)], AREAS, NOW, cap=units.to_milli(
        30, "piece"), share=units.to_milli(30, "piece"))
    assert taken(out) == [("d", 30)]
    assert out[0].score["fairness"] == {"scarce": True, "community_share": 30}


def n(need_id, qty, urgency="normal", community=C, tier="community", posted=0):
    return engine.Need(need_id, "masks", community, units.to_milli(qty, "piece"), "piece",
                       urgency, None, NOW + timedelta(minutes=posted), tier)


def by_need(allocations):
    out = {}
    for a in allocations:
        out.setdefault(a.need_id, []).append((a.lot_id, units.from_milli(a.quantity, "piece")))
    return out


def test_an_escalated_need_leaves_its_community_stock_to_a_need_that_has_no_other():
    # the critical need (escalated to the district) comes first and would take the
    # community's stock; the community's own need can reach nothing else
    needs = [n("crit", 10, "critical", tier="district"), n("local", 10, "normal")]
    lots = [lot("own", C, 10), lot("far", "QY-S02-C01", 10)]
    out = engine.plan(needs, lots, AREAS, NOW)
    assert by_need(out) == {"crit": [("far", 10)], "local": [("own", 10)]}
    moved = [a for a in out if a.need_id == "crit"][0]
    assert moved.score["moved_for"] == "coverage"
    assert "can reach no other" in moved.explanation
    assert "moved_for" not in [a for a in out if a.need_id == "local"][0].score


def test_an_earlier_need_is_never_given_less_for_a_later_one():
    # only one lot both can reach: urgency decides, nothing is moved
    needs = [n("crit", 10, "critical", tier="district"), n("local", 10, "normal")]
    out = engine.plan(needs, [lot("own", C, 10)], AREAS, NOW)
    assert by_need(out) == {"crit": [("own", 10)]}


def test_moves_chain_through_several_needs():
    # local (community C) reaches only C and its street/district warehouses, all held by
    # street-escalated needs; one of them moves to a neighbour, whose need moves further
    neighbour = "QY-S01-C02"
    needs = [n("a", 10, "critical", community=neighbour, tier="district"),
             n("b", 10, "high", community=neighbour, tier="street"),
             n("local", 10, "low")]
    lots = [lot("own", C, 10), lot("next", neighbour, 10), lot("far", "QY-S03-C01", 10)]
    out = engine.plan(needs, lots, AREAS, NOW)
    got = by_need(out)
    assert got["local"] == [("own", 10)]
    assert sum(q for _, q in got["a"]) == 10 and sum(q for _, q in got["b"]) == 10
    assert sum(q for v in got.values() for _, q in v) == 30


def test_a_plan_covers_what_the_best_allocation_covers_on_random_batches():
    import random

    import numpy as np
    from scipy.optimize import linprog

    rng = random.Random(7)
    communities = ["QY-S01-C01", "QY-S01-C02", "QY-S02-C01", "QY-S02-C02"]
    places = communities + ["QY-S01", "QY-S02", "QY"]
    for _ in range(150):
        needs = [n(f"n{i}", rng.randint(1, 6), rng.choice(list(engine.URGENCY_RANK)),
                   rng.choice(communities), rng.choice(list(engine.TIER_REACH)), posted=i)
                 for i in range(5)]
        lots = [lot(f"l{k}", rng.choice(places), rng.randint(1, 6)) for k in range(5)]
        out = engine.plan(needs, lots, AREAS, NOW)
        # the best coverage: a transport LP over the eligible (need, lot) pairs
        pairs = [(i, k) for i in range(5) for k in range(5)
                 if engine.tier_distance(needs[i], lots[k].location_id, AREAS) is not None]
        best = 0
        if pairs:
            a_ub = np.zeros((10, len(pairs)))
            for v, (i, k) in enumerate(pairs):
                a_ub[i, v] = a_ub[5 + k, v] = 1
            b_ub = [x.remaining for x in needs] + [x.available for x in lots]
            best = round(-linprog(-np.ones(len(pairs)), A_ub=a_ub, b_ub=b_ub).fun)
        assert sum(a.quantity for a in out) == best, (needs, lots, out)
        # within bounds, and no need gets less than it would with only the needs before it
        ordered = engine.order_needs(needs)
        for i, need in enumerate(ordered):
            mine = sum(a.quantity for a in out if a.need_id == need.need_id)
            assert mine <= need.remaining
            alone = engine.plan(ordered[: i + 1], lots, AREAS, NOW)
            assert mine >= sum(a.quantity for a in alone if a.need_id == need.need_id)
        for lot_ in lots:
            assert sum(a.quantity for a in out if a.lot_id == lot_.lot_id) <= lot_.available
