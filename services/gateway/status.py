"""Status for on-call staff: the health of the queues and whether relief is flowing."""

from __future__ import annotations

from typing import Any

from nameko.web.handlers import http
from werkzeug.wrappers import Response

from services.common.config import settings
from services.common.deps import call
from services.common.topology import Management
from services.gateway.http import authorised, respond

DLQ_PREFIXES = ("dlq.",)
DLQ_NAMES = ("relief.intake.dlq",)


def is_dead_letter_queue(name: str) -> bool:
    return name.startswith(DLQ_PREFIXES) or name in DLQ_NAMES


def queue_rows(queues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The management API's queue objects, reduced to what on-call staff look at."""
    rows = []
    for q in queues:
        if q["name"].startswith(("rpc.reply", "amq.")):
            continue
        stats = q.get("message_stats") or {}
        rows.append({
            "name": q["name"],
            "dead_letter_queue": is_dead_letter_queue(q["name"]),
            "messages": q.get("messages", 0),
            "ready": q.get("messages_ready", 0),
            "unacked": q.get("messages_unacknowledged", 0),
            "consumers": q.get("consumers", 0),
            "publish_rate": (stats.get("publish_details") or {}).get("rate", 0.0),
            "ack_rate": (stats.get("ack_details") or {}).get("rate", 0.0),
        })
    return sorted(rows, key=lambda r: r["name"])


class StatusRoutes:
    """Mixed into the gateway service: ``GET /api/status``."""

    @http("GET", "/api/status")
    @authorised
    def get_status(self, request: Any) -> Response:
        cfg = settings(self.config_)
        queues = queue_rows(Management(cfg.management_uri, self.config_["AMQP_URI"]).queues())
        needs = call(self.matching, "needs_overview")
        return respond(200, {"queues": queues, "needs": needs})
