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

from services.notifications.channels import sms_fits

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
KINDS = ("assignment_made", "need_fulfilled", "need_expired", "goods_dispatched",
         "offer_made", "offer_released", "need_escalated", "status_report_missing",
         "invitation")
DIGEST = "digest"
# parameters that are secrets for the recipient alone (an invitation's link carries its
# token): the text stored with the message, which the API shows, has them masked; only the
# text delivered has them (see :func:`masked`)
SECRET_PARAMS = ("invite_url",)
MASK = "[…]"

UNIT_NAMES = {
    "zh-CN": {"g": "克", "kg": "公斤", "jin": "斤", "t": "吨", "ml": "毫升", "l": "升",
              "piece": "件", "pair": "双", "box": "箱", "policy": "份保单", "card": "张卡",
              "hour": "小时", "visit": "次上门", "session": "次", "yuan": "元"},
    "en": {"piece": "pieces", "pair": "pairs", "box": "boxes", "policy": "policies",
           "card": "cards", "hour": "hours", "visit": "visits", "session": "sessions"},
}
TIER_NAMES = {"zh-CN": {"community": "社区", "street": "街道", "district": "区"},
              "en": {"community": "community", "street": "street", "district": "district"}}
ROLE_NAMES = {"zh-CN": {"admin": "管理员", "district_coordinator": "区级协调员",
                        "street_coordinator": "街道协调员",
                        "community_coordinator": "社区协调员",
                        "organisation": "成员机构联络人", "on_call": "值班运维人员"},
              "en": {"admin": "administrator", "district_coordinator": "district coordinator",
                     "street_coordinator": "street coordinator",
                     "community_coordinator": "community coordinator",
                     "organisation": "member organisation contact",
                     "on_call": "on-call operator"}}
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

    def role(self, role: str) -> str:
        return ROLE_NAMES[self.language].get(role, role)

    def urgency(self, urgency: str) -> str:
        return URGENCY_NAMES[self.language].get(urgency, urgency)

    def outcome(self, outcome: str) -> str:
        return OUTCOME_NAMES[self.language].get(outcome, outcome)

    def when(self, value: Any) -> str:
        """A moment in the recipient's time zone, to the minute."""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")


def masked(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the recipient's secrets (:data:`SECRET_PARAMS`) masked: for the text
    kept with a message, which on-call reads."""
    return {k: (MASK if k in SECRET_PARAMS and v else v) for k, v in params.items()}


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


# -- digests: what several updates come to, within what a channel carries -----------------
@dataclass(frozen=True)
class Update:
    """One message going out in a digest: its kind (the template), parameters, priority and
    its text in the recipient's language."""

    kind: str
    params: dict[str, Any]
    priority: str
    text: Rendered


@dataclass(frozen=True)
class Reader:
    """Who reads a digest: their language, time zone and name, and the reference data
    that names places and categories for them."""

    language: str
    reference: Any = None
    tz: str = "Asia/Shanghai"
    name: str | None = None


@dataclass(frozen=True)
class Budget:
    """What one delivery may carry: SMS segments for the short text, characters for the
    body (email or WeChat), and how many items an SMS names."""

    sms_segments: int = 3
    body_chars: int = 20000
    urgent_items: int = 3


@dataclass
class Item:
    """What a digest names: a need (all its updates of the window together) or one other
    update (an offer, a dispatch, a missing report)."""

    state: str
    urgent: bool
    order: int
    name: str
    title: str | None
    lines: list[str]


NEED_KINDS = ("assignment_made", "need_fulfilled", "need_expired", "need_escalated")
OTHER_STATES = {"offer_made": "offers", "status_report_missing": "reports",
                "goods_dispatched": "dispatched", "offer_released": "released"}
# the most pressing first: what waits for the recipient, then bad news, then progress
RANK = ("escalated", "offers", "expired", "reports", "partial", "matched", "fulfilled",
        "dispatched", "released", "other")
NEEDS_ACTION = ("escalated", "offers", "expired", "reports")
# the order counts are said in: what waits for the recipient, then how needs went
COUNT_ORDER = ("escalated", "offers", "expired", "reports", "fulfilled", "partial", "matched",
               "dispatched", "released", "other")
NEED_STATE_WORDS = {
    "zh-CN": {"escalated": "已上报待您协调", "expired": "已过期", "partial": "部分满足",
              "matched": "已匹配", "fulfilled": "已全部满足"},
    "en": {"escalated": "escalated to you", "expired": "expired", "partial": "partly met",
           "matched": "matched", "fulfilled": "fully met"},
}
OTHER_COUNTS = {  # (one, several)
    "zh-CN": {"offers": "{n} 个志愿服务邀请", "reports": "{n} 份工作进展待报送",
              "dispatched": "{n} 批捐赠物资已发出", "released": "{n} 个邀请已结束",
              "other": "{n} 条其他更新"},
    "en": {"offers": ("{n} volunteer offer", "{n} volunteer offers"),
           "reports": ("{n} status report missing", "{n} status reports missing"),
           "dispatched": ("{n} donation dispatched", "{n} donations dispatched"),
           "released": ("{n} offer closed", "{n} offers closed"),
           "other": ("{n} other update", "{n} other updates")},
}
NAME_CHARS = 24  # an item's name in an SMS, at most


def _need_state(updates: list[Update]) -> str:
    kinds = {u.kind for u in updates}
    for kind, state in (("need_escalated", "escalated"), ("need_expired", "expired"),
                        ("need_fulfilled", "fulfilled")):
        if kind in kinds:
            return state
    made = [u for u in updates if u.kind == "assignment_made"]
    if any(u.params.get("complete") for u in made):
        return "fulfilled"  # whatever order the need's assignments came in
    last = made[-1]
    return "partial" if last.params.get("partial") else "matched"


def digest_items(language: str, updates: list[Update], names: Names) -> list[Item]:
    """The updates of one window as items, most urgent first: critical ones, then by what
    they ask of the recipient (:data:`RANK`), then in the order they happened."""
    by_need: dict[str, list[Update]] = {}
    items: list[Item] = []
    for order, update in enumerate(updates):
        need_id = update.params.get("need_id")
        if update.kind in NEED_KINDS and need_id:
            if need_id not in by_need:
                by_need[need_id] = []
                items.append(Item("need", False, order, need_id, None, []))
            by_need[need_id].append(update)
            continue
        state = OTHER_STATES.get(update.kind, "other")
        items.append(Item(state, update.priority == "critical", order,
                          _other_name(language, update, names), None, [update.text.line]))
    for item in items:
        if item.state != "need":
            continue
        need_id, group = item.name, by_need[item.name]
        category = next((u.params.get("category") for u in group if u.params.get("category")),
                        None)
        item.state = _need_state(group)
        item.urgent = any(u.priority == "critical" for u in group)
        item.lines = [u.text.line for u in group]
        shown = f"{need_id} {names.category(category)}" if category else need_id
        word = NEED_STATE_WORDS[language][item.state]
        if language == "zh-CN":
            item.title = f"需求 {need_id}（{names.category(category)}）：{word}" if category \
                else f"需求 {need_id}：{word}"
        else:
            item.title = f"Need {need_id} ({names.category(category)}): {word}" if category \
                else f"Need {need_id}: {word}"
        item.name = shown
    items.sort(key=lambda i: (not i.urgent, RANK.index(i.state), i.order))
    return items


def _other_name(language: str, update: Update, names: Names) -> str:
    p = update.params
    if update.kind == "offer_made":
        return (f"{names.area(p['community_id'])}{names.category(p['category'])}"
                if language == "zh-CN"
                else f"{names.category(p['category'])} in {names.area(p['community_id'])}")
    if update.kind == "goods_dispatched":
        return p["receipt"]
    if update.kind == "status_report_missing":
        return p["organisation_id"]
    if update.kind == "offer_released":
        return p["need_id"]
    return update.text.subject


def count_text(language: str, items: list[Item]) -> str:
    """Counts by kind: "30 项需求已全部满足，另有 2 项部分满足" / "30 needs fully met, 2 more
    partly met"."""
    counts = {state: sum(1 for i in items if i.state == state) for state in COUNT_ORDER}
    phrases: list[str] = []
    need_said = False
    for state in COUNT_ORDER:
        n = counts[state]
        if not n:
            continue
        if state in NEED_STATE_WORDS[language]:
            word = NEED_STATE_WORDS[language][state]
            if language == "zh-CN":
                phrases.append(f"另有 {n} 项{word}" if need_said else f"{n} 项需求{word}")
            else:
                phrases.append(f"{n} more {word}" if need_said
                               else f"{n} {'need' if n == 1 else 'needs'} {word}")
            need_said = True
        else:
            form = OTHER_COUNTS[language][state]
            if isinstance(form, tuple):
                form = form[0] if n == 1 else form[1]
            phrases.append(form.format(n=n))
    return ("，" if language == "zh-CN" else ", ").join(phrases)


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def fit_sms(text: str, link: str | None, segments: int) -> str:
    """``text`` (with `` link`` after it) in at most ``segments`` SMS segments: the text is
    cut, never the link."""
    tail = f" {link}" if link else ""
    if sms_fits(text + tail, segments):
        return text + tail
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits
        mid = (low + high + 1) // 2
        if sms_fits(text[:mid].rstrip() + "…" + tail, segments):
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + "…" + tail if low else (tail.strip() or "…")


def fit_chars(text: str, link: str | None, limit: int, language: str) -> str:
    """``text`` in at most ``limit`` characters, cut at a line, the link kept at the end."""
    if len(text) <= limit:
        return text
    tail = ("\n…\n" + (f"完整列表：{link}" if language == "zh-CN" else f"Everything: {link}")
            if link else "\n…")
    room = max(limit - len(tail), 0)
    head = text[:room]
    if "\n" in head:
        head = head[:head.rindex("\n")]
    return (head + tail)[:limit]


def compose_digest(reader: Reader, updates: list[Update], window_start: Any = None,
                   link: str | None = None,
                   budget: Budget = Budget()) -> tuple[Rendered, str]:
    """One message that summarises several, and its SMS text, each within ``budget``.

    The body (email, WeChat) gives the counts by kind and lists the updates grouped by
    need, most urgent first, as many as fit, then the link to the full list. The SMS gives
    the counts, names the most urgent items (as many as fit, up to ``urgent_items``) and
    the link. Returns ``(rendered, sms_text)``."""
    language = language_of(reader.language)
    names = Names(language, reader.reference, reader.tz)
    name = reader.name
    items = digest_items(language, updates, names)
    counts = count_text(language, items)
    pressing = bool(items) and (items[0].urgent or items[0].state in NEEDS_ACTION)
    template = _ENV.get_template(f"{language}/{DIGEST}.j2")

    def block(block_name: str, shown: int, urgent: int) -> str:
        context = template.new_context({
            "n": names, "qty": quantity, "name": name, "count": len(updates),
            "since": window_start, "counts": counts, "groups": items[:shown],
            "omitted": sum(len(i.lines) for i in items[shown:]), "link": link,
            "urgent": [_short(i.name) for i in items[:urgent]],
            "more": len(items) > urgent, "pressing": pressing})
        return _block(template, block_name, context)

    subject = block("subject", 0, 0)
    line = block("line", 0, 0)
    # the body: every item if it fits, else the most items that do
    body = block("body", len(items), 0)
    if len(body) > budget.body_chars:
        low, high = 0, len(items)
        while low < high:
            mid = (low + high + 1) // 2
            if len(block("body", mid, 0)) <= budget.body_chars:
                low = mid
            else:
                high = mid - 1
        body = fit_chars(block("body", low, 0), link, budget.body_chars, language)
    # the SMS: the counts, as many urgent items by name as fit, the link
    sms = ""
    for urgent in range(min(budget.urgent_items, len(items)), -1, -1):
        sms = block("sms", 0, urgent)
        if sms_fits(sms, budget.sms_segments):
            break
    else:
        sms = fit_sms(block("sms", 0, 0).removesuffix(link or "\0").rstrip(), link,
                      budget.sms_segments)
    return Rendered(subject=subject, line=line, body=body), sms


def render_digest(reader: Reader, items: list[Rendered | Update], window_start: Any = None,
                  link: str | None = None, budget: Budget = Budget()) -> Rendered:
    """One message that summarises several (see :func:`compose_digest`); plain rendered
    texts count as other updates."""
    updates = [i if isinstance(i, Update) else Update("", {}, "normal", i) for i in items]
    return compose_digest(reader, updates, window_start, link, budget)[0]
