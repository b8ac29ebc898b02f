"""The bounded decoder, the contract's bounds and the HTTP error mapping (no I/O)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nameko.exceptions import RemoteError
from pymongo.errors import ServerSelectionTimeoutError

from services.common import contract, wire
from services.common.deps import RpcTimeout
from services.common.web import HttpError, response_from_exception
from tests.support import envelope

NEED = {"need_id": "N-1", "community_id": "QY-S01-C01", "kind": "goods", "category": "masks",
        "quantity": 5, "unit": "piece", "urgency": "high"}


@pytest.mark.parametrize("raw, reason", [
    (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested more than"),
    (b"\xff\xfe", "not UTF-8 text"),
    (b"", "empty"),
    (b"   ", "empty"),
    (b"NaN", "not a number JSON allows"),
    (b'{"q": Infinity}', "not a number JSON allows"),
    (b'{"q": 1e400}', "out of range"),
    (b"1" * 5000, "not acceptable JSON"),
    (b"{oops", "not valid JSON"),
    (b"[" + b"1," * 200_000 + b"1]", "at most"),
])
def test_the_decoder_refuses_with_a_reason(raw, reason):
    with pytest.raises(wire.DecodeError) as caught:
        wire.decode(raw)
    assert reason in caught.value.reason


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"note": "[" * 500, "escaped": '\\"[[[', "list": [[1]]})
    assert wire.depth(text.encode()) == 3
    assert wire.decode(text)["note"] == "[" * 500


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_decode_error(raw):
    try:
        wire.decode(raw)
    except wire.DecodeError as exc:
        assert exc.reason


def _reason(data):
    with pytest.raises(contract.ContractError) as caught:
        contract.parse(envelope("need_posted", data))
    return caught.value.reason


def test_quantities_are_finite_bounded_and_countable():
    assert "data.quantity" in _reason({**NEED, "quantity": 1e308})
    assert "data.quantity" in _reason({**NEED, "quantity": contract.QUANTITY_MAX * 2})
    assert "data.quantity" in _reason({**NEED, "quantity": 0.0001})  # below a thousandth
    assert contract.parse(envelope("need_posted", {**NEED, "quantity": 0.001})).data


def test_counts_are_whole_and_bounded():
    assert "data.beneficiaries" in _reason({**NEED, "beneficiaries": 2.5})
    assert "data.beneficiaries" in _reason({**NEED, "beneficiaries": 10**12})
    assert contract.parse(envelope("need_posted", {**NEED, "beneficiaries": 300})).data


def test_ids_with_control_characters_are_refused():
    assert "data.need_id" in _reason({**NEED, "need_id": "N-\x00"})
    assert "data.community_id" in _reason({**NEED, "community_id": "QY\n"})


@pytest.mark.parametrize("exc, status", [
    (HttpError("no such offer", status=404), 404),
    (wire.DecodeError("nested"), 400),
    (RpcTimeout("get_need did not answer within 10s"), 504),
    (ServerSelectionTimeoutError("127.0.0.1:1: Topology Description ..."), 503),
    (RemoteError("ServerSelectionTimeoutError", "Topology Description <...>"), 503),
    (ConnectionRefusedError(111, "refused"), 503),
    (KeyError("secret internals"), 500),
])
def test_errors_map_to_json_answers_without_internals(exc, status):
    response = response_from_exception(exc)
    assert response.status_code == status
    body = json.loads(response.get_data(as_text=True))
    assert body["error"]
    assert "Topology" not in body["error"] and "secret internals" not in body["error"]


def test_a_string_that_never_closes_is_scanned_once_not_for_every_quote():
    # quadratic before: the scan restarted at every later quote (minutes for 256 KiB)
    raw = b'"' + b'\\"' * 130_000
    assert wire.depth(raw) == 0
    with pytest.raises(wire.DecodeError):
        wire.decode(raw)
