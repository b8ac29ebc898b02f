"""Pledges received in parts, cash, a transfer between warehouses and reconciliation in
quantity and yuan, and status reports, driven through the API of the running system."""

import uuid
from datetime import date, timedelta

from tests.support import eventually

RUN = uuid.uuid4().hex[:6]
C1, STREET = "QY-S07-C01", "QY-S07"
DONOR = {"name": "四川德康农牧食品集团", "kind": "company",
         "contact": {"name": "李四", "phone": "13712345678"}}


def uid(prefix):
    return f"{prefix}-{RUN}-{uuid.uuid4().hex[:12]}"  # unique: a need id seen again is a repost


def test_pledges_cash_and_a_transfer_add_up_and_reconcile_in_yuan(system):
    # a pledge of 10 t of vegetables worth 40,000 yuan, at the street warehouse
    veg = uid("P")
    body = {"pledge_id": veg, "donor": DONOR, "category": "vegetables", "quantity": 10,
            "unit": "t", "expected_at": (date.today() - timedelta(days=1)).isoformat(),
            "location_id": STREET, "value_yuan": 40000}
    r = system.api("POST", "/api/pledges", json=body)
    assert r.status_code == 201 and r.json()["created"] is True, r.text
    assert system.api("POST", "/api/pledges", json=body).json()["created"] is False
    assert system.api("POST", "/api/pledges", json={**body, "colour": 1}).status_code == 400
    bad = system.api("POST", "/api/pledges", json={**body, "pledge_id": uid("P"),
                                                   "unit": "piece"})
    assert bad.status_code == 400 and "unit" in bad.json()["fields"]
    cash = uid("P")
    r = system.api("POST", "/api/pledges", json={
        "pledge_id": cash, "donor": {"name": "某爱心企业", "kind": "company"},
        "category": "cash", "quantity": 80000, "unit": "yuan",
        "expected_at": date.today().isoformat(), "location_id": "QY"})
    assert r.status_code == 201, r.text

    # the vegetables arrive in two parts (one retried), the cash in one
    part1, part2, money = uid("D"), uid("D"), uid("D")
    for _ in range(2):
        r = system.api("POST", f"/api/pledges/{veg}/parts",
                       json={"donation_id": part1, "quantity": 4, "unit": "t"})
        assert r.status_code == 202, r.text
    r = system.api("POST", f"/api/pledges/{veg}/parts",
                   json={"donation_id": part2, "quantity": 2000, "unit": "jin"})
    assert r.status_code == 202, r.text
    r = system.api("POST", f"/api/pledges/{cash}/parts",
                   json={"donation_id": money, "quantity": 50000})
    assert r.status_code == 202, r.text
    assert system.api("POST", f"/api/pledges/{veg}/parts", json={
        "donation_id": uid("D"), "quantity": 1, "unit": "piece"}).status_code == 400
    assert system.api("POST", "/api/pledges/nope/parts", json={
        "donation_id": uid("D"), "quantity": 1}).status_code == 404

    def pledge(pid):
        return system.api("GET", f"/api/pledges/{pid}").json()

    v = eventually(lambda: (p := pledge(veg))["received"] == 5 and p, what="two parts counted")
    assert (v["status"], v["remaining"], v["received_yuan"], v["overdue"]) == (
        "partial", 5, 20000, True)
    assert "contact" not in v["donor"] and len(v["parts"]) == 2
    eventually(lambda: pledge(cash)["received"] == 50000, what="cash counted")
    open_ids = [p["pledge_id"] for p in system.api("GET", "/api/pledges?open=true").json()[
        "pledges"]]
    assert veg in open_ids and cash in open_ids
    assert system.api("GET", "/api/pledges?open=maybe").status_code == 400
    r = system.api("GET", f"/api/donations/{part1}/receipt")
    assert r.status_code == 200 and DONOR["name"] in r.text

    # a transfer of 1 t from the street warehouse to a community's (retried once)
    transfer = {"request_id": f"tr-{RUN}", "quantity": 1, "unit": "t", "to_location_id": C1}
    r = system.api("POST", f"/api/lots/{part1}/transfers", json=transfer)
    assert r.status_code == 200, r.text
    moved = r.json()
    assert (moved["available"], moved["transferred"], moved["repeated"]) == (3, 1, False)
    again = system.api("POST", f"/api/lots/{part1}/transfers", json=transfer).json()
    assert again["repeated"] is True and again["transferred"] == 1
    assert system.api("POST", f"/api/lots/{part1}/transfers", json={
        **transfer, "request_id": f"tr2-{RUN}", "quantity": 100}).status_code == 409
    assert system.api("POST", f"/api/lots/{part1}/transfers", json={
        **transfer, "request_id": f"tr3-{RUN}", "to_location_id": "QY-S99"}).status_code == 400
    to_lot = moved["to_lot_id"]
    lots = eventually(lambda: to_lot in (x := system.lots("vegetables")) and x,
                      what="the new lot in stock")
    assert lots[to_lot]["location_id"] == C1 and lots[to_lot]["value_yuan"] == 4000

    # a community need is served from the lot that was moved there
    need = uid("N")
    r = system.api("POST", "/api/needs", json={
        "need_id": need, "community_id": C1, "kind": "goods", "category": "vegetables",
        "quantity": 400, "unit": "jin", "urgency": "high"})
    assert r.status_code == 202, r.text
    n = eventually(lambda: (x := system.need(need)) and x["status"] == "fulfilled" and x,
                   what="need fulfilled")
    assert [a["lot_id"] for a in n["assignments"]] == [to_lot]

    def settled():
        b = system.api("GET", "/api/bulletin").json()
        rec = system.api("GET", "/api/reconciliation").json()
        g = {x["category"]: x for x in b["goods"]}
        ok = (rec["balanced"] and g.get("vegetables", {}).get("allocated") == 0.2
              and b["cash"]["received"] == 50000 and b["pledges"]["made"] == 2)
        return ok and (b, rec)

    bulletin, rec = eventually(settled, what="bulletin and reconciliation settled")
    g = {x["category"]: x for x in bulletin["goods"]}
    assert (g["vegetables"]["received"], g["vegetables"]["in_stock"]) == (5, 4.8)
    assert "cash" not in g and bulletin["goods_total_yuan"] == 20000
    assert bulletin["pledges"] == {"made": 2, "value_yuan": 120000, "received_yuan": 70000}
    rows = {(x["category"], x["location_id"]): x for x in rec["rows"]}
    street, community = rows[("vegetables", STREET)], rows[("vegetables", C1)]
    # reconciliation counts in the category's unit (kg for vegetables)
    assert (street["received"], street["transferred_out"], street["in_stock"]) == (
        5000, 1000, 4000)
    assert (street["received_yuan"], street["in_stock_yuan"]) == (20000, 16000)
    assert (community["transferred_in"], community["allocated"], community["in_stock"]) == (
        1000, 200, 800)
    assert (community["allocated_yuan"], community["in_stock_yuan"]) == (800, 3200)
    assert rows[("cash", "QY")]["in_stock_yuan"] == 50000
    text = system.api("GET", "/api/bulletin?format=text").text
    assert "现金捐赠 50,000.00 元" in text and "认捐 2 笔" in text
    assert "13712345678" not in text and "李四" not in text
    print("\n" + text)


def test_status_reports_through_the_api(system):
    org = uid("O")
    r = system.api("POST", "/api/organisations", json={
        "organisation_id": org, "name": "爱有戏社区文化发展中心", "role": "member",
        "kind": "social_organisation"})
    assert r.status_code == 201, r.text
    report = {"report_id": uid("R"), "activities": "社区防疫宣传，独居老人探访",
              "area_ids": [C1], "staff": {"total": 8, "healthy": 8},
              "resumption": "resumed", "resumed_on": date.today().isoformat()}
    r = system.api("POST", f"/api/organisations/{org}/status-reports", json=report)
    assert r.status_code == 201 and r.json()["repeated"] is False, r.text
    r = system.api("POST", f"/api/organisations/{org}/status-reports", json=report)
    assert r.json()["repeated"] is True
    bad = system.api("POST", f"/api/organisations/{org}/status-reports",
                     json={**report, "staff": {"total": 1, "healthy": 1, "sick": 2}})
    assert bad.status_code == 400 and "staff.sick" in bad.json()["fields"]
    assert system.api("POST", "/api/organisations/nobody/status-reports",
                      json=report).status_code == 404
    reports = system.api("GET", f"/api/organisations/{org}/status-reports").json()["reports"]
    assert [x["report_id"] for x in reports] == [report["report_id"]]
    rows = system.api("GET", "/api/organisations/reporting?overdue=false").json()[
        "organisations"]
    assert org in {x["organisation_id"] for x in rows}
    eventually(lambda: system.api("GET", "/api/bulletin").json()["status_reports"][
        "resumed"] >= 1, what="the report in the bulletin")
