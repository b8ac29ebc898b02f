"""Every service exposes Prometheus metrics and a health check on its own port."""

import re
import signal
import uuid

import requests

from tests.support import eventually


def scrape(system, name):
    port = system.services.web_port(name)
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def value(text, pattern):
    match = re.search(pattern + r" ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_handled_and_dead_lettered_events_are_counted(system):
    space = system.space
    space.intake("need_posted", {"need_id": f"N-{uuid.uuid4().hex[:6]}",
                                 "community_id": "QY-S01-C02", "kind": "goods",
                                 "category": "masks", "quantity": 1, "unit": "piece",
                                 "urgency": "low"})
    space.publish("relief.intake", "need_posted", b"garbage")
    ok = r'relief_events_handled_total\{outcome="ok",queue="evt-intake-need_posted--matching' \
         r'.on_need_posted"\}'
    eventually(lambda: value(scrape(system, "matching"), ok) >= 1, what="matching counted")
    dead = r'relief_dead_lettered_total\{kind="invalid",queue="relief.intake.events"\}'
    eventually(lambda: value(scrape(system, "intake"), dead) >= 1, what="intake counted")
    text = scrape(system, "matching")
    assert "relief_handler_seconds_bucket" in text
    assert re.search(r"^relief_outbox_backlog \d+", text, re.M)


def healthz(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
    except requests.ConnectionError:
        return None


def test_health_checks_answer_for_every_service_and_come_back_after_a_restart(system):
    for name in ("intake", "donations", "volunteers", "matching", "accounting", "gateway"):
        assert healthz(system.services.web_port(name)) == 200, name
    port = system.services.web_port("donations")
    system.services.kill("donations", signal.SIGKILL)
    assert healthz(port) is None
    system.services.start("donations")
    system.wait_consumers(["donations"])
    eventually(lambda: healthz(port) == 200, what="donations healthy again")
