"""The matching engine: pure, no I/O. Needs and candidate lots in, allocations out.

Rules:

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
* **coverage** (:class:`Planner`): the open needs of a batch are planned together. A need
  still short after taking the nearest stock it can reach may move needs served before it to
  other stock *they* can reach, never giving them less, so that it gets stock only it can
  reach (an escalated need that took its own community's stock moves to the street's, and
  the community's need that can reach nothing else is served). A batch thus covers as much
  demand as any allocation could; the moved allocation says so in its explanation;
* **fairness** for scarce categories (:func:`fair_caps`): when the open demand of a batch of
  needs exceeds the supply they can reach, each community may take at most its share of
  that supply, proportional to the quantity it still asks weighted by the beneficiaries
  (weight = remaining quantity x beneficiaries, 1 when not given). A community asking less
  than its share gets what it asks, and the rest is shared again among the others ("water
  filling"). Discrete units (pieces, boxes...) are shared in whole units by largest
  remainder. Within its share a community's needs are served in the order above.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
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
    """UTC without a zone (times from events keep their publisher's offset; from the store
    they are UTC): comparable whatever offset a time was written with."""
    if dt is None:
        return _FAR_FUTURE
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt


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


def reach(need: Need, areas: AreaTree) -> list[str]:
    """Warehouses whose stock the need may draw on, given how far it has escalated: its
    community, street and district; its street's communities once escalated to the street;
    every warehouse once escalated to the district."""
    chain = areas.chain(need.community_id)
    far = TIER_REACH.get(need.tier, 0)
    if far >= 2:
        return list(areas.areas)
    if far >= 1 and len(chain) > 1:
        return chain + [c for c in areas.children.get(chain[1], []) if c not in chain]
    return chain


@dataclass
class Stock:
    """One warehouse's lots of a category, in use order (:func:`lot_order`), and the total
    they hold. Lots already expired sort first (earliest expiry first), so a planner skips
    them at the head; a store can keep the lots and the total as they are."""

    lots: Sequence[Lot]
    total: int


def stock_of(lots: Iterable[Lot], category: str, unit: str) -> dict[str, Stock]:
    """Group lots of ``category`` that measure what ``unit`` measures, by warehouse."""
    grouped: dict[str, list[Lot]] = {}
    for lot in lots:
        if (lot.category == category and lot.available > 0
                and units.compatible(lot.unit, unit)):
            grouped.setdefault(lot.location_id, []).append(lot)
    out = {}
    for location, members in grouped.items():
        members.sort(key=lambda x: lot_order(x.expires_at, x.received_at, x.lot_id))
        out[location] = Stock(members, sum(x.available for x in members))
    return out


def contended_caps(needs: Sequence[Need], beneficiaries: Mapping[str, int | None],
                   stock: Mapping[str, Stock], areas: AreaTree, now: datetime
                   ) -> dict[str, int] | None:
    """Per-community caps when a batch of needs (one category and unit) asks for more than
    the stock it can reach holds, or None when nothing is contended.

    Only contended stock is shared: a warehouse that one community alone can reach is that
    community's (holding it back would help nobody); the warehouses several communities can
    reach are shared so that each contender ends with its fair share (:func:`fair_caps`,
    weighted by quantity asked times beneficiaries) of all the stock the contenders can
    reach, or its own stock if that is more. Communities outside the contention are capped
    only by what they ask."""
    if not needs:
        return None
    demand: dict[str, int] = {}
    weight: dict[str, float] = {}
    kinds: dict[tuple[str, str], Need] = {}  # one need per (community, tier): same reach
    for need in needs:
        demand[need.community_id] = demand.get(need.community_id, 0) + need.remaining
        weight[need.community_id] = weight.get(need.community_id, 0.0) + (
            need.remaining * (beneficiaries.get(need.need_id) or 1))
        kinds.setdefault((need.community_id, need.tier), need)
    moment = _naive(now)
    own: dict[str, int] = {}
    shared = 0
    contenders: set[str] = set()
    for location, held_stock in stock.items():
        held = sum(lot.available for lot in held_stock.lots
                   if lot.expires_at is None or _naive(lot.expires_at) > moment)
        if held <= 0:
            continue
        communities = {c for (c, _), need in kinds.items()
                       if tier_distance(need, location, areas) is not None}
        if len(communities) == 1:
            (c,) = communities
            own[c] = own.get(c, 0) + held
        elif communities:
            shared += held
            contenders |= communities
    if not contenders:
        return None
    grain = units.MILLI if units.dimension(needs[0].unit) in DISCRETE else 1
    caps = fair_caps({c: demand[c] for c in contenders}, weight,
                     shared + sum(own.get(c, 0) for c in contenders), grain)
    if caps is None:
        return None
    out = dict(demand)
    for c in contenders:
        out[c] = max(own.get(c, 0), caps[c])
    return out


def serve_fairly(planner: Planner, needs: Sequence[Need],
                 caps: Mapping[str, int] | None) -> list[Allocation]:
    """The service's whole rule for a batch: each need, in service order, served by the
    planner within what its community may still take under ``caps``
    (:func:`contended_caps`)."""
    taken: dict[str, int] = {}
    for need in needs:
        serve_within(planner, need, caps, taken)
    return planner.allocations()


def serve_within(planner: Planner, need: Need, caps: Mapping[str, int] | None,
                 taken: dict[str, int]) -> int:
    """One decision of :func:`serve_fairly`: serve ``need`` within its community's cap, given
    what its community has ``taken`` in this batch (updated). Returns the milli served."""
    cap = share = None
    if caps is not None:
        share = caps.get(need.community_id, 0)
        cap = share - taken.get(need.community_id, 0)
    got = planner.serve(need, limit=cap, share=share)
    taken[need.community_id] = taken.get(need.community_id, 0) + got
    return got


# -- time: escalation, expiry, lapsed offers, weeks ----------------------------------------

NEXT_TIER = {"community": "street", "street": "district"}


@dataclass(frozen=True)
class Deadlines:
    """An open need's clock: when it escalates (from its current tier), when it expires,
    when the offer made for it lapses."""

    need_id: str
    tier: str
    escalate_at: datetime | None = None
    needed_by: datetime | None = None
    offer_expires_at: datetime | None = None


@dataclass(frozen=True)
class Due:
    expire: list[str]
    escalate: list[str]
    lapsed: list[str]


def due(open_needs: Iterable[Deadlines], now: datetime) -> Due:
    """What is due at ``now``: needs past ``needed_by`` expire (and nothing else happens to
    them); offers past their expiry lapse; needs open past ``escalate_at`` escalate one tier
    unless already at the district."""
    moment = _naive(now)
    out = Due([], [], [])
    for need in open_needs:
        if need.needed_by is not None and _naive(need.needed_by) <= moment:
            out.expire.append(need.need_id)
            continue
        if need.offer_expires_at is not None and _naive(need.offer_expires_at) <= moment:
            out.lapsed.append(need.need_id)
        if (need.tier in NEXT_TIER and need.escalate_at is not None
                and _naive(need.escalate_at) <= moment):
            out.escalate.append(need.need_id)
    return out


def week_of(now: datetime) -> str:
    """The ISO week a volunteer's hours count in (``2026-W07``)."""
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


def _take(lots: Sequence[Lot], cursor: list[int], quantity: int) -> Iterator[tuple[Lot, int]]:
    """Take ``quantity`` from ``lots`` in order from ``cursor`` ([lot index, milli already
    taken from it], moved along): yields (lot, milli taken from it)."""
    while quantity > 0:
        lot = lots[cursor[0]]
        left = lot.available - cursor[1]
        if left <= 0:
            cursor[0] += 1
            cursor[1] = 0
            continue
        step = min(left, quantity)
        cursor[1] += step
        quantity -= step
        yield lot, step


class Planner:
    """Allocates one batch of needs of one category, in service order (:func:`order_needs`),
    from warehouses' stock; nothing is claimed here, the caller claims what
    :meth:`allocations` returns.

    Each need first takes the nearest stock it can reach, lot by lot in use order
    (:meth:`serve`). A need that is still short looks for stock held by needs served before
    it that could be served elsewhere: an earlier need may be moved to other stock it can
    reach (never farther than its own reach, never by a smaller amount), so that the later
    need gets the stock only it can reach. Earlier needs therefore never receive less because
    of a later one, and the batch covers as much demand as any allocation could (a maximum
    flow: a need that finds no such chain leaves every warehouse it could reach through
    others full, and later needs never change that). Lots at each warehouse then go to the
    needs in service order, so the most urgent need gets the earliest-expiring lots."""

    def __init__(self, stock: Mapping[str, Stock], areas: AreaTree, now: datetime):
        self._stock = stock
        self._areas = areas
        self._now = _naive(now)
        self._spare: dict[str, int] = {}  # location -> usable stock not yet planned
        self._head: dict[str, list[int]] = {}  # location -> [lot index, milli used of it]
        self._start: dict[str, int] = {}  # location -> index of its first unexpired lot
        self._flows: dict[str, dict[str, int]] = {}  # need -> location -> milli
        self._holders: dict[str, dict[str, int]] = {}  # location -> need -> milli
        self._needs: dict[str, Need] = {}  # served needs, in service order
        self._shares: dict[str, int | None] = {}
        self._moved: set[tuple[str, str]] = set()  # (need, location) it was moved to
        self._reach: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._dead: set[str] = set()  # full, and no chain of moves leads out of them
        self._distances: dict[tuple[str, str, str], int] = {}

    # -- stock ---------------------------------------------------------------------------
    def _open(self, location: str) -> int:
        spare = self._spare.get(location)
        if spare is not None:
            return spare
        stock = self._stock.get(location)
        if stock is None:
            self._spare[location] = 0
            return 0
        i, expired = 0, 0
        lots = stock.lots
        while i < len(lots) and lots[i].expires_at is not None and (
                _naive(lots[i].expires_at) <= self._now):
            expired += lots[i].available
            i += 1
        self._start[location] = i
        self._head[location] = [i, 0]
        spare = self._spare[location] = stock.total - expired
        return spare

    def _head_lot(self, location: str) -> Lot:
        lots = self._stock[location].lots
        head = self._head[location]
        while lots[head[0]].available - head[1] <= 0:
            head[0] += 1
            head[1] = 0
        return lots[head[0]]

    def _use(self, location: str, quantity: int) -> None:
        """Plan ``quantity`` more of a warehouse's stock (its lots in use order)."""
        self._spare[location] -= quantity
        for _ in _take(self._stock[location].lots, self._head[location], quantity):
            pass

    def _eligible(self, need: Need) -> list[tuple[int, str]]:
        """(tier distance, warehouse) the need may use and that hold stock, nearest first."""
        key = (need.community_id, need.tier)
        found = self._reach.get(key)
        if found is None:
            found = []
            if need.community_id in self._areas:
                for location in reach(need, self._areas):
                    if location in self._stock:
                        distance = tier_distance(need, location, self._areas)
                        if distance is not None:
                            found.append((distance, location))
            found.sort(key=lambda item: item[0])
            self._reach[key] = found
        return found

    def _distance(self, need: Need, location: str) -> int:
        key = (need.community_id, need.tier, location)
        found = self._distances.get(key)
        if found is None:
            found = self._distances[key] = tier_distance(need, location, self._areas) or 0
        return found

    def _flow(self, need_id: str, location: str, quantity: int) -> None:
        flows = self._flows.setdefault(need_id, {})
        holders = self._holders.setdefault(location, {})
        left = flows.get(location, 0) + quantity
        if left:
            flows[location] = left
            holders[need_id] = left
        else:
            flows.pop(location, None)
            holders.pop(need_id, None)

    # -- deciding ------------------------------------------------------------------------
    def serve(self, need: Need, limit: int | None = None, share: int | None = None) -> int:
        """Plan the need (at most ``limit``, its community's fair share left, ``share`` in
        all); returns the milli units it gets."""
        self._needs[need.need_id] = need
        self._shares[need.need_id] = share
        wanted = need.remaining if limit is None else min(need.remaining, limit)
        if wanted <= 0:
            return 0
        got = self._nearest(need, wanted)
        if got < wanted:
            got += self._reroute(need, wanted - got)
        return got

    def _nearest(self, need: Need, wanted: int) -> int:
        """Nearest tier first; within a tier, lots in use order across its warehouses."""
        got = 0
        eligible = self._eligible(need)
        i = 0
        while i < len(eligible) and got < wanted:
            distance = eligible[i][0]
            level = []
            while i < len(eligible) and eligible[i][0] == distance:
                if self._open(eligible[i][1]) > 0:
                    level.append(eligible[i][1])
                i += 1
            if len(level) == 1:
                location = level[0]
                step = min(wanted - got, self._spare[location])
                self._use(location, step)
                self._flow(need.need_id, location, step)
                got += step
                continue
            heap = [(self._lot_key(loc), loc) for loc in level]
            heapq.heapify(heap)
            while heap and got < wanted:
                _, location = heapq.heappop(heap)
                lot = self._head_lot(location)
                step = min(wanted - got, lot.available - self._head[location][1])
                self._use(location, step)
                self._flow(need.need_id, location, step)
                got += step
                if self._spare[location] > 0:
                    heapq.heappush(heap, (self._lot_key(location), location))
        return got

    def _lot_key(self, location: str) -> tuple:
        lot = self._head_lot(location)
        return lot_order(lot.expires_at, lot.received_at, lot.lot_id)

    def _reroute(self, need: Need, wanted: int) -> int:
        got = 0
        while got < wanted:
            path = self._chain(need)
            if path is None:
                break
            # path: the need takes at path[0][0]; each later (location, mover) moves that
            # mover from the previous location to this one; the last location has spare
            step = min(wanted - got, self._spare[path[-1][0]])
            for (before, _), (_, mover) in pairwise(path):
                step = min(step, self._holders[before][mover])
            self._flow(need.need_id, path[0][0], step)
            for (before, _), (location, mover) in pairwise(path):
                self._flow(mover, before, -step)
                self._flow(mover, location, step)
                self._moved.add((mover, location))
            self._use(path[-1][0], step)
            got += step
        return got

    def _chain(self, need: Need) -> list[tuple[str, str | None]] | None:
        """A shortest chain of moves that frees stock for ``need`` (breadth first over
        warehouses; each kind of need, by community and tier, is expanded once)."""
        parent: dict[str, tuple[str | None, str | None]] = {}
        queue: deque[str] = deque()
        for _, location in self._eligible(need):
            if location not in self._dead and location not in parent:
                parent[location] = (None, None)
                queue.append(location)
        expanded: set[tuple[str, str]] = set()
        while queue:
            location = queue.popleft()
            # the needs farthest from home here first: moving them costs the least distance
            movers = sorted(self._holders.get(location, {}),
                            key=lambda m: -self._distance(self._needs[m], location))
            for mover_id in movers:
                if mover_id == need.need_id:
                    continue
                mover = self._needs[mover_id]
                kind = (mover.community_id, mover.tier)
                if kind in expanded:
                    continue
                expanded.add(kind)
                for _, target in self._eligible(mover):
                    if target in parent or target in self._dead:
                        continue
                    parent[target] = (location, mover_id)
                    if self._open(target) > 0:
                        path: list[tuple[str, str | None]] = []
                        at: str | None = target
                        while at is not None:
                            before, by = parent[at]
                            path.append((at, by))
                            at = before
                        return path[::-1]
                    queue.append(target)
        self._dead.update(parent)
        return None

    # -- the outcome -----------------------------------------------------------------------
    @property
    def moved(self) -> int:
        """How many needs were moved to other stock to free stock for a later need."""
        return len({need_id for need_id, _ in self._moved})

    def allocations(self) -> list[Allocation]:
        """The plan as allocations of lots: at each warehouse, lots in use order go to the
        needs in service order."""
        cursor = {location: [self._start[location], 0] for location in self._start}
        out: list[Allocation] = []
        for need_id, need in self._needs.items():
            flows = self._flows.get(need_id)
            if not flows:
                continue
            mine = []
            distances = dict((loc, d) for d, loc in self._eligible(need))
            for location, quantity in flows.items():
                distance = distances[location]
                moved = (need_id, location) in self._moved
                for lot, step in _take(self._stock[location].lots, cursor[location], quantity):
                    order = (distance, lot_order(lot.expires_at, lot.received_at, lot.lot_id))
                    mine.append((order, self._allocation(need, lot, step, distance, moved)))
            mine.sort(key=lambda item: item[0])
            out.extend(a for _, a in mine)
        return out

    def _allocation(self, need: Need, lot: Lot, quantity: int, distance: int,
                    moved: bool) -> Allocation:
        now = self._now
        share = self._shares.get(need.need_id)
        limited = share is not None  # a fair share applied (a scarce category)
        score: dict[str, Any] = {
            "tier_distance": distance,
            "urgency": need.urgency,
            "deadline_slack_hours": (
                round((_naive(need.needed_by) - now).total_seconds() / 3600, 1)
                if need.needed_by else None),
            "expiry_days": (
                round((_naive(lot.expires_at) - now).total_seconds() / 86400, 1)
                if lot.expires_at else None),
            "fairness": {"scarce": True, "community_share": units.from_milli(
                share or 0, need.unit)} if limited else None,
        }
        explanation = (
            f"{units.from_milli(quantity, need.unit):g} {need.unit} from lot {lot.lot_id} at "
            f"{lot.location_id} ({_PLACE[distance]}, tier distance {distance})"
        )
        if lot.expires_at:
            explanation += f", expires {lot.expires_at:%Y-%m-%d}"
        if limited:
            explanation += (f"; scarce: community share "
                            f"{units.from_milli(share or 0, need.unit):g} {need.unit}")
        if moved:
            score["moved_for"] = "coverage"
            explanation += "; nearer stock left to a need that can reach no other"
        return Allocation(need.need_id, lot.lot_id, lot.location_id, quantity, distance,
                          score, explanation)


def plan(needs: Iterable[Need], lots: Iterable[Lot], areas: AreaTree,
         now: datetime) -> list[Allocation]:
    """Allocate a batch of needs (any order; served in service order) from ``lots``."""
    ordered = order_needs(needs)
    out: list[Allocation] = []
    for category, unit in dict.fromkeys((n.category, units.dimension(n.unit))
                                        for n in ordered):
        group = [n for n in ordered
                 if n.category == category and units.dimension(n.unit) == unit]
        planner = Planner(stock_of(lots, category, group[0].unit), areas, now)
        for need in group:
            planner.serve(need)
        out.extend(planner.allocations())
    return out


def allocate(need: Need, lots: Iterable[Lot], areas: AreaTree, now: datetime,
             cap: int | None = None, share: int | None = None) -> list[Allocation]:
    """Allocate one need from ``lots``, nearest first (a batch of one). ``cap`` limits what
    it may take (its community's remaining fair share, ``share`` in all)."""
    planner = Planner(stock_of(lots, need.category, need.unit), areas, now)
    planner.serve(need, limit=cap, share=share if share is not None else cap)
    return planner.allocations()


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


def choose_volunteer(need: Need, quantity: float, volunteers: Iterable[Volunteer],  # noqa: PLR0913 - pure: every input explicit
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
