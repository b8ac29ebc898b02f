"""Hostile and odd input, through the running system: no message stops a queue, no request
gets a 5xx, nothing accepted is lost later for a number the door should have refused."""

import json
import uuid

import pika
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.local import Database, free_port
from tests.support import System, envelope, eventually

NEED = {"community_id": "QY-S03-C01", "kind": "goods", "category": "masks", "quantity": 2,
        "unit": "piece", "urgency": "normal"}
DEEP = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _dead_letters(space, marker_header: str = "x-test-id") -> dict[str, dict]:
    """Dead letters on relief.intake.dlq by the test id each message was published with."""
    out = {}
    for headers, _body in space.get_messages("relief.intake.dlq", limit=2000):
        if marker_header in headers:
            out[headers[marker_header]] = headers
    return out


def _publish_raw(space, messages: list[tuple[str, bytes]]) -> None:
    """Publish (test id, body) pairs to relief.intake, confirmed, on one channel."""
    conn, ch = space.channel()
    try:
        for test_id, body in messages:
            ch.basic_publish("relief.intake", "need_posted", body, pika.BasicProperties(
                content_type="application/json", delivery_mode=2,
                headers={"x-test-id": test_id}))
    finally:
        conn.close()


def _good_need(system) -> str:
    need_id = f"N-{uuid.uuid4().hex[:8]}"
    system.space.intake("need_posted", {**NEED, "need_id": need_id})
    return need_id


def test_a_message_nested_too_deeply_is_dead_lettered_and_the_next_one_is_processed(system):
    test_id = uuid.uuid4().hex
    _publish_raw(system.space, [(test_id, DEEP)])
    need_id = _good_need(system)
    eventually(lambda: system.need(need_id), what="the good need after the deep one")
    headers = eventually(lambda: _dead_letters(system.space).get(test_id))
    assert "nested more than" in headers["x-relief-error"]
    assert not system.services.exited()


def test_numbers_the_services_cannot_hold_are_refused_at_the_door(system):
    r = system.api("POST", "/api/needs", json={**NEED, "need_id": "N-big", "quantity": 1e308})
    assert r.status_code == 400 and "quantity" in r.json()["fields"]
    r = system.api("POST", "/api/needs", json={**NEED, "need_id": "N-tiny", "unit": "g",
                                               "category": "disinfectant", "quantity": 1e-9})
    assert r.status_code == 400 and "quantity" in r.json()["fields"]
    r = system.api("POST", "/api/training", json={
        "session_id": "T-frac", "title": "线上培训", "date": "2020-03-01", "attendances": 2.5})
    assert r.status_code == 400 and "attendances" in r.json()["fields"]
    r = system.api("POST", "/api/training", json={
        "session_id": "T-huge", "title": "线上培训", "date": "2020-03-01",
        "attendances": 2_303_756_533_703_196_349})
    assert r.status_code == 400 and "attendances" in r.json()["fields"]
    r = system.api("POST", "/api/needs", json={**NEED, "need_id": "N-\x00-nul"})
    assert r.status_code == 400 and "need_id" in r.json()["fields"]
    # the same through the exchange: a dead letter with the reason, never accepted then lost
    event = envelope("need_posted", {**NEED, "need_id": "N-big-intake", "quantity": 1e308})
    test_id = uuid.uuid4().hex
    _publish_raw(system.space, [(test_id, json.dumps(event).encode())])
    headers = eventually(lambda: _dead_letters(system.space).get(test_id))
    assert "data.quantity" in headers["x-relief-error"]
    assert system.api("GET", "/api/needs/N-big-intake").status_code == 404


def _refusals(space, queue: str, event_ids: set[str]) -> dict[str, str]:
    """The reasons ``queue``'s dead letters give, for the events named."""
    out = {}
    for headers, body in space.get_messages(f"dlq.{queue}", limit=2000):
        event_id = json.loads(body).get("event_id")
        if event_id in event_ids:
            out[event_id] = headers["x-relief-error"]
    return out


def test_an_id_reused_for_a_different_need_or_donation_is_refused_and_the_first_stands(system):
    """A second publisher cannot take over a need (or a donation) by posting another one
    under its id: every consumer refuses it with the reason, and the first one's figures and
    the person told about it stay. The same posting again under a new event id is harmless."""
    space = system.space
    need_id, donation_id = f"N-{uuid.uuid4().hex[:12]}", f"D-{uuid.uuid4().hex[:12]}"
    first = {**NEED, "need_id": need_id, "quantity": 3,
             "contact": {"name": "王芳", "phone": "13912345678"}}
    gift = {"donation_id": donation_id, "donor": {"name": "德仁堂药业", "kind": "company",
                                                  "contact": {"phone": "13800000001"}},
            "location_id": "QY-S03-C01", "category": "gloves", "quantity": 5,
            "unit": "pair", "value_yuan": 20}
    space.intake_many([("need_posted", first), ("donation_received", gift)])
    eventually(lambda: system.need(need_id) and system.lots("gloves").get(donation_id),
               what="the first need and donation")
    subjects = space.db("notifications").subjects
    told = eventually(lambda: subjects.find_one({"_id": f"need:{need_id}", "known": True}),
                      what="notifications knows who posted the need")

    again = space.intake_many([("need_posted", first), ("donation_received", gift)])
    other = space.intake_many([
        ("need_posted", {**first, "quantity": 300, "contact": {"phone": "13700000002"}}),
        ("donation_received", {**gift, "quantity": 500})])
    queues = {
        "evt-intake-need_posted--matching.on_need_posted": other[0],
        "evt-intake-need_posted--notifications.on_need_posted": other[0],
        "evt-intake-donation_received--donations.on_donation_received": other[1],
        "evt-intake-donation_received--notifications.on_donation_received": other[1]}
    for queue, event_id in queues.items():
        reason = eventually(lambda q=queue, e=event_id: _refusals(space, q, {e}).get(e),
                            what=f"the other posting refused by {queue}")
        assert "is already used for a different" in reason and "the first stands" in reason
    reasons = _refusals(space, "evt-intake-need_posted--matching.on_need_posted",
                        set(again) | {other[0]})
    assert "quantity" in reasons[other[0]]  # matching says what differs
    assert not (set(again) & set(reasons))  # the same posting again is no refusal
    assert "13700000002" not in " ".join(reasons.values())  # nor is a phone in a reason

    need = system.need(need_id)
    assert need["quantity"] == 3
    assert system.lots("gloves")[donation_id]["quantity"] == 5
    now = subjects.find_one({"_id": f"need:{need_id}"})
    assert now["recipient"] == told["recipient"] and now["quantity"] == 3


def test_an_event_id_reused_with_other_content_is_refused_at_the_door(system):
    """Intake took a second event under an accepted event id for a redelivery of the first
    and dropped it in silence. Now the same event again is still a harmless duplicate; other
    content under its id is refused: a 409 through the API (whose event ids derive from the
    need_id), a dead letter with the reason through the exchange."""
    need_id = f"N-{uuid.uuid4().hex[:12]}"
    body = {**NEED, "need_id": need_id}
    first = system.api("POST", "/api/needs", json=body)
    assert first.status_code == 202 and first.json()["duplicate"] is False
    again = system.api("POST", "/api/needs", json=body)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    other = system.api("POST", "/api/needs", json={**body, "quantity": 200})
    assert other.status_code == 409, other.text
    assert "posted before with other content" in other.json()["error"]
    assert other.json()["fields"] == {"need_id": "already used"}

    event = envelope("need_posted", {**NEED, "need_id": f"N-{uuid.uuid4().hex[:12]}"})
    changed = {**event, "data": {**event["data"], "quantity": 300}}
    ids = [uuid.uuid4().hex for _ in range(3)]
    _publish_raw(system.space, [(ids[0], json.dumps(event).encode()),
                                (ids[1], json.dumps(event).encode()),  # redelivered
                                (ids[2], json.dumps(changed).encode())])
    headers = eventually(lambda: _dead_letters(system.space).get(ids[2]))
    assert "was accepted before with other content" in headers["x-relief-error"]
    assert headers.get("x-relief-error-kind") == "invalid"
    assert ids[1] not in _dead_letters(system.space)
    need = eventually(lambda: system.need(event["data"]["need_id"]), what="the first need")
    assert need["quantity"] == 2
    assert eventually(lambda: system.need(need_id), what="the posted need")["quantity"] == 2


def test_hostile_requests_get_json_4xx_never_a_server_error(system):
    url = system.url
    # a bearer token that is not ASCII is a wrong token
    r = requests.get(f"{url}/api/areas", headers={"Authorization": b"Bearer tok\xc3\xa9n"},
                     timeout=10)
    assert r.status_code == 401 and r.json()["error"]
    # a link signature that is not ASCII is a wrong signature
    r = requests.post(f"{url}/api/offers/O-1/accept?sig=%C3%A9", timeout=10)
    assert r.status_code == 401 and r.json()["error"]
    r = requests.get(f"{url}/api/offers/O-1/accept?sig=%C3%A9", timeout=10)
    assert r.status_code == 401
    # a body nested deeper than any contract needs
    r = system.api("POST", "/api/needs", data=DEEP, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nested" in r.json()["error"]
    # not JSON at all
    r = system.api("POST", "/api/needs", data="need_id=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["error"]
    # too large
    r = system.api("POST", "/api/needs", data=b"[" + b"1," * 600_000 + b"1]",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]
    # unknown route and unknown method: JSON, not HTML
    r = system.api("GET", "/api/nowhere")
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json")
    r = system.api("DELETE", "/api/needs")
    assert r.status_code == 405 and "POST" in r.headers["Allow"] and r.json()["error"]
    for r in (system.api("GET", "/api/nowhere"), system.api("DELETE", "/api/needs")):
        assert "Traceback" not in r.text and "<html" not in r.text.lower()


# -- the intake consumer against arbitrary bytes and arbitrary JSON ----------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


def _near_valid(data: dict) -> bytes:
    """An envelope with a real type and data fields, but values from anywhere."""
    env = envelope("need_posted", data)
    return json.dumps(env, allow_nan=True).encode()


fuzz_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.fixed_dictionaries({}, optional={
        "need_id": st.text(max_size=10) | st.integers(),
        "community_id": st.sampled_from(["QY-S01-C01", "QY-S99-C99", ""]) | json_values,
        "kind": st.sampled_from(["goods", "service", "x"]),
        "category": st.sampled_from(["masks", "nothing"]),
        "quantity": st.floats() | st.integers() | st.text(max_size=5),
        "unit": st.sampled_from(["piece", "kg", "box", "parsec"]),
        "urgency": st.sampled_from(["high", "whenever"]),
        "beneficiaries": st.floats() | st.integers(),
    }).map(_near_valid),
    st.integers(min_value=1, max_value=60).map(lambda n: b"[" * n + b"]" * n),
)


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bodies=st.lists(fuzz_bodies, min_size=10, max_size=25))
def test_the_intake_consumer_survives_arbitrary_messages_and_keeps_flowing(system, bodies):
    batch = [(uuid.uuid4().hex, body) for body in bodies]
    _publish_raw(system.space, batch)
    need_id = _good_need(system)  # a good message after them is still processed
    eventually(lambda: system.need(need_id), what="the good need after the fuzz batch")

    processed = system.space.db("intake").processed

    def settled() -> dict[str, str]:
        dead = _dead_letters(system.space)
        out = {}
        for test_id, body in batch:
            if test_id in dead:
                out[test_id] = dead[test_id]["x-relief-error"]
                continue
            try:
                event_id = json.loads(body)["event_id"]
            except Exception:  # noqa: BLE001 - not an envelope: it must be a dead letter
                continue
            if processed.find_one({"_id": f"intake:{event_id}"}):
                out[test_id] = "processed"
        return out if len(out) == len(batch) else {}

    outcome = eventually(settled, what="every fuzz message processed or dead-lettered")
    assert all(reason for reason in outcome.values())  # every dead letter says why
    assert not system.services.exited()


# -- a dependency down -------------------------------------------------------------------------

def test_with_the_database_down_reads_answer_503_without_internals(infra, tmp_path):
    database = Database(tmp_path / "db", port=free_port())
    database.start()
    space = infra.new_space("db-down")
    system = System(space, infra.base / "logs" / space.vhost)
    system.env["MONGO_URI"] = database.uri
    system.env["MONGO_TIMEOUT_MS"] = "1500"
    system.start(["gateway", "intake", "matching"])
    try:
        # up: a read answers (a service's first answers may take a while on a busy machine)
        eventually(lambda: system.api("GET", "/api/needs/x").status_code == 404,
                   timeout=60, what="a read with the database up")
        database.stop()
        r = system.api("GET", "/api/needs/x")
        assert r.status_code == 503, r.text
        assert "Topology" not in r.text and "Error" not in r.json()["error"]
        r = system.api("POST", "/api/needs", json={**NEED, "need_id": "N-down"})
        assert r.status_code == 503, r.text
        assert system.api("GET", "/health", token=None).status_code == 503
        database.start()
        eventually(lambda: system.api("GET", "/api/needs/x").status_code == 404,
                   what="reads again once the database is back")
    finally:
        system.stop()
        database.stop()

