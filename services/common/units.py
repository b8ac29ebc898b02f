"""Units of measure and exact quantities.

Quantities are stored and compared as integers in thousandths of a dimension's base unit
("milli"): grams for mass, 1/1000 piece for counts. Integers make the conditional stock claim
(``available >= q``) exact, which floats would not.
"""

from __future__ import annotations

# unit -> (dimension, factor to the dimension's base unit)
_UNITS: dict[str, tuple[str, float]] = {
    "g": ("mass", 0.001),
    "kg": ("mass", 1.0),
    "jin": ("mass", 0.5),  # 斤
    "t": ("mass", 1000.0),
    "ml": ("volume", 0.001),
    "l": ("volume", 1.0),
    "piece": ("count", 1.0),
    "pair": ("pair", 1.0),
    "box": ("box", 1.0),  # boxes convert only by a lot's declared size (matching)
    "policy": ("policy", 1.0),
    "card": ("card", 1.0),
    "account": ("account", 1.0),  # online-learning accounts and the like
    "hour": ("time", 1.0),
    "visit": ("visit", 1.0),
    "session": ("session", 1.0),
    "yuan": ("money", 1.0),
}

KNOWN_UNITS: tuple[str, ...] = tuple(_UNITS)
MILLI = 1000


class UnitMismatch(ValueError):
    """Two units measure different things (kg and pieces)."""


def dimension(unit: str) -> str:
    return _UNITS[unit][0]


def compatible(a: str, b: str) -> bool:
    return dimension(a) == dimension(b)


def to_milli(quantity: float, unit: str) -> int:
    """Quantity in ``unit`` -> integer thousandths of the base unit."""
    return round(quantity * _UNITS[unit][1] * MILLI)


def from_milli(milli: int, unit: str) -> float:
    """Integer thousandths of the base unit -> quantity in ``unit`` (rounded to 1e-6)."""
    return round(milli / MILLI / _UNITS[unit][1], 6)


def convert(quantity: float, from_unit: str, to_unit: str) -> float:
    if not compatible(from_unit, to_unit):
        raise UnitMismatch(f"cannot convert {from_unit} to {to_unit}")
    return from_milli(to_milli(quantity, from_unit), to_unit)
