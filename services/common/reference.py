"""Reference data: the tier tree (district -> streets -> communities) and the category catalogue.

Pure: loaded from JSON files that operators may replace (``reference_dir`` in config).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common import units

TIER_ORDER = ("community", "street", "district")


class ReferenceError(ValueError):
    pass


@dataclass(frozen=True)
class Area:
    id: str
    tier: str
    parent: str | None
    name: str
    name_en: str


class AreaTree:
    """The three tiers. ``chain(c)`` is a community's path up: [community, street, district]."""

    def __init__(self, areas: list[dict[str, Any]]):
        self.areas = {a["id"]: Area(a["id"], a["tier"], a.get("parent"), a.get("name", a["id"]),
                                    a.get("name_en", a.get("name", a["id"])))
                      for a in areas}
        for area in self.areas.values():
            if area.tier not in TIER_ORDER:
                raise ReferenceError(f"area {area.id}: unknown tier {area.tier!r}")
            if area.parent is not None and area.parent not in self.areas:
                raise ReferenceError(f"area {area.id}: unknown parent {area.parent!r}")
        self.children: dict[str, list[str]] = {}
        for area in self.areas.values():
            if area.parent:
                self.children.setdefault(area.parent, []).append(area.id)

    def __contains__(self, area_id: str) -> bool:
        return area_id in self.areas

    def tier(self, area_id: str) -> str:
        return self.areas[area_id].tier

    def chain(self, area_id: str) -> list[str]:
        out = []
        node: str | None = area_id
        while node is not None:
            out.append(node)
            node = self.areas[node].parent
        return out

    def street_of(self, community_id: str) -> str | None:
        chain = self.chain(community_id)
        return chain[1] if len(chain) > 1 else None

    def is_community(self, area_id: str) -> bool:
        return area_id in self.areas and self.areas[area_id].tier == "community"

    def tree(self) -> list[dict[str, Any]]:
        """Nested representation for the API: districts with streets with communities."""

        def node(area_id: str) -> dict[str, Any]:
            a = self.areas[area_id]
            out = {"id": a.id, "tier": a.tier, "name": a.name, "name_en": a.name_en}
            kids = sorted(self.children.get(area_id, []))
            if kids:
                out["children"] = [node(k) for k in kids]
            return out

        return [node(a.id) for a in self.areas.values() if a.parent is None]


@dataclass(frozen=True)
class Category:
    id: str
    kind: str
    unit: str
    name: str
    name_en: str
    perishable: bool = False
    # the measure word the bulletin counts this category in when it is counted in its own
    # unit ("测温仪 102 台", "口罩 70,260 支"); None: the unit's own word
    measure: str | None = None
    measure_en: str | None = None


class Catalogue:
    def __init__(self, categories: list[dict[str, Any]]):
        self.categories = {}
        for c in categories:
            if c["unit"] not in units.KNOWN_UNITS:
                raise ReferenceError(f"category {c['id']}: unknown unit {c['unit']!r}")
            self.categories[c["id"]] = Category(
                c["id"], c["kind"], c["unit"], c.get("name", c["id"]), c.get("name_en", c["id"]),
                bool(c.get("perishable")), c.get("measure"), c.get("measure_en"))

    def __contains__(self, category_id: str) -> bool:
        return category_id in self.categories

    def get(self, category_id: str) -> Category | None:
        return self.categories.get(category_id)

    def as_list(self) -> list[dict[str, Any]]:
        return [c.__dict__ for c in self.categories.values()]


@dataclass(frozen=True)
class Reference:
    areas: AreaTree
    catalogue: Catalogue
    raw: dict[str, Any]
    checksum: str


def load(directory: str | Path) -> Reference:
    """Read ``areas.json`` and ``categories.json`` from ``directory`` and check them."""
    directory = Path(directory)
    raw = {
        "areas": json.loads((directory / "areas.json").read_text(encoding="utf-8"))["areas"],
        "categories": json.loads(
            (directory / "categories.json").read_text(encoding="utf-8"))["categories"],
    }
    return from_raw(raw)


def from_raw(raw: dict[str, Any]) -> Reference:
    checksum = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    return Reference(AreaTree(raw["areas"]), Catalogue(raw["categories"]), raw, checksum)
