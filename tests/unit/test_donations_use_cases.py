"""Donations' use cases against in-memory stores: donations received (boxes counted in what
they hold, cash, a donor's name kept here), allocations, write-offs and transfers that
matching withdraws first (its own use case, on its own in-memory store), and pledges
received in parts through intake."""

from datetime import UTC, date, datetime

import pytest

from services.common import contract
from services.common.errors import Conflict, Invalid, NotFound
from services.donations import handlers
from services.donations.store import StockInconsistent
from services.matching import handlers as matching
from tests.unit.fakes import REF, FakeDonationsStore, FakeMatchingStore, event

AT = datetime(2020, 2, 10, 9, 0, tzinfo=UTC)
HOME, ELSEWHERE = "QY-S01-C01", "QY-S02-C01"
PERSON = {"name": "王芳", "kind": "person", "contact": {"name": "王芳", "phone": "13912345678"}}
COMPANY = {"name": "成都启毅农业科技有限公司", "kind": "company"}


class World:
    """Donations, and the matching and intake it asks, each on its own in-memory store."""

    def __init__(self):
        self.store = FakeDonationsStore()
        self.matching = FakeMatchingStore()
        self.submitted = []
        self.delivered = 0
        self.ctx = handlers.Context(self.store, REF, self.store.cfg,
                                    withdraw=self.withdraw, submit=self.submit)

    def withdraw(self, lot_id, quantity, unit, reference, reason):
        return self.matching.scope().atomically(lambda u: matching.withdraw(
            u, lot_id, quantity, unit, reference, reason))

    def submit(self, envelope):
        duplicate = any(e["event_id"] == envelope["event_id"] for e in self.submitted)
        self.submitted.append(envelope)
        return {"event_id": envelope["event_id"], "duplicate": duplicate}

    def receive(self, data, at=AT):
        """A donation arrives: donations records it, and matching learns of the lot from the
        event donations emits (as it does through the broker)."""
        evt = event("donation_received", data, at=at)
        self.ctx.atomically(lambda u: handlers.receive(u, evt), event=evt,
                            consumer="on_donation_received")
        self.deliver()
        return evt

    def deliver(self):
        """Matching consumes the lots donations announced since the last delivery."""
        for out in self.store.outbox[self.delivered:]:
            if out["type"] == "donation_received":
                passed = contract.parse(out)
                self.matching.scope().atomically(lambda u, p=passed: matching.add_lot(u, p.data))
        self.delivered = len(self.store.outbox)

    def lot(self, lot_id):
        return handlers.lot_view(self.store.lot(lot_id))


@pytest.fixture
def world():
    return World()


def masks(donation_id="D1", quantity=100, value=500.0, donor=COMPANY, **extra):
    return {"donation_id": donation_id, "donor": donor, "location_id": HOME,
            "category": "masks", "quantity": quantity, "unit": "piece", "value_yuan": value,
            **extra}


def test_a_donation_becomes_a_lot_with_a_numbered_receipt_once(world):
    evt = world.receive(masks("D1", donor=PERSON))
    world.receive(masks("D2"))
    world.receive(masks("D1", donor=PERSON))  # the same donation under a new event id
    world.ctx.atomically(lambda u: handlers.receive(u, evt), event=evt,
                         consumer="on_donation_received")  # the same event redelivered

    assert [world.store.donation(d)["receipt_no"] for d in ("D1", "D2")] == [
        "JZ-2020-000001", "JZ-2020-000002"]
    assert world.lot("D1")["available"] == 100 and world.lot("D1")["value_yuan"] == 500.0
    sent = world.store.emitted("donation_received")
    assert [e["lot_id"] for e in sent] == ["D1", "D2"]
    # other services never see a private donor's name or anyone's contact
    assert sent[0]["donor"] == {"name": handlers.PERSON_DONOR, "kind": "person"}
    assert world.store.donation("D1")["donor"]["name"] == "王芳"


def test_another_donation_under_a_donation_id_already_used_is_refused(world):
    world.receive(masks("D1"))
    with pytest.raises(contract.IdReused, match="differs in quantity, value_yuan"):
        world.receive(masks("D1", quantity=5000, value=9.0))
    assert world.lot("D1")["available"] == 100 and world.lot("D1")["value_yuan"] == 500.0
    assert len(world.store.emitted("donation_received")) == 1


def test_boxes_are_counted_in_what_they_hold_and_cash_is_worth_its_amount(world):
    world.receive(masks("B1", quantity=10, unit="box", box_size=50, box_unit="piece"))
    world.receive({"donation_id": "C1", "donor": COMPANY, "location_id": HOME,
                   "category": "cash", "quantity": 2000, "unit": "yuan", "value_yuan": 1})
    world.receive(masks("U1", value=None))

    boxes = world.lot("B1")
    assert (boxes["quantity"], boxes["unit"], boxes["packing"]) == (
        500, "piece", {"boxes": 10, "box_size": 50, "box_unit": "piece"})
    assert world.lot("C1")["value_yuan"] == 2000
    assert world.lot("U1")["value_yuan"] is None  # unvalued: says so, counts 0
    assert world.store.emitted("donation_received")[2]["value_known"] is False


def test_an_allocation_takes_from_the_lot_and_says_what_is_left(world):
    world.receive(masks("D1"))
    data = {"assignment_id": "N1#1", "need_id": "N1", "community_id": HOME,
            "category": "masks", "quantity": 60, "unit": "piece", "lot_id": "D1",
            "lot_quantity": 60, "lot_unit": "piece", "location_id": HOME,
            "tier_distance": 0, "value_yuan": 300.0, "explanation": "same community"}
    world.ctx.atomically(lambda u: handlers.allocate(u, data))

    lot = world.lot("D1")
    assert (lot["available"], lot["allocated"]) == (40, 60)
    [changed] = world.store.emitted("stock_changed")
    assert (changed["delta"], changed["available"], changed["reason"]) == (-60, 40, "allocated")
    assert world.store.movement("N1#1")["quantity"] == -60_000
    # the same assignment again (redelivered, or under a new event id): taken once
    world.ctx.atomically(lambda u: handlers.allocate(u, data))
    assert world.lot("D1")["available"] == 40
    assert len(world.store.emitted("stock_changed")) == 1

    # more than the lot holds is refused and changes nothing
    too_much = {**data, "assignment_id": "N2#1", "lot_quantity": 41}
    with pytest.raises(StockInconsistent):
        world.ctx.atomically(lambda u: handlers.allocate(u, too_much))
    assert world.lot("D1")["available"] == 40 and world.store.movement("N2#1") is None
    assert len(world.store.emitted("stock_changed")) == 1


def test_a_write_off_is_withdrawn_from_matching_first_and_taken_once(world):
    world.receive(masks("D1", value=500.0))
    take = handlers.Withdrawal("R1", "D1", 40, "piece")

    first = handlers.write_off(world.ctx, take, "expired", None)
    again = handlers.write_off(world.ctx, take, "expired", None)

    assert (first["repeated"], again["repeated"]) == (False, True)
    assert (first["available"], first["written_off"]) == (40 + 20, 40)
    assert again["available"] == 60
    assert world.matching.supply.get("D1")["available"] == 60_000  # matching's view agrees
    [changed] = world.store.emitted("stock_changed")
    assert (changed["reason"], changed["value_yuan"], changed["write_off_reason"]) == (
        "written_off", 200.0, "expired")
    with pytest.raises(Conflict):  # matching has only 60 left to give
        handlers.write_off(world.ctx, handlers.Withdrawal("R2", "D1", 61, "piece"), "lost",
                           None)
    with pytest.raises(NotFound):
        handlers.write_off(world.ctx, handlers.Withdrawal("R3", "nope", 1, "piece"), "lost",
                           None)
    with pytest.raises(Invalid):
        handlers.write_off(world.ctx, handlers.Withdrawal("R4", "D1", 1, "kg"), "lost", None)
    assert world.lot("D1")["available"] == 60


def test_a_transfer_makes_a_lot_at_the_destination_with_its_share_of_the_value(world):
    world.receive(masks("D1", value=500.0))
    take = handlers.Withdrawal("T1", "D1", 30, "piece")

    answer = handlers.transfer(world.ctx, take, ELSEWHERE)
    handlers.transfer(world.ctx, take, ELSEWHERE)  # the same request again
    world.deliver()

    assert answer["to_lot_id"] == "TR-T1" and answer["available"] == 70
    moved = world.lot("TR-T1")
    assert (moved["location_id"], moved["available"], moved["value_yuan"],
            moved["transfer_of"]) == (ELSEWHERE, 30, 150.0, "D1")
    arrived = [e for e in world.store.emitted("donation_received") if e.get("transfer_of")]
    assert [(e["lot_id"], e["location_id"], e["quantity"]) for e in arrived] == [
        ("TR-T1", ELSEWHERE, 30)]
    # matching took it out of the source lot and picks the new lot up from the event
    assert world.matching.supply.get("D1")["available"] == 70_000
    assert world.matching.supply.get("TR-T1")["available"] == 30_000
    with pytest.raises(Invalid):
        handlers.transfer(world.ctx, handlers.Withdrawal("T2", "D1", 1, "piece"), HOME)
    with pytest.raises(Invalid):
        handlers.transfer(world.ctx, handlers.Withdrawal("T3", "D1", 1, "piece"), "QY-X99")
    assert world.lot("D1")["available"] == 70


def test_a_pledge_is_received_in_parts_through_intake(world):
    pledge = {"pledge_id": "P1", "donor": PERSON, "category": "masks", "quantity": 1000,
              "unit": "piece", "expected_at": date(2020, 2, 20).isoformat(),
              "location_id": HOME, "value_yuan": 5000.0}

    made = handlers.make_pledge(world.ctx, pledge)
    again = handlers.make_pledge(world.ctx, pledge)

    assert (made["created"], again["created"], made["status"]) == (True, False, "open")
    [sent] = world.store.emitted("pledge_made")
    assert sent["donor"] == {"name": handlers.PERSON_DONOR, "kind": "person"}

    part = handlers.receive_pledge(world.ctx, "P1", {"donation_id": "P1-a", "quantity": 400})
    [envelope] = world.submitted
    assert part["duplicate"] is False and envelope["data"]["value_yuan"] == 2000.0
    world.receive(envelope["data"])  # intake passes it on as a donation
    world.receive(envelope["data"])  # once only

    view = handlers.pledge_view(world.store, "P1")
    assert (view["status"], view["received"], view["remaining"], view["received_yuan"]) == (
        "partial", 400, 600, 2000.0)
    assert world.lot("P1-a")["available"] == 400
    with pytest.raises(Invalid):
        handlers.receive_pledge(world.ctx, "P1", {"donation_id": "P1-b", "quantity": 1,
                                                  "unit": "kg"})
    with pytest.raises(NotFound):
        handlers.receive_pledge(world.ctx, "nope", {"donation_id": "x", "quantity": 1})
    with pytest.raises(Invalid):
        handlers.make_pledge(world.ctx, {**pledge, "pledge_id": "P2", "category": "nope"})
