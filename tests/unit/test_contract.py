import uuid
from datetime import UTC, datetime

import pytest

from services.common import contract
from tests.support import envelope

NEED = {"need_id": "N1", "community_id": "QY-S01-C01", "kind": "goods", "category": "masks",
        "quantity": 60, "unit": "piece", "urgency": "high"}


def test_a_valid_envelope_loads_typed_data():
    event = contract.parse(envelope("need_posted", {**NEED, "needed_by": "2026-12-01T10:00:00Z"}))
    assert event.type == "need_posted"
    assert event.data["quantity"] == 60.0
    assert event.data["needed_by"] == datetime(2026, 12, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("mutate, reason", [
    (lambda e: e.pop("event_id"), "event_id"),
    (lambda e: e.update(event_id="not-a-uuid"), "event_id"),
    (lambda e: e.update(type="need_deleted"), "type"),
    (lambda e: e.update(version=2), "version"),
    (lambda e: e.update(occurred_at="yesterday"), "occurred_at"),
    (lambda e: e["data"].pop("category"), "data.category"),
    (lambda e: e["data"].update(quantity=-5), "data.quantity"),
    (lambda e: e["data"].update(urgency="whenever"), "data.urgency"),
    (lambda e: e["data"].update(unit="bucket"), "data.unit"),
    (lambda e: e.update(extra="field"), "extra"),
])
def test_invalid_envelopes_name_the_failing_field(mutate, reason):
    env = envelope("need_posted", dict(NEED))
    mutate(env)
    with pytest.raises(contract.ContractError) as info:
        contract.parse(env)
    assert reason in info.value.reason


def test_not_an_object_is_rejected():
    with pytest.raises(contract.ContractError, match="not a JSON object"):
        contract.parse(["need_posted"])


def test_unknown_data_fields_are_ignored_for_forward_compatibility():
    event = contract.parse(envelope("need_posted", {**NEED, "added_later": 1}))
    assert "added_later" not in event.data


def test_build_drops_absent_optionals_and_round_trips():
    env = contract.build("need_posted", {**NEED, "programme": None,
                                         "needed_by": datetime(2026, 12, 1, tzinfo=UTC)},
                         source="test")
    assert "programme" not in env["data"]
    assert env["data"]["needed_by"].startswith("2026-12-01T00:00:00")
    assert contract.parse(env).data["needed_by"] == datetime(2026, 12, 1, tzinfo=UTC)


def test_build_refuses_data_that_breaks_the_contract():
    with pytest.raises(contract.ContractError, match="data.quantity"):
        contract.build("need_posted", {**NEED, "quantity": 0}, source="test")


def test_derived_ids_are_stable_uuids():
    a = contract.derived_id("assignment_made", "N1#1")
    assert a == contract.derived_id("assignment_made", "N1#1")
    assert a != contract.derived_id("assignment_made", "N1#2")
    uuid.UUID(a)


def test_every_produced_event_has_a_schema():
    for types in contract.PRODUCERS.values():
        for type_ in types:
            assert type_ in contract.EVENT_SCHEMAS


def test_a_posting_compares_as_the_database_keeps_it():
    from datetime import timedelta, timezone
    posted = {"quantity": 2, "needed_by": datetime(2020, 2, 1, 8, 0, 0, 123456, tzinfo=UTC),
              "note": None, "contact": {"phone": "13912345678"}}
    # as stored and read back: a float, the same instant to the millisecond in another zone,
    # an absent optional
    stored = {"quantity": 2.0, "contact": {"phone": "13912345678"},
              "needed_by": datetime(2020, 2, 1, 16, 0, 0, 123000,
                                    tzinfo=timezone(timedelta(hours=8)))}
    names = ("quantity", "needed_by", "note", "contact")
    assert contract.differences(posted, stored, names) == []
    assert contract.fingerprint(posted) == contract.fingerprint(stored)
    other = {**stored, "quantity": 3, "contact": {"phone": "13700000002"}}
    assert contract.differences(posted, other, names) == ["quantity", "contact"]
    assert contract.fingerprint(posted) != contract.fingerprint(other)


def test_an_id_reused_says_which_and_what_differs_without_the_values():
    reason = str(contract.IdReused("need_id", "N-1", ["quantity", "contact"]))
    assert reason == ("need_id 'N-1' is already used for a different need: it differs in "
                      "quantity, contact; the first stands")
    assert str(contract.IdReused("donation_id", "D-1", [])) == (
        "donation_id 'D-1' is already used for a different donation; the first stands")
