"""A season replayed through relief.intake and the API: the bulletin's totals are the sums of
what was sent in, reconciliation finds no difference, the XLSX carries the same figures, and
replaying everything twice changes no figure."""

import io
import uuid
from datetime import date

from openpyxl import load_workbook

from tests.support import eventually

RUN = uuid.uuid4().hex[:6]
C1, C2 = "QY-S06-C01", "QY-S06-C02"


def uid(prefix):
    return f"{prefix}-{RUN}-{uuid.uuid4().hex[:4]}"


def donation(donation_id, category, qty, unit, value, location=C1, **kw):
    return {"donation_id": donation_id, "donor": {"name": "成都启毅农业科技有限公司",
                                                  "kind": "company"},
            "location_id": location, "category": category, "quantity": qty, "unit": unit,
            "value_yuan": value, "value_method": "market", **kw}


def goods(system):
    return {g["category"]: g for g in system.api("GET", "/api/bulletin").json()["goods"]}


def test_a_season_adds_up_in_the_bulletin_reconciles_and_survives_a_replay(system):
    space = system.space
    sent = []  # every intake envelope, to replay

    def intake(type_, data):
        sent.append((type_, data, space.intake(type_, data)))

    # organisations and training (API)
    for i, role in enumerate(["founding", "founding", "member", "member", "member"]):
        r = system.api("POST", "/api/organisations", json={
            "organisation_id": f"O-{RUN}-{i}", "name": f"社创机构{i}", "role": role,
            "kind": "social_enterprise" if i % 2 else "social_organisation",
            "contacts": [{"name": "陈七", "phone": "13500002222", "role": "负责人"}]})
        assert r.status_code == 201, r.text
    r = system.api("POST", "/api/training", json={
        "session_id": f"T-{RUN}", "title": "疫情之下如何开展线上活动",
        "date": date.today().isoformat(), "attendances": 260, "programme": "社创机构互助增能计划"})
    assert r.status_code == 201, r.text

    # donations: through intake and through the API
    veg_a, veg_b, masks, thermo, disinf = (uid("D") for _ in range(5))
    intake("donation_received", donation(veg_a, "vegetables", 40, "t", 165000, location="QY"))
    intake("donation_received", donation(veg_b, "vegetables", 1000, "kg", 5000,
                                         location="QY-S06"))
    intake("donation_received", donation(masks, "masks", 70260, "piece", 351300))
    intake("donation_received", donation(thermo, "thermometers", 102, "piece", 12240,
                                         location=C2))
    r = system.api("POST", "/api/donations", json=donation(
        disinf, "disinfectant", 5728, "jin", 4850000, programme="抗疫联合服务合力计划"))
    assert r.status_code == 202, r.text
    eventually(lambda: len(goods(system)) == 4 and goods(system)["disinfectant"]["received"]
               == 5728, what="five donations in the ledger")

    # allocations: needs matched by matching
    n1, n2 = uid("N"), uid("N")
    for nid, cat, qty, unit in [(n1, "masks", 260, "piece"), (n2, "vegetables", 200, "jin")]:
        intake("need_posted", {"need_id": nid, "community_id": C1, "kind": "goods",
                               "category": cat, "quantity": qty, "unit": unit,
                               "urgency": "high"})
    for nid in (n1, n2):
        eventually(lambda nid=nid: (n := system.need(nid)) and n["status"] == "fulfilled",
                   what=f"need {nid} fulfilled")

    # a write-off (damaged masks), retried: counted once
    body = {"request_id": f"wo-{RUN}", "quantity": 1000, "unit": "piece", "reason": "damaged",
            "note": "受潮"}
    first = system.api("POST", f"/api/lots/{masks}/write-offs", json=body)
    assert first.status_code == 200, first.text
    again = system.api("POST", f"/api/lots/{masks}/write-offs", json=body).json()
    assert again["repeated"] is True and again["written_off"] == 1000
    too_much = system.api("POST", f"/api/lots/{masks}/write-offs",
                          json={**body, "request_id": f"wo2-{RUN}", "quantity": 10**6})
    assert too_much.status_code == 409
    bad = system.api("POST", f"/api/lots/{masks}/write-offs", json={**body, "reason": "eaten"})
    assert bad.status_code == 400 and "reason" in bad.json()["fields"]

    # volunteers and hours: approved, rejected, left pending
    v1, v2 = uid("V"), uid("V")
    for v in (v1, v2):
        intake("volunteer_registered", {"volunteer_id": v, "home_community_id": C1,
                                        "skills": ["counselling"],
                                        "contact": {"name": "赵六", "phone": "13600001234"}})
    today = date.today().isoformat()
    hours = {"approve": [(v1, 6, "counselling"), (v2, 4.5, "screening"),
                         (v2, 3, "counselling")],
             "reject": [(v1, 8, "counselling")], "pending": [(v2, 5, "screening")]}
    ids = {}
    for decision, rows in hours.items():
        for v, h, activity in rows:
            hid = uid("H")
            ids[hid] = decision
            data = {"hours_id": hid, "volunteer_id": v, "hours": h, "date": today,
                    "activity": activity, "programme": "社区心理援助暖心计划"}
            if decision == "pending":
                r = system.api("POST", "/api/hours", json=data)
                assert r.status_code == 202, r.text
            else:
                intake("hours_logged", data)
    for hid, decision in ids.items():
        if decision == "pending":
            continue
        r = eventually(lambda hid=hid, d=decision: (r := system.api(
            "POST", f"/api/hours/{hid}/decision", json={"decision": d})).status_code != 404
            and r, what="hours arrived")
        assert r.status_code == 200, r.text
    rejected = next(h for h, d in ids.items() if d == "reject")
    changed = system.api("POST", f"/api/hours/{rejected}/decision", json={"decision": "approve"})
    assert changed.status_code == 409
    pending = system.api("GET", "/api/hours?status=pending").json()["hours"]
    assert [h["hours_id"] for h in pending if h["hours_id"] in ids] == \
        [h for h, d in ids.items() if d == "pending"]

    def settled():
        b = system.api("GET", "/api/bulletin").json()
        rec = system.api("GET", "/api/reconciliation").json()
        ok = (b["volunteers"]["hours"] == 13.5 and b["goods"] and
              {g["category"]: g for g in b["goods"]}["masks"]["written_off"] == 1000
              and rec["balanced"])
        return ok and (b, rec)

    bulletin, rec = eventually(settled, what="bulletin and reconciliation settled")
    g = {row["category"]: row for row in bulletin["goods"]}
    assert (g["vegetables"]["received"], g["vegetables"]["unit"]) == (41, "t")
    assert g["vegetables"]["received_yuan"] == 170000
    assert g["vegetables"]["allocated"] == 0.1  # 200 jin = 0.1 t
    assert (g["masks"]["received"], g["masks"]["allocated"], g["masks"]["written_off"],
            g["masks"]["in_stock"]) == (70260, 260, 1000, 69000)
    assert g["masks"]["written_off_yuan"] == 5000.0  # its share of the lot's value
    assert g["thermometers"]["received"] == 102
    assert (g["disinfectant"]["received"], g["disinfectant"]["received_yuan"]) == (5728,
                                                                                 4850000)
    assert bulletin["goods_total_yuan"] == 165000 + 5000 + 351300 + 12240 + 4850000
    assert bulletin["volunteers"]["served"] == 2 and bulletin["volunteers"]["registered"] == 2
    assert bulletin["volunteers"]["hours_by_activity"] == {"counselling": 9, "screening": 4.5}
    assert bulletin["organisations"]["founding"] == 2
    assert bulletin["organisations"]["member"] == 3
    assert bulletin["training"] == {"sessions": 1, "attendances": 260}
    text = system.api("GET", "/api/bulletin?format=text").text
    assert "新鲜蔬菜 41 吨，价值 170,000.00 元（约 17 万元）" in text
    assert "防护口罩 70,260 件" in text and "报损 1,000 件" in text
    assert "联盟发起单位 2 家，参与互助单位 3 家" in text
    assert "13600001234" not in text and "陈七" not in text
    en = system.api("GET", "/api/bulletin?format=text&lang=en").text
    assert "fresh vegetables: 41 t" in en
    print("\n" + text)
    assert all(r["difference"] == 0 for r in rec["rows"])

    # the XLSX opens with the same figures
    r = system.api("GET", "/api/ledger/export?format=xlsx")
    assert r.status_code == 200 and "spreadsheetml" in r.headers["Content-Type"]
    sheet = load_workbook(io.BytesIO(r.content))["bulletin"]
    rows = {row[0]: row for row in sheet.iter_rows(values_only=True) if row and row[0]}
    assert rows["vegetables"][2:5] == ("t", 41, 170000)
    assert rows["masks"][3] == 70260 and rows["volunteer_hours"][1] == 13.5
    csv_text = system.api("GET", "/api/ledger/export?format=csv&by=street").text
    assert csv_text.startswith("group,category")
    report = system.api("GET", "/api/ledger/report?by=community").json()["rows"]
    assert {(x["group"], x["category"]): x for x in report}[(C1, "masks")]["allocated"] == 260

    # the donor's receipt
    r = system.api("GET", f"/api/donations/{masks}/receipt")
    assert r.status_code == 200 and r.headers["X-Receipt-No"].startswith("JZ-")
    assert "成都启毅农业科技有限公司" in r.text and "70,260 件" in r.text
    assert "Donation receipt" in system.api("GET",
                                            f"/api/donations/{masks}/receipt?lang=en").text
    assert system.api("GET", "/api/donations/nope/receipt").status_code == 404

    # replay: every intake event again (same ids), and the API requests again
    for type_, data, event_id in sent:
        space.intake(type_, data, event_id=event_id)
    for type_, data, _ in sent:  # and as new events naming the same things
        space.intake(type_, data)
    system.api("POST", f"/api/lots/{masks}/write-offs", json=body)
    marker = uid("D")
    space.intake("donation_received", donation(marker, "gloves", 1, "pair", 1))
    eventually(lambda: "gloves" in goods(system), what="a marker behind the replay")
    after = system.api("GET", "/api/bulletin").json()
    assert [x for x in after["goods"] if x["category"] != "gloves"] == bulletin["goods"]
    assert after["volunteers"] == bulletin["volunteers"]
    assert eventually(lambda: system.api("GET", "/api/reconciliation").json()["balanced"])


def test_domain_routes_need_the_token_and_strict_bodies(system):
    for method, path in [("GET", "/api/bulletin"), ("GET", "/api/reconciliation"),
                         ("POST", "/api/lots/x/write-offs"), ("GET", "/api/hours"),
                         ("GET", "/api/ledger/export")]:
        assert system.api(method, path, token=None).status_code == 401
    r = system.api("POST", "/api/organisations", json={
        "organisation_id": "O-x", "name": "x", "role": "founding", "kind": "company",
        "surprise": 1})
    assert r.status_code == 400 and "surprise" in r.json()["fields"]
    assert system.api("GET", "/api/ledger/report?by=colour").status_code == 400
    assert system.api("POST", "/api/hours/nope/decision",
                      json={"decision": "approve"}).status_code == 404
