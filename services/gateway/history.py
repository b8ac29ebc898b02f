"""The dashboard's 24-hour history, kept by the gateway itself: every
``RELIEF.history_sample_seconds`` (a minute by default) it samples the figures it already
computes for the dashboard (open needs per tier, dead letters, assignments this hour, the
depth of the queues that do the work) into its own database (``GatewayStore.history``), so
the history survives a restart and needs no time-series store (Prometheus in compose keeps
more). ``GET /api/history`` answers the samples; the dashboard draws them."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from marshmallow import ValidationError
from nameko.timer import Timer
from werkzeug.wrappers import Response

from services.common import contract
from services.common.config import settings
from services.common.web import http
from services.gateway.http import allowed, error, respond
from services.gateway.schemas import History, HistoryQuery
from services.ops.report import Thresholds

log = logging.getLogger(__name__)


def figures(report: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The key figures of a dashboard report; a figure whose source could not be read is
    None (a gap in the chart, not a zero)."""
    needs = report.get("needs")
    queues = report.get("queues")
    open_needs = assignments = None
    if needs is not None:
        open_needs = {tier: sum((by or {}).values())
                      for tier, by in (needs.get("open_needs") or {}).items()}
        this_hour = now.strftime("%Y-%m-%dT%H")
        assignments = sum(h["count"] for h in needs.get("assignments_per_hour") or []
                          if str(h.get("hour", "")).startswith(this_hour))
    depth = dead = None
    if queues is not None:
        depth = sum(q["messages"] for q in queues if not q["dead_letter_queue"])
        dead = report.get("dead_letters")
    return {"open_needs": open_needs, "dead_letters": dead, "assignments": assignments,
            "queue_depth": depth}


class SampleTimer(Timer):
    """A timer whose interval is ``RELIEF.history_sample_seconds`` from the config."""

    def __init__(self, **kwargs: Any):
        super().__init__(interval=60.0, eager=True, **kwargs)

    def setup(self) -> None:
        self.interval = settings(self.container.config).history_sample_seconds


class HistoryRoutes:
    """Mixed into the gateway service: the sampling timer and ``GET /api/history``."""

    @SampleTimer.decorator()
    def sample_history(self) -> None:
        from services.gateway.dashboard import dashboard_report

        now = contract.now()
        try:
            report = dashboard_report(self.config_, self.matching, Thresholds(),
                                      getattr(self, "notifications", None))
            self.store.record_sample(now, figures(report, now))
        except Exception:  # noqa: BLE001 - the next sample tries again
            log.warning("could not sample the dashboard's figures", exc_info=True)

    @http("GET", "/api/history")
    @allowed("status.read")
    def get_history(self, request: Any) -> Response:
        try:
            query = HistoryQuery().load(request.args.to_dict())
        except ValidationError as exc:
            return error(400, "invalid query", contract.flatten_errors(exc.messages))
        now = contract.now()
        samples = self.store.history(now, query["hours"])
        return respond(200, History().dump({"hours": query["hours"], "until": now,
                                            "samples": samples}),
                       {"Cache-Control": "no-store"})
