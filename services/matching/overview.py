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
    """Read from small documents only (the open-needs index, the warehouses' bins, each
    category's counters), so it answers as fast with 100,000 needs stored as with 100."""
    open_by: dict[str, Counter] = {tier: Counter() for tier in TIER_ORDER}
    oldest: dict[str, dict[str, Any] | None] = {tier: None for tier in TIER_ORDER}
    for doc in store.open_index():
        if "posted_at" not in doc:  # listed before the index carried these fields
            need = store.get_need(doc["_id"]) or {}
            doc = {**need, **doc, "posted_at": need.get("posted_at", now)}
        tier = doc.get("tier", "community")
        open_by[tier][doc.get("urgency", "normal")] += 1
        posted = doc["posted_at"]
        if posted.tzinfo is None:
            posted = posted.replace(tzinfo=now.tzinfo)
        current = oldest[tier]
        if current is None or posted < current["posted_at"]:
            oldest[tier] = {"need_id": doc["_id"], "posted_at": posted,
                            "age_seconds": round((now - posted).total_seconds(), 1),
                            "urgency": doc.get("urgency"), "category": doc.get("category"),
                            "community_id": doc.get("community_id")}
    supply: Counter = Counter()
    for bin_doc in store.all_bins():
        for lot in bin_doc.get("lots", []):
            category = ref.catalogue.get(lot["category"])
            unit = category.unit if category and units.compatible(category.unit, lot["unit"]) \
                else lot["unit"]
            supply[(lot["category"], unit)] += lot["available"]
    hours: Counter = Counter()
    since = (now - timedelta(hours=24)).strftime("%Y-%m-%dT%H:00")
    for clock in store.assignment_counts():
        for hour, count in (clock.get("made") or {}).items():
            if hour >= since:
                hours[hour] += count
    return {
        "open_needs": {tier: {u: open_by[tier][u] for u in URGENCY_RANK} for tier in TIER_ORDER},
        "oldest_open": oldest,
        "supply": [{"category": c, "unit": u, "available": units.from_milli(m, u)}
                   for (c, u), m in sorted(supply.items())],
        "assignments_per_hour": [{"hour": h, "count": n} for h, n in sorted(hours.items())],
    }
