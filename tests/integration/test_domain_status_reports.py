"""Organisations' status reports against the real broker and database, with two volunteers
instances running the check: a missed report raises status_report_missing once per
organisation and missed period, and a report that comes in stops the alerts."""

import json
import time
import uuid

import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy

from deploy.local import free_port
from deploy.topology import deploy
from services.common.errors import Invalid, NotFound
from services.volunteers.service import VolunteersService
from tests.support import eventually

PERIOD_SECONDS = 3.0


@pytest.fixture(scope="module")
def volunteers(infra):
    space = infra.new_space("status-reports")
    relief = {"status_report_days": PERIOD_SECONDS / 86400, "status_report_check_seconds": 0.3}
    configs = [{**space.config(**relief), "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}
               for _ in range(2)]
    deploy(configs[0], classes=[VolunteersService])
    probe = space.bind_probe("volunteers.events", "status_report_missing")
    reported = space.bind_probe("volunteers.events", "status_reported")
    containers = [ServiceContainer(VolunteersService, c) for c in configs]
    for c in containers:
        c.start()
    yield space, probe, reported
    for c in containers:
        c.stop()


def alerts(space, probe, organisation_id):
    bodies = [json.loads(body) for _, body in space.get_messages(probe, limit=500)]
    return {b["event_id"]: b["data"]["due_at"] for b in bodies
            if b["data"]["organisation_id"] == organisation_id}


def test_a_missed_report_is_alerted_once_per_period_and_a_report_stops_it(volunteers):
    space, probe, reported = volunteers
    org = f"O-{uuid.uuid4().hex[:6]}"
    with ClusterRpcProxy({"AMQP_URI": space.amqp_uri, "serializer": "json"}) as rpc:
        made = rpc.volunteers.register_organisation({
            "organisation_id": org, "name": "成都市青羊区社会组织服务中心", "role": "member",
            "kind": "social_organisation"})
        assert made["created"]
        # two periods pass without a report: two alerts, whatever the two instances do
        eventually(lambda: len(alerts(space, probe, org)) >= 2, timeout=20,
                   what="two missed periods alerted")
        time.sleep(0.8)  # more checks by both instances within the same period
        seen = alerts(space, probe, org)
        dues = sorted(seen.values())
        assert len(seen) == len(set(dues)), seen  # one alert per due time
        doc = space.db("volunteers").organisations.find_one({"_id": org})
        assert doc["alerted_for"].isoformat().startswith(dues[-1][:19])

        answer = rpc.volunteers.report_status(org, {
            "report_id": f"R-{org}", "activities": "为独居老人配送蔬菜，开展线上心理辅导",
            "area_ids": ["QY-S01-C01", "QY-S01"],
            "staff": {"total": 12, "healthy": 11, "fever": 0, "quarantined": 1},
            "resumption": "partial", "note": "计划下周全面复工"})
        assert answer["repeated"] is False, answer
        again = rpc.volunteers.report_status(org, {
            "report_id": f"R-{org}", "activities": "x", "staff": {"total": 1, "healthy": 1},
            "resumption": "resumed"})
        assert again["repeated"] is True and again["resumption"] == "partial"
        with pytest.raises(Invalid) as bad:
            rpc.volunteers.report_status(org, {
                "report_id": "R-bad", "activities": "x", "area_ids": ["QY-S99"],
                "staff": {"total": 1, "healthy": 2}, "resumption": "resumed"})
        assert "staff.total" in bad.value.fields
        with pytest.raises(NotFound):
            rpc.volunteers.report_status("O-nobody", {
                "report_id": "R-x", "activities": "x", "staff": {"total": 1, "healthy": 1},
                "resumption": "resumed"})
        before = len(alerts(space, probe, org))
        [row] = [r for r in rpc.volunteers.reporting() if r["organisation_id"] == org]
        assert row["overdue"] is False and row["last_report"]["resumption"] == "partial"
        time.sleep(PERIOD_SECONDS * 0.6)  # within the new period: no alert
        assert len(alerts(space, probe, org)) == before
        assert [r["report_id"] for r in rpc.volunteers.status_reports(org)] == [f"R-{org}"]
        # the next period missed again: alerted again
        eventually(lambda: len(alerts(space, probe, org)) == before + 1, timeout=15,
                   what="the next missed period alerted")
    events = [json.loads(b) for _, b in space.get_messages(reported)]
    assert [e["data"]["report_id"] for e in events
            if e["data"]["organisation_id"] == org] == [f"R-{org}"]
