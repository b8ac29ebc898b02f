"""``relief-ops`` as on-call staff run it, against the whole system (every service its own
process, a real broker and database): status and its exit code, thresholds, dead letters
listed with their reasons, replayed once to the queue that failed, purged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from services.common.topology import consumer_specs, service_class
from tests.support import System, envelope, eventually

ROOT = Path(__file__).resolve().parents[2]
NOTIFICATIONS_Q = "evt-intake-need_posted--notifications.on_need_posted"
DONATIONS_Q = "evt-matching-assignment_made--donations.on_assignment_made"
PHONE, NAME = "13912345678", "王芳"


def ops_env(system: System) -> dict[str, str]:
    space = system.space
    env = {k: v for k, v in os.environ.items() if k != "RELIEF_ADMIN_TOKEN"}
    env.update({"RABBIT_MANAGEMENT_URI": space.management_uri, "AMQP_URI": space.amqp_uri,
                "RELIEF_GATEWAY_URL": system.url, "RELIEF_ADMIN_TOKEN": System.TOKEN,
                "PYTHONWARNINGS": "ignore", "RELIEF_LANG": "en"})  # its words are checked
    return env


def ops(system: System, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the tool as on-call staff would (environment configuration, no flags needed)."""
    return subprocess.run([sys.executable, "-m", "services.ops.cli", *args], cwd=ROOT,
                          env=ops_env(system), capture_output=True, text=True,
                          timeout=timeout)


def status_json(system: System, *args: str) -> tuple[int, dict]:
    result = ops(system, "status", "--json", *args)
    return result.returncode, json.loads(result.stdout)


def all_clear(system: System) -> bool:
    """``relief-ops status`` passes (on failure, says what it still names)."""
    result = ops(system, "status", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    return True


def problems(report: dict) -> set[tuple[str, str]]:
    return {(p["check"], p["subject"]) for p in report["problems"]}


def need(need_id: str, **over) -> dict:
    return {"need_id": need_id, "community_id": "QY-S02-C03", "kind": "goods",
            "category": "thermometers", "quantity": 2, "unit": "piece", "urgency": "high",
            "contact": {"name": NAME, "phone": PHONE}, **over}


def test_a_healthy_system_passes_and_every_queue_is_listed(system):
    result = eventually(lambda: (r := ops(system, "status")).returncode == 0 and r,
                        what="relief-ops status ok")
    assert result.stdout.rstrip().endswith("OK: every check passed")
    for spec in consumer_specs():
        assert spec.name in result.stdout
    code, report = status_json(system)
    assert code == 0 and report["ok"] is True and report["problems"] == []
    rows = {q["name"]: q for q in report["queues"]}
    assert rows["evt-intake-need_posted--matching.on_need_posted"]["consumers"] >= 1
    assert rows["relief.intake.dlq"]["dead_letter_queue"] is True
    for field in ("messages", "ready", "unacked", "consumers", "publish_rate", "ack_rate",
                  "dead_letters"):
        assert field in rows["relief.intake.events"]
    assert set(report["needs"]["oldest_open"]) == {"community", "street", "district"}
    assert report["unroutable"] == 0 and report["unaddressed_escalations"] == []
    quiet = ops(system, "status", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == ""


def test_a_stopped_service_is_named_until_it_is_back(system):
    system.services.kill("notifications", signal.SIGTERM)
    stopped = {s.name for s in consumer_specs([service_class("notifications")])}
    try:
        need_id = f"N-ops-{uuid.uuid4().hex[:6]}"
        assert system.api("POST", "/api/needs", json=need(need_id)).status_code == 202

        def named():
            result = ops(system, "status")
            return (result.returncode == 1 and all(f"{q}: no consumers" in result.stdout
                                                   for q in stopped) and result)

        result = eventually(named, what="the stopped consumers named")
        assert "PROBLEMS" in result.stdout
        code, report = status_json(system)
        assert code == 1
        assert {("consumers", q) for q in stopped} <= problems(report)
        assert ("consumers", "rpc-notifications") in problems(report)
        # the need waits for notifications: a depth threshold sees it, and says where
        depth = eventually(lambda: (r := ops(system, "status", "--quiet", "--max-depth", "0"))
                           and f"{NOTIFICATIONS_Q}: depth 1 over 0" in r.stdout and r,
                           what="the depth problem")
        assert depth.returncode == 1 and depth.stdout.startswith("PROBLEMS")
        assert PHONE not in depth.stdout and NAME not in depth.stdout
    finally:
        system.services.start("notifications")
    system.wait_consumers(["notifications"])
    eventually(lambda: all_clear(system), what="all clear again")
    # and the need that waited was delivered: every queue is empty again
    eventually(lambda: status_json(system, "--max-depth", "0")[0] == 0, what="queues drained")


def test_the_age_of_the_oldest_open_need_has_a_limit(system):
    need_id = f"N-age-{uuid.uuid4().hex[:6]}"
    assert system.api("POST", "/api/needs", json=need(need_id, urgency="low")).status_code == 202
    eventually(lambda: system.need(need_id))
    code, report = status_json(system, "--max-age", "0")
    assert code == 1 and ("age", "community") in problems(report)
    oldest = report["needs"]["oldest_open"]["community"]["need_id"]
    text = ops(system, "status", "--max-age", "street=1d,community=0s").stdout
    assert f"oldest open community need {oldest} is" in text
    assert ops(system, "status", "--max-age", "community=1d").returncode == 0
    assert ops(system, "status", "--max-age", "fortnight").returncode == 2


def test_watch_refreshes_until_interrupted(system):
    process = subprocess.Popen(
        [sys.executable, "-m", "services.ops.cli", "status", "--json", "--watch", "0.5"],
        cwd=ROOT, env=ops_env(system), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a run started in the background inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = json.loads(process.stdout.readline())
        second = json.loads(process.stdout.readline())
        assert first["ok"] and second["ok"]
        assert second["checked_at"] >= first["checked_at"]
    finally:
        process.send_signal(signal.SIGINT)
        # read what it still writes: a full pipe would keep it from exiting
        process.communicate(timeout=20)
        code = process.returncode
    assert code == 0


def test_poison_messages_are_listed_with_their_reason_and_purged(system):
    space = system.space
    space.publish("relief.intake", "need_posted", b"{not json", content_type="application/json")
    bad_id = space.intake("need_posted", need("N-bad", community_id="QY-S77-C01"))
    eventually(lambda: space.queue_depth("relief.intake.dlq") == 2, what="two dead letters")

    listing = json.loads(ops(system, "dlq", "list", "--json").stdout)
    intake = next(q for q in listing if q["queue"] == "relief.intake.dlq")
    assert intake["messages"] == 2
    by_id = {d["id"]: d for d in intake["dead_letters"]}
    assert "unknown community 'QY-S77-C01'" in by_id[bad_id]["reason"]
    assert by_id[bad_id]["origin"] == "relief.intake.events"
    assert by_id[bad_id]["kind"] == "invalid" and by_id[bad_id]["subject"] == "need_id=N-bad"
    [garbled] = [d for d in intake["dead_letters"] if d["id"] != bad_id]
    assert garbled["id"].startswith("sha1:") and "not valid JSON" in garbled["reason"]

    text = ops(system, "dlq", "list")
    assert text.returncode == 0 and "unknown community 'QY-S77-C01'" in text.stdout
    shown = ops(system, "dlq", "show", "relief.intake.dlq", bad_id)
    assert shown.returncode == 0 and "139****5678" in shown.stdout
    assert PHONE not in shown.stdout and NAME not in shown.stdout
    assert PHONE not in text.stdout and NAME not in text.stdout

    # the queue list's figures are the broker's statistics, refreshed every few seconds
    eventually(lambda: ("dead_letters", "relief.intake.dlq") in problems(status_json(system)[1]),
               what="the dead letters named by status")
    assert ops(system, "status").returncode == 1

    refused = ops(system, "dlq", "purge", "relief.intake.dlq")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert space.queue_depth("relief.intake.dlq") == 2
    assert ops(system, "dlq", "purge", "relief.intake.events", "--yes").returncode == 0
    assert space.queue_depth("relief.intake.dlq") == 0
    eventually(lambda: all_clear(system), what="all clear after purge")


def test_an_event_no_queue_is_bound_for_is_a_problem_until_purged(system):
    """Normal traffic never lands in relief.unroutable, so one misrouted event (a misspelt
    routing key) is named by status until on-call has looked at it and purged it."""
    space = system.space
    event = envelope("need_fulfilled", {"need_id": "N-misrouted", "community_id": "QY-S01-C01",
                                        "category": "masks", "quantity": 1, "unit": "piece"},
                     source="matching")
    space.publish("matching.events", "need_fulfiled", event)
    eventually(lambda: space.queue_depth("relief.unroutable") == 1, what="kept by the tap")
    eventually(lambda: ("unroutable", "relief.unroutable") in problems(status_json(system)[1]),
               what="the unroutable message named by status")
    quiet = ops(system, "status", "--quiet")
    assert quiet.returncode == 1
    assert "relief.unroutable: 1 message(s) no queue was bound for" in quiet.stdout

    listing = ops(system, "dlq", "list", "relief.unroutable")
    assert listing.returncode == 0, listing.stderr
    assert "events no queue was bound for" in listing.stdout
    assert event["event_id"] in listing.stdout and "need_fulfilled" in listing.stdout
    refused = ops(system, "dlq", "replay", "relief.unroutable", "--all")
    assert refused.returncode == 2 and "no queue to replay them to" in refused.stderr
    assert space.queue_depth("relief.unroutable") == 1

    assert ops(system, "dlq", "purge", "relief.unroutable", "--yes").returncode == 0
    assert space.queue_depth("relief.unroutable") == 0
    eventually(lambda: all_clear(system), what="all clear after purge")


def test_a_dead_letter_is_replayed_once_to_the_consumer_that_failed(system):
    """Donations is told of an assignment from a lot it has not recorded (its stock is out
    of step): it waits for the lot a few seconds (it may be a batch behind), then
    dead-letters the event with that reason. Once the lot is recorded, the
    replay applies the allocation exactly once, and only donations sees the event again."""
    space = system.space
    lot_id, assignment_id = f"L-{uuid.uuid4().hex[:6]}", f"A-{uuid.uuid4().hex[:6]}"
    probe = space.bind_probe("matching.events", "assignment_made")  # what the exchange carries
    event = envelope("assignment_made", {
        "assignment_id": assignment_id, "need_id": f"N-{assignment_id}",
        "community_id": "QY-S01-C01", "category": "disinfectant", "quantity": 3,
        "unit": "jin", "lot_id": lot_id, "lot_quantity": 3, "lot_unit": "jin",
        "location_id": "QY", "tier_distance": 2, "value_yuan": 30}, source="matching")
    space.publish("matching.events", "assignment_made", event)
    dlq = f"dlq.{DONATIONS_Q}"
    eventually(lambda: space.queue_depth(dlq) == 1, what="the allocation dead-lettered")

    [letter] = json.loads(ops(system, "dlq", "list", DONATIONS_Q, "--json").stdout)[0][
        "dead_letters"]
    assert letter["id"] == event["event_id"] and letter["origin"] == DONATIONS_Q
    assert "LotNotRecorded" in letter["reason"] and "not recorded" in letter["reason"]
    assert letter["kind"] == "transient" and letter["attempts"] > 1  # waited, then gave up
    eventually(lambda: ("dead_letters", dlq) in problems(status_json(system)[1]),
               what="the dead letter named by status")

    # replayed before the fix: only donations' consumer runs it again, and it fails again
    first = ops(system, "dlq", "replay", dlq, "--id", event["event_id"])
    assert first.returncode == 0 and f"to {DONATIONS_Q}" in first.stdout
    again = eventually(lambda: (d := json.loads(ops(system, "dlq", "list", dlq, "--json")
                                                .stdout)[0]["dead_letters"]) and d,
                       what="dead-lettered again")
    assert again[0]["replays"] == 1

    # the fix: the lot is recorded
    space.intake("donation_received", {
        "donation_id": lot_id, "donor": {"name": "德仁堂药业", "kind": "company"},
        "location_id": "QY", "category": "disinfectant", "quantity": 10, "unit": "jin",
        "value_yuan": 100})
    eventually(lambda: system.lots("disinfectant").get(lot_id), what="the lot recorded")

    replay = ops(system, "dlq", "replay", DONATIONS_Q, "--all")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "1 replayed, 0 failed, 0 left" in replay.stdout
    lot = eventually(lambda: (lot := system.lots("disinfectant")[lot_id])["allocated"] == 3
                     and lot, what="the allocation applied")
    assert lot["available"] == 7
    assert space.queue_depth(dlq) == 0
    time.sleep(2)  # had it been delivered twice, the second would have landed by now
    assert system.lots("disinfectant")[lot_id]["available"] == 7
    assert space.queue_depth(dlq) == 0
    # nothing left to replay: nothing done, nothing changed
    assert ops(system, "dlq", "replay", dlq, "--all").returncode == 2
    assert system.lots("disinfectant")[lot_id]["available"] == 7
    # the other consumers of assignment_made were not sent it again
    assert space.queue_depth(probe) == 1
    ledger = space.db("accounting").ledger
    assert ledger.count_documents({"_id": f"allocated:{assignment_id}"}) == 1
    mgmt = space.management_uri.replace("guest:guest@", "")
    requests.delete(f"{mgmt}/api/queues/{space.vhost}/{probe}", auth=("guest", "guest"),
                    timeout=10).raise_for_status()
    eventually(lambda: all_clear(system), what="all clear after replay")


def on_call_account(system: System, permissions: list[str]) -> tuple[str, str]:
    account_id = f"oncall-{uuid.uuid4().hex[:6]}"
    password = "correct horse battery"
    made = system.api("POST", "/api/accounts", json={
        "account_id": account_id, "role": "on_call", "password": password,
        "permissions": permissions})
    assert made.status_code == 201, made.text
    session = system.api("POST", "/api/session", token=None,
                         json={"account_id": account_id, "password": password})
    assert session.status_code == 201, session.text
    return account_id, session.json()["token"]


def test_replaying_and_purging_need_the_gateways_leave_and_are_in_its_audit_log(system):
    """On-call acts on dead letters with their own credential: the gateway allows it only
    with the permission for it, and records who did what to which queue."""
    space = system.space
    space.publish("relief.intake", "need_posted", b"{garbled", content_type="application/json")
    eventually(lambda: space.queue_depth("relief.intake.dlq") == 1, what="a dead letter")
    plain, plain_token = on_call_account(system, [])
    purger, purger_token = on_call_account(system, ["purge"])

    refused = ops(system, "dlq", "purge", "relief.intake.dlq", "--yes", "--token", plain_token)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "the gateway refused (403)" in refused.stderr and "not purged" in refused.stderr
    assert space.queue_depth("relief.intake.dlq") == 1  # nothing was done
    replay = ops(system, "dlq", "replay", "relief.intake.dlq", "--all", "--token",
                 purger_token)  # purge does not give replay
    assert replay.returncode == 2 and "the gateway refused (403)" in replay.stderr

    away = ops(system, "dlq", "purge", "relief.intake.dlq", "--yes", "--token", purger_token,
               "--gateway", "http://127.0.0.1:9")
    assert away.returncode == 2 and "--unaudited" in away.stderr
    assert space.queue_depth("relief.intake.dlq") == 1

    done = ops(system, "dlq", "purge", "relief.intake.dlq", "--yes", "--token", purger_token)
    assert done.returncode == 0, done.stdout + done.stderr
    assert space.queue_depth("relief.intake.dlq") == 0
    entries = system.api("GET", f"/api/audit?actor={purger}").json()["entries"]
    steps = {(e["action"], e["status"], (e.get("target") or {}).get("queue")) for e in entries}
    assert ("deadletters.purge", 201, "relief.intake.dlq") in steps
    assert ("deadletters.replay", 403, "relief.intake.dlq") in steps
    refusals = system.api("GET", f"/api/audit?actor={plain}").json()["entries"]
    assert [(e["action"], e["status"]) for e in refusals
            if e["action"].startswith("deadletters")] == [("deadletters.purge", 403)]

    # without the gateway, --unaudited acts and says that nothing recorded it
    space.publish("relief.intake", "need_posted", b"{garbled", content_type="application/json")
    eventually(lambda: space.queue_depth("relief.intake.dlq") == 1, what="a dead letter")
    anyway = ops(system, "dlq", "purge", "relief.intake.dlq", "--yes", "--token",
                 purger_token, "--gateway", "http://127.0.0.1:9", "--unaudited")
    assert anyway.returncode == 0 and "recorded nowhere" in anyway.stderr
    assert space.queue_depth("relief.intake.dlq") == 0
