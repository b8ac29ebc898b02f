"""Message texts: Jinja2 templates in ``templates/<language>/<kind>.j2``, one per kind of
message and language (zh-CN, the coalition's working language, and en).

Each template defines three blocks: ``subject``, ``line`` (one sentence, used in digests) and
``body``. Templates receive only what the recipient may see: ids, quantities, categories,
areas, links, and the recipient's own name, never a third party's contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
KINDS = ("assignment_made", "need_fulfilled", "need_expired", "goods_dispatched",
         "offer_made", "offer_released", "need_escalated", "status_report_missing")
DIGEST = "digest"

UNIT_NAMES = {
    "zh-CN": {"g": "克", "kg": "公斤", "jin": "斤", "t": "吨", "ml": "毫升", "l": "升",
              "piece": "件", "pair": "双", "box": "箱", "policy": "份保单", "card": "张卡",
              "hour": "小时", "visit": "次上门", "session": "次", "yuan": "元"},
    "en": {"piece": "pieces", "pair": "pairs", "box": "boxes", "policy": "policies",
           "card": "cards", "hour": "hours", "visit": "visits", "session": "sessions"},
}
TIER_NAMES = {"zh-CN": {"community": "社区", "street": "街道", "district": "区"},
              "en": {"community": "community", "street": "street", "district": "district"}}
URGENCY_NAMES = {"zh-CN": {"critical": "紧急", "high": "高", "normal": "一般", "low": "低"},
                 "en": {"critical": "critical", "high": "high", "normal": "normal", "low": "low"}}
OUTCOME_NAMES = {"zh-CN": {"accepted": "已接受", "declined": "已婉拒", "lapsed": "已过期",
                           "withdrawn": "已撤回"},
                 "en": {"accepted": "accepted", "declined": "declined", "lapsed": "lapsed",
                        "withdrawn": "withdrawn"}}

_ENV = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
    undefined=StrictUndefined,  # a missing parameter is a bug, not an empty string
    autoescape=False,  # plain text (email text/plain, SMS, WeChat)
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    line: str
    body: str


def language_of(requested: str | None) -> str:
    return requested if requested in LANGUAGES else DEFAULT_LANGUAGE


def quantity(value: Any) -> str:
    """60.0 -> "60", 0.05 -> "0.05", 70260 -> "70,260"."""
    number = float(value)
    if number == int(number):
        return f"{int(number):,}"
    return f"{number:,.3f}".rstrip("0").rstrip(".")


class Names:
    """Display names in one language, from the reference data when it is there."""

    def __init__(self, language: str, reference: Any = None, tz: str = "Asia/Shanghai"):
        self.language = language
        self.reference = reference
        self.zone = ZoneInfo(tz)

    def category(self, category_id: str) -> str:
        cat = self.reference.catalogue.get(category_id) if self.reference else None
        if cat is None:
            return category_id
        return cat.name if self.language == "zh-CN" else cat.name_en

    def area(self, area_id: str) -> str:
        areas = self.reference.areas.areas if self.reference else {}
        area = areas.get(area_id)
        if area is None:
            return area_id
        return area.name if self.language == "zh-CN" else area.name_en

    def unit(self, unit: str) -> str:
        return UNIT_NAMES[self.language].get(unit, unit)

    def tier(self, tier: str) -> str:
        return TIER_NAMES[self.language].get(tier, tier)

    def urgency(self, urgency: str) -> str:
        return URGENCY_NAMES[self.language].get(urgency, urgency)

    def outcome(self, outcome: str) -> str:
        return OUTCOME_NAMES[self.language].get(outcome, outcome)

    def when(self, value: Any) -> str:
        """A moment in the recipient's time zone, to the minute."""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")


def _block(template: Any, name: str, context: Any) -> str:
    return "".join(template.blocks[name](context)).strip()


def render(kind: str, language: str, params: dict[str, Any], reference: Any = None,
           tz: str = "Asia/Shanghai", name: str | None = None) -> Rendered:
    """Render one message of ``kind`` in ``language`` (unknown languages fall back to zh-CN).

    ``name`` is the recipient's own name, for the greeting."""
    language = language_of(language)
    names = Names(language, reference, tz)
    template = _ENV.get_template(f"{language}/{kind}.j2")
    context = template.new_context({**params, "n": names, "qty": quantity, "name": name})
    return Rendered(subject=_block(template, "subject", context),
                    line=_block(template, "line", context),
                    body=_block(template, "body", context))


def render_digest(language: str, items: list[Rendered], reference: Any = None,
                  tz: str = "Asia/Shanghai", name: str | None = None,
                  window_start: Any = None) -> Rendered:
    """One message that summarises several: a count in the subject, one line per item."""
    return render(DIGEST, language, {"items": items, "count": len(items),
                                     "since": window_start}, reference, tz, name)
