"""Pledges: goods or cash promised by a donor, received later, possibly in parts. Pure.

A pledge is *open* until what was received covers what was promised (in the pledge's unit;
a part may be counted in another unit of the same dimension, e.g. jin for a pledge in kg).
More than promised is accepted: goods that arrive are goods in the warehouse.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from services.common import units


def status_of(pledge: dict[str, Any]) -> str:
    received = pledge.get("received_milli", 0)
    if received <= 0:
        return "open"
    return "received" if received >= pledge["quantity_milli"] else "partial"


def part_value(pledge: dict[str, Any], quantity: float, unit: str) -> float | None:
    """A part's value when the caller gives none: cash is its amount; goods carry their
    share of the promised value (None when the pledge promised no value)."""
    if units.dimension(unit) == "money":
        return units.convert(quantity, unit, "yuan")
    if pledge.get("value_yuan") is None:
        return None
    milli = units.to_milli(units.convert(quantity, unit, pledge["unit"]), pledge["unit"])
    return round(pledge["value_yuan"] * milli / pledge["quantity_milli"], 2)


def view(pledge: dict[str, Any], today: date) -> dict[str, Any]:
    """A pledge as coordinators see it: never the donor's contact."""
    unit = pledge["unit"]
    received = pledge.get("received_milli", 0)
    state = status_of(pledge)
    expected = pledge["expected_at"]
    return {
        "pledge_id": pledge["_id"],
        "donor": {k: v for k, v in pledge["donor"].items() if k != "contact"},
        "category": pledge["category"], "unit": unit,
        "quantity": units.from_milli(pledge["quantity_milli"], unit),
        "received": units.from_milli(received, unit),
        "remaining": units.from_milli(max(pledge["quantity_milli"] - received, 0), unit),
        "value_yuan": pledge.get("value_yuan"),
        "received_yuan": round(pledge.get("received_fen", 0) / 100, 2),
        "expected_at": expected, "location_id": pledge.get("location_id"),
        "programme": pledge.get("programme"), "status": state,
        "overdue": state != "received" and date.fromisoformat(expected) < today,
        "parts": [{"donation_id": p["donation_id"],
                   "quantity": units.from_milli(p["milli"], unit),
                   "value_yuan": round(p["fen"] / 100, 2)} for p in pledge.get("parts", [])],
        "made_at": pledge.get("made_at"),
    }
