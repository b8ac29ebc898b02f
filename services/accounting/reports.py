"""Pure accounting: ledger entries from events, reports, reconciliation and the bulletin.

No I/O here. Quantities are integers in thousandths of a dimension's base unit (``milli``, see
``services.common.units``) and money is integer fen, so sums are exact and a figure in the
bulletin is exactly the sum of what was sent in.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from services.common import units
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
ROLE_LABELS = {"zh-CN": {"founding": "发起单位", "member": "参与互助单位"},
               "en": {"founding": "founding organisations", "member": "member organisations"}}


def fen(yuan: float) -> int:
    return round(yuan * 100)


def yuan(fen_: int) -> float:
    return round(fen_ / 100, 2)


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
            "value_fen": fen(data["value_yuan"]), "value_yuan": data["value_yuan"],
            "value_method": data.get("value_method"),
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


def reconcile(ref: Reference, entries: list[dict], stock: list[dict]) -> dict[str, Any]:
    """received + transferred in = allocated + written off + transferred out + in stock, per
    category and warehouse, in quantity and in yuan.

    ``stock`` is donations' own account (``received_milli``, ``available_milli`` and, when
    it has them, ``in_stock_fen`` per category and location); the ledger gives received,
    allocated, written off and transferred, with their values. Any row where the two disagree
    is a difference (an event lost or not yet arrived, or a double count)."""
    cells: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    valued: set[tuple[str, str]] = set()
    for e in entries:
        col = COLUMNS.get(e["kind"]) or TRANSFER_COLUMNS.get(e["kind"])
        if col:
            cell = cells[(e["category"], e["location_id"])]
            cell[col] += e["milli"]
            cell[col + "_fen"] += e["value_fen"]
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
               "value_difference_yuan": yuan(diff_fen)}
        rows.append(row)
        if diff or diff_received or diff_fen:
            differences.append(row)
    return {"balanced": not differences, "rows": rows, "differences": differences}


def bulletin_figures(ref: Reference, entries: list[dict], start: str | None = None,
                     end: str | None = None) -> dict[str, Any]:
    """The coalition bulletin's figures (language-neutral)."""
    chosen = in_range(entries, start, end)
    goods: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    hours_by: dict[str, int] = defaultdict(int)
    served: set[str] = set()
    roles: dict[str, int] = defaultdict(int)
    kinds: dict[str, int] = defaultdict(int)
    programmes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lots = {e["lot_id"]: e for e in entries if e["kind"] == "goods_in"}
    sessions = attendances = registered = 0
    pledged = {"made": 0, "value_fen": 0, "received_fen": 0}
    latest: dict[str, dict] = {}  # each organisation's latest status report in the period
    for e in chosen:
        kind = e["kind"]
        if kind == "goods_in" and e.get("pledge_id"):
            pledged["received_fen"] += e["value_fen"]
        if kind == "pledge":
            pledged["made"] += 1
            pledged["value_fen"] += e["value_fen"]
        elif kind == "status_report":
            known = latest.get(e["organisation_id"])
            if known is None or known["reported_at"] < e["reported_at"]:
                latest[e["organisation_id"]] = e
        if kind in GOODS_KINDS:
            col = COLUMNS[kind]
            goods[e["category"]][col] += e["milli"]
            goods[e["category"]][col + "_fen"] += e["value_fen"]
            if kind == "goods_in":
                programme = e.get("programme") or lots.get(e["lot_id"], {}).get("programme")
                if programme:
                    programmes[programme]["goods_fen"] += e["value_fen"]
        elif kind == "hours":
            hours_by[e["category"]] += e["milli"]
            served.add(e["volunteer_id"])
            if e.get("programme"):
                programmes[e["programme"]]["hours"] += e["milli"]
        elif kind == "organisation":
            roles[e["role"]] += 1
            kinds[e["category"]] += 1
        elif kind == "training":
            sessions += 1
            attendances += e["attendances"]
            if e.get("programme"):
                programmes[e["programme"]]["attendances"] += e["attendances"]
        elif kind == "volunteer":
            registered += 1
    goods_rows, cash_rows = [], []
    for category in sorted(goods, key=lambda c: (-goods[c]["received_fen"], c)):
        g = goods[category]
        base = category_unit(ref, category)
        if units.dimension(base) == "money":
            # cash is shown apart from goods: its amount is its value
            cash_rows.append({col: units.from_milli(g[col], "yuan") for col in COLUMNS.values()}
                             | {"category": category, "in_stock": units.from_milli(
                                 g["received"] - g["allocated"] - g["written_off"], "yuan")})
            continue
        unit = display_unit(base, g["received"])
        cat = ref.catalogue.get(category)
        goods_rows.append({
            "category": category, "name": cat.name if cat else category,
            "name_en": cat.name_en if cat else category, "unit": unit,
            **{col: units.from_milli(g[col], unit) for col in COLUMNS.values()},
            **{col + "_yuan": yuan(g[col + "_fen"]) for col in COLUMNS.values()},
            "in_stock": units.from_milli(g["received"] - g["allocated"] - g["written_off"], unit),
        })
    cash = {col: round(sum(c[col] for c in cash_rows), 2)
            for col in ("received", "allocated", "written_off", "in_stock")}
    staff = {k: sum(r["staff"].get(k, 0) for r in latest.values())
             for k in ("total", "healthy", "fever", "quarantined")}
    resumption = {k: sum(1 for r in latest.values() if r["resumption"] == k)
                  for k in ("resumed", "partial", "suspended")}
    return {
        "period": {"from": start, "to": end},
        "goods": goods_rows,
        "goods_total_yuan": yuan(sum(g["received_fen"] for c, g in goods.items()
                                     if units.dimension(category_unit(ref, c)) != "money")),
        "cash": {**cash, "unit": "yuan"},
        "pledges": {"made": pledged["made"], "value_yuan": yuan(pledged["value_fen"]),
                    "received_yuan": yuan(pledged["received_fen"])},
        "status_reports": {"organisations": len(latest), **resumption, "staff": staff},
        "volunteers": {"registered": registered, "served": len(served),
                       "hours": units.from_milli(sum(hours_by.values()), "hour"),
                       "hours_by_activity": {a: units.from_milli(m, "hour")
                                             for a, m in sorted(hours_by.items())}},
        "organisations": {"founding": roles["founding"], "member": roles["member"],
                          "by_kind": dict(sorted(kinds.items()))},
        "training": {"sessions": sessions, "attendances": attendances},
        "programmes": [{"programme": p, "goods_yuan": yuan(v["goods_fen"]),
                        "hours": units.from_milli(v["hours"], "hour"),
                        "attendances": v["attendances"]}
                       for p, v in sorted(programmes.items())],
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


def bulletin_text(ref: Reference, figures: dict[str, Any], lang: str = "zh-CN",
                  title: str | None = None) -> str:
    """The bulletin as printable text, in zh-CN or en."""
    if lang not in UNIT_LABELS:
        raise ValueError("lang must be zh-CN or en")
    zh = lang == "zh-CN"
    u = UNIT_LABELS[lang]
    period = figures["period"]
    lines = [title or ("抗疫联盟工作简报" if zh else "Coalition progress bulletin")]
    if period["from"] or period["to"]:
        lines.append(f"（{period['from'] or '…'} 至 {period['to'] or '…'}）" if zh
                     else f"({period['from'] or '…'} to {period['to'] or '…'})")
    lines.append("")
    lines.append("一、募集物资" if zh else "1. Goods received")
    for g in figures["goods"]:
        unit = u.get(g["unit"], g["unit"])
        if zh:
            lines.append(
                f"  {g['name']} {number(g['received'])} {unit}，价值 "
                f"{money(g['received_yuan'], lang)}；已分配 {number(g['allocated'])} {unit}，"
                f"报损 {number(g['written_off'])} {unit}，库存 {number(g['in_stock'])} {unit}")
        else:
            lines.append(
                f"  {g['name_en']}: {number(g['received'])} {unit}, worth "
                f"{money(g['received_yuan'], lang)}; allocated {number(g['allocated'])}, "
                f"written off {number(g['written_off'])}, in stock {number(g['in_stock'])}")
    total = money(figures["goods_total_yuan"], lang)
    lines.append(f"  物资合计价值 {total}" if zh else f"  Total value of goods: {total}")
    cash = figures.get("cash") or {}
    if cash.get("received"):
        if zh:
            lines.append(f"  现金捐赠 {money(cash['received'], lang)}；已拨付 "
                         f"{money(cash['allocated'], lang)}，结余 {money(cash['in_stock'], lang)}")
        else:
            lines.append(f"  Cash donations: {money(cash['received'], lang)}; paid out "
                         f"{money(cash['allocated'], lang)}, balance "
                         f"{money(cash['in_stock'], lang)}")
    pledged = figures.get("pledges") or {}
    if pledged.get("made"):
        if zh:
            lines.append(f"  认捐 {pledged['made']} 笔，认捐价值 "
                         f"{money(pledged['value_yuan'], lang)}，已到位 "
                         f"{money(pledged['received_yuan'], lang)}")
        else:
            lines.append(f"  {pledged['made']} pledges worth {money(pledged['value_yuan'], lang)}"
                         f", received so far {money(pledged['received_yuan'], lang)}")
    v = figures["volunteers"]
    parts = [f"{_activity_name(ref, a, lang)} {number(h)} {u['hour']}"
             for a, h in v["hours_by_activity"].items()]
    lines.append("")
    if zh:
        lines.append("二、志愿服务")
        lines.append(f"  参与服务志愿者 {number(v['served'])} 名（登记 {number(v['registered'])} "
                     f"名），经审核的志愿服务时长 {number(v['hours'])} 小时"
                     + (f"（{'，'.join(parts)}）" if parts else ""))
    else:
        lines.append("2. Volunteering")
        lines.append(f"  {number(v['served'])} volunteers served ({number(v['registered'])} "
                     f"registered), {number(v['hours'])} approved hours"
                     + (f" ({', '.join(parts)})" if parts else ""))
    o = figures["organisations"]
    lines.append("")
    if zh:
        lines.append("三、联盟成员")
        lines.append(f"  联盟发起单位 {o['founding']} 家，参与互助单位 {o['member']} 家")
    else:
        lines.append("3. Coalition")
        lines.append(f"  {o['founding']} founding and {o['member']} member organisations")
    t = figures["training"]
    lines.append("")
    if zh:
        lines.append("四、能力建设")
        lines.append(f"  培训 {t['sessions']} 期，参与 {number(t['attendances'])} 人次")
    else:
        lines.append("4. Training")
        lines.append(f"  {t['sessions']} sessions, {number(t['attendances'])} attendances")
    if figures["programmes"]:
        lines.append("")
        lines.append("五、服务计划" if zh else "5. Programmes")
        for p in figures["programmes"]:
            if zh:
                lines.append(f"  {p['programme']}：物资价值 {money(p['goods_yuan'], lang)}，"
                             f"志愿服务 {number(p['hours'])} 小时，培训 "
                             f"{number(p['attendances'])} 人次")
            else:
                lines.append(f"  {p['programme']}: goods worth {money(p['goods_yuan'], lang)}, "
                             f"{number(p['hours'])} volunteer hours, "
                             f"{number(p['attendances'])} training attendances")
    r = figures.get("status_reports") or {}
    if r.get("organisations"):
        n = "六" if figures["programmes"] else "五"
        staff = r["staff"]
        lines.append("")
        if zh:
            lines.append(f"{n}、成员机构动态")
            lines.append(f"  报送工作动态的机构 {r['organisations']} 家：已复工 {r['resumed']} 家，"
                         f"部分复工 {r['partial']} 家，暂停 {r['suspended']} 家；员工 "
                         f"{number(staff['total'])} 人，健康 {number(staff['healthy'])} 人，"
                         f"发热 {number(staff['fever'])} 人，隔离 "
                         f"{number(staff['quarantined'])} 人")
        else:
            lines.append(f"{6 if figures['programmes'] else 5}. Member organisations")
            lines.append(f"  {r['organisations']} organisations reported: {r['resumed']} "
                         f"resumed, {r['partial']} partly, {r['suspended']} suspended; staff "
                         f"{number(staff['total'])}, healthy {number(staff['healthy'])}, fever "
                         f"{number(staff['fever'])}, quarantined {number(staff['quarantined'])}")
    return "\n".join(lines) + "\n"


# -- exports --------------------------------------------------------------------------------
REPORT_COLUMNS = ("group", "category", "name", "unit", "received", "received_yuan",
                  "allocated", "allocated_yuan", "written_off", "written_off_yuan", "in_stock",
                  "hours", "transferred_in", "transferred_out")


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_xlsx(rows: list[dict[str, Any]], figures: dict[str, Any] | None = None) -> bytes:
    """A workbook with the report (and, if given, the bulletin's goods) as real numbers."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "report"
    sheet.append(list(REPORT_COLUMNS))
    for row in rows:
        sheet.append([row.get(c) for c in REPORT_COLUMNS])
    if figures is not None:
        goods = book.create_sheet("bulletin")
        cols = ("category", "name", "unit", "received", "received_yuan", "allocated",
                "allocated_yuan", "written_off", "written_off_yuan", "in_stock")
        goods.append(list(cols))
        for g in figures["goods"]:
            goods.append([g[c] for c in cols])
        v = figures["volunteers"]
        goods.append([])
        goods.append(["volunteers_served", v["served"]])
        goods.append(["volunteer_hours", v["hours"]])
        goods.append(["founding_organisations", figures["organisations"]["founding"]])
        goods.append(["member_organisations", figures["organisations"]["member"]])
        goods.append(["training_attendances", figures["training"]["attendances"]])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
