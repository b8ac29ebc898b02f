"""Matching's use cases against an in-memory store: what a need gets, what stays waiting,
when it escalates or expires, offers to volunteers and withdrawals, read from the store's
documents and the events in its outbox."""

from datetime import UTC, datetime, timedelta

import pytest

from services.common import contract
from services.matching import engine, handlers
from tests.unit.fakes import FakeMatchingStore

NOW = datetime(2020, 2, 10, 9, 0, tzinfo=UTC)
HOME = "QY-S01-C01"  # street QY-S01, district QY
OTHER_STREET = "QY-S02-C01"


@pytest.fixture
def store():
    return FakeMatchingStore()


def post(store, need_id, quantity, *, urgency="high", at=NOW, kind="goods", category="masks",
         unit="piece", community=HOME, **extra):
    data = {"need_id": need_id, "community_id": community, "kind": kind,
            "category": category, "quantity": quantity, "unit": unit, "urgency": urgency,
            **extra}
    return store.scope().atomically(lambda u: handlers.post_need(u, data, at), now=at)


def lot(store, lot_id, quantity, *, location=HOME, value=500.0, at=NOW, category="masks"):
    data = {"donation_id": lot_id, "lot_id": lot_id, "location_id": location,
            "category": category, "quantity": quantity, "unit": "piece", "value_yuan": value}
    return store.scope().atomically(lambda u: handlers.add_lot(u, data), now=at)


def available(store, lot_id):
    return store.supply.get(lot_id)["available"] / 1000


def test_a_need_with_stock_in_its_community_is_met_and_the_rest_stays():
    store = FakeMatchingStore()
    lot(store, "L1", 100)
    assert store.emitted("assignment_made") == []  # nobody waited

    post(store, "N1", 60)

    need = store.needs.get("N1")
    assert (need["status"], need["fulfilled_milli"]) == ("fulfilled", 60_000)
    assert "open_category" not in need and store.open_index.get("N1") is None
    assert available(store, "L1") == 40
    [made] = store.emitted("assignment_made")
    assert (made["need_id"], made["lot_id"], made["quantity"], made["tier_distance"],
            made["value_yuan"]) == ("N1", "L1", 60, 0, 300.0)
    # the assignment that met the need is named: its message told the poster so
    assert [(f["need_id"], f["completed_by"]) for f in store.emitted("need_fulfilled")] == [
        ("N1", made["assignment_id"])]
    assert (made["need_assigned"], made["need_quantity"]) == (60, 60)
    # the warehouse's bin follows the lot
    assert [(e["_id"], e["available"]) for e in store.bins.get(f"masks|{HOME}")["lots"]] == [
        ("L1", 40_000)]


def test_a_need_partly_met_stays_open_with_its_escalation_clock(store):
    lot(store, "L1", 25)
    post(store, "N1", 60, urgency="high")

    need = store.needs.get("N1")
    assert (need["status"], need["fulfilled_milli"]) == ("partial", 25_000)
    assert available(store, "L1") == 0
    assert store.bins.get(f"masks|{HOME}")["lots"] == []  # an empty lot leaves its bin
    assert store.emitted("need_fulfilled") == []
    index = store.open_index.get("N1")
    assert index["escalate_at"] == NOW + timedelta(seconds=store.cfg.escalate_high_seconds)


def test_a_need_with_nothing_in_reach_waits_and_a_lot_arriving_serves_the_waiting_needs(store):
    lot(store, "FAR", 500, location=OTHER_STREET)  # another street: out of a community's reach
    post(store, "N-normal", 40, urgency="normal", at=NOW)
    post(store, "N-critical", 40, urgency="critical", at=NOW + timedelta(minutes=1))
    assert [store.needs.get(n)["status"] for n in ("N-normal", "N-critical")] == ["open"] * 2
    assert store.outbox == [] and available(store, "FAR") == 500

    made = lot(store, "L2", 80, at=NOW + timedelta(minutes=5))

    assert made == 2
    assert [store.needs.get(n)["status"] for n in ("N-normal", "N-critical")] == [
        "fulfilled"] * 2
    # the most urgent need is served first
    assert [a["need_id"] for a in store.emitted("assignment_made")] == ["N-critical",
                                                                         "N-normal"]
    assert available(store, "L2") == 0 and available(store, "FAR") == 500
    assert store.open_index.find() == []


def test_the_same_need_or_lot_again_changes_nothing(store):
    lot(store, "L1", 100)
    post(store, "N1", 60)
    assert post(store, "N1", 60) is None
    assert lot(store, "L1", 100) == 0
    assert available(store, "L1") == 40 and len(store.emitted("assignment_made")) == 1


def test_another_need_under_a_need_id_already_used_is_refused_and_the_first_stands(store):
    post(store, "N1", 60, note="口罩")
    with pytest.raises(contract.IdReused, match="need_id 'N1'.*differs in quantity, note"):
        post(store, "N1", 6000)
    assert store.needs.get("N1")["quantity"] == 60
    assert post(store, "N1", 60, note="口罩", at=NOW + timedelta(hours=1)) is None  # a repost


def test_an_open_need_escalates_by_its_clock_until_stock_is_in_reach(store):
    lot(store, "FAR", 100, location=OTHER_STREET)
    post(store, "N1", 30, urgency="critical")
    timeout = timedelta(seconds=store.cfg.escalate_critical_seconds)

    assert engine.due(store.open_deadlines(), NOW + timeout - timedelta(seconds=1)).escalate == []
    first = NOW + timeout
    assert engine.due(store.open_deadlines(), first).escalate == ["N1"]
    assert store.scope().atomically(lambda u: handlers.escalate(u, "N1"), now=first) == "street"
    assert store.needs.get("N1")["status"] == "open"  # the street holds nothing either
    assert store.open_index.get("N1")["escalate_at"] == first + timeout
    assert engine.due(store.open_deadlines(), first + timeout / 2).escalate == []

    second = first + timeout
    assert store.scope().atomically(lambda u: handlers.escalate(u, "N1"),
                                    now=second) == "district"
    need = store.needs.get("N1")
    assert need["status"] == "fulfilled" and need["tier"] == "district"
    assert [(e["to_tier"], e["area_id"], e["remaining"]) for e in
            store.emitted("need_escalated")] == [("street", "QY-S01", 30), ("district", "QY", 30)]
    [made] = store.emitted("assignment_made")
    assert (made["lot_id"], made["tier_distance"]) == ("FAR", 2)
    # at the district there is no tier left: escalating again does nothing
    assert store.scope().atomically(lambda u: handlers.escalate(u, "N1"), now=second) is None
    assert len(store.emitted("need_escalated")) == 2


def test_a_need_past_its_deadline_expires_once_keeping_what_it_received(store):
    lot(store, "L1", 10)
    post(store, "N1", 30, needed_by=NOW + timedelta(hours=2))
    assert store.needs.get("N1")["status"] == "partial"
    assert engine.due(store.open_deadlines(), NOW + timedelta(hours=1)).expire == []
    late = NOW + timedelta(hours=2)
    assert engine.due(store.open_deadlines(), late).expire == ["N1"]

    assert store.scope().atomically(lambda u: handlers.expire(u, "N1"), now=late) is True
    assert store.scope().atomically(lambda u: handlers.expire(u, "N1"), now=late) is False

    need = store.needs.get("N1")
    assert (need["status"], need["fulfilled_milli"]) == ("expired", 10_000)
    assert [(e["need_id"], e["unfulfilled_quantity"]) for e in
            store.emitted("need_expired")] == [("N1", 20)]
    assert store.open_index.get("N1") is None
    lot(store, "L2", 50)  # new stock no longer goes to it
    assert available(store, "L2") == 50


# -- service needs ----------------------------------------------------------------------------
def volunteer(store, volunteer_id, *, cap=10.0, passing=True, checked_at=NOW, home=HOME):
    scope = store.scope()
    scope.atomically(lambda u: handlers.volunteer_changed(u, volunteer_id, {
        "home_community_id": home, "skills": ["screening"], "weekly_hours_cap": cap}), now=NOW)
    return scope.atomically(lambda u: handlers.volunteer_changed(u, volunteer_id, {
        "check_passing": passing, "checked_at": checked_at}), now=NOW)


def post_service(store, need_id="S1", visits=2):
    return post(store, need_id, visits, kind="service", category="screening", unit="visit")


def load(store, volunteer_id):
    return store.volunteers.get(volunteer_id).get("load", {}).get(engine.week_of(NOW), 0.0)


def test_a_service_need_is_offered_to_a_healthy_volunteer_who_accepts(store):
    volunteer(store, "V-ill", passing=False)
    volunteer(store, "V1")
    post_service(store)

    [offer] = store.emitted("offer_made")
    assert (offer["offer_id"], offer["volunteer_id"]) == ("S1~1", "V1")
    expires_at = NOW + timedelta(seconds=store.cfg.offer_lease_seconds)
    assert offer["expires_at"] == expires_at.isoformat()
    assert store.needs.get("S1")["status"] == "offered" and load(store, "V1") == 2.0
    assert store.open_index.get("S1")["offer_expires_at"] == expires_at

    view = store.scope().atomically(lambda u: handlers.answer_offer(u, "S1~1", True), now=NOW)

    assert view["status"] == "fulfilled" and view["assignments"][0]["volunteer_id"] == "V1"
    assert [e["outcome"] for e in store.emitted("offer_accepted")] == ["accepted"]
    assert [(e["need_id"], e["volunteer_id"]) for e in store.emitted("need_fulfilled")] == [
        ("S1", "V1")]
    with pytest.raises(handlers.OfferNotOpen):  # answered: a second answer is refused
        store.scope().atomically(lambda u: handlers.answer_offer(u, "S1~1", False), now=NOW)
    assert store.emitted("offer_released") == [] and load(store, "V1") == 2.0


def test_a_declined_offer_gives_the_hours_back_and_goes_to_the_next_volunteer(store):
    volunteer(store, "V1")
    volunteer(store, "V2")
    post_service(store)
    first = store.emitted("offer_made")[0]["volunteer_id"]
    second = {"V1": "V2", "V2": "V1"}[first]

    later = NOW + timedelta(minutes=10)  # within a day of their health checks
    view = store.scope().atomically(lambda u: handlers.answer_offer(u, "S1~1", False),
                                    now=later)

    assert [e["outcome"] for e in store.emitted("offer_released")] == ["declined"]
    assert [o["volunteer_id"] for o in store.emitted("offer_made")] == [first, second]
    assert view["status"] == "offered" and view["offer"]["offer_id"] == "S1~2"
    assert (load(store, first), load(store, second)) == (0.0, 2.0)
    # the one who declined is not asked again: after the second declines, nobody is left
    store.scope().atomically(lambda u: handlers.answer_offer(u, "S1~2", False), now=later)
    need = store.needs.get("S1")
    assert need["status"] == "open" and need["offered_to"] == [first, second]
    assert len(store.emitted("offer_made")) == 2 and load(store, second) == 0.0


def test_a_volunteer_becoming_available_is_offered_the_waiting_need_within_their_cap(store):
    post_service(store, "S1", visits=3)
    post_service(store, "S2", visits=3)
    assert store.needs.get("S1")["status"] == "open"  # nobody yet

    made = volunteer(store, "V1", cap=4.0)

    assert made == 1  # 3 + 3 hours would pass the 4-hour cap
    assert [o["volunteer_id"] for o in store.emitted("offer_made")] == ["V1"]
    assert load(store, "V1") == 3.0


def test_a_lapsed_offer_is_released_as_lapsed(store):
    volunteer(store, "V1")
    post_service(store)
    lapse = store.needs.get("S1")["offer"]["expires_at"]
    assert engine.due(store.open_deadlines(), lapse).lapsed == ["S1"]
    store.scope().atomically(lambda u: handlers.answer_offer(u, "S1~1", False, "lapsed"),
                             now=lapse)
    assert [e["outcome"] for e in store.emitted("offer_released")] == ["lapsed"]
    assert store.needs.get("S1")["status"] == "open" and load(store, "V1") == 0.0


# -- withdrawals ------------------------------------------------------------------------------
def withdraw(store, quantity, reference, unit="piece", lot_id="L1"):
    return store.scope().atomically(lambda u: handlers.withdraw(
        u, lot_id, quantity, unit, reference, "written_off:expired"))


def test_a_withdrawal_takes_stock_once_with_its_share_of_the_value(store):
    lot(store, "L1", 100, value=500.0)

    first = withdraw(store, 40, "WO-1")
    again = withdraw(store, 40, "WO-1")

    assert first == {"ok": True, "available": 60, "value_fen": 20_000, "value_yuan": 200.0}
    assert again == {"ok": True, "available": 60, "repeated": True, "value_fen": 20_000,
                     "value_yuan": 200.0}
    assert available(store, "L1") == 60
    assert store.bins.get(f"masks|{HOME}")["lots"][0]["available"] == 60_000
    refused = withdraw(store, 61, "WO-2")
    assert not refused["ok"] and refused["available"] == 60 and available(store, "L1") == 60
    assert not withdraw(store, 1, "WO-3", unit="kg")["ok"]
    assert not withdraw(store, 1, "WO-4", lot_id="nope")["ok"]

    # what was withdrawn is out of matching's reach: a need gets only the rest
    post(store, "N1", 100)
    need = store.needs.get("N1")
    assert (need["status"], need["fulfilled_milli"]) == ("partial", 60_000)
    assert available(store, "L1") == 0
    # the lot's value adds up: 200 yuan withdrawn, 300 yuan allocated
    assert sum(a["value_yuan"] for a in store.emitted("assignment_made")) == 300.0
    assert withdraw(store, 1, "WO-5") == {"ok": False, "available": 0,
                                         "error": "not enough unallocated stock in the lot"}


def test_a_plan_takes_the_needs_in_contention_only_and_shares_as_planning_them_all():
    """Open needs that can reach none of the stock in contention are left out of a plan; the
    needs that are in it share the stock exactly as if every open need had been planned."""
    def scene():
        s = FakeMatchingStore()
        lot(s, "STREET", 30, location="QY-S01")  # reached by every community of the street
        lot(s, "C02", 20, location="QY-S01-C02")  # C02's own, and what C02 contends through
        lot(s, "HOME", 15)  # only HOME's community can draw on it
        for i in range(40):  # far away: another street, where no stock is
            post(s, f"FAR-{i}", 10, community=OTHER_STREET, urgency="low")
        post(s, "N-C02", 100, community="QY-S01-C02")
        post(s, "N-C03", 40, community="QY-S01-C03")
        return s

    store = scene()
    found = store.scope().atomically(
        lambda u: handlers.contenders(u, "masks", ["QY-S01-C01"]))
    assert found == []  # no open need can draw on HOME's warehouse yet
    found = store.scope().atomically(lambda u: handlers.contenders(u, "masks", ["QY-S01"]))
    assert sorted(d["_id"] for d in found) == ["N-C02", "N-C03"]  # the far needs left out

    # the same new need, planned with its contenders and planned with every open need
    post(store, "N-HOME", 40)
    everything = scene()
    everything.open_needs_reaching = lambda tx, category, locations: everything.open_needs(
        tx, category)
    post(everything, "N-HOME", 40)
    for nid in ("N-HOME", "N-C02", "N-C03", "FAR-0"):
        assert store.needs.get(nid)["fulfilled_milli"] == \
            everything.needs.get(nid)["fulfilled_milli"], nid
    assert store.needs.get("N-HOME")["fulfilled_milli"] > 0
    assert [e["data"] for e in store.outbox] == [e["data"] for e in everything.outbox]


def test_the_overview_is_shared_by_whoever_asks_within_a_second():
    import eventlet

    from services.matching.store import SharedValue

    now = [0.0]
    computed = []

    def compute():
        computed.append(now[0])
        eventlet.sleep(0.01)  # a read of the open needs: others ask meanwhile
        return len(computed)

    overview = SharedValue(1.0, clock=lambda: now[0])
    pool = eventlet.GreenPool()
    answers = list(pool.imap(lambda _: overview.get(compute), range(5)))
    assert answers == [1] * 5 and computed == [0.0]  # five readers, one read
    now[0] = 0.9
    assert overview.get(compute) == 1
    now[0] = 1.0
    assert overview.get(compute) == 2  # a second old: read again
