"""Matching's rules through ``relief.intake`` only: three-tier escalation, fairness."""

import json
import uuid

from tests.support import eventually

SYSTEM_ENV = {"RELIEF_ESCALATE_CRITICAL": "2", "RELIEF_ESCALATE_HIGH": "3600",
              "RELIEF_MATCHING_TIMER": "0.5"}


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def donate(space, lot_id, location, qty, category, unit="piece"):
    space.intake("donation_received", {
        "donation_id": lot_id, "donor": {"name": "四川壹家易环保科技有限公司", "kind": "company"},
        "location_id": location, "category": category, "quantity": qty, "unit": unit,
        "value_yuan": qty * 2.0})


def post(space, need_id, community, qty, category, urgency="high", unit="piece", **kw):
    space.intake("need_posted", {
        "need_id": need_id, "community_id": community, "kind": "goods", "category": category,
        "quantity": qty, "unit": unit, "urgency": urgency, **kw})


def test_an_unserved_critical_need_escalates_street_then_district(system):
    space = system.space
    probe = space.bind_probe("matching.events", "need_escalated")
    sibling, far = uid("D"), uid("D")
    donate(space, sibling, "QY-S07-C02", 4, "gloves", unit="pair")  # same street, other community
    donate(space, far, "QY-S08-C01", 10, "gloves", unit="pair")  # another street
    eventually(lambda: {sibling, far} <= set(system.lots("gloves")))
    need_id = uid("N")
    post(space, need_id, "QY-S07-C01", 6, "gloves", urgency="critical", unit="pair")

    need = eventually(lambda: (n := system.need(need_id)) and n["status"] == "fulfilled" and n,
                      timeout=40, what="served after escalating twice")
    assert [(e["from_tier"], e["to_tier"]) for e in need["escalations"]] == [
        ("community", "street"), ("street", "district")]
    assert need["tier"] == "district"
    assert [(a["lot_id"], a["quantity"], a["tier_distance"]) for a in need["assignments"]] == [
        (sibling, 4, 1), (far, 2, 2)]
    events = [json.loads(body) for _, body in space.get_messages(probe)]
    mine = [e["data"] for e in events if e["data"]["need_id"] == need_id]
    assert [(d["from_tier"], d["to_tier"], d["area_id"]) for d in mine] == [
        ("community", "street", "QY-S07"), ("street", "district", "QY")]
    assert mine[0]["remaining"] == 6 and mine[1]["remaining"] == 2


def test_a_need_past_its_deadline_expires_and_keeps_what_it_got(system):
    space = system.space
    need_id = uid("N")
    post(space, need_id, "QY-S09-C01", 5, "insurance", unit="policy",
         needed_by="2020-02-01T00:00:00Z")
    need = eventually(lambda: (n := system.need(need_id)) and n["status"] == "expired" and n)
    assert need["fulfilled_quantity"] == 0


def test_scarce_stock_is_shared_by_the_fairness_rule(system):
    space = system.space
    a, b, c = uid("NA"), uid("NB"), uid("NC")
    post(space, a, "QY-S10-C01", 100, "kn95_masks")
    post(space, b, "QY-S11-C01", 50, "kn95_masks", beneficiaries=1)
    post(space, c, "QY-S12-C01", 15, "kn95_masks", beneficiaries=2)
    eventually(lambda: all(system.need(x) for x in (a, b, c)), what="three open needs")
    donate(space, uid("D"), "QY", 90, "kn95_masks")  # 165 asked, 90 held: scarce
    # weights (asked x beneficiaries) 100 : 50 : 30 -> shares of 90 are 50 : 25 : 15
    got = eventually(lambda: (g := {x: system.need(x)["fulfilled_quantity"] for x in (a, b, c)})
                     and sum(g.values()) == 90 and g, what="all 90 shared")
    assert got == {a: 50, b: 25, c: 15}
    fairness = system.need(a)["assignments"][0]["score"]["fairness"]
    assert fairness == {"scarce": True, "community_share": 50}
    assert "scarce" in system.need(a)["assignments"][0]["explanation"]


def test_boxes_are_counted_in_what_they_hold(system):
    space = system.space
    lot_id, need_id = uid("D"), uid("N")
    space.intake("donation_received", {
        "donation_id": lot_id, "donor": {"name": "成都某医疗器械公司", "kind": "company"},
        "location_id": "QY-S12-C03", "category": "masks", "quantity": 4, "unit": "box",
        "box_size": 50, "box_unit": "piece", "value_yuan": 400.0})
    lot = eventually(lambda: system.lots("masks").get(lot_id))
    assert (lot["quantity"], lot["unit"]) == (200, "piece")
    assert lot["packing"] == {"boxes": 4, "box_size": 50, "box_unit": "piece"}

    post(space, need_id, "QY-S12-C03", 120, "masks", urgency="normal")
    need = eventually(lambda: (n := system.need(need_id)) and n["status"] == "fulfilled" and n)
    assert [(a["lot_id"], a["quantity"], a["lot_quantity"], a["lot_unit"])
            for a in need["assignments"]] == [(lot_id, 120, 120, "piece")]
    eventually(lambda: system.lots("masks")[lot_id]["available"] == 80)
    receipt = system.api("GET", f"/api/donations/{lot_id}/receipt?lang=en").text
    assert "200 pieces (4 boxes, 50 pieces each)" in receipt

    # boxes of goods counted in pieces, with nothing said of what a box holds: refused
    bad = uid("D")
    space.intake("donation_received", {
        "donation_id": bad, "donor": {"name": "某公司", "kind": "company"},
        "location_id": "QY-S12-C03", "category": "masks", "quantity": 4, "unit": "box",
        "value_yuan": 1.0})
    mine = eventually(lambda: [h for h, body in space.get_messages("relief.intake.dlq")
                               if bad.encode() in body], what="the dead letter")
    assert "declare what one box holds" in mine[0]["x-relief-error"]
