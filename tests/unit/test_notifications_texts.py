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
    "invitation": {"role": "street_coordinator", "area_id": "QY-S01",
                   "invite_url": "https://x/console#invite=ri_" + "k" * 43},
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
    digest = texts.render_digest(texts.Reader("en", REF), parts, window_start=datetime(2020, 2, 10,
                                                                        tzinfo=UTC))
    assert digest.subject == "Relief Exchange: 20 updates"
    assert all(f"N-{i} (" in digest.body for i in range(20))
    assert "since 2020-02-10 08:00" in digest.body


def test_quantities_read_naturally():
    assert [texts.quantity(v) for v in (60.0, 0.05, 70260, 1.5)] == ["60", "0.05", "70,260",
                                                                     "1.5"]


def test_offer_links_are_the_gateways_and_signed_as_it_checks():
    until = datetime(2030, 1, 1, tzinfo=UTC)
    url = offer_link("https://relief.example.org/", "s3cret", "O-1", "accept", until)
    assert url.startswith("https://relief.example.org/api/offers/O-1/accept?sig=")
    sig = url.rsplit("=", 1)[1]
    assert links.verify("O-1", "accept", sig, "s3cret")
    assert not links.verify("O-2", "accept", sig, "s3cret")
    assert not links.verify("O-1", "accept", sig, "other")
    # bound to its one answer and its expiry, which cannot be moved
    assert not links.verify("O-1", "decline", sig, "s3cret")
    assert not links.verify("O-1", "accept", sig, "s3cret", now=until)
    later = sig.replace(str(int(until.timestamp())), str(int(until.timestamp()) + 3600))
    assert not links.verify("O-1", "accept", later, "s3cret")
    for junk in ("", "x", "_", "9" * 40 + "_ab", "１２_ab", "\udcff"):
        assert not links.verify("O-1", "accept", junk, "s3cret")
    assert offer_link("https://x", "", "O 1", "decline",
                      until) == "https://x/api/offers/O%201/decline"


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


# -- digests within what each channel carries ------------------------------------------------
LINK_SECRET = "digest-secret"
WINDOW = datetime(2020, 2, 10, 2, 0, tzinfo=UTC)


def window_of(count):
    """``count`` messages for one poster in one window, as the handlers store them: needs
    matched and met (two messages each), some only partly, one critical need expired."""
    messages = []

    def add(kind, params, priority="normal"):
        messages.append({"_id": f"m-{len(messages):03d}", "template": kind, "params": params,
                         "priority": priority, "created_at": WINDOW})

    i = 0
    while len(messages) < count:
        nid = f"N-NP-{i + 1}"
        if i % 10 == 9:  # partly met
            add("assignment_made", {**PARAMS["assignment_made"], "need_id": nid})
        elif i % 25 == 24:
            add("need_expired", {**PARAMS["need_expired"], "need_id": nid}, "critical")
        else:
            add("assignment_made", {**PARAMS["assignment_made"], "need_id": nid,
                                    "assigned": 100.0, "partial": False, "quantity": 100.0})
            if len(messages) < count:
                add("need_fulfilled", {**PARAMS["need_fulfilled"], "need_id": nid})
        i += 1
    return messages


def courier(**settings):
    from services.notifications.courier import Courier
    from services.notifications.settings import NotifySettings

    cfg = NotifySettings(public_url="https://relief.example.org", **settings)
    return Courier(cfg, {}, link_secret=LINK_SECRET)


@pytest.mark.parametrize("count", [1, 5, 100])
@pytest.mark.parametrize("language", texts.LANGUAGES)
@pytest.mark.parametrize("channel", ["sms", "email", "wechat"])
def test_a_window_fits_its_channel(count, language, channel):
    c = courier()
    messages = window_of(count)
    person = {"name": "王芳", "phone": RESIDENT_PHONE, "language": language}
    out = c.compose(REF, "contact:x", person, messages, RESIDENT_PHONE, channel)
    cfg = c.cfg
    # the SMS text: at most 3 segments, counted in the alphabet it needs
    segments = channels.sms_segments(out.short)
    assert 1 <= segments <= cfg.sms_max_segments, (segments, out.short)
    encoding, units = channels.sms_units(out.short)
    assert encoding == ("ucs2" if language == "zh-CN" else "gsm7"), out.short
    per = 67 if encoding == "ucs2" else 153
    assert units <= (per * segments if segments > 1 else (70 if encoding == "ucs2" else 160))
    # the body (email, WeChat): never more than the channel carries
    limit = cfg.wechat_max_chars if channel == "wechat" else cfg.email_max_chars
    assert 0 < len(out.body) <= limit
    assert RESIDENT_PHONE not in out.short + out.body + out.subject
    if count == 1:
        assert out.short == texts.render("assignment_made", language, messages[0]["params"],
                                         REF).line
        return
    # a digest says what happened, names the most urgent, and links to the rest
    link = c.digest_link(messages[0]["_id"])
    assert out.short.endswith(link) and link in out.body
    sig = link.rsplit("sig=", 1)[1]
    assert links.verify_digest(messages[0]["_id"], sig, LINK_SECRET)
    assert not links.verify(messages[0]["_id"], "accept", sig, LINK_SECRET)  # not an offer's
    met = sum(1 for m in messages if m["template"] == "need_fulfilled")
    if language == "zh-CN":
        assert out.subject == f"社区抗疫物资协调平台：{count} 条更新"
        assert f"{met} 项需求已全部满足" in out.short or f"另有 {met} 项已全部满足" in out.short
    else:
        assert out.subject == f"Relief Exchange: {count} updates"
        assert f"{met} needs fully met" in out.short or f"{met} more fully met" in out.short
    if count == 100:  # the critical expired need comes first, by name
        first = "N-NP-25"
        assert ("最紧急：" if language == "zh-CN" else "Most urgent: ") + first in out.short
        later = out.body.find("N-NP-2" + ("（" if language == "zh-CN" else " ("))
        assert first in out.body and (later == -1 or out.body.index(first) < later)
        if channel == "wechat":  # 2,000 characters cannot hold 100 updates: they are cut
            assert ("未在此列出" if language == "zh-CN" else "not listed here") in out.body
        else:
            assert all(f"N-NP-{i}" in out.body for i in range(1, 50))


def test_counts_by_kind_read_as_the_coalition_writes_them():
    c = courier()
    needs = [{"_id": f"m-{i:03d}", "template": t, "priority": "normal", "created_at": WINDOW,
              "params": {**PARAMS[t], "need_id": f"N-NP-{i // 2}", **(
                  {"assigned": 100.0, "partial": False} if t == "assignment_made" else {})}}
             for i, t in enumerate(["assignment_made", "need_fulfilled"] * 30)]
    needs += [{"_id": f"p-{i}", "template": "assignment_made", "priority": "normal",
               "created_at": WINDOW,
               "params": {**PARAMS["assignment_made"], "need_id": f"N-P-{i}"}}
              for i in range(2)]
    out = c.compose(REF, "contact:x", {"phone": RESIDENT_PHONE}, needs, RESIDENT_PHONE, "sms")
    assert "62 条更新：30 项需求已全部满足，另有 2 项部分满足。" in out.short
    assert channels.sms_segments(out.short) <= 3
    en = c.compose(REF, "contact:x", {"phone": RESIDENT_PHONE, "language": "en"}, needs,
                   RESIDENT_PHONE, "sms")
    assert "62 updates: 30 needs fully met, 2 more partly met." in en.short
    assert "Need N-P-0 (protective masks): partly met" in en.body


def test_a_need_met_by_the_assignment_that_says_so_counts_as_fully_met():
    # matching's assignments carry the need's totals: the one that meets the need says so,
    # and no need_fulfilled message follows it
    c = courier()
    met = [{"_id": f"m-{i:03d}", "template": "assignment_made", "priority": "normal",
            "created_at": WINDOW, "params": {**PARAMS["assignment_made"], "need_id": f"N-{i}",
                                             "assigned": 100.0, "partial": False,
                                             "complete": True}} for i in range(3)]
    started = {**met[0], "_id": "m-s", "params": {**PARAMS["assignment_made"],
                                                  "need_id": "N-S", "complete": False}}
    # the first part of a need met in two parts, listed after the part that met it
    first_part = {**started, "_id": "m-f", "params": {**started["params"], "need_id": "N-0"}}
    out = c.compose(REF, "contact:x", {"phone": RESIDENT_PHONE, "language": "en"},
                    [*met, started, first_part], RESIDENT_PHONE, "sms")
    assert "5 updates: 3 needs fully met, 1 more partly met." in out.short
    one = texts.render("assignment_made", "en", met[0]["params"], REF)
    assert one.subject == "Need N-0 fully met" and "fully met" in one.line
    partly = texts.render("assignment_made", "en", started["params"], REF)
    assert "fully met" not in partly.subject + partly.line + partly.body


def test_sms_segments_are_counted_per_alphabet():
    seg = channels.sms_segments
    assert [seg("a" * 160), seg("a" * 161), seg("a" * 306), seg("a" * 307)] == [1, 2, 2, 3]
    assert [seg("中" * 70), seg("中" * 71), seg("中" * 134), seg("中" * 135)] == [1, 2, 2, 3]
    assert seg("{" * 80) == 1 and seg("{" * 81) == 2  # extension characters take two septets
    assert seg("a" * 159 + "中") == 3  # one Chinese character: the whole text is UCS-2
    assert seg("😀" * 35) == 1 and seg("😀" * 36) == 2  # beyond the BMP: two code units


def test_a_single_update_too_long_for_an_sms_is_cut_before_the_link():
    c = courier(sms_max_segments=2)
    long_id = "N-" + "长" * 126  # the longest id the contract takes
    message = {"_id": "m-long", "template": "need_fulfilled", "priority": "normal",
               "created_at": WINDOW, "params": {**PARAMS["need_fulfilled"],
                                                "need_id": long_id}}
    out = c.compose(REF, "contact:x", {"phone": RESIDENT_PHONE}, [message], RESIDENT_PHONE,
                    "sms")
    assert channels.sms_segments(out.short) == 2 and "…" in out.short
    assert out.short.startswith("需求 N-长长") and out.short.endswith(c.digest_link("m-long"))
