"""Pure accounting: ledger entries from events, reports, reconciliation and the bulletin.

No I/O here, but for reading the bulletin's templates (``templates/<language>/bulletin.j2``:
the wording is theirs; the figures and how a number is written are this module's).
Quantities are integers in thousandths of a dimension's base unit (``milli``, see
``services.common.units``) and money is integer fen, so sums are exact and a figure in the
bulletin is exactly the sum of what was sent in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.common import sheets, units
from services.common.money import to_fen, to_yuan, value_of
from services.common.reference import Reference

GOODS_KINDS = ("goods_in", "goods_allocated", "goods_written_off")
COLUMNS = {"goods_in": "received", "goods_allocated": "allocated",
           "goods_written_off": "written_off"}
# movements between warehouses: they net to zero per category, so the bulletin leaves them
# out; per warehouse (reports by place, reconciliation) they count
TRANSFER_KINDS = ("goods_transferred_in", "goods_transferred_out")
TRANSFER_COLUMNS = {"goods_transferred_in": "transferred_in",
                    "goods_transferred_out": "transferred_out"}
GROUPINGS = ("category", "donor", "street", "community", "programme", "date")

UNIT_LABELS = {
    "zh-CN": {"piece": "件", "pair": "双", "box": "箱", "jin": "斤", "kg": "公斤", "t": "吨",
              "g": "克", "l": "升", "ml": "毫升", "policy": "份", "card": "张", "hour": "小时",
              "visit": "次", "session": "次", "yuan": "元"},
    "en": {"piece": "pieces", "pair": "pairs", "box": "boxes", "jin": "jin", "kg": "kg",
           "t": "t", "g": "g", "l": "l", "ml": "ml", "policy": "policies", "card": "cards",
           "hour": "hours", "visit": "visits", "session": "sessions", "yuan": "yuan"},
}


def fen(yuan: float) -> int:
    return to_fen(yuan)


def yuan(fen_: int) -> float:
    return to_yuan(fen_)


def _day(at: Any) -> str:
    if isinstance(at, datetime):
        return at.date().isoformat()
    if isinstance(at, date):
        return at.isoformat()
    return str(at)[:10]


def _place(ref: Reference, area_id: str | None) -> dict[str, str | None]:
    """The street and community an area belongs to (None above that tier)."""
    if not area_id or area_id not in ref.areas:
        return {"street_id": None, "community_id": None}
    chain = ref.areas.chain(area_id)
    tiers = {ref.areas.tier(a): a for a in chain}
    return {"street_id": tiers.get("street"), "community_id": tiers.get("community")}


# -- entries from events (one per cause; the id makes a replay add nothing) -----------------
def goods_in_entry(ref: Reference, data: dict[str, Any], at: Any, event_id: str) -> dict:
    lot_id = data.get("lot_id") or data["donation_id"]
    return {"_id": f"in:{lot_id}", "kind": "goods_in", "lot_id": lot_id,
            "category": data["category"], "quantity": data["quantity"], "unit": data["unit"],
            "milli": units.to_milli(data["quantity"], data["unit"]),
            "value_fen": fen(data.get("value_yuan") or 0.0),
            "value_yuan": data.get("value_yuan") or 0.0,
            # no value stated: counted at 0 and named as such in every total
            "value_known": data.get("value_known") is not False
            and data.get("value_yuan") is not None,
            "value_method": data.get("value_method"),
            "acquisition": data.get("acquisition") or "donated",
            "face_value_yuan": data.get("face_value_yuan"),
            "location_id": data["location_id"], **_place(ref, data["location_id"]),
            "donor": data["donor"]["name"], "donor_kind": data["donor"]["kind"],
            "programme": data.get("programme"), "pledge_id": data.get("pledge_id"),
            "day": _day(at), "at": at, "event_id": event_id}


def transferred_in_entry(ref: Reference, data: dict[str, Any], at: Any, event_id: str) -> dict:
    """The lot a transfer made at its destination (a ``donation_received`` with
    ``transfer_of``): a movement, never goods in."""
    entry = goods_in_entry(ref, data, at, event_id)
    return {**entry, "_id": f"transfer_in:{entry['lot_id']}", "kind": "goods_transferred_in",
            "transfer_of": data["transfer_of"]}


def transferred_out_entry(ref: Reference, data: dict[str, Any], at: Any, event_id: str) -> dict:
    """What left the source lot (``stock_changed``, reason transferred)."""
    quantity = -data["delta"]
    return {"_id": f"transfer_out:{data.get('transfer_id') or event_id}",
            "kind": "goods_transferred_out", "lot_id": data["lot_id"],
            "category": data["category"], "quantity": quantity, "unit": data["unit"],
            "milli": units.to_milli(quantity, data["unit"]),
            "value_fen": fen(data.get("value_yuan") or 0.0),
            "value_yuan": data.get("value_yuan") or 0.0,
            "to_location_id": data.get("to_location_id"),
            "location_id": data["location_id"], **_place(ref, data["location_id"]),
            "programme": data.get("programme"), "day": _day(at), "at": at,
            "event_id": event_id}


def pledge_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    value = data.get("value_yuan")
    if units.dimension(data["unit"]) == "money":
        value = units.convert(data["quantity"], data["unit"], "yuan")  # cash: its amount
    return {"_id": f"pledge:{data['pledge_id']}", "kind": "pledge",
            "pledge_id": data["pledge_id"], "category": data["category"],
            "quantity": data["quantity"], "unit": data["unit"],
            "milli": units.to_milli(data["quantity"], data["unit"]),
            "value_fen": fen(value) if value is not None else 0,
            "value_yuan": value, "donor": data["donor"]["name"],
            "expected_at": _day(data["expected_at"]), "programme": data.get("programme"),
            "day": _day(at), "at": at, "event_id": event_id}


def status_report_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    return {"_id": f"status_report:{data['report_id']}", "kind": "status_report",
            "category": "status_report", "organisation_id": data["organisation_id"],
            "resumption": data["resumption"], "staff": dict(data["staff"]),
            "reported_at": data["reported_at"], "milli": 0, "value_fen": 0,
            "day": _day(data["reported_at"]), "at": at, "event_id": event_id}


def allocated_entry(ref: Reference, data: dict[str, Any], at: Any, event_id: str) -> dict:
    # placed at the source warehouse (reconciliation) and at the receiving community (reports)
    place = _place(ref, data["community_id"])
    return {"_id": f"allocated:{data['assignment_id']}", "kind": "goods_allocated",
            "lot_id": data["lot_id"], "category": data["category"],
            "quantity": data["lot_quantity"], "unit": data["lot_unit"],
            "milli": units.to_milli(data["lot_quantity"], data["lot_unit"]),
            "value_fen": fen(data["value_yuan"]), "value_yuan": data["value_yuan"],
            "location_id": data["location_id"], **place, "need_id": data["need_id"],
            "programme": data.get("programme"), "day": _day(at), "at": at,
            "event_id": event_id}


def written_off_entry(ref: Reference, data: dict[str, Any], at: Any, event_id: str) -> dict:
    quantity = -data["delta"]
    return {"_id": f"written_off:{data.get('write_off_id') or event_id}",
            "kind": "goods_written_off", "lot_id": data["lot_id"], "category": data["category"],
            "quantity": quantity, "unit": data["unit"],
            "milli": units.to_milli(quantity, data["unit"]),
            "value_fen": fen(data.get("value_yuan") or 0.0),
            "value_yuan": data.get("value_yuan") or 0.0,
            "reason": data.get("write_off_reason"),
            "location_id": data["location_id"], **_place(ref, data["location_id"]),
            "programme": data.get("programme"), "day": _day(at), "at": at,
            "event_id": event_id}


def hours_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    return {"_id": f"hours:{data['hours_id']}", "kind": "hours",
            "category": data.get("activity") or "volunteering",
            "quantity": data["hours"], "unit": "hour",
            "milli": units.to_milli(data["hours"], "hour"), "value_fen": 0, "value_yuan": 0.0,
            "volunteer_id": data["volunteer_id"], "programme": data.get("programme"),
            "organisation_id": data.get("organisation_id"),
            "assignment_id": data.get("assignment_id"),
            "day": _day(data["date"]), "at": at, "event_id": event_id}


def rejected_hours_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    return {**hours_entry(data, at, event_id), "_id": f"rejected:{data['hours_id']}",
            "kind": "hours_rejected"}


def organisation_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    return {"_id": f"organisation:{data['organisation_id']}", "kind": "organisation",
            "category": data["kind"], "role": data["role"], "name": data["name"],
            "organisation_id": data["organisation_id"], "milli": 0, "value_fen": 0,
            "day": _day(at), "at": at, "event_id": event_id}


def training_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    return {"_id": f"training:{data['session_id']}", "kind": "training",
            "category": "training", "title": data["title"],
            "attendances": data["attendances"], "milli": 0, "value_fen": 0,
            "programme": data.get("programme"), "day": _day(data["date"]), "at": at,
            "event_id": event_id}


def service_delivery_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    return {"_id": f"delivery:{data['delivery_id']}", "kind": "service_delivery",
            "category": data.get("category") or "service", "programme": data["programme"],
            "sessions": data.get("sessions", 0), "people_served": data.get("people_served", 0),
            "providers": data.get("providers", 0),
            "organisation_id": data.get("organisation_id"),
            "community_ids": list(data.get("community_ids") or []),
            "approximate": bool(data.get("approximate")), "milli": 0, "value_fen": 0,
            "day": _day(data["date"]), "at": at, "event_id": event_id}


def served_need_entry(ref: Reference, data: dict[str, Any], at: Any,
                      event_id: str) -> dict | None:
    """A service need served (``need_fulfilled`` of a service category): one session (or
    as many visits or sessions as it asked for) to its beneficiaries, for its programme.
    None for goods: their figures come from the allocations."""
    cat = ref.catalogue.get(data["category"])
    if cat is None or cat.kind != "service":
        return None
    counted = units.dimension(data["unit"]) in ("visit", "session")
    return {"_id": f"served:{data['need_id']}", "kind": "service_delivery",
            "category": data["category"], "programme": data.get("programme"),
            "sessions": max(1, round(data["quantity"])) if counted else 1,
            "people_served": data.get("beneficiaries") or 0, "providers": 0,
            "need_id": data["need_id"], "volunteer_id": data.get("volunteer_id"),
            "community_ids": [data["community_id"]], "approximate": False, "milli": 0,
            "value_fen": 0, "day": _day(at), "at": at, "event_id": event_id}


PROGRAMME_COUNTS = ("activities", "communities", "groups", "participants", "reach")


def programme_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    """One recording of a programme; the latest ``recorded_at`` of a programme counts."""
    return {"_id": f"programme:{data['programme_id']}:{event_id}", "kind": "programme",
            "category": "programme", "programme_id": data["programme_id"],
            "name": data["name"], "name_en": data.get("name_en"), "plan": data.get("plan"),
            "recorded_at": data["recorded_at"],
            **{k: data.get(k, 0) for k in PROGRAMME_COUNTS},
            "organisations": len(data.get("organisation_ids") or []),
            "outputs": [dict(o) for o in data.get("outputs") or []],
            "approximate": bool(data.get("approximate")), "milli": 0, "value_fen": 0,
            "day": _day(data["recorded_at"]), "at": at, "event_id": event_id}


def volunteer_entry(data: dict[str, Any], at: Any, event_id: str) -> dict:
    return {"_id": f"volunteer:{data['volunteer_id']}", "kind": "volunteer",
            "category": "volunteer", "volunteer_id": data["volunteer_id"],
            "organisation_id": data.get("organisation_id"), "milli": 0, "value_fen": 0,
            "day": _day(at), "at": at, "event_id": event_id}


# -- figures --------------------------------------------------------------------------------
def category_unit(ref: Reference, category: str, entries: Iterable[dict] = ()) -> str:
    cat = ref.catalogue.get(category)
    if cat is not None:
        return cat.unit
    return next((e["unit"] for e in entries if e.get("unit")), "piece")


def display_unit(unit: str, milli: int) -> str:
    """The bulletin counts vegetables in tonnes once there is a tonne of them."""
    if unit == "kg" and abs(milli) >= units.to_milli(1, "t"):
        return "t"
    return unit


def in_range(entries: Iterable[dict], start: str | None = None,
             end: str | None = None) -> list[dict]:
    """Entries whose business day is within [start, end] (ISO dates, both optional)."""
    return [e for e in entries
            if (not start or e["day"] >= start) and (not end or e["day"] <= end)]


def _group_key(entry: dict, by: str, lots: dict[str, dict]) -> str:
    if by == "category":
        return entry["category"]
    if by == "date":
        return entry["day"]
    if by == "donor":
        source = lots.get(entry.get("lot_id") or "", entry)
        return source.get("donor") or "-"
    if by == "programme":
        return entry.get("programme") or lots.get(entry.get("lot_id") or "", {}).get(
            "programme") or "-"
    return entry.get(f"{by}_id") or "-"


def report(ref: Reference, entries: list[dict], by: str = "category",
           start: str | None = None, end: str | None = None) -> list[dict[str, Any]]:
    """One row per (group, category): received, allocated, written off and in stock, in the
    category's unit and in yuan; approved hours per activity. Allocations and write-offs are
    attributed to their lot's donor (and programme when they carry none)."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    lots = {e["lot_id"]: e for e in entries
            if e["kind"] in ("goods_in", "goods_transferred_in")}
    sums: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in in_range(entries, start, end):
        if e["kind"] in (*GOODS_KINDS, *TRANSFER_KINDS) or e["kind"] == "hours":
            row = sums[(_group_key(e, by, lots), e["category"])]
            col = COLUMNS.get(e["kind"]) or TRANSFER_COLUMNS.get(e["kind"], "hours")
            row[col] += e["milli"]
            row[col + "_fen"] += e["value_fen"]
    rows = []
    for (group, category), s in sorted(sums.items()):
        unit = "hour" if s.get("hours") else category_unit(ref, category)
        cat = ref.catalogue.get(category)
        row: dict[str, Any] = {"group": group, "category": category,
                               "name": cat.name if cat else category, "unit": unit}
        for col in ("received", "allocated", "written_off", "transferred_in",
                    "transferred_out"):
            row[col] = units.from_milli(s[col], unit)
            row[col + "_yuan"] = yuan(s[col + "_fen"])
        row["in_stock"] = units.from_milli(
            s["received"] + s["transferred_in"] - s["allocated"] - s["written_off"]
            - s["transferred_out"], unit)
        row["hours"] = units.from_milli(s["hours"], "hour")
        rows.append(row)
    return rows


LOT_ARRIVALS = ("goods_in", "goods_transferred_in")
LOT_TAKES = {"goods_allocated": "allocated", "goods_written_off": "written_off",
             "goods_transferred_out": "transferred_out"}


def lot_values(ref: Reference, entries: list[dict]) -> list[dict[str, Any]]:
    """Per lot in the ledger: its value at intake against what left it (allocated, written
    off, transferred out) and the value of what is still in it.

    What is still in a lot is worth its value less the rule's value of the quantity gone
    (``value_of`` in ``services.common.money``; nothing once the lot is empty), so a lot whose
    shares were not taken by the one rule (``share_fen``) shows the fen they are off by:
    ``value_difference_yuan`` = received - allocated - written off - transferred out - in
    stock, per lot. Lots whose arrival the ledger has not heard of yet are left out (their
    quantities already differ from the stock)."""
    lots: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e["kind"] in LOT_ARRIVALS and e.get("lot_id"):
            lots[e["lot_id"]] = {"lot_id": e["lot_id"], "category": e["category"],
                                 "location_id": e["location_id"], "milli": e["milli"],
                                 "fen": e["value_fen"], "taken_milli": 0,
                                 **{f"{c}_fen": 0 for c in LOT_TAKES.values()}}
    for e in entries:
        col = LOT_TAKES.get(e["kind"])
        lot = lots.get(e.get("lot_id") or "")
        if col and lot is not None:
            lot["taken_milli"] += e["milli"]
            lot[f"{col}_fen"] += e["value_fen"]
    out = []
    for lot_id in sorted(lots):
        lot = lots[lot_id]
        unit = category_unit(ref, lot["category"])
        gone = min(max(lot["taken_milli"], 0), lot["milli"])
        in_stock = lot["fen"] - value_of(lot["fen"], lot["milli"], gone)
        taken = sum(lot[f"{c}_fen"] for c in LOT_TAKES.values())
        out.append({
            "lot_id": lot_id, "category": lot["category"], "location_id": lot["location_id"],
            "unit": unit, "received": units.from_milli(lot["milli"], unit),
            "taken": units.from_milli(lot["taken_milli"], unit),
            "received_yuan": yuan(lot["fen"]),
            **{f"{c}_yuan": yuan(lot[f"{c}_fen"]) for c in LOT_TAKES.values()},
            "in_stock_yuan": yuan(in_stock),
            "value_difference_fen": lot["fen"] - taken - in_stock,
            "value_difference_yuan": yuan(lot["fen"] - taken - in_stock)})
    return out


def reconcile(ref: Reference, entries: list[dict], stock: list[dict]) -> dict[str, Any]:
    """received + transferred in = allocated + written off + transferred out + in stock, per
    category and warehouse, in quantity and in yuan, and per lot in yuan.

    ``stock`` is donations' own account (``received_milli``, ``available_milli`` and, when
    it has them, ``in_stock_fen`` per category and location); the ledger gives received,
    allocated, written off and transferred, with their values. Any row where the two disagree
    is a difference (an event lost or not yet arrived, or a double count). And each lot's
    shares must add up to its value (:func:`lot_values`): a lot that is off by a fen is
    listed under ``lot_differences``, its row (``lots_value_difference_yuan``) under
    ``differences``, and the whole is not balanced."""
    cells: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    valued: set[tuple[str, str]] = set()
    for e in entries:
        col = COLUMNS.get(e["kind"]) or TRANSFER_COLUMNS.get(e["kind"])
        if col:
            cell = cells[(e["category"], e["location_id"])]
            cell[col] += e["milli"]
            cell[col + "_fen"] += e["value_fen"]
    lot_differences = [lot for lot in lot_values(ref, entries) if lot["value_difference_fen"]]
    for lot in lot_differences:
        cells[(lot["category"], lot["location_id"])]["lots_value_difference_fen"] += lot[
            "value_difference_fen"]
    for s in stock:
        key = (s["category"], s["location_id"])
        cell = cells[key]
        cell["in_stock"] += s["available_milli"]
        cell["stock_received"] += s["received_milli"]
        if "in_stock_fen" in s:
            valued.add(key)
            cell["in_stock_fen"] += s["in_stock_fen"]
    rows, differences = [], []
    for key, c in sorted(cells.items()):
        category, location = key
        unit = category_unit(ref, category)
        diff = (c["received"] + c["transferred_in"] - c["allocated"] - c["written_off"]
                - c["transferred_out"] - c["in_stock"])
        diff_received = c["received"] - c["stock_received"]
        diff_fen = (c["received_fen"] + c["transferred_in_fen"] - c["allocated_fen"]
                    - c["written_off_fen"] - c["transferred_out_fen"] - c["in_stock_fen"]
                    ) if key in valued else 0
        row = {"category": category, "location_id": location, "unit": unit,
               **{k: units.from_milli(c[k], unit) for k in
                  ("received", "allocated", "written_off", "transferred_in",
                   "transferred_out", "in_stock")},
               **{f"{k}_yuan": yuan(c[f"{k}_fen"]) for k in
                  ("received", "allocated", "written_off", "transferred_in",
                   "transferred_out", "in_stock")},
               "difference": units.from_milli(diff, unit),
               "received_difference": units.from_milli(diff_received, unit),
               "value_difference_yuan": yuan(diff_fen),
               "lots_value_difference_yuan": yuan(c["lots_value_difference_fen"])}
        rows.append(row)
        if diff or diff_received or diff_fen or c["lots_value_difference_fen"]:
            differences.append(row)
    return {"balanced": not differences and not lot_differences, "rows": rows,
            "differences": differences, "lot_differences": lot_differences}


def _measure(ref: Reference, category: str, unit: str, lang: str) -> str:
    """The word a category is counted in: its measure word when it is counted in its own
    unit (测温仪 台, 口罩 支), else the unit's (吨 once vegetables reach a tonne)."""
    cat = ref.catalogue.get(category)
    if cat is not None and unit == cat.unit:
        word = cat.measure if lang == "zh-CN" else cat.measure_en
        if word:
            return word
    return UNIT_LABELS[lang].get(unit, unit)


def _in_stock(g: dict[str, Any]) -> int:
    """What is left of a category's goods in (milli): received less allocated and written
    off."""
    return g["received"] - g["allocated"] - g["written_off"]


def _goods_row(ref: Reference, category: str, g: dict[str, Any],
               acquisition: str) -> dict[str, Any]:
    base = category_unit(ref, category)
    unit = display_unit(base, g["received"])
    cat = ref.catalogue.get(category)
    faces = g["faces"]
    return {
        "category": category, "name": cat.name if cat else category,
        "name_en": cat.name_en if cat else category, "unit": unit,
        "measure": _measure(ref, category, unit, "zh-CN"),
        "measure_en": _measure(ref, category, unit, "en"),
        "acquisition": acquisition,
        **{col: units.from_milli(g[col], unit) for col in COLUMNS.values()},
        **{col + "_yuan": yuan(g[col + "_fen"]) for col in COLUMNS.values()},
        "in_stock": units.from_milli(_in_stock(g), unit),
        # lots received without a stated value (counted at 0 yuan)
        "lots": g["lots"], "unvalued_lots": g["unvalued"], "valued": g["unvalued"] == 0,
        # what one unit stands for (a policy's cover), when the lots agree on it
        "face_value_yuan": yuan(next(iter(faces))) if len(faces) == 1 else None,
    }


def _in_kind_and_cash(ref: Reference, goods: dict[tuple[str, str], dict[str, Any]],
                      acquisition: str) -> tuple[list[dict], list[dict]]:
    rows, cash_rows = [], []
    mine = {c: g for (a, c), g in goods.items() if a == acquisition}
    for category in sorted(mine, key=lambda c: (-mine[c]["received_fen"], c)):
        g = mine[category]
        if units.dimension(category_unit(ref, category)) == "money":
            # cash is shown apart from goods: its amount is its value
            cash_rows.append({col: units.from_milli(g[col], "yuan") for col in COLUMNS.values()}
                             | {"category": category,
                                "in_stock": units.from_milli(_in_stock(g), "yuan")})
            continue
        rows.append(_goods_row(ref, category, g, acquisition))
    return rows, cash_rows


def _platforms(ref: Reference) -> dict[str, int]:
    tiers: dict[str, int] = defaultdict(int)
    for area in ref.areas.areas.values():
        tiers[area.tier] += 1
    return {"district": tiers["district"], "streets": tiers["street"],
            "communities": tiers["community"]}


def _by_kind(entries: Iterable[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        kinds[e["kind"]].append(e)
    return kinds


def _count_lot(g: dict[str, Any], lot: dict) -> None:
    g["lots"] += 1
    if lot.get("value_known") is False:
        g["unvalued"] += 1
    if lot.get("face_value_yuan") is not None:
        g["faces"].add(fen(lot["face_value_yuan"]))


def _goods_sums(moves: Iterable[dict], lots: dict[str, dict]
                ) -> dict[tuple[str, str], dict[str, Any]]:
    """Goods in, allocated and written off per (acquisition, category), in milli and fen;
    an allocation or write-off is donated or purchased as its lot was."""
    goods: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: defaultdict(int, faces=set()))
    for e in moves:
        lot = e if e["kind"] == "goods_in" else lots.get(e.get("lot_id") or "", {})
        g = goods[(lot.get("acquisition") or "donated", e["category"])]
        col = COLUMNS[e["kind"]]
        g[col] += e["milli"]
        g[col + "_fen"] += e["value_fen"]
        if e["kind"] == "goods_in":
            _count_lot(g, e)
    return goods


def _goods_figures(ref: Reference, goods: dict[tuple[str, str], dict[str, Any]]
                   ) -> dict[str, Any]:
    """Goods donated, goods bought through the coalition's links and cash, apart."""
    goods_rows, cash_rows = _in_kind_and_cash(ref, goods, "donated")
    purchase_rows, _ = _in_kind_and_cash(ref, goods, "purchased")
    cash = {col: round(sum(c[col] for c in cash_rows), 2)
            for col in ("received", "allocated", "written_off", "in_stock")}
    return {
        "goods": goods_rows,
        "goods_total_yuan": yuan(sum(
            g["received_fen"] for (a, c), g in goods.items()
            if a == "donated" and units.dimension(category_unit(ref, c)) != "money")),
        "goods_unvalued_categories": sum(1 for g in goods_rows if not g["valued"]),
        "purchases": purchase_rows,
        "purchases_total_yuan": yuan(sum(g["received_fen"] for (a, _), g in goods.items()
                                         if a == "purchased")),
        "purchases_unvalued_categories": sum(1 for g in purchase_rows if not g["valued"]),
        "cash": {**cash, "unit": "yuan"},
    }


def _pledges(pledges: list[dict], goods_in: list[dict]) -> dict[str, Any]:
    """Pledges made and their value, and the value of the lots that came in for one."""
    return {"made": len(pledges), "value_yuan": yuan(sum(e["value_fen"] for e in pledges)),
            "received_yuan": yuan(sum(e["value_fen"] for e in goods_in if e.get("pledge_id")))}


def _status_reports(reports: list[dict]) -> dict[str, Any]:
    """Each organisation's latest status report in the period, summed."""
    latest: dict[str, dict] = {}
    for e in reports:
        known = latest.get(e["organisation_id"])
        if known is None or known["reported_at"] < e["reported_at"]:
            latest[e["organisation_id"]] = e
    staff = {k: sum(r["staff"].get(k, 0) for r in latest.values())
             for k in ("total", "healthy", "fever", "quarantined")}
    resumption = {k: sum(1 for r in latest.values() if r["resumption"] == k)
                  for k in ("resumed", "partial", "suspended")}
    return {"organisations": len(latest), **resumption, "staff": staff}


def _volunteers(hours: list[dict], registered: list[dict]) -> dict[str, Any]:
    hours_by: dict[str, int] = defaultdict(int)
    for e in hours:
        hours_by[e["category"]] += e["milli"]
    return {"registered": len(registered), "served": len({e["volunteer_id"] for e in hours}),
            "hours": units.from_milli(sum(hours_by.values()), "hour"),
            "hours_by_activity": {a: units.from_milli(m, "hour")
                                  for a, m in sorted(hours_by.items())}}


def _services(deliveries: list[dict]) -> list[dict[str, Any]]:
    """Services delivered, summed per programme (``-`` for none) and category."""
    sums: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for e in deliveries:
        d = sums[(e.get("programme") or "-", e["category"])]
        for k in ("sessions", "people_served", "providers"):
            d[k] += e[k]
        d["approximate"] |= e["approximate"]
    return [{"programme": p, "category": c,
             **{k: d[k] for k in ("sessions", "people_served", "providers")},
             "approximate": bool(d["approximate"])}
            for (p, c), d in sorted(sums.items())]


def _organisations(organisations: list[dict]) -> dict[str, Any]:
    roles: dict[str, int] = defaultdict(int)
    kinds: dict[str, int] = defaultdict(int)
    for e in organisations:
        roles[e["role"]] += 1
        kinds[e["category"]] += 1
    return {"founding": roles["founding"], "member": roles["member"],
            "by_kind": dict(sorted(kinds.items()))}


def _training(sessions: list[dict]) -> dict[str, int]:
    return {"sessions": len(sessions), "attendances": sum(e["attendances"] for e in sessions)}


def _programme_sums(kinds: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    """What the ledger counts for each programme: goods in (fen), approved hours (milli),
    training and services delivered."""
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in kinds["goods_in"]:
        if e.get("programme"):
            sums[e["programme"]]["goods_fen"] += e["value_fen"]
    for e in kinds["hours"]:
        if e.get("programme"):
            sums[e["programme"]]["hours"] += e["milli"]
    for e in kinds["training"]:
        if e.get("programme"):
            sums[e["programme"]]["attendances"] += e["attendances"]
            sums[e["programme"]]["training_sessions"] += 1
    for e in kinds["service_delivery"]:
        if e.get("programme"):
            for k in ("sessions", "people_served", "providers"):
                sums[e["programme"]][k] += e[k]
    return sums


def _latest_recordings(recordings: list[dict]) -> dict[str, dict]:
    """Each programme's latest recording in the period, by the programme's name."""
    latest: dict[str, dict] = {}
    for e in recordings:
        known = latest.get(e["programme_id"])
        if known is None or (known["recorded_at"], known["event_id"]) < (
                e["recorded_at"], e["event_id"]):
            latest[e["programme_id"]] = e
    return {r["name"]: r for r in latest.values()}


def _programme_rows(sums: dict[str, dict[str, int]],
                    recorded: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per programme the ledger counts for or that was recorded: its latest
    recorded activities and reach beside the ledger's figures."""
    rows = []
    for name in sorted(set(sums) | set(recorded)):
        v, r = sums.get(name, {}), recorded.get(name, {})
        rows.append({
            "programme": name, "name_en": r.get("name_en"), "plan": r.get("plan"),
            "goods_yuan": yuan(v.get("goods_fen", 0)),
            "hours": units.from_milli(v.get("hours", 0), "hour"),
            "attendances": v.get("attendances", 0),
            "training_sessions": v.get("training_sessions", 0),
            **{k: v.get(k, 0) for k in ("sessions", "people_served", "providers")},
            **{k: r.get(k, 0) for k in PROGRAMME_COUNTS},
            "organisations": r.get("organisations", 0), "outputs": r.get("outputs", []),
            "approximate": bool(r.get("approximate")), "recorded": bool(r)})
    return rows


def bulletin_figures(ref: Reference, entries: list[dict], start: str | None = None,
                     end: str | None = None) -> dict[str, Any]:
    """The coalition bulletin's figures (language-neutral).

    Goods donated and goods bought through the coalition's links (``purchases``) are
    counted apart; a lot without a stated value counts at 0 yuan and its category is named
    in ``goods_unvalued_categories``. Services delivered are summed per programme and
    service; each programme carries its latest recorded activities and reach beside what
    the ledger counts for it (goods, hours, training, deliveries)."""
    chosen = in_range(entries, start, end)
    kinds = _by_kind(chosen)
    # a lot a transfer made is what its source was (donated or purchased)
    lots = {e["lot_id"]: e for e in entries if e["kind"] in LOT_ARRIVALS}
    days = [e["day"] for e in chosen if e.get("day")]
    goods = _goods_sums((e for e in chosen if e["kind"] in GOODS_KINDS), lots)
    return {
        "period": {"from": start, "to": end,
                   # the day the figures are as of: the end chosen, else the latest entry's
                   "as_of": end or (max(days) if days else None)},
        **_goods_figures(ref, goods),
        "pledges": _pledges(kinds["pledge"], kinds["goods_in"]),
        "status_reports": _status_reports(kinds["status_report"]),
        "volunteers": _volunteers(kinds["hours"], kinds["volunteer"]),
        "services": _services(kinds["service_delivery"]),
        "organisations": _organisations(kinds["organisation"]),
        "platforms": _platforms(ref),
        "training": _training(kinds["training"]),
        "programmes": _programme_rows(_programme_sums(kinds),
                                      _latest_recordings(kinds["programme"])),
    }


def number(value: float) -> str:
    """70260 -> '70,260'; 41.5 -> '41.5'."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def money(value: float, lang: str) -> str:
    text = f"{value:,.2f}"
    if lang == "zh-CN":
        return f"{text} 元（约 {number(round(value / 10000, 2))} 万元）" if value >= 10000 \
            else f"{text} 元"
    return f"{text} yuan"


def _activity_name(ref: Reference, activity: str, lang: str) -> str:
    cat = ref.catalogue.get(activity)
    if cat is None:
        return {"zh-CN": "其他志愿服务", "en": "other volunteering"}[lang] \
            if activity == "volunteering" else activity
    return cat.name if lang == "zh-CN" else cat.name_en


def _about(value: float, approximate: bool, lang: str) -> str:
    """A count that is a lower bound: '400余' / '400+'."""
    if not approximate:
        return number(value)
    return f"{number(value)}余" if lang == "zh-CN" else f"{number(value)}+"


def _category_name(ref: Reference, category: str, lang: str) -> str | None:
    cat = ref.catalogue.get(category)
    if cat is None:
        return None
    return cat.name if lang == "zh-CN" else cat.name_en


# the bulletin's wording, one template per language (templates/<language>/bulletin.j2)
_TEMPLATES = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
    undefined=StrictUndefined,  # a figure the template asks for and nobody passed is a bug
    autoescape=False,  # plain text
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _formatters(ref: Reference, lang: str) -> dict[str, Any]:
    """How the templates write a figure: numbers, money and names in ``lang``."""
    return {"number": number, "money": lambda value: money(value, lang),
            "amount": lambda value: f"{value:,.2f}",
            "about": lambda value, approximate: _about(value, approximate, lang),
            "activity": lambda activity: _activity_name(ref, activity, lang),
            "category": lambda category: _category_name(ref, category, lang),
            "unit": lambda unit: UNIT_LABELS[lang].get(unit, unit)}


def _text_view(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures as the templates read them: optional parts present or None."""
    period = figures["period"]
    cash = figures.get("cash") or {}
    pledges = figures.get("pledges") or {}
    status_reports = figures.get("status_reports") or {}
    return {
        "since": period["from"], "as_of": period.get("as_of") or period.get("to"),
        "goods": figures["goods"], "goods_total_yuan": figures["goods_total_yuan"],
        "goods_unvalued": figures.get("goods_unvalued_categories", 0),
        "cash": cash if cash.get("received") else None,
        "pledges": pledges if pledges.get("made") else None,
        "purchases": figures.get("purchases") or [],
        "purchases_total_yuan": figures.get("purchases_total_yuan", 0),
        "purchases_unvalued": figures.get("purchases_unvalued_categories", 0),
        "volunteers": figures["volunteers"], "services": figures.get("services") or [],
        "organisations": figures["organisations"], "platforms": figures.get("platforms"),
        "training": figures["training"], "programmes": figures["programmes"],
        "status_reports": status_reports if status_reports.get("organisations") else None,
    }


def bulletin_text(ref: Reference, figures: dict[str, Any], lang: str = "zh-CN",
                  title: str | None = None) -> str:
    """The bulletin as printable text, in zh-CN or en (the same figures, line by line),
    rendered from ``templates/<lang>/bulletin.j2``."""
    if lang not in UNIT_LABELS:
        raise ValueError("lang must be zh-CN or en")
    template = _TEMPLATES.get_template(f"{lang}/bulletin.j2")
    return template.render(**_text_view(figures), **_formatters(ref, lang), title=title)


# -- exports --------------------------------------------------------------------------------
REPORT_SHEET: tuple[sheets.Column, ...] = (
    ("group", "分组", "group", "text"), ("category", "类别", "category", "text"),
    ("name", "名称", "name", "text"), ("unit", "单位", "unit", "text"),
    ("received", "接收数量", "received", "quantity"),
    ("received_yuan", "接收价值（元）", "received (yuan)", "money"),
    ("allocated", "已分配数量", "allocated", "quantity"),
    ("allocated_yuan", "已分配价值（元）", "allocated (yuan)", "money"),
    ("written_off", "报损数量", "written off", "quantity"),
    ("written_off_yuan", "报损价值（元）", "written off (yuan)", "money"),
    ("in_stock", "库存数量", "in stock", "quantity"),
    ("hours", "志愿服务时长（小时）", "volunteer hours", "quantity"),
    ("transferred_in", "调入数量", "transferred in", "quantity"),
    ("transferred_out", "调出数量", "transferred out", "quantity"),
)
REPORT_COLUMNS = tuple(c[0] for c in REPORT_SHEET)
BULLETIN_SHEET: tuple[sheets.Column, ...] = (
    ("category", "类别", "category", "text"), ("name", "名称", "name", "text"),
    ("unit", "单位", "unit", "text"), ("received", "接收数量", "received", "quantity"),
    ("received_yuan", "价值（元）", "value (yuan)", "money"),
    ("allocated", "已分配数量", "allocated", "quantity"),
    ("allocated_yuan", "已分配价值（元）", "allocated (yuan)", "money"),
    ("written_off", "报损数量", "written off", "quantity"),
    ("written_off_yuan", "报损价值（元）", "written off (yuan)", "money"),
    ("in_stock", "库存数量", "in stock", "quantity"),
    ("acquisition", "来源", "acquisition", "text"),
    ("valued", "已计价值", "valued", "text"),
    ("face_value_yuan", "每单位保额/面值（元）", "cover or face value each (yuan)", "money"),
)
SUMMARY_LABELS = {
    "volunteers_served": ("参与服务志愿者（名）", "volunteers served"),
    "volunteer_hours": ("志愿服务时长（小时）", "volunteer hours"),
    "founding_organisations": ("联盟发起单位（家）", "founding organisations"),
    "member_organisations": ("参与互助单位（家）", "member organisations"),
    "training_attendances": ("培训参与（人次）", "training attendances"),
}


def to_csv(rows: list[dict[str, Any]], lang: str | None = None) -> str:
    """The report as CSV (with a byte-order mark: Excel then reads the Chinese names)."""
    return sheets.to_csv(REPORT_SHEET, rows, lang)


def to_xlsx(rows: list[dict[str, Any]], figures: dict[str, Any] | None = None,
            lang: str | None = None) -> bytes:
    """A workbook with the report (and, if given, the bulletin's goods and purchases) as
    real numbers, headers in ``lang`` (the keys without one)."""
    book = sheets.workbook()
    sheets.add_sheet(book, "report", REPORT_SHEET, rows, lang)
    if figures is not None:
        goods = [{**g, "name": g["name_en"] if lang == "en" else g["name"]}
                 for g in figures["goods"] + figures.get("purchases", [])]
        sheet = sheets.add_sheet(book, "bulletin", BULLETIN_SHEET, goods, lang)
        v = figures["volunteers"]
        sheet.append([])
        for key, value in (("volunteers_served", v["served"]), ("volunteer_hours", v["hours"]),
                           ("founding_organisations", figures["organisations"]["founding"]),
                           ("member_organisations", figures["organisations"]["member"]),
                           ("training_attendances", figures["training"]["attendances"])):
            label = key if lang is None else SUMMARY_LABELS[key][0 if lang == "zh-CN" else 1]
            sheet.append([label, value])
    return sheets.save(book)
