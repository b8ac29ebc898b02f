"""The on-call report, dead-letter handling and the dashboard page, without I/O."""

import json
import re

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.gateway.dashboard import DashboardRoutes, page
from services.ops import cli
from services.ops.deadletters import DeadLetter, redact, redact_text
from services.ops.report import (
    Thresholds,
    build_report,
    format_age,
    origin_of,
    parse_max_age,
    resolve_dlq,
)

NEED_Q = "evt-intake-need_posted--notifications.on_need_posted"
MATCH_Q = "evt-intake-need_posted--matching.on_need_posted"


def row(name, messages=0, consumers=1, ready=None, unacked=0):
    return {"name": name, "dead_letter_queue": name.startswith("dlq.") or
            name == "relief.intake.dlq", "messages": messages,
            "ready": messages if ready is None else ready, "unacked": unacked,
            "consumers": consumers, "publish_rate": 0.0, "ack_rate": 0.0}


def needs(oldest_age=None):
    oldest = {"community": None, "street": None, "district": None}
    if oldest_age is not None:
        oldest["street"] = {"need_id": "N-1", "posted_at": "2020-02-01T00:00:00+00:00",
                            "age_seconds": oldest_age, "urgency": "high",
                            "category": "masks", "community_id": "QY-S01-C01"}
    return {"open_needs": {t: {"critical": 0, "high": 1 if t == "street" else 0, "normal": 0,
                               "low": 0} for t in oldest},
            "oldest_open": oldest, "supply": [{"category": "masks", "unit": "piece",
                                               "available": 40.0}],
            "assignments_per_hour": [{"hour": "2020-02-01T10:00", "count": 3}]}


REQUIRED = [NEED_Q, MATCH_Q, "relief.intake.events"]


def healthy_queues():
    return [row(NEED_Q), row(MATCH_Q), row("relief.intake.events"), row("relief.intake.dlq", 0, 0),
            row(f"dlq.{NEED_Q}", 0, 0), row("rpc-matching"), row("relief.unroutable", 0, 0)]


def escalation(area="QY-S03", tier="street", count=2, coordinators=0):
    return {"area_id": area, "tier": tier, "count": count, "need_ids": ["N-7", "N-8"][:count],
            "notification_ids": ["m-1", "m-2"][:count], "since": "2020-02-01T00:00:00+00:00",
            "coordinators": coordinators}


def checks(report):
    return {(p["check"], p["subject"]) for p in report["problems"]}


def test_a_healthy_system_passes_every_check():
    report = build_report(healthy_queues(), needs(60), required=REQUIRED)
    assert report["ok"] is True and report["problems"] == []
    assert report["dead_letters"] == 0
    by_name = {q["name"]: q for q in report["queues"]}
    assert by_name[NEED_Q]["dlq"] == f"dlq.{NEED_Q}" and by_name[NEED_Q]["dead_letters"] == 0
    assert by_name["relief.intake.events"]["dlq"] == "relief.intake.dlq"
    assert by_name["relief.intake.dlq"]["origin"] == "relief.intake.events"
    assert by_name["relief.unroutable"]["consumers_required"] is False


def test_each_problem_is_named():
    queues = healthy_queues()
    queues[0]["consumers"] = 0  # notifications stopped
    queues[1].update(messages=1500, ready=1500)  # matching behind
    queues[4]["messages"] = 2  # dead letters from notifications
    queues[5]["consumers"] = 0  # its RPC queue too
    queues = [q for q in queues if q["name"] != "relief.intake.events"]  # never declared
    report = build_report(queues, needs(3 * 86400), required=REQUIRED)
    assert report["ok"] is False
    assert checks(report) == {("consumers", NEED_Q), ("depth", MATCH_Q),
                              ("dead_letters", f"dlq.{NEED_Q}"), ("consumers", "rpc-matching"),
                              ("missing", "relief.intake.events"), ("age", "street")}
    messages = " / ".join(p["message"] for p in report["problems"])
    assert f"{NEED_Q}: no consumers" in messages
    assert "depth 1500 over 1000" in messages
    assert "N-1 is 3d 00h old" in messages
    assert report["dead_letters"] == 2
    assert {q["name"]: q for q in report["queues"]}[NEED_Q]["dead_letters"] == 2


def test_thresholds_are_configurable():
    queues = healthy_queues()
    queues[4]["messages"] = 2
    queues[1].update(messages=10)
    loose = Thresholds.from_options("10", "2", ["street=4h"])
    assert build_report(queues, needs(3600), required=REQUIRED, thresholds=loose)["ok"]
    strict = Thresholds.from_options("9", "1", ["1h", "street=30m"])
    report = build_report(queues, needs(3600), required=REQUIRED, thresholds=strict)
    assert checks(report) == {("depth", MATCH_Q), ("dead_letters", f"dlq.{NEED_Q}"),
                              ("age", "street")}
    assert report["thresholds"]["max_age_seconds"] == {"community": 3600, "street": 1800,
                                                       "district": 3600}


def test_anything_in_the_unroutable_tap_is_a_problem_but_not_a_backlog():
    queues = healthy_queues()
    assert build_report(queues, needs(), required=REQUIRED)["unroutable"] == 0
    queues[-1]["messages"] = 3
    report = build_report(queues, needs(), required=REQUIRED)
    assert checks(report) == {("unroutable", "relief.unroutable")}
    assert report["unroutable"] == 3
    assert "relief.unroutable: 3 message(s) no queue was bound for" in report["problems"][0][
        "message"]
    assert "relief-ops dlq list relief.unroutable" in report["problems"][0]["message"]
    queues[-1]["messages"] = 10**6  # over any depth limit: still one problem, not a backlog
    assert checks(build_report(queues, needs(), required=REQUIRED)) == {
        ("unroutable", "relief.unroutable")}


def test_an_escalation_that_reached_nobody_is_a_problem_until_it_is_retried():
    nobody = {"unaddressed_escalations": [escalation()]}
    report = build_report(healthy_queues(), needs(), notifications=nobody, required=REQUIRED)
    assert checks(report) == {("escalation", "QY-S03")}
    message = report["problems"][0]["message"]
    assert "2 escalation(s) to street QY-S03 (N-7, N-8) reached nobody" in message
    assert "no coordinator is registered for QY-S03: PUT /api/recipients/<id>" in message
    assert "POST /api/notifications/m-1/retry" in message
    assert report["unaddressed_escalations"] == nobody["unaddressed_escalations"]
    # a coordinator registered since: the message still has to be sent again
    later = {"unaddressed_escalations": [escalation(coordinators=1)]}
    message = build_report(healthy_queues(), needs(), notifications=later,
                           required=REQUIRED)["problems"][0]["message"]
    assert "a coordinator is registered now: send again with POST" in message
    retried = build_report(healthy_queues(), needs(), required=REQUIRED,
                           notifications={"unaddressed_escalations": []})
    assert retried["ok"] and retried["unaddressed_escalations"] == []
    unknown = build_report(healthy_queues(), needs(), required=REQUIRED,
                           errors={"notifications": "not running"})
    assert checks(unknown) == {("source", "notifications")}
    assert unknown["unaddressed_escalations"] is None


def test_unreadable_sources_are_problems_not_crashes():
    report = build_report(None, None, required=REQUIRED,
                          errors={"broker": "unreachable", "gateway": "refused the token"})
    assert not report["ok"] and report["queues"] is None and report["needs"] is None
    assert checks(report) == {("source", "broker"), ("source", "gateway")}


def test_without_the_code_the_naming_rule_says_which_queues_need_consumers(monkeypatch):
    from services.ops import report as module

    monkeypatch.setattr(module, "consumer_queues", lambda: None)
    queues = healthy_queues()
    queues[0]["consumers"] = 0
    queues.append(row("probe-1", 0, 0))
    assert checks(module.build_report(queues, needs())) == {("consumers", NEED_Q)}


@pytest.mark.parametrize("text, expected", [
    ("3600", {"community": 3600, "street": 3600, "district": 3600}),
    ("4h", {"community": 14400, "street": 14400, "district": 14400}),
    ("community=30m,district=2d", {"community": 1800, "street": 86400, "district": 172800}),
])
def test_max_age_syntax(text, expected):
    assert parse_max_age([text]) == expected


@pytest.mark.parametrize("bad", ["soon", "village=1h", "street=-1", "1w"])
def test_bad_max_age_is_refused(bad):
    with pytest.raises(ValueError):
        parse_max_age([bad])


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="max-depth"):
        Thresholds.from_options("-1")
    with pytest.raises(ValueError, match="max-dead-letters"):
        Thresholds.from_options(None, "many")


def test_queue_names():
    assert origin_of("relief.intake.dlq") == "relief.intake.events"
    assert origin_of(f"dlq.{NEED_Q}") == NEED_Q
    assert resolve_dlq(NEED_Q) == f"dlq.{NEED_Q}"
    assert resolve_dlq("relief.intake.events") == "relief.intake.dlq"
    assert resolve_dlq("relief.intake.dlq") == "relief.intake.dlq"


def test_ages_read_like_people_say_them():
    assert [format_age(s) for s in (5, 75, 7530, 3 * 86400 + 7200, None)] == [
        "5s", "1m 15s", "2h 05m", "3d 02h", "-"]


# -- dead letters ----------------------------------------------------------------------------
ENVELOPE = {"event_id": "e-1", "type": "need_posted", "version": 1, "source": "x",
            "occurred_at": "2020-02-01T00:00:00+00:00",
            "data": {"need_id": "N-9", "community_id": "QY-S99-C01", "note": "call 13912345678",
                     "contact": {"name": "王芳", "phone": "13912345678", "language": "zh-CN"}}}
HEADERS = {"x-relief-error": "unknown community_id 'QY-S99-C01'",
           "x-relief-error-kind": "invalid", "x-relief-queue": "relief.intake.events",
           "x-relief-attempts": 1, "x-relief-failed-at": "2020-02-01T00:00:01+00:00",
           "x-relief-exchange": "relief.intake", "x-relief-routing-key": "need_posted",
           "trace": "abc"}


def test_a_dead_letter_says_where_it_failed_and_why():
    letter = DeadLetter("relief.intake.dlq", json.dumps(ENVELOPE).encode(), dict(HEADERS),
                        "application/json")
    summary = letter.summary()
    assert summary["id"] == "e-1" and summary["origin"] == "relief.intake.events"
    assert summary["reason"] == "unknown community_id 'QY-S99-C01'"
    assert summary["kind"] == "invalid" and summary["subject"] == "need_id=N-9"
    assert summary["attempts"] == 1 and summary["event_type"] == "need_posted"


def test_shown_dead_letters_carry_no_personal_data():
    letter = DeadLetter("relief.intake.dlq", json.dumps(ENVELOPE, ensure_ascii=False)
                        .encode(), dict(HEADERS), "application/json")
    letter.headers["x-relief-error"] = "data.contact.phone: '13912345678' is not valid"
    text = json.dumps(letter.details(), ensure_ascii=False)
    assert "13912345678" not in text and "王芳" not in text
    body = letter.details()["body"]
    assert body["data"]["contact"] == {"name": "王*", "phone": "139****5678",
                                       "language": "zh-CN"}
    assert body["data"]["community_id"] == "QY-S99-C01"
    assert redact({"donor": {"name": "Li Lei", "kind": "person"}}) == {
        "donor": {"name": "L*****", "kind": "person"}}
    garbled = '{"contact": {"name": "王芳", "phone": "13912345678"'
    assert "王芳" not in redact_text(garbled) and "13912345678" not in redact_text(garbled)
    raw = DeadLetter("relief.intake.dlq", garbled.encode(), {})
    assert raw.ref.startswith("sha1:") and "王芳" not in json.dumps(raw.details(),
                                                                  ensure_ascii=False)


def test_the_origin_falls_back_to_the_broker_then_the_name():
    death = {"x-death": [{"queue": MATCH_Q, "reason": "rejected", "count": 1}]}
    by_broker = DeadLetter(f"dlq.{MATCH_Q}", b"{}", death)
    assert by_broker.origin == MATCH_Q
    assert by_broker.reason == "dead-lettered by the broker: rejected"
    assert DeadLetter(f"dlq.{NEED_Q}", b"{}", {}).origin == NEED_Q


def test_a_replayed_message_starts_clean_and_counts_its_replays():
    letter = DeadLetter("relief.intake.dlq", b"{}", {**HEADERS, "x-relief-replays": 1})
    headers = letter.replay_headers()
    assert "x-relief-error" not in headers and "x-relief-attempts" not in headers
    assert headers["x-relief-replays"] == 2 and headers["trace"] == "abc"
    assert headers["x-relief-replayed-from"] == "relief.intake.dlq"


# -- the command line ------------------------------------------------------------------------
def test_status_text_names_queues_needs_and_problems():
    queues = healthy_queues()
    queues[0]["consumers"] = 0
    report = build_report(queues, needs(7530), required=REQUIRED)
    text = cli.render_status(report, "en")
    assert NEED_Q in text and "N-1  2h 05m  high masks at QY-S01-C01" in text
    assert "PROBLEMS (1):" in text and f"{NEED_Q}: no consumers" in text
    assert "masks 40 piece" in text and "Assignments in the last 24 h: 3" in text
    ok = cli.render_status(build_report(healthy_queues(), needs(), required=REQUIRED), "en")
    assert ok.endswith("OK: every check passed")
    assert "reached nobody" not in ok
    text = cli.render_status(build_report(
        healthy_queues(), needs(), required=REQUIRED,
        notifications={"unaddressed_escalations": [escalation()]}), "en")
    assert "Escalations that reached nobody (no coordinator registered):" in text
    assert "QY-S03" in text and "N-7, N-8" in text and "PROBLEMS (1):" in text


def test_status_and_version_speak_the_language_setting(monkeypatch, capsys):
    report = build_report(healthy_queues(), needs(7530), required=REQUIRED)
    monkeypatch.delenv("RELIEF_LANG", raising=False)
    monkeypatch.delenv("NOTIFY_LANGUAGE", raising=False)
    zh = cli.render_status(report)  # zh-CN unless told otherwise
    assert zh.startswith("社区抗疫物资协调平台 状态") and "未满足需求" in zh
    assert "近 24 小时匹配：3" in zh and "N-1  2h 05m  高 masks，QY-S01-C01" in zh
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "relief-ops 0.1.0（社区抗疫物资协调平台 值班工具）"
    monkeypatch.setenv("NOTIFY_LANGUAGE", "en")  # the setting notifications use
    assert cli.render_status(report).startswith("Relief Exchange status at")
    monkeypatch.setenv("RELIEF_LANG", "zh-CN")  # the tool's own setting comes first
    assert cli.render_status(report).startswith("社区抗疫物资协调平台")
    assert cli.main(["--version", "--lang", "en"]) == 0
    assert capsys.readouterr().out.strip() == "relief-ops 0.1.0 (Relief Exchange on-call tool)"
    assert cli.render_verdict(build_report(healthy_queues(), needs(), required=REQUIRED)) == [
        "正常：所有检查通过"]
    queues = healthy_queues()
    queues[0]["consumers"] = 0
    assert cli.render_verdict(build_report(queues, needs(), required=REQUIRED)) == [
        "问题（1）：", f"  - {NEED_Q}：没有消费者"]
    escalated = build_report(healthy_queues(), needs(), required=REQUIRED,
                             notifications={"unaddressed_escalations": [escalation()]})
    [problem] = escalated["problems"]
    assert "QY-S03" in problem["message_zh"] and "未登记协调员" in problem["message_zh"]


def test_quiet_status_exits_1_naming_an_escalation_to_nobody(monkeypatch, capsys):
    monkeypatch.setattr(cli, "read_queues", lambda args: healthy_queues())
    monkeypatch.setattr(cli, "read_gateway", lambda args: {
        "needs": needs(), "notifications": {"unaddressed_escalations": [escalation()]}})
    monkeypatch.setattr("services.ops.report.consumer_queues", lambda: tuple(REQUIRED))
    assert cli.main(["status", "--quiet", "--token", "t", "--lang", "en"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("PROBLEMS (1):") and "QY-S03" in out
    monkeypatch.setattr(cli, "read_gateway", lambda args: {
        "needs": needs(), "notifications": None,
        "errors": {"notifications": "not running (rpc-notifications has no consumer)"}})
    assert cli.main(["status", "--quiet", "--token", "t", "--lang", "en"]) == 1
    assert "notifications: not running" in capsys.readouterr().out
    monkeypatch.setattr(cli, "read_gateway", lambda args: {
        "needs": needs(), "notifications": {"unaddressed_escalations": []}})
    assert cli.main(["status", "--quiet", "--token", "t"]) == 0
    assert capsys.readouterr().out == ""


def test_the_unroutable_tap_cannot_be_replayed(capsys):
    assert cli.main(["dlq", "replay", "relief.unroutable", "--all"]) == 2
    assert "no queue to replay them to" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert cli.main(["status", "--max-age", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["dlq", "purge"])
    assert exc.value.code == 2


def test_the_command_is_installed_as_relief_ops():
    from importlib.metadata import entry_points

    [script] = entry_points(group="console_scripts", name="relief-ops")
    assert script.value == "services.ops.cli:main"


def test_passwords_stay_out_of_messages():
    assert cli.redact_uri("amqp://relief:s3cret@broker:5672/v") == "amqp://relief:***@broker:5672/v"
    assert cli.redact_uri("amqp://broker/") == "amqp://broker/"


def test_replay_through_an_unreachable_broker_says_so(capsys):
    code = cli.main(["dlq", "replay", "relief.intake.dlq", "--all", "--management-uri",
                     "http://127.0.0.1:1", "--amqp-uri", "amqp://guest:pw@127.0.0.1:1/"])
    assert code == 1
    err = capsys.readouterr().err
    assert "management API" in err and "pw" not in err


def test_connection_options_go_before_or_after_the_command():
    args = cli.parser().parse_args(["--gateway", "http://a", "status"])
    assert args.gateway == "http://a"
    args = cli.parser().parse_args(["status", "--gateway", "http://b", "--token", "t"])
    assert args.gateway == "http://b" and args.token == "t"


def test_the_token_comes_from_env_or_file(monkeypatch, tmp_path):
    monkeypatch.setenv("RELIEF_ADMIN_TOKEN", "from-env")
    assert cli.default_token() == "from-env"
    monkeypatch.delenv("RELIEF_ADMIN_TOKEN")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "ROOT", tmp_path)
    assert cli.default_token() is None
    (tmp_path / ".local").mkdir()
    (tmp_path / ".local" / "admin_token").write_text("from-file\n")
    assert cli.default_token() == "from-file"


# -- the dashboard page ----------------------------------------------------------------------
class FakeGateway(DashboardRoutes):
    config_ = {"AMQP_URI": "amqp://guest:guest@127.0.0.1:1/",
               "RELIEF": {"admin_token": "sesame", "management_uri": "http://127.0.0.1:1"}}
    matching = None
    notifications = None


def request(path, headers=None):
    return Request(EnvironBuilder(path=path, headers=headers or {}).get_environ())


def test_the_page_holds_no_data_and_loads_nothing_from_elsewhere():
    response = FakeGateway().dashboard_page(request("/dashboard"))
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    nonce = re.search(r"script-src 'nonce-([^']+)'",
                      response.headers["Content-Security-Policy"]).group(1)
    assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html
    assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    # every URL in the page is our own API, or the SVG namespace (an identifier, not fetched)
    urls = set(re.findall(r"https?://[^\s'\"<>]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert "src=" not in html and "/api/dashboard" in html
    assert "sesame" not in html
    for chart in ("chart-needs", "chart-supply", "chart-assignments", "chart-queues"):
        assert f'id="{chart}"' in html
    assert '<section id="banner" role="alert" hidden>' in html
    assert "BANNER_CHECKS = ['escalation', 'unroutable']" in html
    assert page("a") != page("b")


def test_the_page_speaks_chinese_unless_told_otherwise():
    zh = FakeGateway().dashboard_page(request("/dashboard")).get_data(as_text=True)
    assert '<html lang="zh-CN">' in zh and "社区抗疫物资协调平台 · 值班" in zh
    assert '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei"' in zh
    assert 'href="?lang=en"' in zh  # the switch
    en = FakeGateway().dashboard_page(request("/dashboard?lang=en")).get_data(as_text=True)
    assert '<html lang="en">' in en and "Open needs by tier and urgency" in en
    assert "按层级" not in en
    english = type("EnglishGateway", (FakeGateway,), {"config_": {
        **FakeGateway.config_, "NOTIFICATIONS": {"default_language": "en"}}})
    assert '<html lang="en">' in english().dashboard_page(request("/dashboard")).get_data(
        as_text=True)  # the deployment's language, the same setting as notifications'


def test_the_data_needs_the_token():
    gateway = FakeGateway()
    assert gateway.dashboard_data(request("/api/dashboard")).status_code == 401
    wrong = request("/api/dashboard", {"Authorization": "Bearer nope"})
    assert gateway.dashboard_data(wrong).status_code == 401


def test_bad_thresholds_in_the_query_are_400():
    answer = FakeGateway().dashboard_data(request(
        "/api/dashboard?max_age=soon", {"Authorization": "Bearer sesame"}))
    assert answer.status_code == 400 and "not a duration" in answer.get_data(as_text=True)


def test_unreachable_sources_show_as_problems_on_the_page():
    class NoMatching:
        def __getattr__(self, name):
            raise ConnectionError("matching is down")

    gateway = FakeGateway()
    gateway.matching = NoMatching()
    gateway.notifications = NoMatching()
    answer = gateway.dashboard_data(request("/api/dashboard",
                                            {"Authorization": "Bearer sesame"}))
    assert answer.status_code == 200
    report = json.loads(answer.get_data(as_text=True))
    assert report["ok"] is False
    assert {p["subject"] for p in report["problems"]} == {"broker", "matching",
                                                          "notifications"}


def test_the_command_line_knows_every_consumer_queue_of_the_code_without_importing_it():
    import subprocess
    import sys

    from services.common.topology import consumer_specs
    from services.ops.report import consumer_queues

    assert consumer_queues() == tuple(spec.name for spec in consumer_specs())
    # relief-ops status reads the list: not one service module is imported for it
    probe = ("import sys; from services.ops import cli; from services.ops.report import "
             "consumer_queues; assert consumer_queues(); "
             "print(sorted(m for m in sys.modules if m.endswith('.service')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_a_gateway_answering_something_else_than_a_report_is_a_problem_not_a_crash(monkeypatch):
    import argparse

    monkeypatch.setattr(cli, "read_queues", lambda args: healthy_queues())
    monkeypatch.setattr("services.ops.report.consumer_queues", lambda: tuple(REQUIRED))
    args = argparse.Namespace(management_uri="http://127.0.0.1:1", amqp_uri="amqp://x/")
    for answer in (None, ["not", "a", "report"]):
        monkeypatch.setattr(cli, "read_gateway", lambda args, answer=answer: answer)
        report = cli.collect(args, Thresholds())
        assert checks(report) == {("source", "gateway")}, report["problems"]

    def broken(args):
        raise KeyError("needs")

    monkeypatch.setattr(cli, "read_gateway", broken)
    [problem] = cli.collect(args, Thresholds())["problems"]
    assert problem["message"] == "gateway: could not be read (KeyError)"
