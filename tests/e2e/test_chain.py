"""The first chain, driven as an outside system would: events into ``relief.intake``,
answers from the gateway; then the notifications and ledger it leaves behind."""

import json
import uuid

from nameko.standalone.rpc import ClusterRpcProxy

from services.common import contract
from tests.support import envelope, eventually


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def donation(donation_id, location, qty, category="masks", unit="piece", value=50.0, **kw):
    return {"donation_id": donation_id, "donor": {"name": "成都启毅农业科技有限公司",
                                                  "kind": "company"},
            "location_id": location, "category": category, "quantity": qty, "unit": unit,
            "value_yuan": value, **kw}


def need(need_id, community, qty, category="masks", unit="piece", urgency="high", **kw):
    return {"need_id": need_id, "community_id": community, "kind": "goods",
            "category": category, "quantity": qty, "unit": unit, "urgency": urgency,
            "contact": {"name": "王芳", "phone": "13912345678"}, **kw}


def fulfilled(system, need_id):
    n = system.need(need_id)
    return n if n and n["status"] == "fulfilled" else None


def test_donation_then_need_is_fulfilled_from_the_lot(system):
    lot, nid = uid("D"), uid("N")
    system.space.intake("donation_received", donation(lot, "QY-S01-C01", 100, value=50.0))
    eventually(lambda: lot in system.lots("masks"), what="the lot recorded")
    event_id = system.space.intake("need_posted", need(nid, "QY-S01-C01", 60))

    n = eventually(lambda: fulfilled(system, nid), what="need fulfilled")
    assert n["fulfilled_quantity"] == 60
    assert [(a["lot_id"], a["quantity"]) for a in n["assignments"]] == [(lot, 60)]
    assert n["assignments"][0]["explanation"]
    assert "contact" not in json.dumps(n) and "13912345678" not in json.dumps(n)
    eventually(lambda: system.lots("masks")[lot]["available"] == 40, what="stock 40")

    # the same event again (same event_id) changes nothing
    system.space.intake("need_posted", need(nid, "QY-S01-C01", 60), event_id=event_id)
    # the same need under a new event id is not a second need either
    system.space.intake("need_posted", need(nid, "QY-S01-C01", 60))
    probe = uid("N")
    system.space.intake("need_posted", need(probe, "QY-S01-C01", 1))  # a marker behind them
    eventually(lambda: fulfilled(system, probe), what="the marker need")
    assert len(system.need(nid)["assignments"]) == 1
    assert system.lots("masks")[lot]["available"] == 39

    # the assignment delivered to donations again, under its own event id and under a new
    # one: the lot is taken from once (its movement, keyed by the assignment, says it was)
    [made] = system.need(nid)["assignments"]
    data = {"assignment_id": made["assignment_id"], "need_id": nid,
            "community_id": "QY-S01-C01", "category": "masks", "quantity": 60,
            "unit": "piece", "lot_id": lot, "lot_quantity": 60, "lot_unit": "piece",
            "location_id": "QY-S01-C01", "tier_distance": 0, "value_yuan": 30.0}
    again = contract.derived_id("assignment_made", made["assignment_id"])
    for event_id in (again, None):
        system.space.publish("matching.events", "assignment_made",
                             envelope("assignment_made", data, event_id, source="matching"))
    probe2 = uid("N")
    system.space.intake("need_posted", need(probe2, "QY-S01-C01", 1))  # behind them
    eventually(lambda: fulfilled(system, probe2), what="the second marker need")
    eventually(lambda: system.lots("masks")[lot]["available"] == 38, what="stock 38")
    assert system.space.queue_depth(
        "dlq.evt-matching-assignment_made--donations.on_assignment_made") == 0
    # neither matching's postings nor donations' allocations keep processed markers: their
    # own records are what makes an event handled again change nothing
    kept = [d["_id"] for name in ("matching", "donations")
            for d in system.space.db(name).processed.find({}, {"_id": 1})]
    assert not [k for k in kept if k.startswith(("on_need_posted:", "on_assignment_made:"))]

    # the poster is told once, by the assignment that met the need (its need_fulfilled
    # adds nothing), without personal data in the text
    with ClusterRpcProxy({"AMQP_URI": system.space.amqp_uri}) as rpc:
        eventually(lambda: rpc.notifications.messages_for_need(probe), what="the marker's")
        messages = eventually(lambda: rpc.notifications.messages_for_need(nid))
        totals = eventually(lambda: rpc.accounting.totals())
    assert [m["template"] for m in messages] == ["assignment_made"]
    assert "已全部满足" in messages[0]["subject"]
    assert all("13912345678" not in m["text"] for m in messages)
    rows = {(r["kind"], r["category"]): r for r in totals["rows"]}
    assert rows[("goods_allocated", "masks")]["value_yuan"] >= 30.0


def test_a_new_donation_rematches_open_needs_most_urgent_first(system):
    c = "QY-S02-C03"
    low, crit = uid("N"), uid("N")
    system.space.intake("need_posted", need(low, c, 30, urgency="low"))
    system.space.intake("need_posted", need(crit, c, 30, urgency="critical"))
    eventually(lambda: system.need(low) and system.need(crit), what="both needs open")
    assert system.need(crit)["status"] == "open"
    lot = uid("D")
    system.space.intake("donation_received", donation(lot, c, 40))
    eventually(lambda: fulfilled(system, crit), what="critical need served first")
    low_need = eventually(lambda: (n := system.need(low)) and n["status"] == "partial" and n)
    assert low_need["fulfilled_quantity"] == 10


def test_nearest_warehouse_first_and_units_convert(system):
    c = "QY-S03-C01"
    street, district = uid("D"), uid("D")
    system.space.intake("donation_received", donation(district, "QY", 1, "vegetables", "t",
                                                      value=4000))
    system.space.intake("donation_received", donation(street, "QY-S03", 50, "vegetables", "kg",
                                                      value=200))
    eventually(lambda: {street, district} <= set(system.lots("vegetables")))
    nid = uid("N")
    system.space.intake("need_posted", need(nid, c, 200, "vegetables", "jin"))  # = 100 kg
    n = eventually(lambda: fulfilled(system, nid))
    got = [(a["lot_id"], a["quantity"], a["lot_quantity"], a["lot_unit"], a["tier_distance"])
           for a in n["assignments"]]
    assert got == [(street, 100, 50, "kg", 1), (district, 100, 0.05, "t", 2)]
    lots = eventually(lambda: (ls := system.lots("vegetables"))[district]["available"] == 0.95
                      and ls)
    assert lots[street]["available"] == 0


def test_malformed_messages_are_dead_lettered_and_the_next_one_still_flows(system):
    space = system.space
    space.publish("relief.intake", "need_posted", b"{not json")
    bad_type = {"event_id": str(uuid.uuid4()), "type": "need_deleted", "version": 1,
                "occurred_at": "2026-02-01T00:00:00Z", "source": "x", "data": {}}
    space.publish("relief.intake", "need_deleted", bad_type)
    wrong = need(uid("N"), "QY-S99-C99", 5)
    wrong_id = space.intake("need_posted", wrong)
    missing = need(uid("N"), "QY-S01-C01", 5)
    del missing["urgency"]
    missing_id = space.intake("need_posted", missing)

    lot, nid = uid("D"), uid("N")
    space.intake("donation_received", donation(lot, "QY-S04-C01", 5))
    space.intake("need_posted", need(nid, "QY-S04-C01", 5))
    eventually(lambda: fulfilled(system, nid), what="the good need after the bad ones")

    def reasons():
        out = {}
        for headers, body in space.get_messages("relief.intake.dlq"):
            try:
                key = json.loads(body).get("event_id")
            except ValueError:
                key = body
            out[key] = headers["x-relief-error"]
        return out if len(out) >= 4 else None

    got = eventually(reasons, what="four dead letters")
    assert got[b"{not json"].startswith("not valid JSON")
    assert "type" in got[bad_type["event_id"]]
    assert "unknown community" in got[wrong_id]
    assert "data.urgency" in got[missing_id]
