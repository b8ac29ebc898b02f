"""The local mail sink speaks enough SMTP for smtplib and keeps what it gets, exactly."""

import smtplib
from email.message import EmailMessage

import pytest
import requests

from deploy.local import free_port
from deploy.mail_sink import MailSink


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    s = MailSink(tmp_path_factory.mktemp("sink") / "box", port=free_port(),
                 http_port=free_port()).start()
    yield s
    s.stop()


def test_a_message_is_kept_with_its_envelope_and_text(sink):
    msg = EmailMessage()
    msg["From"] = "Relief Exchange <noreply@relief.local>"
    msg["To"] = "wang@example.org"
    msg["Subject"] = "需求 N-1 已匹配"
    msg.set_content("您好：\n.a line starting with a dot\n..two dots\n", charset="utf-8")
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
        assert smtp.noop()[0] == 250
        smtp.send_message(msg, to_addrs=["wang@example.org", "li@example.org"])
        # a transaction abandoned with RSET leaves nothing
        smtp.mail("x@example.org")
        smtp.rcpt("y@example.org")
        assert smtp.rset()[0] == 250
    kept = [m for m in sink.mail() if m["subject"] == "需求 N-1 已匹配"]
    assert len(kept) == 1
    assert kept[0]["rcpt_to"] == ["wang@example.org", "li@example.org"]
    assert kept[0]["mail_from"] == "noreply@relief.local"
    assert kept[0]["body"] == "您好：\n.a line starting with a dot\n..two dots\n"


def test_commands_out_of_order_are_refused(sink):
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.rcpt("a@example.org")[0] == 503
        assert smtp.docmd("DATA")[0] == 503
        assert smtp.docmd("BOGUS")[0] == 500  # RFC 5321 4.2.4: command unrecognized


def test_webhook_posts_are_kept(sink):
    r = requests.post(f"http://127.0.0.1:{sink.http_port}/sms", json={"to": "1", "text": "hi"},
                      headers={"X-Relief-Delivery": "d-9"}, timeout=5)
    assert r.status_code == 202
    hooks = [h for h in sink.webhooks() if h["headers"].get("X-Relief-Delivery") == "d-9"]
    assert hooks[0]["body"] == {"to": "1", "text": "hi"} and hooks[0]["path"] == "/sms"
