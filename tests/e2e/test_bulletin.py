"""A season replayed through relief.intake and the API: the bulletin's totals are the sums of
what was sent in, reconciliation finds no difference, the XLSX carries the same figures, and
replaying everything twice changes no figure."""

import hashlib
import io
import uuid
from datetime import date

from openpyxl import load_workbook

from tests.support import envelope, eventually

RUN = uuid.uuid4().hex[:6]
C1, C2 = "QY-S06-C01", "QY-S06-C02"


def uid(prefix):
    return f"{prefix}-{RUN}-{uuid.uuid4().hex[:12]}"  # unique: a need id seen again is a repost


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
    assert "防护口罩 70,260 支" in text and "报损 1,000 支" in text  # the measure word
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
    assert csv_text.startswith("\ufeffgroup,category")  # a byte-order mark for Excel
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


def test_the_reports_season_purchases_unvalued_goods_services_programmes_lists_exports(system):
    """The 2020 report's own wording: goods bought through the coalition's links apart from
    those donated, values nobody stated, policies with their cover, services delivered and
    programmes with their reach, in a chosen period; then the lists and the files."""
    space = system.space

    def in_2020(type_, data, day="2020-02-15"):
        env = envelope(type_, data)
        env["occurred_at"] = f"{day}T09:00:00+00:00"
        space.publish("relief.intake", type_, env)

    thermo, masks, policies = uid("P"), uid("P"), uid("D")
    bought = {"acquisition": "purchased", "value_method": "declared"}
    in_2020("donation_received", {**donation(thermo, "thermometers", 102, "piece", None,
                                             location=C2), **bought})
    in_2020("donation_received", {**donation(masks, "masks", 70260, "piece", None), **bought})
    in_2020("donation_received", {**donation(policies, "insurance", 1000, "policy", None),
                                  "donor": {"name": "华夏保险", "kind": "company"},
                                  "face_value_yuan": 200000})
    # through the API, a value left out entirely
    cards = uid("D")
    body = donation(cards, "bike_cards", 100, "card", None)
    del body["value_yuan"], body["value_method"]
    assert system.api("POST", "/api/donations", json=body).status_code == 202
    r = system.api("POST", "/api/programmes", json={
        "programme_id": f"P-{RUN}", "name": "社区“疫路同行”计划", "name_en": "Walking together",
        "recorded_at": "2020-03-01T00:00:00+00:00", "activities": 10, "communities": 30,
        "groups": 50, "participants": 200, "approximate": True})
    assert r.status_code == 201 and r.json()["created"] is True, r.text
    again = system.api("POST", "/api/programmes", json={
        "programme_id": f"P-{RUN}", "name": "社区“疫路同行”计划", "name_en": "Walking together",
        "recorded_at": "2020-03-01T00:00:00+00:00", "activities": 10, "communities": 30,
        "groups": 50, "participants": 200, "approximate": True})
    assert again.json()["created"] is False
    r = system.api("POST", "/api/services/deliveries", json={
        "delivery_id": f"S-{RUN}", "programme": "爱心益剪", "category": "haircut",
        "date": "2020-03-01", "people_served": 400, "providers": 6, "approximate": True})
    assert r.status_code == 201, r.text
    bad = system.api("POST", "/api/services/deliveries", json={
        "delivery_id": "S-x", "programme": "x", "date": "2020-03-01", "sessions": 10**9})
    assert bad.status_code == 400 and "sessions" in bad.json()["fields"]

    period = "from=2020-01-24&to=2020-03-31"

    def settled():
        b = system.api("GET", f"/api/bulletin?{period}").json()
        return (len(b["purchases"]) == 2 and b["goods"] and b["services"]
                and b["programmes"] and b)

    figures = eventually(settled, what="the 2020 season in the ledger")
    assert figures["goods_unvalued_categories"] == 1 and figures["goods_total_yuan"] == 0
    assert [g["category"] for g in figures["goods"]] == ["insurance"]  # not the purchases
    text = system.api("GET", f"/api/bulletin?{period}&format=text").text
    assert "统计期间：2020-01-24 至 2020-03-31" in text
    assert "防疫保险 1,000 份（每份保额/面值 200,000.00 元），未计价值" in text
    assert "物资合计价值 0.00 元（其中 1 类未计价值）" in text
    assert "链接购买物资（不计入募集物资）" in text and "测温仪 102 台，未计价值" in text
    assert "防护口罩 70,260 支" in text and "（其中 2 类未计价值）" in text
    assert "爱心益剪（理发）：服务 400余 人次，服务人员 6余 名" in text
    assert "社区“疫路同行”计划：开展活动 10余 期，参与社区 30余 个，社区自组织 50余 支" in text
    en = system.api("GET", f"/api/bulletin?{period}&format=text&lang=en").text
    assert "Period: 2020-01-24 to 2020-03-31" in en and "thermometers: 102 units" in en
    assert "Walking together: 10+ activities; 30+ communities" in en
    assert len(en.splitlines()) == len(text.splitlines())
    # the bike cards came in today: outside the period, in the whole bulletin, unvalued
    eventually(lambda: "骑行月卡 100 张，未计价值" in system.api(
        "GET", "/api/bulletin?format=text").text, what="the cards in the bulletin")

    # lists: filtered, a page at a time, never overlapping
    day = "from=2020-02-15&to=2020-02-15"
    first = system.api("GET", f"/api/donations?{day}&limit=2").json()
    assert len(first["items"]) == 2 and first["next"]
    rest = system.api("GET", f"/api/donations?{day}&limit=2&after={first['next']}").json()
    assert rest["next"] is None
    assert sorted(d["donation_id"] for d in first["items"] + rest["items"]) == sorted(
        [thermo, masks, policies])
    purchased = system.api("GET", f"/api/donations?{day}&acquisition=purchased").json()
    assert {d["donation_id"] for d in purchased["items"]} == {thermo, masks}
    assert all(d["value_yuan"] is None for d in purchased["items"])
    lots = system.api("GET", "/api/lots?area=QY-S06&category=thermometers&status=available")
    assert thermo in {lot["lot_id"] for lot in lots.json()["items"]}
    assert thermo not in {lot["lot_id"] for lot in system.api(
        "GET", "/api/lots?area=QY-S01&category=thermometers").json()["items"]}
    need, volunteer = uid("N"), uid("V")
    space.intake("need_posted", {"need_id": need, "community_id": C2, "kind": "goods",
                                 "category": "protective_suits", "quantity": 5,
                                 "unit": "piece", "urgency": "low", "programme": "暖心"})
    space.intake("volunteer_registered", {"volunteer_id": volunteer, "home_community_id": C2,
                                          "skills": ["haircut"],
                                          "contact": {"name": "钱八", "phone": "13700005678"}})
    open_needs = eventually(lambda: (r := system.api(
        "GET", "/api/needs?status=open&category=protective_suits&area=QY-S06").json())
        ["items"] and r, what="the need in the list")
    assert [n["need_id"] for n in open_needs["items"]] == [need]
    assert open_needs["items"][0]["programme"] == "暖心"
    assert system.api("GET", "/api/needs?area=QY-S01&category=protective_suits").json()[
        "items"] == []
    people = eventually(lambda: system.api(
        "GET", f"/api/volunteers?area={C2}&category=haircut").json()["items"],
        what="the volunteer in the list")
    assert people[0]["volunteer_id"] == volunteer
    assert people[0]["contact"]["phone"] == "137****5678" and "13700005678" not in str(people)
    for query in ("limit=0", "limit=1000000", "area=nowhere", "status=lost", "surprise=1",
                  "from=yesterday", "format=pdf", "lang=fr"):
        r = system.api("GET", f"/api/needs?{query}")
        assert r.status_code == 400, (query, r.text)

    # files people open in Excel
    r = system.api("GET", f"/api/donations?{day}&format=csv&lang=zh-CN")
    assert r.status_code == 200 and r.content.startswith("\ufeff捐赠编号".encode())
    r = system.api("GET", f"/api/donations?{day}&format=xlsx&lang=zh-CN")
    assert r.status_code == 200 and r.headers["X-Rows"] == "3"
    sheet = load_workbook(io.BytesIO(r.content))["donations"]
    head = [c.value for c in sheet[1]]
    assert head[:4] == ["捐赠编号", "收据编号", "来源", "类别"] and sheet.freeze_panes == "A2"
    row = next(r for r in sheet.iter_rows(min_row=2) if r[0].value == masks)
    assert row[4].value == 70260 and row[4].number_format == "#,##0.###"
    r = system.api("GET", f"/api/ledger/export?format=xlsx&lang=zh-CN&{period}")
    book = load_workbook(io.BytesIO(r.content))
    assert r.status_code == 200 and book["report"]["A1"].value == "分组"
    rows = {x[0]: x for x in book["bulletin"].iter_rows(values_only=True) if x and x[0]}
    assert rows["thermometers"][3] == 102 and rows["thermometers"][10] == "purchased"
    assert book["审计日志"].max_row == 1  # the audit log of 2020: nothing was done through it

    # the audit log goes with the ledger for whoever may read it (the operator, admins)
    r = system.api("GET", "/api/ledger/export?format=xlsx&lang=en")
    audit = load_workbook(io.BytesIO(r.content))["audit"]
    head = [c.value for c in audit[1]]
    entries = [dict(zip(head, x, strict=True)) for x in audit.iter_rows(min_row=2,
                                                                        values_only=True)]
    assert head[:2] == ["at", "actor"] and entries
    assert {"donations.post", "imports.write"} & {e["action"] for e in entries}
    assert all(e["actor"] for e in entries)
    account = f"district-{uuid.uuid4().hex[:6]}"
    assert system.api("POST", "/api/accounts", json={
        "account_id": account, "role": "district_coordinator", "area_id": "QY",
        "password": "correct horse battery"}).status_code == 201
    token = system.api("POST", "/api/session", token=None, json={
        "account_id": account, "password": "correct horse battery"}).json()["token"]
    r = system.api("GET", "/api/ledger/export?format=xlsx&lang=en", token=token)
    assert r.status_code == 200 and "audit" not in load_workbook(io.BytesIO(r.content)).sheetnames


def test_spreadsheets_import_row_by_row_through_the_same_events_and_only_once(system):
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    r = system.api("GET", "/api/imports/donations/template?lang=zh-CN")
    assert r.status_code == 200 and r.headers["Content-Type"] == xlsx
    book = load_workbook(io.BytesIO(r.content))
    sheet = book.worksheets[0]
    head = [c.value for c in sheet[1]]
    assert head[0] == "捐赠编号" and sheet.freeze_panes == "A2"
    good, wrong = uid("IMP"), uid("IMP")
    column = {name: i for i, name in enumerate(head)}

    def line(**cells):
        out = [None] * len(head)
        for name, value in cells.items():
            out[column[name]] = value
        return out

    sheet.append(line(捐赠编号=good, **{"来源（donated/purchased）": "purchased"},
                      **{"捐赠方/供应方": "成都启毅农业科技有限公司", "捐赠方类型": "company",
                         "入库地点编号": C1, "类别": "protective_suits", "数量": 30,
                         "单位": "piece"}))
    sheet.append(line(捐赠编号=wrong, **{"捐赠方/供应方": "x", "捐赠方类型": "company",
                                       "入库地点编号": "QY-S99-C09", "类别": "masks",
                                       "数量": 5, "单位": "piece"}))
    out = io.BytesIO()
    book.save(out)
    upload = {"data": out.getvalue(), "headers": {"Content-Type": xlsx}}
    refused = system.api("POST", "/api/imports/donations", **upload)
    assert refused.status_code == 422, refused.text
    assert "row 3.location_id" in refused.json()["fields"]
    r = system.api("POST", "/api/imports/donations?good_rows=true", **upload)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["imported"], report["invalid"], report["errors"][0]["row"]) == (1, 1, 3)
    again = system.api("POST", "/api/imports/donations?good_rows=true", **upload).json()
    assert (again["imported"], again["duplicates"]) == (0, 1)
    # its progress, found by the file's SHA-256 (what sha256sum prints), while or after
    digest = hashlib.sha256(out.getvalue()).hexdigest()
    progress = system.api("GET", f"/api/imports/progress/{digest}").json()
    assert (progress["state"], progress["rows"], progress["done"], progress["imported"],
            progress["duplicates"]) == ("done", 1, 1, 0, 1), progress
    assert system.api("GET", f"/api/imports/progress/{'0' * 64}").status_code == 404
    # the same donation id with other figures: that row is refused, the first stands
    sheet.cell(row=2, column=column["数量"] + 1, value=31)
    changed_book = io.BytesIO()
    book.save(changed_book)
    changed = system.api("POST", "/api/imports/donations?good_rows=true",
                         data=changed_book.getvalue(), headers={"Content-Type": xlsx}).json()
    assert (changed["imported"], changed["duplicates"]) == (0, 0), changed
    assert [e["fields"]["donation_id"] for e in changed["errors"] if e["row"] == 2] == [
        f"donation_id {good!r} was posted before with other content; the first stands"]
    eventually(lambda: {d["donation_id"] for d in system.api(
        "GET", "/api/donations?category=protective_suits&acquisition=purchased").json()[
        "items"]} == {good}, what="the imported purchase, once")

    # volunteers, their hours and the services delivered, from CSV files
    v = uid("V")
    csv_files = {
        "volunteers": f"志愿者编号,所在社区编号,技能（逗号分隔）,姓名,电话\n{v},{C1},haircut,孙九,"
                      "13800009999\n",
        "hours": f"hours id,volunteer id,hours,date,activity\n{uid('H')},{v},3.5,2020-03-02,"
                 "haircut\n",
        "deliveries": f"delivery_id,programme,category,date,sessions,people_served\n"
                      f"{uid('S')},e修就好,repair,2020-03-02,50,50\n",
        "programmes": "项目编号,项目名称,所属计划,开展活动（期/次）,参与社区数,覆盖人次,"
                      f"约数（是/否）\n{uid('P')},AI机器人线上课堂,互助增能计划,18,30,5000,是\n"}
    for kind, text in csv_files.items():
        r = system.api("POST", f"/api/imports/{kind}", data=("\ufeff" + text).encode(),
                       headers={"Content-Type": "text/csv"})
        assert r.status_code == 200 and r.json()["imported"] == 1, (kind, r.text)
    programmes = {p["name"]: p for p in system.api("GET", "/api/programmes").json()[
        "programmes"]}
    assert (programmes["AI机器人线上课堂"]["activities"],
            programmes["AI机器人线上课堂"]["reach"]) == (18, 5000)
    # one workbook, a sheet per kind (named as coordinators would)
    from openpyxl import Workbook

    v2 = uid("V")
    book = Workbook()
    book.active.title = "志愿者"
    book.active.append(["志愿者编号", "所在社区编号", "技能（逗号分隔）"])
    book.active.append([v2, C2, "repair"])
    hours_sheet = book.create_sheet("服务时长")
    hours_sheet.append(["时长记录编号", "志愿者编号", "时长（小时）", "日期"])
    hours_sheet.append([uid("H"), v2, 24, "2020-03-03"])
    out = io.BytesIO()
    book.save(out)
    r = system.api("POST", "/api/imports", data=out.getvalue(), headers={"Content-Type": xlsx})
    assert r.status_code == 200, r.text
    assert [(s["kind"], s["imported"]) for s in r.json()["sheets"]] == [("volunteers", 1),
                                                                       ("hours", 1)]
    eventually(lambda: [h["volunteer_id"] for h in system.api(
        "GET", f"/api/hours?volunteer_id={v}&status=pending").json()["hours"]] == [v],
        what="the imported hours waiting for approval")
    eventually(lambda: any(s["programme"] == "e修就好" for s in system.api(
        "GET", "/api/bulletin").json()["services"]), what="the imported delivery")
    assert system.api("POST", "/api/imports/cats", data=b"a\n",
                      headers={"Content-Type": "text/csv"}).status_code == 404
    assert system.api("POST", "/api/imports/needs", data=b"<x/>",
                      headers={"Content-Type": "application/xml"}).status_code == 415
    assert system.api("POST", "/api/imports/needs", data=b"PK\x03\x04garbage",
                      headers={"Content-Type": xlsx}).status_code == 400
    assert system.api("POST", "/api/imports/needs", data=b"need_id,colour\n1,2\n",
                      headers={"Content-Type": "text/csv"}).status_code == 400
