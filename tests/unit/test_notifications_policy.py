"""Delivery rules without I/O: quiet hours, due times, back-off, channel choice, settings."""

from datetime import UTC, datetime, timedelta

from services.notifications import policy
from services.notifications.settings import notify_settings

TZ = "Asia/Shanghai"  # UTC+8, no daylight saving


def at(hour, minute=0, day=10, second=0):
    """A moment given in Shanghai local time, as UTC."""
    return datetime(2020, 2, day, hour, minute, second, tzinfo=UTC) - timedelta(hours=8)


NIGHT = {"start": "22:00", "end": "07:00"}


def test_quiet_hours_across_midnight():
    assert policy.quiet_until(at(21, 59), NIGHT, TZ) is None
    assert policy.quiet_until(at(23, 30), NIGHT, TZ) == at(7, 0, day=11)
    assert policy.quiet_until(at(3, 0), NIGHT, TZ) == at(7, 0)
    assert policy.quiet_until(at(7, 0), NIGHT, TZ) is None


def test_quiet_hours_within_a_day_and_by_time_zone():
    lunch = {"start": "12:00", "end": "14:00"}
    assert policy.quiet_until(at(12, 30), lunch, TZ) == at(14, 0)
    assert policy.quiet_until(at(14, 0), lunch, TZ) is None
    # 23:30 in Shanghai is 16:30 in Berlin (winter): not quiet there
    assert policy.quiet_until(at(23, 30), NIGHT, "Europe/Berlin") is None
    assert policy.quiet_until(at(12, 0), None, TZ) is None


def test_a_normal_message_is_due_at_the_end_of_the_window_past_quiet_hours():
    recipient = {"quiet_hours": NIGHT}
    assert policy.due_at(at(10), recipient, policy.NORMAL, 60, TZ) == at(10, 1)
    late = at(21, 59, second=30)
    assert policy.due_at(late, recipient, policy.NORMAL, 60, TZ) == at(7, 0, day=11)


def test_a_critical_message_is_due_at_once_even_at_night():
    recipient = {"quiet_hours": NIGHT}
    assert policy.due_at(at(23, 30), recipient, policy.CRITICAL, 60, TZ) == at(23, 30)


def test_digest_mode_widens_the_window():
    digest = {"digest_minutes": 240}
    assert policy.due_at(at(8), digest, policy.NORMAL, 60, TZ) == at(12)
    assert policy.window_seconds({"digest_minutes": None}, 60) == 60


def test_critical_priority_comes_from_urgency():
    assert policy.priority_of("critical") == policy.CRITICAL
    assert policy.priority_of("high") == policy.NORMAL
    assert policy.priority_of(None) == policy.NORMAL


def test_back_off_doubles_and_is_capped():
    assert [policy.backoff(n, 5, 600) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert policy.backoff(12, 5, 600) == 600


def test_the_first_preferred_usable_channel_wins():
    everything = {"email": "a@b.org", "phone": "13912345678", "wechat": "wx-1"}
    assert policy.choose_channel(everything, {"email", "sms", "wechat"}) == ("email",
                                                                            "a@b.org")
    prefers_sms = {**everything, "channels": ["sms", "email"]}
    assert policy.choose_channel(prefers_sms, {"email", "sms"}) == ("sms", "13912345678")
    # SMS not configured here: the next preference
    assert policy.choose_channel(prefers_sms, {"email"}) == ("email", "a@b.org")


def test_no_usable_channel_says_why():
    channel, reason = policy.choose_channel({"phone": "13912345678"}, {"email"})
    assert channel is None and reason == "sms is not configured"
    channel, reason = policy.choose_channel({}, {"email"})
    assert channel is None and reason == "the recipient has no contact address"


def test_one_phone_one_key_whatever_its_spelling():
    key = policy.phone_key("13912345678")
    assert key == policy.phone_key("+86 139-1234-5678") == policy.phone_key("139 1234 5678")
    assert key != policy.phone_key("13912345679")
    assert "13912345678" not in key
    assert policy.phone_key("") is None
    assert policy.email_key("Li@Example.org") == policy.email_key("li@example.org ")
    assert policy.email_key("no-at-sign") is None


def test_settings_from_the_config_block_with_defaults():
    cfg = notify_settings({"NOTIFICATIONS": {
        "window_seconds": "30", "smtp": {"port": 2525, "starttls": "true"},
        "sms": {"url": "http://sms.example/hook", "secret": "s"}, "wechat": {"url": None}}})
    assert cfg.window_seconds == 30.0 and cfg.max_attempts == 5
    assert cfg.smtp.port == 2525 and cfg.smtp.starttls is True and cfg.smtp.host == "127.0.0.1"
    assert cfg.sms.configured and not cfg.wechat.configured
    assert notify_settings({}).default_timezone == TZ
