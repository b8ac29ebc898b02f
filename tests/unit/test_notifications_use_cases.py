"""Notifications' use cases against an in-memory store: who is told what, once per cause and
recipient, when (the coalescing window, quiet hours, at once when critical), messages that
wait for a contact and are adopted, escalations that reach nobody and their retry, and
offers answered before their message went out, read from the store's documents."""

from datetime import UTC, datetime, timedelta

import pytest

from services.common import contract
from services.notifications import handlers, policy
from services.notifications.settings import NotifySettings
from tests.unit.fakes import REF, event
from tests.unit.fakes_notifications import FakeNotificationsStore

NOW = datetime(2020, 2, 10, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
NIGHT = datetime(2020, 2, 10, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
MORNING = datetime(2020, 2, 10, 23, 0, tzinfo=UTC)  # 07:00 the next day in Shanghai
HOME = "QY-S01-C01"
STREET = "QY-S01"
CFG = NotifySettings(public_url="https://relief.example/")
WINDOW = timedelta(seconds=CFG.window_seconds)
PHONE = "13912345678"
POSTER = f"contact:{policy.phone_key(PHONE)}"
QUIET = {"start": "22:00", "end": "07:00"}


@pytest.fixture
def clock(monkeypatch):
    """The time messages are due from (``handlers.due`` reads the clock, not ``ctx.now``)."""
    now = [NOW]
    monkeypatch.setattr(contract, "now", lambda: now[0])
    return now


@pytest.fixture
def store(clock):
    return FakeNotificationsStore()


def handle(store, use_case, evt, *, consumer=None):
    """One event in its transaction, as the service runs it (``after_commit`` shared)."""
    ctx = handlers.Context(store, CFG, REF, contract.now(), link_secret="s3cret")

    def work(tx):
        ctx.after_commit = tx.after_commit
        return use_case(ctx, tx, evt)

    return store.atomically(work, event=evt, consumer=consumer)


def retry(store, message_id):
    ctx = handlers.Context(store, CFG, REF, contract.now())
    return store.atomically(lambda tx: handlers.retry_dead(ctx, tx, message_id))


def message(store, cause, audience):
    return store.messages.get(handlers.message_id_for(cause, audience))


# -- events ---------------------------------------------------------------------------------
def need_posted(store, need_id="N1", quantity=100, urgency="high", contact=None):
    data = {"need_id": need_id, "community_id": HOME, "kind": "goods", "category": "masks",
            "quantity": quantity, "unit": "piece", "urgency": urgency}
    if contact is not False:
        data["contact"] = contact or {"name": "王芳", "phone": PHONE}
    return handle(store, handlers.on_need_posted, event("need_posted", data))


def assignment(assignment_id="N1#1", need_id="N1", quantity=40, **totals):
    return event("assignment_made", {
        "assignment_id": assignment_id, "need_id": need_id, "community_id": HOME,
        "category": "masks", "quantity": quantity, "unit": "piece", "lot_id": "L1",
        "lot_quantity": quantity, "lot_unit": "piece", "location_id": HOME,
        "tier_distance": 0, "value_yuan": 200.0, **totals})


def escalated(need_id="N1", urgency="high", area=STREET):
    return event("need_escalated", {
        "need_id": need_id, "community_id": HOME, "category": "masks", "urgency": urgency,
        "from_tier": "community", "to_tier": "street", "area_id": area, "remaining": 60,
        "unit": "piece"})


def coordinator(store, recipient_id, **extra):
    store.recipients.put({"_id": recipient_id, "managed": True, "kind": "managed",
                          "areas": [STREET], "phone": "13700000000", **extra})


def volunteer(store, volunteer_id="V1"):
    handle(store, handlers.on_volunteer_registered, event("volunteer_registered", {
        "volunteer_id": volunteer_id, "home_community_id": HOME,
        "contact": {"name": "李娜", "phone": "13800000000", "language": "en"}}))
    return f"contact:{policy.phone_key('13800000000')}"


def offer(type_, outcome=None, offer_id="S1~1"):
    data = {"offer_id": offer_id, "need_id": "S1", "volunteer_id": "V1"}
    if outcome is None:
        data.update(community_id=HOME, category="screening", quantity=2, unit="visit",
                    expires_at=NOW + timedelta(hours=1))
    else:
        data["outcome"] = outcome
    return event(type_, data)


# -- a need's poster ----------------------------------------------------------------------------
def test_an_assignment_is_told_to_the_poster_once_however_often_it_arrives(store):
    need_posted(store)
    made = assignment()

    handle(store, handlers.on_assignment_made, made)
    handle(store, handlers.on_assignment_made, made)  # redelivered, no processed marker
    handle(store, handlers.on_assignment_made, assignment())  # re-emitted: a new event id

    [sent] = store.messages_of("assignment_made")
    assert sent == message(store, "assignment_made/N1#1", "need:N1")
    assert (sent["recipient"], sent["state"], sent["priority"], sent["language"]) == (
        POSTER, "queued", policy.NORMAL, "zh-CN")
    assert sent["due_at"] == NOW + WINDOW and "awaiting" not in sent
    assert (sent["params"]["assigned"], sent["params"]["needed"],
            sent["params"]["partial"]) == (40, 100, True)
    assert store.subjects.get("need:N1")["assigned"] == 40  # counted once
    assert "王芳" not in sent["text"] and PHONE not in sent["text"]
    # the poster is one recipient, their phone kept with them only
    assert store.recipients.get(POSTER)["phone"] == PHONE

    handle(store, handlers.on_assignment_made, assignment("N1#2", quantity=60))
    handle(store, handlers.on_need_fulfilled, event("need_fulfilled", {
        "need_id": "N1", "community_id": HOME, "category": "masks", "quantity": 100,
        "unit": "piece"}))
    assert [m["params"]["partial"] for m in store.messages_of("assignment_made")] == [
        True, False]
    assert store.subjects.get("need:N1")["assigned"] == 100
    [fulfilled] = store.messages_of("need_fulfilled")
    assert (fulfilled["recipient"], fulfilled["need_id"]) == (POSTER, "N1")


def test_an_assignment_saying_how_far_its_need_is_is_told_without_counting(store):
    need_posted(store)
    before = dict(store.subjects.get("need:N1"))

    handle(store, handlers.on_assignment_made,
           assignment(need_quantity=100, need_assigned=40))
    handle(store, handlers.on_assignment_made,  # re-emitted under a new event id
           assignment(need_quantity=100, need_assigned=40))
    handle(store, handlers.on_assignment_made,
           assignment("N1#2", quantity=60, need_quantity=100, need_assigned=100))

    made = store.messages_of("assignment_made")
    assert [(m["params"]["assigned"], m["params"]["needed"], m["params"]["partial"],
             m["params"]["complete"]) for m in made] == [(40, 100, True, False),
                                                         (100, 100, False, True)]
    assert {m["recipient"] for m in made} == {POSTER}
    assert store.subjects.get("need:N1") == before  # nothing counted on the subject
    # the assignment that met the need says so; its need_fulfilled tells nothing more
    assert "已全部满足" in made[1]["subject"] and "已全部满足" not in made[0]["subject"]
    handle(store, handlers.on_need_fulfilled, event("need_fulfilled", {
        "need_id": "N1", "community_id": HOME, "category": "masks", "quantity": 100,
        "unit": "piece", "completed_by": "N1#2"}))
    assert store.messages_of("need_fulfilled") == []


def test_an_assignment_saying_how_far_overtakes_its_need_and_waits(store):
    handle(store, handlers.on_assignment_made,
           assignment(need_quantity=100, need_assigned=40))

    waiting = message(store, "assignment_made/N1#1", "need:N1")
    assert (waiting["recipient"], waiting["awaiting"]) == (None, "need:N1")
    assert (waiting["params"]["assigned"], waiting["params"]["needed"]) == (40, 100)
    assert store.subjects.get("need:N1")["waiting"] == 1  # the write that meets need_posted

    need_posted(store)
    adopted = message(store, "assignment_made/N1#1", "need:N1")
    assert adopted["recipient"] == POSTER and "awaiting" not in adopted


def test_an_assignment_that_overtook_its_need_waits_and_is_adopted_with_the_contact(store):
    handle(store, handlers.on_assignment_made, assignment())

    waiting = message(store, "assignment_made/N1#1", "need:N1")
    assert (waiting["recipient"], waiting["awaiting"], waiting["state"]) == (
        None, "need:N1", "queued")
    assert "due_at" not in waiting  # nobody to send it to yet
    assert store.awaiting.get("need:N1")["messages"] == [waiting["_id"]]
    assert store.subjects.get("need:N1")["waiting"] == 1

    need_posted(store, urgency="critical",
                contact={"name": "Ann", "phone": PHONE, "language": "en"})

    adopted = store.messages.get(waiting["_id"])
    assert (adopted["recipient"], adopted["language"], adopted["priority"]) == (
        POSTER, "en", policy.CRITICAL)
    assert adopted["due_at"] == NOW and "awaiting" not in adopted  # critical: at once
    assert adopted["subject"] == "Need N1 matched" and "masks" in adopted["text"].lower()
    assert store.awaiting.get("need:N1") is None
    assert len(store.messages.find()) == 1


def test_a_poster_who_left_no_contact_is_told_nothing(store):
    handle(store, handlers.on_assignment_made, assignment())
    need_posted(store, contact=False)

    [skipped] = store.messages.find()
    assert (skipped["state"], skipped["reason"]) == ("skipped", "no contact was given")
    assert "awaiting" not in skipped and store.awaiting.get("need:N1") is None

    later = assignment("N1#2", quantity=10)
    # what this process read lately says nobody is behind the need: no transaction at all
    assert handlers.changes_nothing(store, later)
    handle(store, handlers.on_assignment_made, later)  # and handled anyway: nothing
    assert len(store.messages.find()) == 1


# -- a donor -----------------------------------------------------------------------------------
def stock(reason, assignment_id="N1#1", delta=-40):
    return event("stock_changed", {
        "lot_id": "D1", "category": "masks", "location_id": HOME, "delta": delta,
        "available": 60, "unit": "piece", "reason": reason, "assignment_id": assignment_id})


def test_a_donor_hears_when_their_goods_leave_for_a_need_once_per_assignment(store):
    handle(store, handlers.on_donation_received, event("donation_received", {
        "donation_id": "D1", "location_id": HOME, "category": "masks", "quantity": 100,
        "unit": "piece", "donor": {"name": "某公司", "kind": "company",
                                   "contact": {"phone": "+86 139-1234-5678"}}}))

    received = stock("received", assignment_id=None, delta=100)
    assert handlers.changes_nothing(store, received)
    handle(store, handlers.on_stock_changed, received)
    assert store.messages.find() == []

    handle(store, handlers.on_stock_changed, stock("allocated"))
    handle(store, handlers.on_stock_changed, stock("allocated"))  # a new event id

    [sent] = store.messages_of("goods_dispatched")
    assert sent["_id"] == handlers.message_id_for("goods_dispatched/N1#1", "donation:D1")
    assert sent["recipient"] == POSTER  # the same phone, written otherwise: one person
    assert (sent["params"]["receipt"], sent["params"]["quantity"]) == ("D1", 40)
    assert sent["state"] == "queued" and sent["due_at"] == NOW + WINDOW


# -- volunteers' offers ------------------------------------------------------------------------
def test_an_offer_is_told_with_signed_links_and_cancelled_if_accepted_before_it_went_out(store):
    recipient = volunteer(store)
    handle(store, handlers.on_offer_made, offer("offer_made"))
    handle(store, handlers.on_offer_made, offer("offer_made"))

    [made] = store.messages_of("offer_made")
    assert (made["recipient"], made["language"], made["topic"], made["state"]) == (
        recipient, "en", "offer:S1~1", "queued")
    assert made["expires_at"] == NOW + timedelta(hours=1)
    accept = made["params"]["accept_url"]
    assert accept.startswith("https://relief.example/api/offers/S1~1/accept?sig=")
    assert made["params"]["decline_url"].split("?")[0].endswith("/S1~1/decline")

    handle(store, handlers.on_offer_answered, offer("offer_accepted", "accepted"))

    cancelled = store.messages.get(made["_id"])
    assert (cancelled["state"], cancelled["reason"]) == (
        "cancelled", "the offer was accepted before it was sent")
    assert "due_at" not in cancelled
    assert store.messages_of("offer_released") == []  # an acceptance needs no message


def test_a_lapsed_offer_is_told_only_when_its_offer_went_out(store):
    recipient = volunteer(store)
    handle(store, handlers.on_offer_made, offer("offer_made"))
    made_id = store.messages_of("offer_made")[0]["_id"]
    store.messages.update(made_id, lambda m: m.update(state="sent"))  # the courier sent it

    handle(store, handlers.on_offer_answered, offer("offer_released", "lapsed"))
    handle(store, handlers.on_offer_answered, offer("offer_released", "lapsed"))

    assert store.messages.get(made_id)["state"] == "sent"  # not cancelled after the fact
    [released] = store.messages_of("offer_released")
    assert (released["recipient"], released["params"]["outcome"]) == (recipient, "lapsed")

    # one that lapsed before its message went out is cancelled, and no more is said
    handle(store, handlers.on_offer_made, offer("offer_made", offer_id="S1~2"))
    handle(store, handlers.on_offer_answered, offer("offer_released", "lapsed", "S1~2"))
    assert [m["state"] for m in store.messages_of("offer_made")] == ["sent", "cancelled"]
    assert len(store.messages_of("offer_released")) == 1


def test_an_answer_that_overtook_its_offer_leaves_nothing_to_send(store):
    volunteer(store)
    handle(store, handlers.on_offer_answered, offer("offer_released", "withdrawn"))
    handle(store, handlers.on_offer_made, offer("offer_made"))

    assert store.messages.find() == []
    assert store.subjects.get("offer:S1~1")["answered"] == "withdrawn"


# -- coordinators ------------------------------------------------------------------------------
def test_an_escalation_waits_for_a_coordinator_s_quiet_hours_unless_critical(store, clock):
    coordinator(store, "C-night", quiet_hours=QUIET, timezone="Asia/Shanghai")
    coordinator(store, "C-plain", areas=[STREET, "QY"])
    coordinator(store, "C-elsewhere", areas=["QY-S02"])
    clock[0] = NIGHT

    handle(store, handlers.on_need_escalated, escalated("N1", "high"))
    handle(store, handlers.on_need_escalated, escalated("N2", "critical"))

    due = {(m["need_id"], m["recipient"]): (m["priority"], m["due_at"])
           for m in store.messages_of("need_escalated")}
    assert due == {
        ("N1", "C-night"): (policy.NORMAL, MORNING),  # past the night, not in the window
        ("N1", "C-plain"): (policy.NORMAL, NIGHT + WINDOW),
        ("N2", "C-night"): (policy.CRITICAL, NIGHT),
        ("N2", "C-plain"): (policy.CRITICAL, NIGHT),
    }
    critical = message(store, f"need_escalated/N2/street/{STREET}", "C-night")
    assert critical["subject"] == "【紧急】需求 N2 已上报至少城街道"


def test_an_escalation_to_nobody_is_dead_with_its_reason_and_retried_to_a_later_coordinator(
        store):
    cause = f"need_escalated/N1/street/{STREET}"
    handle(store, handlers.on_need_escalated, escalated())
    handle(store, handlers.on_need_escalated, escalated())  # a new event id: nothing new

    [dead] = store.messages.find()
    assert dead["_id"] == handlers.message_id_for(cause, f"area:{STREET}")
    assert (dead["state"], dead["recipient"], dead["group"]) == ("dead", None, f"area:{STREET}")
    assert dead["reason"] == f"no coordinator is registered for {STREET}"
    assert "due_at" not in dead

    with pytest.raises(handlers.RetryRefused, match="still nobody"):
        retry(store, dead["_id"])
    assert store.messages.get(dead["_id"])["state"] == "dead"

    coordinator(store, "C1")
    queued = retry(store, dead["_id"])

    assert queued == [handlers.message_id_for(cause, "C1")]
    handed = store.messages.get(queued[0])
    assert (handed["recipient"], handed["state"], handed["need_id"], handed["cause_event_id"]) \
        == ("C1", "queued", "N1", dead["cause_event_id"])
    assert handed["due_at"] == NOW + WINDOW
    old = store.messages.get(dead["_id"])
    assert old["state"] == "cancelled"
    assert old["reason"] == (f"no coordinator is registered for {STREET}; "
                             "handed on retry to 1 recipient(s)")
    with pytest.raises(handlers.RetryRefused, match="is cancelled, not dead"):
        retry(store, dead["_id"])
    handle(store, handlers.on_need_escalated, escalated())  # told again: C1 has it already
    assert len(store.messages.find()) == 2


def test_a_missed_status_report_goes_to_the_organisation_s_contacts_once_per_period(store):
    due_at = datetime(2020, 2, 17, 1, 0, tzinfo=UTC)

    def missing(organisation_id, at=due_at):
        return handle(store, handlers.on_status_report_missing, event(
            "status_report_missing", {"organisation_id": organisation_id, "due_at": at}))

    store.recipients.put({"_id": "ORG1-desk", "managed": True, "organisations": ["ORG1"],
                          "language": "en"})
    missing("ORG1")
    missing("ORG1")
    missing("ORG1", due_at + timedelta(days=7))  # the next period
    missing("ORG2")

    sent = store.messages_of("status_report_missing")
    assert [(m["recipient"], m["state"], m["params"]["due_at"]) for m in sent] == [
        ("ORG1-desk", "queued", due_at.isoformat()),
        ("ORG1-desk", "queued", (due_at + timedelta(days=7)).isoformat()),
        (None, "dead", due_at.isoformat())]
    assert sent[2]["reason"] == "no contact is registered for organisation ORG2"
    assert sent[0]["language"] == "en"


# -- on-call -----------------------------------------------------------------------------------
def test_a_message_that_failed_for_good_is_retried_once_at_once(store, clock):
    need_posted(store)
    handle(store, handlers.on_assignment_made, assignment())
    [sent] = store.messages.find()
    store.messages.update(sent["_id"], lambda m: m.update(
        state="dead", attempts=5, reason="sms: 500 from the gateway"))
    clock[0] = NOW + timedelta(hours=2)

    assert retry(store, sent["_id"]) == [sent["_id"]]

    again = store.messages.get(sent["_id"])
    assert (again["state"], again["attempts"], again["generation"]) == ("queued", 0, 1)
    assert again["due_at"] == again["retried_at"] == NOW + timedelta(hours=2)
    assert again["last_reason"] == "sms: 500 from the gateway" and "reason" not in again
    with pytest.raises(handlers.RetryRefused, match="is queued, not dead"):
        retry(store, sent["_id"])
    with pytest.raises(handlers.RetryRefused, match="no message"):
        retry(store, "nope")
