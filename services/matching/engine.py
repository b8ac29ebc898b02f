"""The matching engine: pure, no I/O. Needs and candidate lots in, allocations out.

Rules (the event spine's first chain; fuller rules arrive with escalation and fairness):

* the category must match and the units must measure the same thing; quantities are exact
  integers in thousandths of the base unit (see ``services.common.units``);
* nearest tier first: the need's own community warehouse (distance 0), its street's warehouse
  (1), the district warehouse (2). Other communities' warehouses become eligible only once the
  need has escalated (to its street: the same street's communities, distance 1; to the
  district: all, distance 2);
* within a distance, perishable lots earliest-expiry first, expired lots never; then first
  received, first used; then lot id (deterministic). This order does not depend on what is
  left in a lot, so a warehouse can keep its lots in it (see ``lot_order``);
* partial fulfilment across lots; what remains stays open;
* needs are served by urgency, then earliest ``needed_by``, then oldest;
* **fairness** for scarce categories (:func:`fair_caps`): when the open demand of a batch of
  needs exceeds the supply they can reach, each community may take at most its share of
  that supply, proportional to the quantity it still asks weighted by the beneficiaries
  (weight = remaining quantity x beneficiaries, 1 when not given). A community asking less
  than its share gets what it asks, and the rest is shared again among the others ("water
  filling"). Discrete units (pieces, boxes...) are shared in whole units by largest
  remainder. Within its share a community's needs are served in the order above.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common import units
from services.common.reference import AreaTree

URGENCY_RANK = {"critical": 0, "high": 1, "normal": 2, "low": 3}
TIER_REACH = {"community": 0, "street": 1, "district": 2}
_FAR_FUTURE = datetime.max.replace(tzinfo=None)
_PLACE = {0: "same community", 1: "same street", 2: "district"}


@dataclass(frozen=True)
class Lot:
    lot_id: str
    category: str
    location_id: str
    available: int  # milli base units
    unit: str
    expires_at: datetime | None = None
    received_at: datetime | None = None


def lot_order(expires_at: datetime | None, received_at: datetime | None, lot_id: str) -> tuple:
    """How lots at the same tier distance are ranked: earliest expiry, first received, id."""
    return (_naive(expires_at), _naive(received_at) if received_at else _FAR_FUTURE, lot_id)


@dataclass(frozen=True)
class Need:
    need_id: str
    category: str
    community_id: str
    remaining: int  # milli base units
    unit: str
    urgency: str = "normal"
    needed_by: datetime | None = None
    posted_at: datetime | None = None
    tier: str = "community"  # how far it has escalated


@dataclass(frozen=True)
class Allocation:
    need_id: str
    lot_id: str
    location_id: str
    quantity: int  # milli base units
    tier_distance: int
    score: dict[str, Any] = field(default_factory=dict)
    explanation: str = ""


def _naive(dt: datetime | None) -> datetime:
    if dt is None:
        return _FAR_FUTURE
    return dt.replace(tzinfo=None) if dt.tzinfo else dt


def tier_distance(need: Need, location_id: str, areas: AreaTree) -> int | None:
    """Distance in tiers from the need's community to a warehouse, or None if not eligible."""
    if location_id not in areas or need.community_id not in areas:
        return None
    chain = areas.chain(need.community_id)  # [community, street, district]
    if location_id in chain:
        return chain.index(location_id)
    reach = TIER_REACH.get(need.tier, 0)
    loc_chain = areas.chain(location_id)
    same_street = len(chain) > 1 and chain[1] in loc_chain
    if same_street and reach >= 1:
        return 1
    if reach >= 2:
        return 2
    return None


def need_order_key(need: Need) -> tuple:
    """Urgent first, then earliest deadline, then oldest, then id."""
    return (URGENCY_RANK.get(need.urgency, 9), _naive(need.needed_by), _naive(need.posted_at),
            need.need_id)


def order_needs(needs: Iterable[Need]) -> list[Need]:
    return sorted(needs, key=need_order_key)


DISCRETE = {"count", "pair", "box", "policy", "card", "visit", "session"}


def fair_caps(demand: dict[str, int], weight: dict[str, float], supply: int,
              grain: int = 1) -> dict[str, int] | None:
    """Each community's cap on a scarce supply (milli units), or None if supply suffices.

    ``demand`` and ``weight`` are per community; ``grain`` is the indivisible amount (1000
    milli = one piece for discrete units)."""
    total = sum(demand.values())
    if total <= supply or len(demand) < 2:
        return None
    caps: dict[str, int] = {}
    active = {c for c, d in demand.items() if d > 0}
    left = supply
    while active:
        wsum = sum(max(weight.get(c, 0.0), 1e-9) for c in active)
        share = {c: left * max(weight.get(c, 0.0), 1e-9) / wsum for c in active}
        satisfied = {c for c in active if demand[c] <= share[c]}
        if not satisfied:
            break
        for c in satisfied:
            caps[c] = demand[c]
            left -= demand[c]
        active -= satisfied
    if active:
        # largest remainder, in whole grains
        units_left = left // grain
        wsum = sum(max(weight.get(c, 0.0), 1e-9) for c in active)
        exact = {c: units_left * max(weight.get(c, 0.0), 1e-9) / wsum for c in active}
        whole = {c: int(exact[c]) for c in active}
        spare = units_left - sum(whole.values())
        for c in sorted(active, key=lambda c: (whole[c] - exact[c], c))[:spare]:
            whole[c] += 1
        for c in active:
            caps[c] = whole[c] * grain
    return caps


def allocate(need: Need, lots: Iterable[Lot], areas: AreaTree, now: datetime,
             cap: int | None = None, share: int | None = None) -> list[Allocation]:
    """Allocate ``need.remaining`` from ``lots``, nearest first. Does not change the lots;
    the caller claims each allocation atomically and updates its own view. ``cap`` limits
    what this need may take (its community's remaining fair share, ``share`` in all)."""
    wanted = need.remaining if cap is None else min(need.remaining, cap)
    if wanted <= 0:
        return []
    now_naive = _naive(now)
    ranked: list[tuple[tuple, Lot, int]] = []
    distances: dict[str, int | None] = {}  # lots share few locations: walk the tree once each
    for lot in lots:
        if lot.category != need.category or lot.available <= 0:
            continue
        if not units.compatible(lot.unit, need.unit):
            continue
        if lot.expires_at is not None and _naive(lot.expires_at) <= now_naive:
            continue
        if lot.location_id not in distances:
            distances[lot.location_id] = tier_distance(need, lot.location_id, areas)
        distance = distances[lot.location_id]
        if distance is None:
            continue
        key = (distance, *lot_order(lot.expires_at, lot.received_at, lot.lot_id))
        ranked.append((key, lot, distance))
    ranked.sort(key=lambda item: item[0])

    out: list[Allocation] = []
    remaining = wanted
    for _, lot, distance in ranked:
        if remaining <= 0:
            break
        quantity = min(remaining, lot.available)
        remaining -= quantity
        score = {
            "tier_distance": distance,
            "urgency": need.urgency,
            "deadline_slack_hours": (
                round((_naive(need.needed_by) - now_naive).total_seconds() / 3600, 1)
                if need.needed_by else None),
            "expiry_days": (
                round((_naive(lot.expires_at) - now_naive).total_seconds() / 86400, 1)
                if lot.expires_at else None),
            "fairness": None if cap is None else {
                "scarce": True,
                "community_share": units.from_milli(share if share is not None else cap,
                                                    need.unit)},
        }
        explanation = (
            f"{units.from_milli(quantity, need.unit):g} {need.unit} from lot {lot.lot_id} at "
            f"{lot.location_id} ({_PLACE[distance]}, tier distance {distance})"
        )
        if lot.expires_at:
            explanation += f", expires {lot.expires_at:%Y-%m-%d}"
        if cap is not None:
            explanation += (f"; scarce: community share "
                            f"{units.from_milli(share if share is not None else cap, need.unit):g}"
                            f" {need.unit}")
        out.append(Allocation(need.need_id, lot.lot_id, lot.location_id, quantity, distance,
                              score, explanation))
    return out


@dataclass(frozen=True)
class Volunteer:
    volunteer_id: str
    home_community_id: str
    skills: frozenset[str]
    weekly_hours_cap: float | None = None
    hours_this_week: float = 0.0
    checked_at: datetime | None = None
    check_passing: bool = False


@dataclass(frozen=True)
class Offer:
    need_id: str
    volunteer_id: str
    hours: float
    tier_distance: int
    score: dict[str, Any] = field(default_factory=dict)
    explanation: str = ""


def service_hours(quantity: float, unit: str) -> float:
    """Hours a service need takes from a volunteer's weekly cap (a visit or session: 1 h)."""
    return quantity if unit == "hour" else float(quantity)


def choose_volunteer(need: Need, quantity: float, volunteers: Iterable[Volunteer],
                     areas: AreaTree, now: datetime, exclude: frozenset[str] = frozenset(),
                     check_valid_hours: float = 24.0) -> Offer | None:
    """The volunteer to offer a service need to, or None.

    Eligible: has the skill (the need's category), a passing health check (no fever, not in
    quarantine) within ``check_valid_hours``, room under the weekly hours cap, lives within the
    need's reach (own community; the street or the district once escalated), and was not
    offered this need before. Nearest first, then the least loaded this week (spreading the
    work), then id."""
    hours = service_hours(quantity, need.unit)
    now_naive = _naive(now)
    best: tuple[tuple, Volunteer, int] | None = None
    for v in volunteers:
        if v.volunteer_id in exclude or need.category not in v.skills:
            continue
        if not v.check_passing or v.checked_at is None:
            continue
        age_hours = (now_naive - _naive(v.checked_at)).total_seconds() / 3600
        if age_hours > check_valid_hours or age_hours < -1:
            continue
        if v.weekly_hours_cap is not None and v.hours_this_week + hours > v.weekly_hours_cap:
            continue
        distance = tier_distance(need, v.home_community_id, areas)
        if distance is None:
            continue
        key = (distance, v.hours_this_week, v.volunteer_id)
        if best is None or key < best[0]:
            best = (key, v, distance)
    if best is None:
        return None
    _, v, distance = best
    score = {"tier_distance": distance, "urgency": need.urgency,
             "hours_this_week": v.hours_this_week, "weekly_hours_cap": v.weekly_hours_cap,
             "health_check_age_hours": round(
                 (now_naive - _naive(v.checked_at)).total_seconds() / 3600, 1)}
    explanation = (f"offered to volunteer {v.volunteer_id} ({_PLACE[distance]}, "
                   f"{v.hours_this_week:g} h this week, health check passed)")
    return Offer(need.need_id, v.volunteer_id, hours, distance, score, explanation)
