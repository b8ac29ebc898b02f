"""Templates in both languages, links, signatures, the recipient body and what the API shows."""

import re
from datetime import UTC, datetime

import pytest
from marshmallow import ValidationError

from services.common import links, reference
from services.notifications import channels, schemas, texts
from services.notifications.handlers import offer_link

REF = reference.load("deploy/reference")
RESIDENT_PHONE = "13912345678"

PARAMS = {
    "assignment_made": {"need_id": "N-1", "quantity": 60.0, "unit": "piece",
                        "category": "masks", "location_id": "QY-S01-C01", "assigned": 60.0,
                        "needed": 100.0, "partial": True},
    "need_fulfilled": {"need_id": "N-1", "quantity": 100.0, "unit": "piece",
                       "category": "masks"},
    "need_expired": {"need_id": "N-1", "unfulfilled_quantity": 40.0, "unit": "piece",
                     "category": "masks"},
    "goods_dispatched": {"receipt": "D-2020-0001", "quantity": 60.0, "unit": "piece",
                         "category": "masks", "location_id": "QY-S01", "available": 40.0},
    "offer_made": {"offer_id": "O-1", "need_id": "N-2", "category": "screening",
                   "quantity": 2, "unit": "hour", "community_id": "QY-S01-C02",
                   "expires_at": "2020-02-10T10:00:00+00:00",
                   "accept_url": "https://x/api/offers/O-1/accept?volunteer=V-1",
                   "decline_url": "https://x/api/offers/O-1/decline?volunteer=V-1"},
    "offer_released": {"offer_id": "O-1", "need_id": "N-2", "outcome": "withdrawn"},
    "need_escalated": {"need_id": "N-3", "community_id": "QY-S07-C01",
                       "category": "thermometers", "urgency": "critical",
                       "from_tier": "community", "to_tier": "street", "area_id": "QY-S07",
                       "remaining": 5.0, "unit": "piece"},
    "status_report_missing": {"organisation_id": "ORG-042",
                              "due_at": "2020-02-10T10:00:00+00:00"},
}


def test_every_kind_has_parameters_here():
    assert set(PARAMS) == set(texts.KINDS)


@pytest.mark.parametrize("kind", texts.KINDS)
@pytest.mark.parametrize("language", texts.LANGUAGES)
def test_every_template_renders_in_both_languages(kind, language):
    out = texts.render(kind, language, PARAMS[kind], REF, name="王芳")
    assert out.subject and out.line and out.body
    assert "\n" not in out.subject and "\n" not in out.line
    chinese = bool(re.search(r"[\u4e00-\u9fff]", out.subject + out.line))
    assert chinese == (language == "zh-CN")
    assert RESIDENT_PHONE not in out.body


def test_names_units_and_times_are_the_recipients():
    zh = texts.render("assignment_made", "zh-CN", PARAMS["assignment_made"], REF)
    assert "60 件防护口罩" in zh.body and "少城街道第1社区" in zh.body and "60 / 100" in zh.body
    assert zh.body.startswith("您好：")
    en = texts.render("assignment_made", "en", PARAMS["assignment_made"], REF, name="Li Lei")
    assert "60 pieces of protective masks" in en.body and en.body.startswith("Hello Li Lei,")
    status = texts.render("status_report_missing", "zh-CN",
                          PARAMS["status_report_missing"], REF)
    assert "2020-02-10 18:00" in status.body  # Shanghai time
    assert "2020-02-10 11:00" in texts.render("status_report_missing", "en",
                                              PARAMS["status_report_missing"], REF,
                                              tz="Europe/Berlin").body


def test_the_donor_reads_the_donation_id_as_receipt():
    zh = texts.render("goods_dispatched", "zh-CN", PARAMS["goods_dispatched"], REF)
    assert "回执号 D-2020-0001" in zh.subject and "即您的捐赠编号" in zh.body
    en = texts.render("goods_dispatched", "en", PARAMS["goods_dispatched"], REF)
    assert "Receipt reference: D-2020-0001 (your donation number" in en.body


def test_an_unknown_language_falls_back_to_chinese():
    out = texts.render("need_fulfilled", "fr", PARAMS["need_fulfilled"], REF)
    assert "已全部满足" in out.body


def test_a_digest_lists_every_line():
    parts = [texts.render("need_fulfilled", "en", {**PARAMS["need_fulfilled"],
                                                   "need_id": f"N-{i}"}, REF)
             for i in range(20)]
    digest = texts.render_digest("en", parts, REF, window_start=datetime(2020, 2, 10,
                                                                        tzinfo=UTC))
    assert digest.subject == "Relief Exchange: 20 updates"
    assert all(f"N-{i} (" in digest.body for i in range(20))
    assert "since 2020-02-10 08:00" in digest.body


def test_quantities_read_naturally():
    assert [texts.quantity(v) for v in (60.0, 0.05, 70260, 1.5)] == ["60", "0.05", "70,260",
                                                                     "1.5"]


def test_offer_links_are_the_gateways_and_signed_as_it_checks():
    url = offer_link("https://relief.example.org/", "s3cret", "O-1", "accept")
    assert url.startswith("https://relief.example.org/api/offers/O-1/accept?sig=")
    sig = url.rsplit("=", 1)[1]
    assert links.verify("O-1", sig, "s3cret")
    assert not links.verify("O-2", sig, "s3cret") and not links.verify("O-1", sig, "other")
    assert offer_link("https://x", "", "O 1", "decline") == "https://x/api/offers/O%201/decline"


def test_webhook_signatures_cover_time_and_body():
    body = b'{"text": "hi"}'
    header = channels.sign("k", "1700000000", body)
    assert channels.verify("k", "1700000000", body, header, now=1700000100)
    assert not channels.verify("k", "1700000000", body + b" ", header, now=1700000100)
    assert not channels.verify("k", "1700000000", body, header, now=1700001000)  # too old
    assert not channels.verify("x", "1700000000", body, header, now=1700000100)


def test_an_email_is_utf8_with_a_stable_message_id():
    email = channels.EmailChannel(channels.SmtpSettings()).message(channels.Outgoing(
        "d-1", "a@b.org", "需求 N-1 已匹配", "您好：\n正文", "short", "zh-CN"))
    assert email["Message-ID"] == "<d-1@relief-exchange>" and email["To"] == "a@b.org"
    assert email.get_content().strip() == "您好：\n正文"


def test_a_recipient_body_is_checked():
    body = schemas.RecipientBody().load({
        "name": "李敏", "email": "li@example.org", "phone": "13912345678",
        "channels": ["email", "sms"], "quiet_hours": {"start": "22:00", "end": "07:00"},
        "digest_minutes": 60, "areas": ["QY-S01"], "timezone": "Asia/Shanghai"})
    assert body["language"] == "zh-CN" and body["organisations"] == []
    bad = [
        {"email": "li@example.org", "channels": ["sms"]},  # sms without phone
        {"email": "li@example.org", "quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"email": "li@example.org", "timezone": "Mars/Olympus"},
        {"email": "li@example.org", "colour": "blue"},  # unknown field
        {"name": "nobody"},  # no address at all
        {"email": "li@example.org", "channels": ["email", "email"]},
    ]
    for payload in bad:
        with pytest.raises(ValidationError):
            schemas.RecipientBody().load(payload)


def test_what_the_api_shows_of_a_recipient_is_masked():
    view = schemas.recipient_view({"_id": "coord-1", "managed": True, "name": "李敏",
                                   "email": "li.min@example.org", "phone": RESIDENT_PHONE,
                                   "areas": ["QY-S01"]})
    text = str(view)
    assert RESIDENT_PHONE not in text and "li.min@" not in text and "李敏" not in text
    assert view["phone"] == "139****5678" and view["email"] == "l*****@example.org"
    assert view["channels"] == ["email", "sms"]
