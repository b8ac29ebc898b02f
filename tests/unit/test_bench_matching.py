"""The matching benchmark's own logic, on tiny instances: the optimum is never beaten and
neither allocation breaks a lot's or a need's bounds. No timings are asserted."""

import importlib.util
import sys
from pathlib import Path

import pytest

from services.common import reference
from services.matching import engine

ROOT = Path(__file__).resolve().parents[2]
# bench/ is a script folder, not a package: load the file directly
_spec = importlib.util.spec_from_file_location("bench_matching", ROOT / "bench" / "matching.py")
bm = importlib.util.module_from_spec(_spec)
sys.modules["bench_matching"] = bm  # dataclasses resolve their module through sys.modules
_spec.loader.exec_module(bm)

REF = reference.load(ROOT / "deploy" / "reference")


@pytest.fixture(scope="module", params=[1, 2, 3])
def solved(request):
    instance = bm.generate(REF, 200, 50, seed=request.param)
    greedy = bm.run_greedy(instance)
    optimal = bm.run_optimal(instance, greedy.allocations)
    return instance, greedy, optimal


def totals(allocations):
    per_lot, per_need = {}, {}
    for i, k, q, _ in allocations:
        assert q > 0
        per_lot[k] = per_lot.get(k, 0) + q
        per_need[i] = per_need.get(i, 0) + q
    return per_lot, per_need


def assert_within_bounds(instance, allocations):
    per_lot, per_need = totals(allocations)
    for k, q in per_lot.items():
        assert q <= instance.lots[k].available, instance.lots[k].lot_id
    for i, q in per_need.items():
        assert q <= instance.needs[i].remaining, instance.needs[i].need_id
    for i, k, _, d in allocations:
        need, lot = instance.needs[i], instance.lots[k]
        assert lot.category == need.category
        assert instance.usable(lot)
        assert d is not None
        assert engine.tier_distance(need, lot.location_id, instance.areas) == d


def test_instance_is_shaped_like_the_district(solved):
    instance, _, _ = solved
    tiers = {instance.areas.tier(lot.location_id) for lot in instance.lots}
    assert tiers == {"community", "street", "district"}
    assert all(instance.areas.is_community(n.community_id) for n in instance.needs)
    assert {n.tier for n in instance.needs} <= set(engine.TIER_REACH)
    assert bm.figures(instance, []).demand > bm.figures(instance, []).supply > 0


def test_greedy_respects_lot_and_need_bounds(solved):
    instance, greedy, _ = solved
    assert greedy.allocations
    assert len(greedy.latencies_ns) == len(instance.needs)
    assert_within_bounds(instance, greedy.allocations)
    assert bm.violations(instance, greedy.allocations) == []


def test_optimum_respects_lot_and_need_bounds(solved):
    instance, _, optimal = solved
    assert optimal.allocations
    assert_within_bounds(instance, optimal.allocations)
    assert bm.violations(instance, optimal.allocations) == []


def test_optimal_coverage_is_never_beaten(solved):
    instance, greedy, optimal = solved
    for cat in instance.categories:
        g = bm.figures(instance, greedy.allocations, cat)
        o = bm.figures(instance, optimal.allocations, cat)
        assert o.allocated >= g.allocated, cat
        # and at the greedy's coverage no allocation is nearer than the optimum's
        assert optimal.distance_at[cat] <= g.distance, cat
    assert (bm.figures(instance, optimal.allocations).coverage
            >= bm.figures(instance, greedy.allocations).coverage)


def test_the_plan_covers_what_the_optimum_covers(solved):
    instance, greedy, optimal = solved
    for cat in instance.categories:
        assert (bm.figures(instance, greedy.allocations, cat).allocated
                == bm.figures(instance, optimal.allocations, cat).allocated), cat


def test_same_amounts_baseline_gives_every_need_what_the_plan_gave(solved):
    instance, greedy, _ = solved
    fixed = bm.same_amounts(instance, greedy.allocations)
    same = bm.run_optimal(fixed)
    _, per_need = totals(greedy.allocations)
    _, same_per_need = totals(same.allocations)
    assert same_per_need == per_need
    assert bm.figures(fixed, same.allocations).distance <= bm.figures(
        instance, greedy.allocations).distance


def test_violations_catch_an_overdrawn_lot(solved):
    instance, greedy, _ = solved
    i, k, _, d = greedy.allocations[0]
    broken = greedy.allocations + [(i, k, instance.lots[k].available, d)]
    assert any("over by" in v for v in bm.violations(instance, broken))
