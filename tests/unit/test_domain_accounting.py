"""The ledger's pure side: entries from events, reports, reconciliation, bulletin, exports."""

import io
from datetime import UTC, date, datetime

import pytest
from openpyxl import load_workbook

from services.accounting import reports
from services.common import reference
from services.donations import receipts
from services.donations.service import public_donor, share_of_value, summarise

REF = reference.load("deploy/reference")
AT = datetime(2020, 2, 10, 9, 0, tzinfo=UTC)


def donation(i, category, quantity, unit, value, location="QY-S01-C01", **kw):
    return {"donation_id": f"D{i}", "lot_id": f"D{i}", "category": category,
            "quantity": quantity, "unit": unit, "value_yuan": value, "location_id": location,
            "donor": {"name": kw.pop("donor", "好医生集团"), "kind": "company"}, **kw}


# the 2020 coalition's figures, sent in as several donations each
SEASON = [
    donation(1, "thermometers", 60, "piece", 7200),
    donation(2, "thermometers", 42, "piece", 5040, location="QY-S02"),
    donation(3, "masks", 70000, "piece", 350000),
    donation(4, "masks", 260, "piece", 1300.5),
    donation(5, "disinfectant", 5728, "jin", 4850000, programme="抗疫联合服务合力计划"),
    donation(6, "vegetables", 40, "t", 165853.66, location="QY"),
    donation(7, "vegetables", 1000, "kg", 4146.34, location="QY-S03"),
    donation(8, "medicine", 38810, "box", 1112000, donor="德仁堂药业有限公司"),
    donation(9, "insurance", 1000, "policy", 0),
]


def season_entries():
    entries = [reports.goods_in_entry(REF, d, AT, f"e{i}") for i, d in enumerate(SEASON)]
    entries.append(reports.allocated_entry(REF, {
        "assignment_id": "N1#1", "need_id": "N1", "community_id": "QY-S01-C02",
        "category": "masks", "quantity": 600, "unit": "piece", "lot_id": "D3",
        "lot_quantity": 600, "lot_unit": "piece", "location_id": "QY-S01-C01",
        "tier_distance": 1, "value_yuan": 3000.0}, AT, "a1"))
    entries.append(reports.written_off_entry(REF, {
        "lot_id": "D7", "category": "vegetables", "location_id": "QY-S03", "delta": -200,
        "available": 800, "unit": "kg", "reason": "written_off", "write_off_id": "WO-1",
        "write_off_reason": "expired", "value_yuan": 829.27}, AT, "w1"))
    for i in range(3):
        entries.append(reports.hours_entry({
            "hours_id": f"H{i}", "volunteer_id": f"V{i % 2}", "hours": 4.5,
            "date": date(2020, 2, 11), "activity": "counselling" if i else "screening",
            "programme": "社区心理援助暖心计划"}, AT, f"h{i}"))
    for i, role in enumerate(["founding"] * 2 + ["member"] * 3):
        entries.append(reports.organisation_entry({
            "organisation_id": f"O{i}", "name": f"org {i}", "role": role,
            "kind": "social_organisation"}, AT, f"o{i}"))
    entries.append(reports.training_entry({"session_id": "T1", "title": "疫情期间社创机构的担当",
                                           "date": date(2020, 2, 20), "attendances": 260},
                                          AT, "t1"))
    return entries


def test_the_bulletin_adds_up_exactly_by_category_with_units_and_values():
    figures = reports.bulletin_figures(REF, season_entries())
    goods = {g["category"]: g for g in figures["goods"]}
    assert (goods["thermometers"]["received"], goods["thermometers"]["unit"]) == (102, "piece")
    assert goods["masks"]["received"] == 70260 and goods["masks"]["received_yuan"] == 351300.5
    assert goods["masks"]["allocated"] == 600 and goods["masks"]["in_stock"] == 69660
    assert (goods["disinfectant"]["received"], goods["disinfectant"]["unit"]) == (5728, "jin")
    assert goods["disinfectant"]["received_yuan"] == 4850000
    veg = goods["vegetables"]
    assert (veg["received"], veg["unit"], veg["received_yuan"]) == (41, "t", 170000.0)
    assert (veg["written_off"], veg["written_off_yuan"]) == (0.2, 829.27)
    assert goods["medicine"]["received"] == 38810 and goods["insurance"]["received"] == 1000
    assert figures["goods_total_yuan"] == round(sum(d["value_yuan"] for d in SEASON), 2)
    assert figures["volunteers"]["served"] == 2 and figures["volunteers"]["hours"] == 13.5
    assert figures["volunteers"]["hours_by_activity"] == {"counselling": 9, "screening": 4.5}
    assert figures["organisations"]["founding"] == 2 and figures["organisations"]["member"] == 3
    assert figures["training"] == {"sessions": 1, "attendances": 260}

    zh = reports.bulletin_text(REF, figures, "zh-CN")
    assert "测温仪 102 件" in zh and "防护口罩 70,260 件" in zh and "消毒液 5,728 斤" in zh
    assert "新鲜蔬菜 41 吨，价值 170,000.00 元（约 17 万元）" in zh
    assert "约 485 万元" in zh and "医药物品 38,810 箱" in zh
    assert "心理辅导 9 小时" in zh and "入户排查 4.5 小时" in zh
    assert "联盟发起单位 2 家，参与互助单位 3 家" in zh and "参与 260 人次" in zh
    en = reports.bulletin_text(REF, figures, "en")
    assert "thermometers: 102 pieces" in en and "fresh vegetables: 41 t" in en


def test_a_date_range_and_groupings():
    entries = season_entries()
    assert reports.bulletin_figures(REF, entries, "2020-02-12", None)["goods"] == []
    by_street = {(r["group"], r["category"]): r for r in reports.report(REF, entries, "street")}
    assert by_street[("QY-S02", "thermometers")]["received"] == 42
    assert by_street[("QY-S01", "masks")]["allocated"] == 600
    by_donor = {(r["group"], r["category"]): r for r in reports.report(REF, entries, "donor")}
    assert by_donor[("德仁堂药业有限公司", "medicine")]["received"] == 38810
    assert by_donor[("好医生集团", "masks")]["allocated_yuan"] == 3000.0  # via its lot
    by_programme = {r["group"]: r for r in reports.report(REF, entries, "programme")
                    if r["category"] == "counselling"}
    assert by_programme["社区心理援助暖心计划"]["hours"] == 9
    with pytest.raises(ValueError):
        reports.report(REF, entries, "colour")


def test_reconciliation_balances_and_reports_a_difference():
    entries = season_entries()
    lots = [{"category": d["category"], "location_id": d["location_id"], "unit": d["unit"],
             "quantity": reports.units.to_milli(d["quantity"], d["unit"]),
             "available": reports.units.to_milli(d["quantity"], d["unit"]),
             "allocated": 0, "written_off": 0} for d in SEASON]
    lots[2]["available"] -= 600_000
    lots[6]["available"] -= 200_000
    result = reports.reconcile(REF, entries, summarise(lots))
    assert result["balanced"], result["differences"]
    lots[0]["available"] -= 1000  # a thermometer gone without an event
    result = reports.reconcile(REF, entries, summarise(lots))
    assert not result["balanced"]
    [diff] = result["differences"]
    assert (diff["category"], diff["location_id"], diff["difference"]) == (
        "thermometers", "QY-S01-C01", 1)


def test_exports_carry_the_same_figures():
    entries = season_entries()
    rows = reports.report(REF, entries)
    text = reports.to_csv(rows)
    assert text.splitlines()[0].startswith("group,category,name,unit,received")
    assert "masks,masks,防护口罩,piece,70260.0,351300.5,600.0,3000.0" in text
    figures = reports.bulletin_figures(REF, entries)
    book = load_workbook(io.BytesIO(reports.to_xlsx(rows, figures)))
    sheet = book["bulletin"]
    values = {r[0]: r for r in sheet.iter_rows(values_only=True) if r and r[0]}
    assert values["vegetables"][2:5] == ("t", 41, 170000)
    assert values["volunteer_hours"][1] == 13.5


def test_entries_are_keyed_by_their_cause():
    d = SEASON[0]
    assert reports.goods_in_entry(REF, d, AT, "x")["_id"] == \
        reports.goods_in_entry(REF, d, AT, "y")["_id"] == "in:D1"


def test_receipts_and_what_other_services_see_of_a_donor():
    doc = {**SEASON[4], "receipt_no": receipts.receipt_number(2020, 7), "received_at": AT,
           "value_method": "market", "donor": {"name": "张三", "kind": "person",
                                               "contact": {"phone": "13800001111"}}}
    zh = receipts.render(doc, REF, "zh-CN")
    assert "JZ-2020-000007" in zh and "张三" in zh and "5,728 斤" in zh and "市场价值" in zh
    assert "13800001111" not in zh
    en = receipts.render(doc, REF, "en")
    assert "Donation receipt" in en and "4,850,000.00" in en
    public = public_donor(doc["donor"])
    assert public == {"name": "个人捐赠者", "kind": "person"}
    lot = {"quantity": 1_000_000, "value_yuan": 4146.34}
    assert share_of_value(lot, 200_000) == 829.27
