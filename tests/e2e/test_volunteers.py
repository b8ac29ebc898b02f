"""Service needs go to volunteers as offers: skill, home community, a passing health check in
the last 24 hours, the weekly hours cap; a declined offer goes to the next volunteer."""

import json
import uuid
from datetime import UTC, datetime, timedelta

from services.common import links
from tests.support import System, eventually

C = "QY-S02-C05"


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def register(space, volunteer_id, community=C, skills=("counselling",), cap=None):
    data = {"volunteer_id": volunteer_id, "home_community_id": community,
            "skills": list(skills), "contact": {"name": "赵六", "phone": "13600001234"}}
    if cap is not None:
        data["weekly_hours_cap"] = cap
    space.intake("volunteer_registered", data)


def check(space, volunteer_id, temperature=36.6, quarantine=False, hours_ago=1):
    space.intake("health_check_reported", {
        "volunteer_id": volunteer_id, "temperature_c": temperature, "in_quarantine": quarantine,
        "checked_at": (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat()})


def service_need(space, need_id, hours=2, category="counselling", community=C, unit="hour"):
    space.intake("need_posted", {
        "need_id": need_id, "community_id": community, "kind": "service", "category": category,
        "quantity": hours, "unit": unit, "urgency": "high"})


def offered(system, need_id):
    need = system.need(need_id)
    return need if need and need["status"] == "offered" else None


def test_offers_go_only_to_healthy_volunteers_and_move_on_when_declined(system):
    space = system.space
    tag = uuid.uuid4().hex[:4]
    unchecked, stale, fever, first, second = (f"V{i}-{tag}" for i in range(5))
    for v in (unchecked, stale, fever, first, second):
        register(space, v)
    check(space, stale, hours_ago=30)  # older than 24 h
    check(space, fever, temperature=38.2)
    check(space, first)
    check(space, second)
    matching = space.db("matching")
    # registration and health check travel on different queues: wait for both in the view
    eventually(lambda: matching.volunteers.count_documents(
        {"_id": {"$in": [first, second]}, "check_passing": True, "skills": "counselling"}) == 2,
        what="views updated")
    eventually(lambda: (v := matching.volunteers.find_one({"_id": fever}))
               and v.get("check_passing") is False, what="fever recorded")

    probe = space.bind_probe("matching.events", "#")
    need_id = uid("S")
    service_need(space, need_id)
    need = eventually(lambda: offered(system, need_id), what="an offer")
    assert need["offer"]["volunteer_id"] == first  # equal load: by id
    assert need["offer"]["volunteer_id"] not in (unchecked, stale, fever)

    # declined through the signed link the volunteer received: the next one is offered it
    offer_id = need["offer"]["offer_id"]
    until = datetime.now(UTC) + timedelta(hours=1)
    sig = links.sign(offer_id, "decline", until, System.TOKEN)
    # opening the link (GET) changes nothing: it shows a page that asks to confirm
    page = system.api("GET", f"/api/offers/{offer_id}/decline?sig={sig}", token=None)
    assert page.status_code == 200 and "<form method='post'" in page.text
    assert system.need(need_id)["offer"]["offer_id"] == offer_id
    assert system.api("GET", f"/api/offers/{offer_id}/decline?sig=forged",
                      token=None).status_code == 401
    r = system.api("POST", f"/api/offers/{offer_id}/decline?sig={sig}", token=None)
    assert r.status_code == 200, r.text
    assert r.json()["offer"]["volunteer_id"] == second
    # a decline link cannot accept, an expired link does nothing, and an accept link for
    # the same offer meets the offer already answered
    assert system.api("POST", f"/api/offers/{offer_id}/accept?sig={sig}",
                      token=None).status_code == 401
    expired = links.sign(offer_id, "accept", datetime.now(UTC) - timedelta(seconds=1),
                         System.TOKEN)
    assert system.api("POST", f"/api/offers/{offer_id}/accept?sig={expired}",
                      token=None).status_code == 401
    accept = links.sign(offer_id, "accept", until, System.TOKEN)
    assert system.api("POST", f"/api/offers/{offer_id}/accept?sig={accept}",
                      token=None).status_code == 409  # already answered
    assert system.api("POST", f"/api/offers/{offer_id}/accept?sig=forged",
                      token=None).status_code == 401

    second_offer = r.json()["offer"]["offer_id"]
    r = system.api("POST", f"/api/offers/{second_offer}/accept")
    assert r.status_code == 200 and r.json()["status"] == "fulfilled"
    assert r.json()["assignments"][0]["volunteer_id"] == second

    outcomes = eventually(lambda: (o := [(m["type"], m["data"]["volunteer_id"],
                                          m["data"].get("outcome"))
                                         for m in (json.loads(b) for _, b in
                                                   space.get_messages(probe))
                                         if m["type"].startswith("offer_")
                                         and m["data"]["need_id"] == need_id])
                          and len(o) == 4 and o)
    assert outcomes == [("offer_made", first, None), ("offer_released", first, "declined"),
                        ("offer_made", second, None), ("offer_accepted", second, "accepted")]
    # the need served is a service delivered, in the bulletin
    eventually(lambda: any(s["category"] == "counselling" and s["sessions"] >= 1
                           for s in system.api("GET", "/api/bulletin").json()["services"]),
               what="the served need counted as a service delivered")


def test_a_waiting_service_need_is_offered_when_a_volunteer_becomes_healthy(system):
    space = system.space
    need_id = uid("S")
    service_need(space, need_id, hours=1, category="haircut", community="QY-S02-C06",
                 unit="session")
    eventually(lambda: system.need(need_id), what="need recorded")
    assert system.need(need_id)["status"] == "open"
    barber = uid("V")
    register(space, barber, community="QY-S02-C06", skills=("haircut",), cap=10)
    check(space, barber)
    need = eventually(lambda: offered(system, need_id))
    assert need["offer"]["volunteer_id"] == barber


def test_the_weekly_hours_cap_is_respected(system):
    space = system.space
    volunteer = uid("V")
    register(space, volunteer, community="QY-S02-C07", skills=("tutoring",), cap=3)
    check(space, volunteer)
    eventually(lambda: space.db("matching").volunteers.find_one(
        {"_id": volunteer, "check_passing": True}))
    a, b = uid("S"), uid("S")
    service_need(space, a, hours=2, category="tutoring", community="QY-S02-C07")
    eventually(lambda: offered(system, a))
    service_need(space, b, hours=2, category="tutoring", community="QY-S02-C07")
    eventually(lambda: system.need(b))
    assert system.need(b)["status"] == "open"  # 2 + 2 h would pass the 3 h cap
