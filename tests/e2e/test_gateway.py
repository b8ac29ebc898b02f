"""The HTTP gateway as a coordinator's tool would use it."""

import uuid

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
