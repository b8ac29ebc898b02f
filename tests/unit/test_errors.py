"""Typed domain errors: they cross RPC as themselves and the HTTP entrypoint maps each once."""

import json

import pytest
from nameko.exceptions import RemoteError, deserialize, serialize

from services.common import errors
from services.common.web import response_from_exception


def body_of(response):
    assert response.mimetype == "application/json"
    return json.loads(response.get_data(as_text=True))


@pytest.mark.parametrize("exc, status", [
    (errors.NotFound("no pledge 'P-1'"), 404),
    (errors.Conflict("hours 'H-1' are already approved"), 409),
    (errors.Invalid("invalid part", {"unit": "does not measure the pledge (kg)"}), 400),
    (errors.NoAnswer("withdraw did not answer within 10s"), 504),
    (errors.DomainError("refused"), 400),
])
def test_each_domain_error_is_answered_with_its_status_and_its_message(exc, status):
    response = response_from_exception(exc)
    assert response.status_code == status
    body = body_of(response)
    assert body["error"] == exc.message
    assert body.get("fields", {}) == exc.fields


def test_an_invalid_request_names_its_failing_fields():
    exc = errors.Invalid("unknown warehouse", {"to_location_id": "unknown area 'QY-S99'"})
    assert body_of(response_from_exception(exc)) == {
        "error": "unknown warehouse", "fields": {"to_location_id": "unknown area 'QY-S99'"}}


def test_an_error_without_fields_answers_without_fields():
    assert body_of(response_from_exception(errors.NotFound("unknown lot 'L-1'"))) == {
        "error": "unknown lot 'L-1'"}


@pytest.mark.parametrize("exc", [
    errors.NotFound("no hours 'H-9' (they may still be on their way)"),
    errors.Conflict("lot id 'TR-x' is taken; choose another request_id"),
    errors.Invalid("invalid pledge", {"category": "unknown goods category 'gold'",
                                      "data.quantity": "Must be greater than 0."}),
    errors.NoAnswer("submit did not answer within 10s"),
    errors.DomainError("refused", {"why": "because"}),
])
def test_a_domain_error_raised_by_a_service_reaches_the_caller_as_itself(exc):
    # what nameko sends over RPC (JSON) and what the caller's proxy raises from it
    wire = json.loads(json.dumps(serialize(exc)))
    arrived = deserialize(wire)
    assert type(arrived) is type(exc)
    assert arrived.message == exc.message and arrived.fields == exc.fields
    assert str(arrived) == exc.message


def test_fields_are_strings_whatever_a_service_gave():
    exc = errors.Invalid("invalid", {"quantity": ["Must be positive."], 3: None})
    assert exc.fields == {"quantity": "['Must be positive.']", "3": "None"}


def test_a_remote_error_of_an_unknown_type_is_a_500_with_no_internals():
    exc = RemoteError("KeyError", "'secret_collection' at /srv/relief/services/x.py:42")
    response = response_from_exception(exc)
    assert response.status_code == 500
    body = body_of(response)
    assert body["error"].startswith("internal error (reference ")
    assert "secret_collection" not in body["error"] and "KeyError" not in body["error"]
    assert set(body) == {"error"}

