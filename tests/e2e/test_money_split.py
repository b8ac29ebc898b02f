"""A lot split across many allocations, write-offs and transfers gives away exactly its value,
to the fen, through the running system: the seed's disinfectant lot (5,728 jin worth
4,850,000.00 yuan) emptied by its 79 communities' needs, and a lot of masks written off,
moved and allocated until it is empty."""

import time
import uuid

from services.common import reference
from tests.support import envelope, eventually

RUN = uuid.uuid4().hex[:6]
REF = reference.load("deploy/reference")
COMMUNITIES = [a for a in REF.areas.areas if REF.areas.tier(a) == "community"]
DONATIONS_Q = "evt-matching-assignment_made--donations.on_assignment_made"
DONOR = {"name": "成都启毅农业科技有限公司", "kind": "company"}


def uid(prefix):
    return f"{prefix}-{RUN}-{uuid.uuid4().hex[:12]}"  # unique: a need id seen again is a repost


def fen(yuan):
    return round(yuan * 100)


def need(community, category, quantity, unit):
    return {"need_id": uid("N"), "community_id": community, "kind": "goods",
            "category": category, "quantity": quantity, "unit": unit, "urgency": "high"}


def lot(system, category, lot_id):
    return system.lots(category).get(lot_id)


def reconciled(system, category):
    """The reconciliation once it balances, with the rows of ``category`` by warehouse."""
    rec = system.api("GET", "/api/reconciliation").json()
    rows = {r["location_id"]: r for r in rec["rows"] if r["category"] == category}
    return rec["balanced"] and (rec, rows)


def test_the_seed_disinfectant_lot_given_to_79_needs_is_allocated_to_the_fen(system):
    assert len(COMMUNITIES) == 79
    # 40 needs of 73 jin and 39 of 72: all of the 5,728 jin (each share rounded on its own,
    # they came to 4,850,000.31 yuan)
    needs = [need(c, "disinfectant", 73 if i < 40 else 72, "jin")
             for i, c in enumerate(COMMUNITIES)]
    assert sum(n["quantity"] for n in needs) == 5728
    # half wait for the lot (one decision shares it among them), half come after it (each
    # takes from what the earlier decisions left)
    for n in needs[:40]:
        system.space.intake("need_posted", n)
    eventually(lambda: all(system.need(n["need_id"]) for n in needs[:40]),
               what="the first 40 needs recorded")
    started = time.monotonic()
    lot_id = uid("D")
    r = system.api("POST", "/api/donations", json={
        "donation_id": lot_id, "donor": DONOR, "location_id": "QY", "category": "disinfectant",
        "quantity": 5728, "unit": "jin", "value_yuan": 4850000, "value_method": "market",
        "programme": "抗疫联合服务合力计划"})
    assert r.status_code == 202, r.text
    for n in needs[40:]:
        system.space.intake("need_posted", n)

    emptied = eventually(lambda: (x := lot(system, "disinfectant", lot_id)) and
                         x["available"] == 0 and x, timeout=60, what="the lot emptied")
    views = [eventually(lambda n=n: (v := system.need(n["need_id"])) and
                        v["status"] == "fulfilled" and v, what=f"need {n['need_id']}")
             for n in needs]
    elapsed = time.monotonic() - started
    assert (emptied["allocated"], emptied["written_off"], emptied["value_yuan"]) == (
        5728, 0, 4850000)
    shares = [fen(a["value_yuan"]) for v in views for a in v["assignments"]]
    assert all(s > 0 for s in shares) and sum(shares) == 485_000_000

    rec, rows = eventually(lambda: reconciled(system, "disinfectant"),
                           what="reconciliation balanced")
    row = rows["QY"]
    assert (row["received"], row["allocated"], row["in_stock"]) == (5728, 5728, 0)
    assert (row["received_yuan"], row["allocated_yuan"], row["in_stock_yuan"]) == (
        4850000.0, 4850000.0, 0.0)
    assert row["value_difference_yuan"] == 0 and row["lots_value_difference_yuan"] == 0
    assert rec["lot_differences"] == []
    report = {r["category"]: r for r in system.api(
        "GET", "/api/ledger/report?by=category").json()["rows"]}["disinfectant"]
    assert (report["received_yuan"], report["allocated_yuan"], report["in_stock"]) == (
        4850000.0, 4850000.0, 0)
    [goods] = [g for g in system.api("GET", "/api/bulletin").json()["goods"]
               if g["category"] == "disinfectant"]
    assert (goods["allocated_yuan"], goods["in_stock"]) == (4850000.0, 0)
    print(f"\n79 needs, {len(shares)} allocations of lot {lot_id}: "
          f"{sum(shares) / 100:,.2f} yuan allocated, {row['in_stock_yuan']:,.2f} yuan in stock; "
          f"lot emptied and every need fulfilled {elapsed:.1f} s after it was posted")


def test_write_offs_transfers_and_allocations_that_empty_a_lot_add_up_to_its_value(system):
    # 1,000 masks worth 100.01 yuan: 7 written off, 3 moved to the street, 990 + 3 allocated
    # (each rounded on its own: 0.70 + 0.30 + 3 x 33.00 = 100.00)
    c1, street = COMMUNITIES[0], REF.areas.street_of(COMMUNITIES[0])
    lot_id = uid("D")
    r = system.api("POST", "/api/donations", json={
        "donation_id": lot_id, "donor": DONOR, "location_id": c1, "category": "masks",
        "quantity": 1000, "unit": "piece", "value_yuan": 100.01})
    assert r.status_code == 202, r.text
    body = {"request_id": uid("wo"), "quantity": 7, "unit": "piece", "reason": "damaged"}
    wrote = eventually(lambda: (x := system.api("POST", f"/api/lots/{lot_id}/write-offs",
                                                json=body)).status_code == 200 and x.json(),
                       what="the lot known to matching and written off")
    assert wrote["written_off"] == 7
    r = system.api("POST", f"/api/lots/{lot_id}/transfers", json={
        "request_id": uid("tr"), "quantity": 3, "unit": "piece", "to_location_id": street})
    assert r.status_code == 200, r.text
    moved_id = r.json()["to_lot_id"]
    eventually(lambda: lot(system, "masks", moved_id), what="the moved lot")
    needs = [need(c1, "masks", q, "piece") for q in (330, 330, 333)]
    for n in needs:
        system.space.intake("need_posted", n)

    for lot_ in (lot_id, moved_id):
        eventually(lambda lot_=lot_: (x := lot(system, "masks", lot_)) and x["available"] == 0,
                   what=f"lot {lot_} emptied")
    views = [eventually(lambda n=n: (v := system.need(n["need_id"])) and
                        v["status"] == "fulfilled" and v, what="need fulfilled")
             for n in needs]
    allocated = {}
    for v in views:
        for a in v["assignments"]:
            allocated[a["lot_id"]] = allocated.get(a["lot_id"], 0) + fen(a["value_yuan"])

    rec, rows = eventually(lambda: reconciled(system, "masks"), what="reconciliation balanced")
    source, there = rows[c1], rows[street]
    assert (source["written_off_yuan"], source["transferred_out_yuan"]) == (0.70, 0.30)
    assert fen(source["written_off_yuan"]) + fen(source["transferred_out_yuan"]) + \
        allocated[lot_id] == 10_001
    assert (source["allocated_yuan"], source["in_stock_yuan"]) == (99.01, 0.0)
    assert (there["transferred_in_yuan"], there["allocated_yuan"], there["in_stock_yuan"]) == (
        0.30, 0.30, 0.0)
    assert allocated[moved_id] == 30
    assert rec["lot_differences"] == []


def test_an_allocation_that_overtakes_its_lot_waits_for_it(system):
    """Matching and donations each consume ``donation_received``; under load matching's
    assignment can reach donations before donations has recorded the lot. The allocation
    waits for the lot (retried with back-off) and is applied once it is there: nothing is
    dead-lettered and the lot holds the rest."""
    space = system.space
    lot_id, assignment_id = uid("D"), uid("A")
    space.publish("matching.events", "assignment_made", envelope("assignment_made", {
        "assignment_id": assignment_id, "need_id": uid("N"), "community_id": COMMUNITIES[0],
        "category": "disinfectant", "quantity": 3, "unit": "jin", "lot_id": lot_id,
        "lot_quantity": 3, "lot_unit": "jin", "location_id": "QY", "tier_distance": 2,
        "value_yuan": 30}, source="matching"))
    time.sleep(0.3)  # donations has it (and finds no lot) before the donation comes
    space.intake("donation_received", {
        "donation_id": lot_id, "donor": DONOR, "location_id": "QY", "category": "disinfectant",
        "quantity": 10, "unit": "jin", "value_yuan": 100})
    applied = eventually(lambda: (x := lot(system, "disinfectant", lot_id)) and
                         x["allocated"] == 3 and x, what="the allocation applied")
    assert applied["available"] == 7
    assert space.queue_depth(f"dlq.{DONATIONS_Q}") == 0
