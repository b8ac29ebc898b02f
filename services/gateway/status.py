"""Status for on-call staff: the health of the queues, whether relief is flowing, and what
notifications could not tell anyone (escalations to an area with no coordinator)."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Response

from services.common.config import settings
from services.common.deps import call
from services.common.management import Management
from services.common.web import http
from services.gateway.http import allowed, respond
from services.ops.report import queue_rows

NOTIFICATIONS_RPC_QUEUE = "rpc-notifications"
# the status page must answer promptly even when notifications is slow
ON_CALL_TIMEOUT_SECONDS = 5.0


def on_call_summary(notifications: Any, queues: list[dict[str, Any]] | None
                    ) -> tuple[dict[str, Any] | None, str | None]:
    """Notifications' on-call summary (``on_call_summary`` RPC), or why it could not be read.
    A notifications service that is not running is said at once, from its RPC queue having
    no consumer, instead of after a timeout."""
    rpc_queue = next((q for q in queues or [] if q["name"] == NOTIFICATIONS_RPC_QUEUE), None)
    if rpc_queue is not None and rpc_queue["consumers"] == 0:
        return None, f"not running ({NOTIFICATIONS_RPC_QUEUE} has no consumer)"
    try:
        return call(notifications, "on_call_summary", timeout=ON_CALL_TIMEOUT_SECONDS), None
    except Exception as exc:  # noqa: BLE001 - reported as a problem, not an error page
        return None, f"on-call summary unavailable ({type(exc).__name__})"


class StatusRoutes:
    """Mixed into the gateway service: ``GET /api/status``."""

    @http("GET", "/api/status")
    @allowed("status.read")
    def get_status(self, request: Any) -> Response:
        cfg = settings(self.config_)
        queues = queue_rows(Management(cfg.management_uri, self.config_["AMQP_URI"]).queues())
        needs = call(self.matching, "needs_overview")
        notifications, problem = on_call_summary(self.notifications, queues)
        body: dict[str, Any] = {"queues": queues, "needs": needs,
                                "notifications": notifications}
        if problem:
            body["errors"] = {"notifications": problem}
        return respond(200, body)
