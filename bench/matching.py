"""Matching benchmark: per-decision latency of the greedy engine and its quality against the
optimum, on seeded instances shaped like the sample district.

Run from the repository root: ``python bench/matching.py [--sizes 1000,10000] [--needs N]
[--seed S]``. It prints figures and ratios and never fails on them.

Service ("g" in the figures): the matching service's own planner (``engine.Planner``), one
per category, serving needs in ``engine.order_needs`` order from warehouse stock kept like
the store's bins (lots in use order and their total): each need takes the nearest stock
first; a need still short moves earlier needs to other stock they can reach, when that
frees stock only it can reach. Every allocation is checked against the lot's stock as the
store's conditional claim would.

Optimum: per category, a transport LP on (need, warehouse) pairs solved with HiGHS: first
the maximum coverage, then the least total tier distance at that coverage (and, as a fairer
distance baseline, the least distance at the greedy's own coverage). Lots at one
warehouse are interchangeable for both objectives (same distance to every need, same
eligibility), so aggregating them per warehouse is exact, not a restriction; the flow is then
split back over the lots to check per-lot bounds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import reduce
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.optimize import linprog  # noqa: E402
from scipy.sparse import coo_matrix, vstack  # noqa: E402

from services.common import reference, units  # noqa: E402
from services.common.reference import AreaTree, Reference  # noqa: E402
from services.matching import engine  # noqa: E402

NOW = datetime(2026, 2, 10, 9, 0)
# category -> (typical lot size in the category's unit, spread of the log-normal)
CATEGORIES = {
    "masks": (500, 0.8),
    "thermometers": (10, 0.6),
    "disinfectant": (40, 0.7),
    "vegetables": (100, 0.7),
    "medicine": (20, 0.7),
}
LOT_TIERS = {"community": 0.75, "street": 0.20, "district": 0.05}
NEED_TIERS = {"community": 0.85, "street": 0.10, "district": 0.05}
URGENCIES = {"critical": 0.10, "high": 0.25, "normal": 0.50, "low": 0.15}
EXPIRED_SHARE = 0.03  # perishable lots already past expiry: never eligible
DEFAULT_SIZES = (1_000, 10_000, 100_000)
DEFAULT_NEEDS = 2_000
DEFAULT_SEED = 20260210

# (need index, lot index, quantity in milli units, tier distance)
Alloc = tuple[int, int, int, int]


@dataclass
class Instance:
    ref: Reference
    lots: list[engine.Lot]
    needs: list[engine.Need]
    categories: list[str]
    now: datetime = NOW

    @property
    def areas(self) -> AreaTree:
        return self.ref.areas

    def usable(self, lot: engine.Lot) -> bool:
        return lot.expires_at is None or lot.expires_at > self.now


@dataclass
class GreedyResult:
    allocations: list[Alloc]
    latencies_ns: list[int]
    splits: list[int]
    moved: int = 0


@dataclass
class OptimalResult:
    allocations: list[Alloc]
    lp_vars: int = 0
    lp_seconds: float = 0.0
    # category -> least total tier distance (milli units x tiers) at the greedy's coverage
    distance_at: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- instance ------------------------------------------------------------------------------
def _pick(rng: np.random.Generator, table: dict[str, float], n: int) -> list[str]:
    keys = list(table)
    p = np.array([table[k] for k in keys])
    return [keys[i] for i in rng.choice(len(keys), size=n, p=p / p.sum())]


def generate(ref: Reference, n_lots: int, n_needs: int, seed: int,
             categories: list[str] | None = None) -> Instance:
    """A seeded instance: lots over community (most), street and district warehouses; needs
    over communities whose total per category is 1-1.5x that category's usable supply."""
    rng = np.random.default_rng([seed, n_lots, n_needs])
    areas = ref.areas
    categories = list(categories or CATEGORIES)
    by_tier: dict[str, list[str]] = {"community": [], "street": [], "district": []}
    for area in areas.areas.values():
        by_tier[area.tier].append(area.id)
    # uneven weights, drawn separately for supply and demand, so some communities run short
    supply_w = {t: rng.gamma(2.0, size=len(ids)) for t, ids in by_tier.items()}
    demand_w = rng.gamma(2.0, size=len(by_tier["community"]))

    lots: list[engine.Lot] = []
    lot_cats = rng.choice(len(categories), size=n_lots)
    lot_tiers = _pick(rng, LOT_TIERS, n_lots)
    for k in range(n_lots):
        cat = categories[lot_cats[k]]
        info = ref.catalogue.get(cat)
        typical, spread = CATEGORIES.get(cat, (10, 0.7))
        qty = max(1, int(round(typical * rng.lognormal(0.0, spread))))
        ids = by_tier[lot_tiers[k]]
        w = supply_w[lot_tiers[k]]
        location = ids[rng.choice(len(ids), p=w / w.sum())]
        expires = None
        if info.perishable:
            if rng.random() < EXPIRED_SHARE:
                expires = NOW - timedelta(hours=float(rng.uniform(1, 48)))
            else:
                expires = NOW + timedelta(hours=float(rng.uniform(12, 240)))
        lots.append(engine.Lot(f"L{k:06d}", cat, location, units.to_milli(qty, info.unit),
                               info.unit, expires))

    supply = {c: 0 for c in categories}
    for lot in lots:
        if lot.expires_at is None or lot.expires_at > NOW:
            supply[lot.category] += lot.available

    needs: list[engine.Need] = []
    need_cats = rng.choice(len(categories), size=n_needs)
    need_tiers = _pick(rng, NEED_TIERS, n_needs)
    urgencies = _pick(rng, URGENCIES, n_needs)
    weights = rng.lognormal(0.0, 0.75, size=n_needs)
    ratios = {c: rng.uniform(1.0, 1.5) for c in categories}
    cat_weight = {c: float(weights[need_cats == i].sum()) for i, c in enumerate(categories)}
    communities = by_tier["community"]
    for i in range(n_needs):
        cat = categories[need_cats[i]]
        info = ref.catalogue.get(cat)
        base_supply = units.from_milli(supply[cat], info.unit)
        qty = max(1, int(round(base_supply * ratios[cat] * weights[i] / cat_weight[cat])))
        community = communities[rng.choice(len(communities), p=demand_w / demand_w.sum())]
        needed_by = (NOW + timedelta(hours=float(rng.uniform(2, 168)))
                     if rng.random() < 0.6 else None)
        posted_at = NOW - timedelta(hours=float(rng.uniform(0, 72)))
        needs.append(engine.Need(f"N{i:06d}", cat, community, units.to_milli(qty, info.unit),
                                 info.unit, urgencies[i], needed_by, posted_at, need_tiers[i]))
    return Instance(ref, lots, needs, categories)


# -- the service's plan -------------------------------------------------------------------
def build_stock(instance: Instance) -> dict[str, dict[str, engine.Stock]]:
    """category -> warehouse -> its lots in use order and their total: the warehouse bins
    the store keeps (a decision reads a bin's total and takes lots from its head)."""
    return {cat: engine.stock_of(instance.lots, cat, instance.ref.catalogue.get(cat).unit)
            for cat in instance.categories}


def run_greedy(instance: Instance, fair: bool = False) -> GreedyResult:
    """The service's plan: one ``engine.Planner`` per category, each need served in service
    order (nearest stock first, then moves that free stock only it can reach); with
    ``fair``, the service's whole rule: each community within its fair share of contended
    stock (``engine.contended_caps``) as one batch of each category is planned. A decision's
    latency is one ``serve_within`` call."""
    stock = build_stock(instance)
    planners = {cat: engine.Planner(stock.get(cat, {}), instance.areas, instance.now)
                for cat in instance.categories}
    ordered = engine.order_needs(instance.needs)
    # the fairness rule, as the service applies it to a batch of one category
    caps = {cat: engine.contended_caps([n for n in ordered if n.category == cat], {},
                                       stock.get(cat, {}), instance.areas, instance.now)
            if fair else None for cat in instance.categories}
    taken: dict[str, dict[str, int]] = {cat: {} for cat in instance.categories}
    position = {lot.lot_id: k for k, lot in enumerate(instance.lots)}
    need_pos = {need.need_id: i for i, need in enumerate(instance.needs)}
    result = GreedyResult([], [], [])
    clock = time.perf_counter_ns
    for need in ordered:
        start = clock()
        engine.serve_within(planners[need.category], need, caps[need.category],
                            taken[need.category])
        result.latencies_ns.append(clock() - start)
    available = [lot.available for lot in instance.lots]
    per_need: dict[str, int] = {}
    for planner in planners.values():
        for alloc in planner.allocations():
            k = position[alloc.lot_id]
            if available[k] < alloc.quantity:  # the store's conditional claim would refuse
                raise RuntimeError(f"claim beyond availability on {alloc.lot_id}")
            available[k] -= alloc.quantity
            per_need[alloc.need_id] = per_need.get(alloc.need_id, 0) + 1
            result.allocations.append((need_pos[alloc.need_id], k, alloc.quantity,
                                       alloc.tier_distance))
    result.splits.extend(per_need.get(n.need_id, 0) for n in instance.needs)
    result.moved = sum(planner.moved for planner in planners.values())
    return result


PROBES = 1000


def probe_latency(instance: Instance, seed: int) -> np.ndarray:
    """Per-decision cost with the decision held constant: needs of a typical size (about
    three typical lots) at random communities, each against the full stock of this instance
    (nothing claimed, so every probe sees the same stock). The
    batch run's needs grow with the supply (demand tracks supply), so its latencies mix the
    cost of a decision with the size of the need; this isolates the first."""
    rng = np.random.default_rng([seed, 7, len(instance.lots)])
    communities = [a.id for a in instance.areas.areas.values() if a.tier == "community"]
    tiers = _pick(rng, NEED_TIERS, PROBES)
    needs = []
    for i in range(PROBES):
        cat = instance.categories[rng.integers(len(instance.categories))]
        info = instance.ref.catalogue.get(cat)
        typical = CATEGORIES.get(cat, (10, 0.7))[0]
        needs.append(engine.Need(f"P{i:05d}", cat, communities[rng.integers(len(communities))],
                                 units.to_milli(3 * typical, info.unit), info.unit, "high",
                                 None, instance.now, tiers[i]))
    stock = build_stock(instance)
    clock = time.perf_counter_ns
    out = []
    for need in needs:
        # a fresh plan each time: every probe sees the whole stock
        planner = engine.Planner(stock.get(need.category, {}), instance.areas, instance.now)
        start = clock()
        planner.serve(need)
        out.append(clock() - start)
    return np.array(out) / 1000.0


def _solve(cost: np.ndarray, a_ub, b_ub: np.ndarray, a_eq=None, b_eq=None):
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None),
                  method="highs-ds")  # simplex: a vertex, hence integral on this network
    if res.status != 0:
        raise RuntimeError(f"LP failed: {res.message}")
    return res


def _open_in(instance: Instance, cat: str) -> tuple[list[int], dict[str, list[int]]]:
    """The category's needs still short and its usable lots by warehouse (indexes)."""
    unit = instance.ref.catalogue.get(cat).unit
    need_ids = [i for i, n in enumerate(instance.needs) if n.category == cat
                and n.remaining > 0 and units.compatible(n.unit, unit)]
    lots_at: dict[str, list[int]] = {}
    for k, lot in enumerate(instance.lots):
        if (lot.category == cat and lot.available > 0 and instance.usable(lot)
                and units.compatible(lot.unit, unit)):
            lots_at.setdefault(lot.location_id, []).append(k)
    return need_ids, lots_at


def run_optimal(instance: Instance, greedy: list[Alloc] | None = None) -> OptimalResult:
    """Per category: max coverage, then min total tier distance at that coverage. Given the
    greedy allocations, also the least distance at the greedy's coverage (a fair baseline
    when the greedy covers less: the optimum's extra units may come from farther away)."""
    areas = instance.areas
    locations = list(areas.areas)
    result = OptimalResult([])
    for cat in instance.categories:
        need_ids, lots_at = _open_in(instance, cat)
        if not need_ids or not lots_at:
            continue
        # LP unit: the largest that divides every quantity, so the LP stays small and integral
        quantities = [instance.needs[i].remaining for i in need_ids] + [
            instance.lots[k].available for ks in lots_at.values() for k in ks]
        scale = reduce(math.gcd, quantities)
        locs = [loc for loc in locations if loc in lots_at]
        cap = np.array([sum(instance.lots[k].available for k in lots_at[loc]) // scale
                        for loc in locs], dtype=float)
        dem = np.array([instance.needs[i].remaining // scale for i in need_ids], dtype=float)
        rows, cols, dist = [], [], []
        for r, i in enumerate(need_ids):
            for c, loc in enumerate(locs):
                d = engine.tier_distance(instance.needs[i], loc, areas)
                if d is not None:  # ineligible pairs are not edges
                    rows.append(r)
                    cols.append(c)
                    dist.append(d)
        n_var = len(dist)
        if n_var == 0:
            continue
        var = np.arange(n_var)
        ones = np.ones(n_var)
        a_need = coo_matrix((ones, (rows, var)), shape=(len(need_ids), n_var))
        a_loc = coo_matrix((ones, (cols, var)), shape=(len(locs), n_var))
        a_ub = vstack([a_need, a_loc]).tocsr()
        b_ub = np.concatenate([dem, cap])
        t0 = time.perf_counter()
        first = _solve(-ones, a_ub, b_ub)
        covered = round(-first.fun)
        total = coo_matrix(ones.reshape(1, -1)).tocsr()
        cost = np.array(dist, dtype=float)
        second = _solve(cost, a_ub, b_ub, a_eq=total, b_eq=np.array([covered]))
        if greedy is not None:
            got = sum(q for i, _, q, _ in greedy if instance.needs[i].category == cat)
            # the greedy's quantities are multiples of the LP unit, so this is feasible
            third = _solve(cost, a_ub, b_ub, a_eq=total, b_eq=np.array([got // scale]))
            result.distance_at[cat] = round(third.fun) * scale
        result.lp_seconds += time.perf_counter() - t0
        result.lp_vars += n_var
        flow = np.rint(second.x).astype(np.int64)
        if np.abs(second.x - flow).max() > 1e-6:
            result.notes.append(f"{cat}: LP solution not integral; rounded")
        # split each warehouse's flow back over its lots, in lot order
        remaining = {loc: [[k, instance.lots[k].available] for k in lots_at[loc]]
                     for loc in locs}
        for v in np.nonzero(flow)[0]:
            i, loc = need_ids[rows[v]], locs[cols[v]]
            left = int(flow[v]) * scale
            for entry in remaining[loc]:
                if left == 0:
                    break
                take = min(left, entry[1])
                if take:
                    entry[1] -= take
                    left -= take
                    result.allocations.append((i, entry[0], take, dist[v]))
            if left:
                raise RuntimeError(f"flow at {loc} exceeds its lots")
    return result


# -- figures ---------------------------------------------------------------------------------
@dataclass
class Figures:
    demand: int
    supply: int
    allocated: int
    distance: int  # sum over allocated milli units of tier distance

    @property
    def coverage(self) -> float:
        return self.allocated / self.demand if self.demand else 1.0

    @property
    def per_unit(self) -> float:
        return self.distance / self.allocated if self.allocated else 0.0


def figures(instance: Instance, allocations: list[Alloc],
            category: str | None = None) -> Figures:
    """Totals in milli base units (summed over categories when ``category`` is None)."""
    def wanted(cat: str) -> bool:
        return category is None or cat == category

    demand = sum(n.remaining for n in instance.needs if wanted(n.category))
    supply = sum(lot.available for lot in instance.lots
                 if wanted(lot.category) and instance.usable(lot))
    allocated = distance = 0
    for i, _, q, d in allocations:
        if wanted(instance.needs[i].category):
            allocated += q
            distance += q * d
    return Figures(demand, supply, allocated, distance)


def violations(instance: Instance, allocations: list[Alloc]) -> list[str]:
    """Every broken bound: over a lot, over a need, wrong category, ineligible pair."""
    per_lot: dict[int, int] = {}
    per_need: dict[int, int] = {}
    out = []
    for i, k, q, d in allocations:
        need, lot = instance.needs[i], instance.lots[k]
        if q <= 0:
            out.append(f"non-positive quantity {need.need_id}<-{lot.lot_id}")
        if lot.category != need.category or not instance.usable(lot):
            out.append(f"ineligible lot {lot.lot_id} for {need.need_id}")
        if engine.tier_distance(need, lot.location_id, instance.areas) != d:
            out.append(f"wrong distance {need.need_id}<-{lot.lot_id}")
        per_lot[k] = per_lot.get(k, 0) + q
        per_need[i] = per_need.get(i, 0) + q
    out += [f"lot {instance.lots[k].lot_id} over by {q - instance.lots[k].available}"
            for k, q in per_lot.items() if q > instance.lots[k].available]
    out += [f"need {instance.needs[i].need_id} over by {q - instance.needs[i].remaining}"
            for i, q in per_need.items() if q > instance.needs[i].remaining]
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else (1.0 if a == 0 else math.inf)


def same_amounts(instance: Instance, allocations: list[Alloc]) -> Instance:
    """The instance with each need asking exactly what ``allocations`` gave it: its optimum
    is the least distance at which the same needs get the same amounts, which separates
    how well the stock was chosen from which needs were served (urgency decides that)."""
    got: dict[int, int] = {}
    for i, _, q, _ in allocations:
        got[i] = got.get(i, 0) + q
    needs = [replace(n, remaining=got.get(i, 0)) for i, n in enumerate(instance.needs)]
    return replace(instance, needs=needs)


def run_size(ref: Reference, n_lots: int, n_needs: int, seed: int) -> dict:
    t0 = time.perf_counter()
    instance = generate(ref, n_lots, n_needs, seed)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    greedy = run_greedy(instance)
    t_greedy = time.perf_counter() - t0
    fair = run_greedy(instance, fair=True)
    optimal = run_optimal(instance, greedy.allocations)
    fixed = same_amounts(instance, greedy.allocations)
    same = run_optimal(fixed)
    lat_us = np.array(greedy.latencies_ns) / 1000.0
    probe_us = probe_latency(instance, seed)
    row = {
        "lots": n_lots, "needs": n_needs,
        "greedy": figures(instance, greedy.allocations),
        "fair": figures(instance, fair.allocations),
        "fair_p50": float(np.percentile(np.array(fair.latencies_ns) / 1000.0, 50)),
        "optimal": figures(instance, optimal.allocations),
        "same": figures(fixed, same.allocations),
        "per_category": {c: (figures(instance, greedy.allocations, c),
                             figures(instance, optimal.allocations, c),
                             figures(fixed, same.allocations, c))
                         for c in instance.categories},
        "p50": float(np.percentile(lat_us, 50)), "p99": float(np.percentile(lat_us, 99)),
        "probe_p50": float(np.percentile(probe_us, 50)),
        "probe_p99": float(np.percentile(probe_us, 99)),
        "moved": greedy.moved, "splits": float(np.mean(greedy.splits)),
        "violations": violations(instance, greedy.allocations)
        + violations(instance, optimal.allocations),
        "lp_vars": optimal.lp_vars, "notes": optimal.notes,
        "seconds": (t_gen, t_greedy, optimal.lp_seconds + same.lp_seconds),
    }
    return row


def report(rows: list[dict]) -> None:
    print("demand/supply in base units (pieces, kg, boxes) summed over categories; distance ="
          " tier distance x units;")
    print("p = the service's plan, o = optimum (most demand covered, then least distance);"
          " =amt = dist.p over the least distance giving every need what the plan gave it")
    print(f"{'lots':>7} {'needs':>5} {'demand':>9} {'supply':>9} {'cov.p':>6} {'cov.o':>6}"
          f" {'p/o':>6} {'dist.p':>8} {'dist.o':>8} {'p/o':>5} {'=amt':>5}"
          f" {'p50us':>7} {'p99us':>8} {'moved':>5} {'split':>5}")
    for r in rows:
        g, o, same = r["greedy"], r["optimal"], r["same"]
        print(f"{r['lots']:>7} {r['needs']:>5} {g.demand / 1000:>9.0f} {g.supply / 1000:>9.0f}"
              f" {g.coverage:>6.3f} {o.coverage:>6.3f} {_ratio(g.allocated, o.allocated):>6.3f}"
              f" {g.distance / 1000:>8.0f} {o.distance / 1000:>8.0f}"
              f" {_ratio(g.distance, o.distance):>5.3f} {_ratio(g.distance, same.distance):>5.3f}"
              f" {r['p50']:>7.0f} {r['p99']:>8.0f} {r['moved']:>5} {r['splits']:>5.1f}")
    print("(p50/p99: one need's decision in the batch; moved = needs moved to other stock they"
          " reach so that a later need could be served; split = mean allocations per need)")
    print("\nper category: coverage p/o, distance p/o, distance p/=amt")
    for r in rows:
        parts = [f"{cat} {_ratio(g.allocated, o.allocated):.3f}"
                 f" {_ratio(g.distance, o.distance):.3f} {_ratio(g.distance, same.distance):.3f}"
                 for cat, (g, o, same) in r["per_category"].items()]
        print(f"{r['lots']:>7}: " + "; ".join(parts))
    print()
    for r in rows:
        gen, greedy, lp = r["seconds"]
        print(f"{r['lots']:>7}: generate {gen:.1f}s, plan {greedy:.1f}s, LP {lp:.1f}s on"
              f" {r['lp_vars']} (need, warehouse) pairs; exact, nothing restricted"
              + (f"; {'; '.join(r['notes'])}" if r["notes"] else ""))
        if r["violations"]:
            print(f"         BOUND VIOLATIONS: {r['violations'][:5]}")

    cats = [v for r in rows for v in r["per_category"].values()]
    cov = min(_ratio(g.allocated, o.allocated) for g, o, _ in cats)
    dist = max(_ratio(r["greedy"].distance, r["optimal"].distance) for r in rows)
    worst = max(_ratio(g.distance, o.distance) for g, o, _ in cats)
    worst_same = max(_ratio(g.distance, same.distance) for g, _, same in cats)
    first, last = rows[0], rows[-1]
    cost = _ratio(last["probe_p50"], first["probe_p50"])
    for r in rows:
        f, o = r["fair"], r["optimal"]
        print(f"with the fairness rule, one batch per category, at {r['lots']:>7} lots: coverage"
              f" {f.coverage:.3f} (plan/optimum {_ratio(f.allocated, o.allocated):.3f}),"
              f" decision p50 {r['fair_p50']:.0f} us")
    for r in rows:
        print(f"fixed-size decisions ({PROBES}, ~3 typical lots each) at {r['lots']:>7} lots:"
              f" p50 {r['probe_p50']:.0f} us, p99 {r['probe_p99']:.0f} us")
    print(f"\ncoverage plan/optimum, worst category and size: {cov:.4f}")
    print(f"total tier distance plan/optimum, worst size: {dist:.4f} (worst category"
          f" {worst:.4f}; against the same amounts per need, worst category {worst_same:.4f})")
    print(f"per-decision cost, fixed-size decisions, p50({last['lots']})/p50({first['lots']}):"
          f" {cost:.2f}  (batch run: {_ratio(last['p50'], first['p50']):.2f}, its needs grow"
          f" with supply)")

    def mark(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    print(f"targets: coverage>=0.99 {mark(cov >= 0.99)}; total distance<=1.10"
          f" {mark(dist <= 1.10)}; cost ratio<=2.0 {mark(cost <= 2.0)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                        help="comma-separated numbers of open lots")
    parser.add_argument("--needs", type=int, default=DEFAULT_NEEDS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--reference", default=str(ROOT / "deploy" / "reference"))
    args = parser.parse_args(argv)
    ref = reference.load(args.reference)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = [run_size(ref, n, args.needs, args.seed) for n in sizes]
    report(rows)


if __name__ == "__main__":
    main()
