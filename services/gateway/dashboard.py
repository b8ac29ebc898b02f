"""The on-call dashboard, served by the gateway: ``GET /dashboard`` (a page with no data, no
auth) and ``GET /api/dashboard`` (the data, bearer auth).

The data is the report ``relief-ops status --json`` prints (``services.ops.report``), so the
page and the command line show the same figures and the same problems. Thresholds can be
given as query parameters with the command line's syntax (``?max_age=4h&max_depth=500``);
the page passes its own query on.

Auth in a browser: the page asks for the operator token once and keeps it in
``sessionStorage`` (this tab only, gone when it closes). A link may carry it in the fragment
(``/dashboard#token=...``): browsers never send the fragment to a server, so it stays out of
access logs, proxies and ``Referer`` headers; the page removes it from the address bar at
once. The token only ever travels in the ``Authorization`` header of the data request.
Charts are inline SVG drawn by the page's own script: no CDN, no external request.

Problems that need someone to act rather than wait (an escalation that reached nobody, an
event in ``relief.unroutable``) also show as a banner across the top of the page.

The page is ``templates/dashboard.html``, in zh-CN by default (``?lang=en`` for English; the
default is the same setting as notifications', ``NOTIFY_LANGUAGE``), with a CJK font stack,
a value on every bar, the 24-hour history the gateway keeps (``history.py``) and a layout
that holds at a phone's width: the charts are drawn at the width of their card.
"""

from __future__ import annotations

import secrets
from typing import Any

from werkzeug.wrappers import Response

from services.common.config import settings
from services.common.deps import call
from services.common.management import Management
from services.common.web import http
from services.gateway import pages
from services.gateway.http import allowed, error, respond
from services.gateway.status import on_call_summary
from services.notifications.texts import TIER_NAMES, UNIT_NAMES, URGENCY_NAMES
from services.ops.report import Thresholds, build_report, queue_rows


def dashboard_report(config: dict[str, Any], matching: Any, thresholds: Thresholds,
                     notifications: Any = None) -> dict[str, Any]:
    """Read the broker, matching and notifications; a source that fails becomes a named
    problem."""
    cfg = settings(config)
    errors: dict[str, str] = {}
    queues = needs = None
    try:
        queues = queue_rows(Management(cfg.management_uri, config["AMQP_URI"]).queues())
    except Exception as exc:  # noqa: BLE001 - shown on the page as a problem
        errors["broker"] = f"management API unreachable ({type(exc).__name__})"
    try:
        needs = call(matching, "needs_overview")
    except Exception as exc:  # noqa: BLE001 - shown on the page as a problem
        errors["matching"] = f"needs overview unavailable ({type(exc).__name__}: {exc})"
    summary, problem = on_call_summary(notifications, queues)
    if problem:
        errors["notifications"] = problem
    return build_report(queues, needs, notifications=summary, thresholds=thresholds,
                        errors=errors)


class DashboardRoutes:
    """Mixed into the gateway service: ``GET /dashboard`` and ``GET /api/dashboard``."""

    @http("GET", "/dashboard")
    def dashboard_page(self, request: Any) -> Response:
        nonce = secrets.token_urlsafe(16)
        lang = pages.language(self.config_, request.args.get("lang"))
        body = page(nonce, lang, getattr(self, "reference", None))
        return Response(body, status=200, mimetype="text/html", headers={
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                "form-action 'none'; frame-ancestors 'none'"),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        })

    @http("GET", "/api/dashboard")
    @allowed("status.read")
    def dashboard_data(self, request: Any) -> Response:
        try:
            thresholds = Thresholds.from_options(
                request.args.get("max_depth"), request.args.get("max_dead_letters"),
                request.args.getlist("max_age") or None)
        except ValueError as exc:
            return error(400, str(exc))
        report = dashboard_report(self.config_, self.matching, thresholds,
                                  getattr(self, "notifications", None))
        return respond(200, report, {"Cache-Control": "no-store"})


def page(nonce: str, lang: str = "zh-CN", reference: Any = None) -> str:
    """The dashboard in ``lang``: its words, and the names of categories and units."""
    names = {}
    if reference is not None:
        names = {cid: cat.name if lang == "zh-CN" else cat.name_en
                 for cid, cat in reference.catalogue.categories.items()}
    return pages.render("dashboard.html", nonce=nonce, lang=lang, t=STRINGS[lang],
                        script_strings={**SCRIPT_STRINGS[lang], "tiers": TIER_NAMES[lang],
                                        "urgency": URGENCY_NAMES[lang],
                                        "units": UNIT_NAMES[lang], "categories": names})


# the page's words (the server writes them into the page; the script's own in SCRIPT_STRINGS)
STRINGS = {
    "zh-CN": {
        "title": "社区抗疫物资协调平台 · 值班", "heading": "社区抗疫物资协调平台 · 值班",
        "loading": "加载中", "banner": "需要值班人员处理", "token": "值班口令",
        "show": "查看", "needs": "按层级和紧急程度的未满足需求", "supply": "各类物资可用量",
        "assignments": "每小时匹配数（UTC），近 24 小时",
        "queues": "队列深度（待处理、处理中、死信）",
        "history": "近 24 小时（每分钟采样，重启后保留）",
        "h_open": "未满足需求（按层级）", "h_dead": "死信", "h_assign": "本小时匹配数",
        "h_depth": "队列深度", "oldest": "各层级最早的未满足需求", "queue_table": "队列",
        "tier": "层级", "oldest_open": "最早未满足", "age": "等待时长", "urgency": "紧急程度",
        "category": "类别", "community": "社区", "queue": "队列", "depth": "深度",
        "ready": "待处理", "unacked": "处理中", "consumers": "消费者", "publish": "发布/秒",
        "ack": "确认/秒", "dead": "死信", "switch": "English", "switch_lang": "en",
    },
    "en": {
        "title": "Relief Exchange - on-call", "heading": "Relief Exchange · on-call",
        "loading": "loading", "banner": "On-call action needed", "token": "Operator token",
        "show": "Show", "needs": "Open needs by tier and urgency",
        "supply": "Supply available by category",
        "assignments": "Assignments per hour (UTC), last 24 h",
        "queues": "Queue depths (ready, unacked, dead letters)",
        "history": "Last 24 hours (sampled every minute, kept across restarts)",
        "h_open": "Open needs per tier", "h_dead": "Dead letters",
        "h_assign": "Assignments this hour", "h_depth": "Queue depth",
        "oldest": "Oldest open need per tier", "queue_table": "Queues", "tier": "tier",
        "oldest_open": "oldest open", "age": "age", "urgency": "urgency",
        "category": "category", "community": "community", "queue": "queue",
        "depth": "depth", "ready": "ready", "unacked": "unacked", "consumers": "consumers",
        "publish": "publish/s", "ack": "ack/s", "dead": "dead letters", "switch": "中文",
        "switch_lang": "zh-CN",
    },
}
SCRIPT_STRINGS = {
    "zh-CN": {"ok": "正常", "problems": "{n} 个问题", "token_needed": "需要口令",
              "refused": "口令被拒绝", "no_data": "无数据", "answered": "网关返回 {n}",
              "checked": "检查于 {at}，每 {s} 秒刷新", "no_supply": "暂无物资记录",
              "scale": "刻度 0 - {n}", "no_history": "尚无采样", "now": "现在",
              "hours_ago": "{n} 小时前"},
    "en": {"ok": "OK", "problems": "{n} problems", "problem": "1 problem",
           "token_needed": "token needed", "refused": "the token was refused",
           "no_data": "no data", "answered": "the gateway answered {n}",
           "checked": "checked {at}, refreshing every {s} s",
           "no_supply": "no supply recorded", "scale": "scale: 0 - {n}",
           "no_history": "no samples yet", "now": "now", "hours_ago": "{n} h ago"},
}
