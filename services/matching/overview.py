"""What on-call staff and coordinators see at a glance: open needs by tier and urgency, the
oldest open need per tier, supply by category, assignments per hour. Read-only."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from services.common import units
from services.common.reference import TIER_ORDER, Reference
from services.matching.engine import URGENCY_RANK
from services.matching.store import MatchingStore


def needs_overview(store: MatchingStore, ref: Reference, now: datetime) -> dict[str, Any]:
    open_by: dict[str, Counter] = {tier: Counter() for tier in TIER_ORDER}
    oldest: dict[str, dict[str, Any] | None] = {tier: None for tier in TIER_ORDER}
    for doc in store.open_need_docs():
        tier = doc.get("tier", "community")
        open_by[tier][doc["urgency"]] += 1
        posted = doc["posted_at"]
        if posted.tzinfo is None:
            posted = posted.replace(tzinfo=now.tzinfo)
        current = oldest[tier]
        if current is None or posted < current["posted_at"]:
            oldest[tier] = {"need_id": doc["_id"], "posted_at": posted,
                            "age_seconds": round((now - posted).total_seconds(), 1),
                            "urgency": doc["urgency"], "category": doc["category"],
                            "community_id": doc["community_id"]}
    supply: Counter = Counter()
    for lot in store.supply_docs():
        category = ref.catalogue.get(lot["category"])
        unit = category.unit if category and units.compatible(category.unit, lot["unit"]) \
            else lot["unit"]
        supply[(lot["category"], unit)] += lot["available"]
    hours: Counter = Counter()
    for a in store.recent_assignments(now - timedelta(hours=24)):
        made = a["made_at"]
        hours[made.strftime("%Y-%m-%dT%H:00")] += 1
    return {
        "open_needs": {tier: {u: open_by[tier][u] for u in URGENCY_RANK} for tier in TIER_ORDER},
        "oldest_open": oldest,
        "supply": [{"category": c, "unit": u, "available": units.from_milli(m, u)}
                   for (c, u), m in sorted(supply.items())],
        "assignments_per_hour": [{"hour": h, "count": n} for h, n in sorted(hours.items())],
    }
