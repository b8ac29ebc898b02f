"""Two matching instances consuming the same queues never allocate the same stock twice."""

import uuid
from collections import Counter

import requests

from services.common import units
from tests.support import eventually

STREET = "QY-S11"
COMMUNITIES = [f"{STREET}-C0{i}" for i in range(1, 7)]


def test_two_instances_share_the_work_and_never_over_allocate(system):
    space = system.space
    system.services.start("matching", replica=2)
    queue = "evt-intake-need_posted--matching.on_need_posted"
    mgmt = space.management_uri.replace("guest:guest@", "")

    def two_consumers():
        info = requests.get(f"{mgmt}/api/queues/{space.vhost}/{queue}",
                            auth=("guest", "guest"), timeout=5).json()
        return info.get("consumers", 0) == 2

    eventually(two_consumers, what="two matching consumers")
    tag = uuid.uuid4().hex[:6]
    lots = [f"two-{tag}-L{i}" for i in range(6)]
    for i, lot in enumerate(lots):  # 6 x 50 = 300 thermometers over street and communities
        location = STREET if i % 2 else COMMUNITIES[i % 6]
        space.intake("donation_received", {
            "donation_id": lot, "donor": {"name": "好医生集团", "kind": "company"},
            "location_id": location, "category": "thermometers", "quantity": 50,
            "unit": "piece", "value_yuan": 500.0})
    matching = space.db("matching")
    eventually(lambda: matching.supply.count_documents({"_id": {"$in": lots}}) == len(lots),
               what="every lot in matching's view before the needs compete for them")
    needs = [f"two-{tag}-N{i:02d}" for i in range(48)]
    for i, need in enumerate(needs):  # 48 x 8 = 384 asked: more than there is
        space.intake("need_posted", {
            "need_id": need, "community_id": COMMUNITIES[i % 6], "kind": "goods",
            "category": "thermometers", "quantity": 8, "unit": "piece", "urgency": "high"})

    eventually(lambda: matching.needs.count_documents({"_id": {"$in": needs}}) == len(needs)
               and space.queue_depth(queue) == 0, timeout=90, what="all needs handled")
    mine = list(matching.needs.find({"_id": {"$in": needs}}))
    assignments = [a for n in mine for a in n["assignments"]]
    assert max(Counter(a["assignment_id"] for a in assignments).values()) == 1
    taken = Counter()
    for a in assignments:
        taken[a["lot_id"]] += units.to_milli(a["lot_quantity"], a["lot_unit"])
    for lot in matching.supply.find({"_id": {"$in": lots}}):
        assert lot["available"] >= 0
        assert lot["quantity"] - lot["available"] == taken[lot["_id"]]
    assert sum(taken.values()) <= units.to_milli(300, "piece")
    # the stock the needs could reach was used: street and own-community lots
    eventually(lambda: all(v["available"] == units.from_milli(
        matching.supply.find_one({"_id": k})["available"], "piece")
        for k, v in system.lots("thermometers").items() if k in lots),
        what="donations agree with matching")
