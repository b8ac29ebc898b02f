"""Matching killed with SIGKILL in the middle of a backlog: on restart every need is
matched, no lot goes below zero, no assignment is duplicated, and the other services'
views agree with matching's."""

import signal
import time
from collections import Counter

import pytest

from services.common import units
from services.common.config import DEFAULTS
from tests.support import eventually

STREET = "QY-S06"
COMMUNITIES = [f"{STREET}-C0{i}" for i in range(1, 8)]


# A transaction the killed process left open holds its writes until the database reaps it
# (60 s, as mongod's transactionLifetimeLimitSeconds); conflicting transactions wait for that.
@pytest.mark.timeout(300)
def test_sigkill_during_a_backlog_loses_and_duplicates_nothing(system):
    space = system.space
    # a backlog of four batches, so that the kill falls after the first commit and before
    # the last, whatever the batch size
    batch = int(system.env.get("RELIEF_BATCH_MAX_EVENTS", DEFAULTS["batch_max_events"]))
    n_needs = 4 * batch  # of 10 masks
    n_lots = n_needs // 12  # of 100 masks at the district warehouse: supply < demand
    system.services.kill("matching", signal.SIGTERM)
    space.intake_many([("donation_received", {
        "donation_id": f"crash-lot-{i}", "donor": {"name": "德仁堂药业", "kind": "company"},
        "location_id": "QY", "category": "masks", "quantity": 100, "unit": "piece",
        "value_yuan": 100.0}) for i in range(n_lots)])
    space.intake_many([("need_posted", {
        "need_id": f"crash-need-{i:04d}", "community_id": COMMUNITIES[i % 7],
        "kind": "goods", "category": "masks", "quantity": 10, "unit": "piece",
        "urgency": "normal"}) for i in range(n_needs)])
    queue = "evt-intake-need_posted--matching.on_need_posted"
    lots_queue = "evt-donations-donation_received--matching.on_donation_received"
    # the lots reach matching through donations: both backlogs are in place before it starts
    eventually(lambda: space.queue_depth(queue) == n_needs
               and space.queue_depth(lots_queue) == n_lots,
               what="needs and lots queued for matching")

    matching = space.db("matching")
    system.services.start("matching")
    eventually(lambda: matching.needs.estimated_document_count() > 0, interval=0.02,
               what="matching under way")
    system.services.kill("matching", signal.SIGKILL)
    done_before_kill = matching.needs.estimated_document_count()
    assert done_before_kill < n_needs, "the kill came too late to prove anything"

    time.sleep(1)
    system.services.start("matching")
    system.wait_consumers(["matching"])
    eventually(lambda: matching.needs.estimated_document_count() == n_needs
               and matching.supply.estimated_document_count() == n_lots
               and space.queue_depth(queue) == 0 and space.queue_depth(lots_queue) == 0,
               timeout=150, what="every need and lot handled")

    needs = list(matching.needs.find({}))
    lots = {lot["_id"]: lot for lot in matching.supply.find({})}
    assignments = [a for n in needs for a in n["assignments"]]
    ids = Counter(a["assignment_id"] for a in assignments)
    assert max(ids.values()) == 1, "an assignment was recorded twice"
    taken = Counter()
    for a in assignments:
        taken[a["lot_id"]] += units.to_milli(a["lot_quantity"], a["lot_unit"])
    for lot_id, lot in lots.items():
        assert lot["available"] >= 0
        assert lot["quantity"] - lot["available"] == taken[lot_id]
    # demand exceeds supply: every mask is given, shared by the fairness rule
    assert sum(n["fulfilled_milli"] for n in needs) == units.to_milli(n_lots * 100, "piece")
    assert all(n["fulfilled_milli"] <= n["quantity_milli"] for n in needs)
    assert set(Counter(n["status"] for n in needs)) <= {"fulfilled", "partial", "open"}
    for n in needs:  # each need's own record adds up
        assert n["fulfilled_milli"] == sum(units.to_milli(a["quantity"], a["unit"])
                                           for a in n["assignments"])

    # downstream saw each assignment exactly once
    def donations_agree():
        stock = system.lots("masks")
        return all(stock[lot_id]["available"] == units.from_milli(lot["available"], "piece")
                   for lot_id, lot in lots.items())

    eventually(donations_agree, what="donations' stock equals matching's view")
    ledger = space.db("accounting").ledger
    eventually(lambda: ledger.count_documents({"kind": "goods_allocated"}) == len(ids),
               what="one ledger entry per assignment")
    assert space.queue_depth("dlq.evt-intake-need_posted--matching.on_need_posted") == 0
