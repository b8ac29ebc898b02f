"""Pure side of pledges, cash, transfers between warehouses, yuan reconciliation and the
organisations' status reports."""

from datetime import UTC, date, datetime, timedelta

import pytest
from marshmallow import ValidationError

from services.accounting import reports
from services.common import contract, reference, units
from services.donations import pledges
from services.donations.service import summarise
from services.volunteers import status

REF = reference.load("deploy/reference")
AT = datetime(2020, 2, 10, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


# -- status reports ---------------------------------------------------------------------------
def test_a_report_is_due_a_period_after_the_last_one_and_missed_once_per_period():
    org = {"_id": "O1", "registered_at": AT}
    assert status.missed_due(org, WEEK, AT + WEEK - timedelta(seconds=1)) is None
    assert status.missed_due(org, WEEK, AT + WEEK) == AT + WEEK
    # three periods later: one alert, for the latest due time
    assert status.missed_due(org, WEEK, AT + 3 * WEEK + timedelta(hours=5)) == AT + 3 * WEEK
    assert status.to_alert([org], WEEK, AT + WEEK + timedelta(hours=1)) == [("O1", AT + WEEK)]
    alerted = {**org, "alerted_for": AT + WEEK}
    assert status.to_alert([alerted], WEEK, AT + WEEK + timedelta(days=2)) == []
    assert status.to_alert([alerted], WEEK, AT + 2 * WEEK) == [("O1", AT + 2 * WEEK)]
    reported = {**alerted, "last_report_at": AT + WEEK + timedelta(days=1)}
    assert status.to_alert([reported], WEEK, AT + 2 * WEEK) == []
    view = status.view(reported, WEEK, AT + 2 * WEEK)
    assert view["next_due_at"] == AT + 2 * WEEK + timedelta(days=1) and not view["overdue"]


def test_due_times_are_whole_seconds_so_alert_ids_agree_across_instances():
    org = {"_id": "O1", "registered_at": AT + timedelta(microseconds=123456)}
    due = status.missed_due(org, WEEK, AT + 2 * WEEK)
    assert due.microsecond == 0
    assert status.period_of({"status_report_days": "0.5"}) == timedelta(hours=12)
    assert status.period_of({}) == WEEK and status.check_seconds_of({}) == 300


def test_a_status_report_checks_the_staff_counts():
    report = {"report_id": "R1", "organisation_id": "O1", "reported_at": AT.isoformat(),
              "activities": "社区物资配送", "staff": {"total": 10, "healthy": 9, "fever": 1},
              "resumption": "partial"}
    assert contract.StatusReported().load(report)["staff"]["quarantined"] == 0
    with pytest.raises(ValidationError) as info:
        contract.StatusReported().load({**report, "staff": {"total": 3, "healthy": 3,
                                                            "fever": 1}})
    assert "total" in info.value.messages["staff"]


# -- pledges ----------------------------------------------------------------------------------
def pledge(**kw):
    doc = {"_id": "P1", "donor": {"name": "德仁堂药业有限公司", "kind": "company",
                                  "contact": {"phone": "13912345678"}},
           "category": "vegetables", "unit": "t", "quantity_milli": units.to_milli(10, "t"),
           "value_yuan": 40000.0, "expected_at": "2020-02-15", "received_milli": 0,
           "received_fen": 0, "parts": []}
    doc.update(kw)
    return doc


def test_a_pledge_is_open_then_partial_then_received_and_never_shows_the_contact():
    p = pledge()
    assert pledges.status_of(p) == "open"
    view = pledges.view(p, date(2020, 2, 16))
    assert view["overdue"] and view["remaining"] == 10 and "contact" not in view["donor"]
    half = pledge(received_milli=units.to_milli(8000, "jin"), received_fen=1600000,
                  parts=[{"donation_id": "D1", "milli": units.to_milli(4, "t"), "fen": 1600000}])
    view = pledges.view(half, date(2020, 2, 14))
    assert (view["status"], view["received"], view["remaining"], view["overdue"]) == (
        "partial", 4, 6, False)
    assert view["parts"] == [{"donation_id": "D1", "quantity": 4, "value_yuan": 16000.0}]
    done = pledge(received_milli=units.to_milli(11, "t"))
    assert pledges.status_of(done) == "received" and not pledges.view(done, date(2021, 1, 1))[
        "overdue"]


def test_a_part_carries_its_share_of_the_promised_value_and_cash_its_amount():
    assert pledges.part_value(pledge(), 2000, "jin") == 4000.0  # 1 t of 10 t
    assert pledges.part_value(pledge(value_yuan=None), 1, "t") is None
    cash = pledge(category="cash", unit="yuan", quantity_milli=units.to_milli(50000, "yuan"),
                  value_yuan=None)
    assert pledges.part_value(cash, 20000, "yuan") == 20000


# -- cash, transfers and yuan reconciliation -------------------------------------------------
def donation(i, category, quantity, unit, value, location="QY-S01-C01", **kw):
    return {"donation_id": f"D{i}", "lot_id": f"D{i}", "category": category,
            "quantity": quantity, "unit": unit, "value_yuan": value, "location_id": location,
            "donor": {"name": "好医生集团", "kind": "company"}, **kw}


def lot(i, category, quantity, unit, value, location="QY-S01-C01", **kw):
    milli = units.to_milli(quantity, unit)
    return {"_id": f"D{i}", "category": category, "location_id": location, "unit": unit,
            "quantity": milli, "available": milli, "allocated": 0, "written_off": 0,
            "value_yuan": value, **kw}


def transfer_world():
    """100 masks worth 300 yuan at C01; 30 (90 yuan) moved to the street warehouse, of which
    10 (30 yuan) allocated there; 20 (60 yuan) allocated at C01; 5 (15 yuan) written off."""
    entries = [
        reports.goods_in_entry(REF, donation(1, "masks", 100, "piece", 300), AT, "e1"),
        reports.transferred_out_entry(REF, {
            "lot_id": "D1", "category": "masks", "location_id": "QY-S01-C01", "delta": -30,
            "available": 70, "unit": "piece", "reason": "transferred", "transfer_id": "TR-1",
            "to_location_id": "QY-S01", "value_yuan": 90.0}, AT, "e2"),
        reports.transferred_in_entry(REF, donation(
            1, "masks", 30, "piece", 90.0, location="QY-S01", lot_id="TR-1",
            transfer_of="D1"), AT, "e3"),
    ]
    for aid, lot_id, qty, value, loc in [("A1", "TR-1", 10, 30.0, "QY-S01"),
                                         ("A2", "D1", 20, 60.0, "QY-S01-C01")]:
        entries.append(reports.allocated_entry(REF, {
            "assignment_id": aid, "need_id": "N", "community_id": "QY-S01-C02",
            "category": "masks", "quantity": qty, "unit": "piece", "lot_id": lot_id,
            "lot_quantity": qty, "lot_unit": "piece", "location_id": loc, "tier_distance": 1,
            "value_yuan": value}, AT, aid))
    entries.append(reports.written_off_entry(REF, {
        "lot_id": "D1", "category": "masks", "location_id": "QY-S01-C01", "delta": -5,
        "available": 45, "unit": "piece", "reason": "written_off", "write_off_id": "WO-1",
        "value_yuan": 15.0}, AT, "w1"))
    source = lot(1, "masks", 100, "piece", 300, available=units.to_milli(45, "piece"),
                 allocated=20_000, allocated_fen=6000, written_off=5000,
                 written_off_fen=1500, transferred=30_000, transferred_fen=9000)
    moved = lot(1, "masks", 30, "piece", 90.0, location="QY-S01", transfer_of="D1",
                available=20_000, allocated=10_000, allocated_fen=3000)
    return entries, [source, moved]


def test_a_transfer_is_a_movement_that_reconciles_in_quantity_and_yuan():
    entries, lots = transfer_world()
    stock = summarise(lots)
    cells = {s["location_id"]: s for s in stock}
    assert cells["QY-S01"]["transferred_in_milli"] == 30_000
    assert cells["QY-S01"]["received_milli"] == 0
    assert cells["QY-S01-C01"]["in_stock_fen"] == 30000 - 6000 - 1500 - 9000
    result = reports.reconcile(REF, entries, stock)
    assert result["balanced"], result["differences"]
    rows = {r["location_id"]: r for r in result["rows"]}
    assert rows["QY-S01"]["in_stock_yuan"] == 60.0 and rows["QY-S01-C01"]["in_stock"] == 45
    # the bulletin counts the goods once: the transfer nets to nothing
    [masks] = reports.bulletin_figures(REF, entries)["goods"]
    assert (masks["received"], masks["allocated"], masks["in_stock"]) == (100, 30, 65)
    by_street = {(r["group"], r["category"]): r for r in reports.report(REF, entries, "street")}
    assert by_street[("QY-S01", "masks")]["transferred_in"] == 30
    by_donor = {r["group"]: r for r in reports.report(REF, entries, "donor")}
    assert by_donor["好医生集团"]["allocated"] == 30  # the moved lot keeps its donor


def test_a_value_gone_without_an_event_is_a_value_difference():
    entries, lots = transfer_world()
    lots[0]["allocated_fen"] += 100  # one yuan left the lot that the ledger never heard of
    result = reports.reconcile(REF, entries, summarise(lots))
    [diff] = result["differences"]
    assert (diff["location_id"], diff["difference"], diff["value_difference_yuan"]) == (
        "QY-S01-C01", 0, 1.0)


def test_cash_is_shown_apart_from_goods_and_pledges_are_counted():
    entries = [
        reports.goods_in_entry(REF, donation(1, "masks", 100, "piece", 300), AT, "e1"),
        reports.goods_in_entry(REF, donation(2, "cash", 50000, "yuan", 50000,
                                             pledge_id="P1"), AT, "e2"),
        reports.pledge_entry({"pledge_id": "P1", "category": "cash", "quantity": 80000,
                              "unit": "yuan", "value_yuan": 80000, "expected_at": date(2020, 2, 20),
                              "donor": {"name": "某爱心企业", "kind": "company"}}, AT, "p1"),
        reports.status_report_entry({
            "report_id": "R1", "organisation_id": "O1", "reported_at": AT,
            "activities": "配送", "staff": {"total": 12, "healthy": 11, "fever": 0,
                                           "quarantined": 1}, "resumption": "partial"},
            AT, "r1"),
        reports.status_report_entry({
            "report_id": "R2", "organisation_id": "O1", "reported_at": AT + WEEK,
            "activities": "配送", "staff": {"total": 12, "healthy": 12, "fever": 0,
                                           "quarantined": 0}, "resumption": "resumed"},
            AT, "r2"),
    ]
    figures = reports.bulletin_figures(REF, entries)
    assert [g["category"] for g in figures["goods"]] == ["masks"]
    assert figures["goods_total_yuan"] == 300
    assert figures["cash"]["received"] == 50000 and figures["cash"]["in_stock"] == 50000
    assert figures["pledges"] == {"made": 1, "value_yuan": 80000, "received_yuan": 50000}
    assert figures["status_reports"]["resumed"] == 1  # the latest report counts
    assert figures["status_reports"]["staff"]["healthy"] == 12
    zh = reports.bulletin_text(REF, figures)
    assert "现金捐赠 50,000.00 元（约 5 万元）" in zh
    assert "认捐 1 笔" in zh and "已复工 1 家" in zh
    assert "Cash donations: 50,000.00 yuan" in reports.bulletin_text(REF, figures, "en")
    assert REF.catalogue.get("cash").unit == "yuan"
