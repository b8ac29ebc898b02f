"""Pages of a list: filters that the caller sends, one page at a time, after a cursor.

Pure. A service's store selects candidates by an indexed equality when the filters give one
(the local database server scans the whole collection for any sort or range, see
DESIGN.md), and :func:`page` filters the rest in memory, orders by id and cuts the page.
The cursor is the last id of a page: the next page starts after it, so pages never overlap
or skip, however the collection grows meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from services.common.reference import Reference

PAGE_DEFAULT = 50
PAGE_MAX = 200


def areas_within(ref: Reference, area_id: str) -> set[str]:
    """An area and every area below it (a street: itself and its communities)."""
    out, todo = set(), [area_id]
    while todo:
        node = todo.pop()
        if node in out:
            continue
        out.add(node)
        todo.extend(ref.areas.children.get(node, []))
    return out


def day_of(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10] if value else None


def in_period(value: Any, start: str | None, end: str | None) -> bool:
    """Whether a date or time falls within [start, end] (ISO days, both optional)."""
    if not start and not end:
        return True
    day = day_of(value)
    return day is not None and (not start or day >= start) and (not end or day <= end)


def page(docs: Iterable[dict[str, Any]], keep: Callable[[dict[str, Any]], bool],
         view: Callable[[dict[str, Any]], dict[str, Any]], after: str | None = None,
         limit: int = PAGE_DEFAULT) -> dict[str, Any]:
    """``{"items": [...], "next": <cursor or None>}``: the documents ``keep`` accepts, in
    id order, the first ``limit`` after ``after``."""
    limit = max(1, min(int(limit), PAGE_MAX))
    chosen = sorted((d for d in docs if (after is None or d["_id"] > after) and keep(d)),
                    key=lambda d: d["_id"])
    items = chosen[:limit]
    more = len(chosen) > limit
    return {"items": [view(d) for d in items],
            "next": items[-1]["_id"] if more and items else None}
