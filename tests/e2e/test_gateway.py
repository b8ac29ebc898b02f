"""The HTTP gateway as a coordinator's tool would use it."""

import uuid
from datetime import UTC, datetime, timedelta

from tests.support import eventually

NEED = {"community_id": "QY-S05-C02", "kind": "goods", "category": "thermometers",
        "quantity": 3, "unit": "piece", "urgency": "critical",
        "contact": {"name": "李四", "phone": "13700001111"}}


def test_requests_without_the_token_are_refused(system):
    for method, path in [("GET", "/api/areas"), ("POST", "/api/needs"),
                         ("GET", "/api/needs/x"), ("GET", "/api/stock")]:
        assert system.api(method, path, token=None).status_code == 401
    response = system.api("GET", "/api/areas", token="wrong")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_health_needs_no_token_and_reports_consumers(system):
    body = system.api("GET", "/health", token=None).json()
    assert body["status"] == "ok"
    assert body["database"]["reachable"] and body["broker"]["reachable"]
    assert body["queues"]["evt-intake-need_posted--matching.on_need_posted"]["consumers"] >= 1
    assert body["queues"]["relief.intake.events"]["consumers"] >= 1


def test_reference_data_is_served(system):
    areas = system.api("GET", "/api/areas").json()["areas"]
    assert len(areas) == 1 and len(areas[0]["children"]) == 12
    assert sum(len(s["children"]) for s in areas[0]["children"]) == 79
    categories = {c["id"]: c for c in system.api("GET", "/api/categories").json()["categories"]}
    assert categories["disinfectant"]["unit"] == "jin"


def test_bad_bodies_get_400_with_the_failing_fields(system):
    r = system.api("POST", "/api/needs", json={**NEED, "need_id": "x", "surprise": 1})
    assert r.status_code == 400 and "surprise" in r.json()["fields"]
    r = system.api("POST", "/api/needs", json={**NEED, "need_id": "x", "quantity": -1})
    assert r.status_code == 400 and "quantity" in r.json()["fields"]
    r = system.api("POST", "/api/needs", data="{oops", headers={
        "Content-Type": "application/json"})
    assert r.status_code == 400
    r = system.api("POST", "/api/needs", json={**NEED, "need_id": "x",
                                                "community_id": "QY-S77-C01"})
    assert r.status_code == 400 and "data.community_id" in r.json()["fields"]
    assert system.api("GET", "/api/needs/x").status_code == 404  # nothing was stored


def test_posting_through_http_runs_the_same_chain(system):
    lot_id, need_id = f"D-{uuid.uuid4().hex[:6]}", f"N-{uuid.uuid4().hex[:6]}"
    r = system.api("POST", "/api/donations", json={
        "donation_id": lot_id, "donor": {"name": "好医生集团", "kind": "company"},
        "location_id": "QY-S05", "category": "thermometers", "quantity": 10, "unit": "piece",
        "value_yuan": 1200, "value_method": "market"})
    assert r.status_code == 202, r.text
    r = system.api("POST", "/api/needs", json={**NEED, "need_id": need_id})
    assert r.status_code == 202 and r.json()["status_url"] == f"/api/needs/{need_id}"
    first = r.json()["event_id"]
    again = system.api("POST", "/api/needs", json={**NEED, "need_id": need_id}).json()
    assert again["duplicate"] is True and again["event_id"] == first  # a retried POST is safe

    need = eventually(lambda: (n := system.need(need_id)) and n["status"] == "fulfilled" and n)
    assert need["assignments"][0]["lot_id"] == lot_id
    assert need["assignments"][0]["tier_distance"] == 1  # the street warehouse
    lots = eventually(lambda: (ls := system.lots("thermometers"))[lot_id]["available"] == 7
                      and ls)
    assert lots[lot_id]["allocated"] == 3


def test_status_shows_queues_and_the_oldest_open_need_per_tier(system):
    need_id = f"N-{uuid.uuid4().hex[:6]}"
    r = system.api("POST", "/api/needs", json={**NEED, "need_id": need_id,
                                               "category": "protective_suits", "quantity": 2})
    assert r.status_code == 202
    eventually(lambda: system.need(need_id))
    status = system.api("GET", "/api/status").json()
    names = {q["name"]: q for q in status["queues"]}
    assert names["relief.intake.dlq"]["dead_letter_queue"] is True
    assert names["evt-intake-need_posted--matching.on_need_posted"]["consumers"] >= 1
    oldest = status["needs"]["oldest_open"]["community"]
    assert oldest is not None and oldest["age_seconds"] >= 0
    assert status["needs"]["open_needs"]["community"]["critical"] >= 1
    assert system.api("GET", "/api/status", token=None).status_code == 401


# -- people: accounts, roles by area, sessions, API keys, the audit log ---------------------
def sign_in(system, account_id, password):
    return system.api("POST", "/api/session", token=None,
                      json={"account_id": account_id, "password": password})


def make_account(system, account_id, role, password="correct horse battery", **extra):
    r = system.api("POST", "/api/accounts", json={"account_id": account_id, "role": role,
                                                  "password": password, **extra})
    assert r.status_code == 201, r.text
    token = sign_in(system, account_id, password)
    assert token.status_code == 201, token.text
    return token.json()["token"]


def test_coordinators_act_within_their_area_and_refusals_say_what_they_may_do(system):
    tag = uuid.uuid4().hex[:6]
    street = make_account(system, f"s01-{tag}", "street_coordinator", area_id="QY-S01")
    community = make_account(system, f"c01-{tag}", "community_coordinator",
                             area_id="QY-S01-C01", name="王芳")
    me = system.api("GET", "/api/me", token=community).json()
    assert me["role"] == "community_coordinator" and me["areas"] == ["QY-S01-C01"]

    mine, theirs = f"N-{tag}-1", f"N-{tag}-2"
    need = {**NEED, "community_id": "QY-S01-C01", "category": "masks", "quantity": 60,
            "unit": "piece"}
    r = system.api("POST", "/api/needs", token=community, json={**need, "need_id": mine})
    assert r.status_code == 202, r.text
    r = system.api("POST", "/api/needs", token=community,
                   json={**need, "need_id": theirs, "community_id": "QY-S02-C01"})
    assert r.status_code == 403
    body = r.json()
    assert "QY-S02-C01" in body["error"] and "QY-S01-C01" in body["error"]
    assert "post needs in QY-S01-C01 and below" in body["allowed"]
    # the operator posts for QY-S02-C01; the community coordinator cannot read it
    assert system.api("POST", "/api/needs", json={**need, "need_id": theirs,
                                                  "community_id": "QY-S02-C01"}).status_code == 202
    eventually(lambda: system.need(mine) and system.need(theirs))
    assert system.api("GET", f"/api/needs/{mine}", token=community).status_code == 200
    assert system.api("GET", f"/api/needs/{theirs}", token=community).status_code == 403
    assert system.api("GET", f"/api/needs/{theirs}", token=street).status_code == 403
    assert system.api("GET", f"/api/needs/{mine}", token=street).status_code == 200
    # what is not a coordinator's at all
    r = system.api("GET", "/api/ledger/report", token=community)
    assert r.status_code == 403 and "read ledger" in r.json()["error"]
    assert system.api("POST", "/api/accounts", token=street, json={}).status_code == 403
    assert system.api("GET", "/api/audit", token=street).status_code == 403

    # hours: the street coordinator approves its own street's volunteers only
    home, away = f"V-{tag}-1", f"V-{tag}-2"
    for vid, community_id in ((home, "QY-S01-C01"), (away, "QY-S02-C01")):
        system.space.intake("volunteer_registered", {"volunteer_id": vid,
                                                     "home_community_id": community_id})
        r = system.api("POST", "/api/hours", json={
            "hours_id": f"H-{vid}", "volunteer_id": vid, "hours": 3, "date": "2020-02-10"})
        assert r.status_code == 202, r.text
    eventually(lambda: len([h for h in system.api("GET", "/api/hours?status=pending").json()[
        "hours"] if h["volunteer_id"] in (home, away)]) == 2, what="hours logged")
    listed = system.api("GET", "/api/hours?status=pending", token=street).json()["hours"]
    assert home in {h["volunteer_id"] for h in listed}
    assert away not in {h["volunteer_id"] for h in listed}
    decision = {"decision": "approve"}
    r = system.api("POST", f"/api/hours/H-{away}/decision", token=street, json=decision)
    assert r.status_code == 403 and "QY-S02-C01" in r.json()["error"]
    r = system.api("POST", f"/api/hours/H-{home}/decision", token=street, json=decision)
    assert r.status_code == 200 and r.json()["status"] == "approved"

    # the audit log names each step: who, with which credential, what, how it ended
    entries = system.api("GET", f"/api/audit?actor=c01-{tag}").json()["entries"]
    steps = [(e["action"], e["status"]) for e in entries]
    assert ("session.create", 201) in steps
    assert ("needs.post", 202) in steps and ("needs.post", 403) in steps
    assert all(e["credential"].startswith("session:") for e in entries)
    street_steps = {(e["action"], e["status"], e.get("target", {}).get("hours_id"))
                    for e in system.api("GET", f"/api/audit?actor=s01-{tag}").json()["entries"]}
    assert ("hours.decide", 403, f"H-{away}") in street_steps
    assert ("hours.decide", 200, f"H-{home}") in street_steps


def test_sign_in_is_rate_limited_sessions_expire_and_an_admin_resets_passwords(system):
    account_id = f"oncall-{uuid.uuid4().hex[:6]}"
    token = make_account(system, account_id, "on_call")
    assert system.api("GET", "/api/status", token=token).status_code == 200
    r = system.api("POST", "/api/notifications/x/retry", token=token)
    assert r.status_code == 403 and "send a dead notification again" in r.json()["error"]
    assert system.api("GET", "/api/accounts").json()["accounts"][0].get("password_hash") is None

    for _ in range(5):
        assert sign_in(system, account_id, "wrong password!").status_code == 401
    r = sign_in(system, account_id, "correct horse battery")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert sign_in(system, "nobody-at-all", "whatever it is").status_code == 401

    r = system.api("POST", f"/api/accounts/{account_id}/password",
                   json={"password": "a new long secret"})
    assert r.status_code == 200 and r.json()["sessions_ended"] >= 1
    assert system.api("GET", "/api/me", token=token).status_code == 401  # sessions ended
    fresh = sign_in(system, account_id, "a new long secret")
    assert fresh.status_code == 201
    fresh_token = fresh.json()["token"]
    assert system.api("GET", "/api/me", token=fresh_token).status_code == 200
    # a session past its expiry is refused (moved to the past in the database, not waited for)
    sessions = system.space.db("gateway").sessions
    sessions.update_many({"account_id": account_id},
                         {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    assert system.api("GET", "/api/me", token=fresh_token).status_code == 401
    # signed out; and a disabled account cannot sign in
    again = sign_in(system, account_id, "a new long secret").json()["token"]
    assert system.api("DELETE", "/api/session", token=again).status_code == 204
    assert system.api("GET", "/api/me", token=again).status_code == 401
    assert system.api("DELETE", f"/api/accounts/{account_id}").status_code == 204
    assert sign_in(system, account_id, "a new long secret").status_code == 401
    stored = system.space.db("gateway").accounts.find_one({"_id": account_id})
    assert stored["password_hash"].startswith("$argon2id$")


def test_a_partner_key_posts_donations_but_cannot_read_the_ledger(system):
    r = system.api("POST", "/api/keys", json={"name": "好医生集团 ERP",
                                              "scopes": ["donation_received"],
                                              "areas": ["QY-S05"]})
    assert r.status_code == 201, r.text
    key, key_id = r.json()["token"], r.json()["key_id"]
    donation = {"donor": {"name": "好医生集团", "kind": "company"}, "category": "masks",
                "quantity": 100, "unit": "piece", "value_yuan": 50}
    r = system.api("POST", "/api/donations", token=key,
                   json={**donation, "donation_id": f"D-{key_id}", "location_id": "QY-S05"})
    assert r.status_code == 202, r.text
    r = system.api("POST", "/api/donations", token=key,
                   json={**donation, "donation_id": f"D-{key_id}-2", "location_id": "QY-S06"})
    assert r.status_code == 403
    r = system.api("GET", "/api/ledger/report", token=key)
    assert r.status_code == 403 and r.json()["allowed"] == [
        "record donations in QY-S05 and below"]

    listed = {k["key_id"]: k for k in system.api("GET", "/api/keys").json()["keys"]}
    assert listed[key_id]["last_used_at"] and "token" not in listed[key_id]
    assert key.split("_", 2)[2] not in str(system.space.db("gateway").api_keys.find_one(
        {"_id": key_id}))  # kept as a digest only
    assert system.api("DELETE", f"/api/keys/{key_id}").status_code == 204
    assert system.api("POST", "/api/donations", token=key, json={
        **donation, "donation_id": f"D-{key_id}-3", "location_id": "QY-S05"}).status_code == 401
    audit = system.api("GET", f"/api/audit?actor={key_id}").json()["entries"]
    assert [(e["action"], e["status"]) for e in audit] == [("donations.post", 202),
                                                           ("donations.post", 403)]
    assert audit[0]["credential"] == f"key:{key_id}"


def key_for(system, scopes, areas):
    r = system.api("POST", "/api/keys", json={"name": f"script {uuid.uuid4().hex[:4]}",
                                              "scopes": scopes, "areas": areas})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_lists_imports_and_decisions_stay_inside_the_callers_area_and_organisation(system):
    tag = uuid.uuid4().hex[:6]
    # a key for two streets names which one it lists; never one outside them
    two = key_for(system, ["needs.read"], ["QY-S01", "QY-S02"])
    r = system.api("GET", "/api/needs", token=two)
    assert r.status_code == 400 and "QY-S01, QY-S02" in r.json()["fields"]["area"]
    assert system.api("GET", "/api/needs?area=QY-S03-C01", token=two).status_code == 403
    assert system.api("GET", "/api/needs?area=QY-S01", token=two).status_code == 200
    assert system.api("GET", "/api/needs?area=QY-S02-C01&format=csv",
                      token=two).status_code == 200

    # an organisation lists its own volunteers only
    for org in (f"ORG-{tag}-A", f"ORG-{tag}-B"):
        system.api("POST", "/api/organisations", json={
            "organisation_id": org, "name": org, "role": "member",
            "kind": "social_organisation"})
        system.space.intake("volunteer_registered", {
            "volunteer_id": f"V-{org}", "home_community_id": "QY-S01-C01",
            "organisation_id": org})
    eventually(lambda: system.api("GET", f"/api/volunteers?organisation_id=ORG-{tag}-B")
               .json()["items"], what="the volunteers registered")
    org_a = make_account(system, f"org-{tag}", "organisation", organisation_id=f"ORG-{tag}-A")
    r = system.api("GET", "/api/volunteers", token=org_a)
    assert r.status_code == 200, r.text
    mine = r.json()["items"]
    assert {v["volunteer_id"] for v in mine} == {f"V-ORG-{tag}-A"}
    r = system.api("GET", f"/api/volunteers?organisation_id=ORG-{tag}-B", token=org_a)
    assert r.status_code == 403 and f"ORG-{tag}-A" in r.json()["error"]
    r = system.api("POST", "/api/services/deliveries", token=org_a, json={
        "delivery_id": f"S-{tag}", "programme": "e修就好", "category": "repair",
        "date": "2020-03-02", "sessions": 5, "organisation_id": f"ORG-{tag}-B"})
    assert r.status_code == 403
    r = system.api("POST", "/api/services/deliveries", token=org_a, json={
        "delivery_id": f"S-{tag}", "programme": "e修就好", "category": "repair",
        "date": "2020-03-02", "sessions": 5})
    assert r.status_code == 201, r.text  # its own, named as such
    assert system.api("GET", "/api/hours", token=org_a).status_code == 200  # its own only

    # an import by a key for one street: a row about another street is that row's error
    one = key_for(system, ["imports.write"], ["QY-S01"])
    sheet = ("need_id,community_id,kind,category,quantity,unit,urgency\n"
             f"N-{tag}-in,QY-S01-C01,goods,masks,5,piece,normal\n"
             f"N-{tag}-out,QY-S02-C01,goods,masks,5,piece,normal\n")
    upload = {"data": sheet.encode(), "headers": {"Content-Type": "text/csv"}}
    r = system.api("POST", "/api/imports/needs", token=one, **upload)
    assert r.status_code == 422 and "row 3.row" in r.json()["fields"], r.text
    r = system.api("POST", "/api/imports/needs?good_rows=true", token=one, **upload)
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    eventually(lambda: system.need(f"N-{tag}-in"), what="the row inside the street")
    assert system.need(f"N-{tag}-out") is None

    # many hours decided at once, within the street; the rest named with the reason
    street = make_account(system, f"s01-{tag}", "street_coordinator", area_id="QY-S01")
    ids = []
    for vid, community in ((f"V-{tag}-1", "QY-S01-C01"), (f"V-{tag}-2", "QY-S02-C01")):
        system.space.intake("volunteer_registered", {"volunteer_id": vid,
                                                     "home_community_id": community})
        for i in range(3):
            hours_id = f"H-{vid}-{i}"
            ids.append(hours_id)
            assert system.api("POST", "/api/hours", json={
                "hours_id": hours_id, "volunteer_id": vid, "hours": 2,
                "date": "2020-02-10"}).status_code == 202
    eventually(lambda: len([h for h in system.api("GET", "/api/hours?status=pending").json()[
        "hours"] if h["hours_id"] in ids]) == 6, what="the hours logged")
    r = system.api("POST", "/api/hours/decisions", token=street,
                   json={"hours_ids": [*ids, f"H-{tag}-none"], "decision": "approve"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["counts"] == {"approved": 3, "refused": 4}
    assert set(result["refused"]) == {*ids[3:], f"H-{tag}-none"}
    approved = {h["hours_id"] for h in system.api("GET", "/api/hours?status=approved")
                .json()["hours"]}
    assert set(ids[:3]) <= approved and not set(ids[3:]) & approved
    assert system.api("POST", "/api/hours/decisions", json={
        "hours_ids": [], "decision": "approve"}).status_code == 400

    # a coordinator prints the receipts of what was received in their area only
    for donation_id, location in ((f"D-{tag}-in", "QY-S01-C01"), (f"D-{tag}-out", "QY-S02")):
        assert system.api("POST", "/api/donations", json={
            "donation_id": donation_id, "donor": {"name": "德仁堂", "kind": "company"},
            "location_id": location, "category": "masks", "quantity": 10,
            "unit": "piece"}).status_code == 202
        eventually(lambda d=donation_id: system.api(
            "GET", f"/api/donations/{d}/receipt").status_code == 200, what="its receipt")
    assert system.api("GET", f"/api/donations/D-{tag}-in/receipt",
                      token=street).status_code == 200
    r = system.api("GET", f"/api/donations/D-{tag}-out/receipt", token=street)
    assert r.status_code == 403 and "QY-S02" in r.json()["error"]


def test_guesses_made_at_the_same_time_do_not_slip_under_the_sign_in_limit(system):
    from concurrent.futures import ThreadPoolExecutor

    account_id = f"oncall-{uuid.uuid4().hex[:6]}"
    make_account(system, account_id, "on_call")
    # (few: every failure here also counts against the address all these tests share)
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda i: sign_in(system, account_id, f"guess {i:04d}!")
                              .status_code, range(8)))
    # five failures are allowed per account and window, however the guesses are timed
    assert sorted(codes) == [401] * 5 + [429] * 3, codes
    assert sign_in(system, account_id, "correct horse battery").status_code == 429
