"""The HTTP gateway: JSON in and out, validated, bearer-token auth; commands go to the other
services by RPC. POSTs are accepted as events through intake (the same path and dedupe as
outside systems), so a POST answers 202 and its effects follow within moments."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from marshmallow import ValidationError
from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from services.common import contract, links
from services.common.config import settings
from services.common.deps import Config, ReferenceProvider, RpcTimeout, call
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider
from services.common.topology import Management
from services.gateway import schemas
from services.gateway.dashboard import DashboardRoutes
from services.gateway.domain_routes import DomainRoutes
from services.gateway.http import authorised, error, json_body, respond, token_ok
from services.gateway.notifications_routes import NotificationRoutes
from services.gateway.status import StatusRoutes, queue_rows
from services.gateway.store import GatewayStore

log = logging.getLogger(__name__)


class GatewayService(DomainRoutes, StatusRoutes, DashboardRoutes, NotificationRoutes,
                     ServiceEndpoints):
    name = "gateway"

    store: GatewayStore = StoreProvider(GatewayStore, emits=False)
    reference = ReferenceProvider()
    config_ = Config()
    intake = RpcProxy("intake")
    matching = RpcProxy("matching")
    donations = RpcProxy("donations")

    # -- writes: accepted as events --------------------------------------------------------
    @http("POST", "/api/needs")
    @authorised
    def post_need(self, request: Any) -> Response:
        return self._submit(request, "need_posted", "need_id", "/api/needs/")

    @http("POST", "/api/donations")
    @authorised
    def post_donation(self, request: Any) -> Response:
        return self._submit(request, "donation_received", "donation_id", "/api/stock?category=")

    def _submit(self, request: Any, type_: str, id_field: str, status_prefix: str) -> Response:
        body, problem = json_body(request)
        if problem:
            return problem
        try:
            data = schemas.BODIES[type_]().load(body)
        except ValidationError as exc:
            return error(400, "invalid request", contract.flatten_errors(exc.messages))
        # the same id posted twice is the same event: a retried POST is harmless
        event_id = contract.derived_id("gateway", type_, data[id_field])
        envelope = contract.build(type_, data, source="gateway", event_id=event_id)
        answer = call(self.intake, "submit", envelope)
        if "error" in answer:
            return error(400, answer["error"], answer.get("fields"))
        status_key = data[id_field] if type_ == "need_posted" else data["category"]
        return respond(202, {id_field: data[id_field], "event_id": answer["event_id"],
                             "duplicate": answer["duplicate"],
                             "status_url": f"{status_prefix}{status_key}"})

    # -- reads --------------------------------------------------------------------------
    @http("GET", "/api/needs/<string:need_id>")
    @authorised
    def get_need(self, request: Any, need_id: str) -> Response:
        need = call(self.matching, "get_need", need_id)
        if need is None:
            return error(404, f"no need {need_id!r} (it may still be on its way)")
        return respond(200, need)

    @http("GET", "/api/stock")
    @authorised
    def get_stock(self, request: Any) -> Response:
        try:
            query = schemas.StockQuery().load(request.args.to_dict())
        except ValidationError as exc:
            return error(400, "invalid query", contract.flatten_errors(exc.messages))
        lots = call(self.donations, "stock", query.get("category"))
        return respond(200, {"lots": lots})

    @http("GET", "/api/areas")
    @authorised
    def get_areas(self, request: Any) -> Response:
        return respond(200, {"areas": self.reference.areas.tree()})

    @http("GET", "/api/categories")
    @authorised
    def get_categories(self, request: Any) -> Response:
        return respond(200, {"categories": self.reference.catalogue.as_list()})

    # -- a volunteer's answer to an offer ---------------------------------------------------
    @http("POST", "/api/offers/<string:offer_id>/<string:answer>")
    def answer_offer(self, request: Any, offer_id: str, answer: str) -> Response:
        """Accept or decline an offer: with the operator token, or with the signed link the
        volunteer received (``?sig=``)."""
        if answer not in ("accept", "decline"):
            return error(404, "answer must be accept or decline")
        signed = links.verify(offer_id, request.args.get("sig", ""),
                              settings(self.config_).links_secret)
        if not signed and not token_ok(self.config_, request):
            return error(401, "a valid bearer token or link signature is required")
        try:
            need = call(self.matching, "answer_offer", offer_id, answer == "accept")
        except RpcTimeout as exc:
            return error(504, str(exc))
        if need is None:
            return error(409, f"offer {offer_id!r} is not open (answered, lapsed or unknown)")
        return respond(200, need)

    @http("GET", "/api/offers/<string:offer_id>/<string:answer>")
    def confirm_offer_page(self, request: Any, offer_id: str, answer: str) -> Response:
        """What a link in a message opens: a page that asks the volunteer to confirm (a GET
        must not change anything: mail scanners open links)."""
        if answer not in ("accept", "decline"):
            return error(404, "answer must be accept or decline")
        sig = request.args.get("sig", "")
        if not links.verify(offer_id, sig, settings(self.config_).links_secret):
            return error(401, "this link is not valid")
        label = {"accept": ("接受任务", "Accept"), "decline": ("婉拒任务", "Decline")}[answer]
        page = (
            "<!doctype html><html lang='zh-CN'><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width'>"
            f"<title>{label[0]}</title><body style='font-family:sans-serif;margin:2em'>"
            f"<p>任务 {escape(offer_id)}</p>"
            f"<form method='post' action='?sig={escape(sig)}'>"
            f"<button type='submit' style='font-size:1.2em'>{label[0]} / {label[1]}</button>"
            "</form></body></html>")
        return Response(page, mimetype="text/html")

    # -- health (no auth) -----------------------------------------------------------------
    @http("GET", "/health")
    def health(self, request: Any) -> Response:
        report: dict[str, Any] = {}
        try:
            self.store.ping()
            report["database"] = {"reachable": True}
        except Exception as exc:  # noqa: BLE001
            report["database"] = {"reachable": False, "error": type(exc).__name__}
        cfg = settings(self.config_)
        try:
            queues = Management(cfg.management_uri, self.config_["AMQP_URI"]).queues()
            report["broker"] = {"reachable": True}
            rows = queue_rows(queues)
            report["queues"] = {r["name"]: {"consumers": r["consumers"], "messages": r["messages"]}
                                for r in rows}
            report["dead_letters"] = sum(r["messages"] for r in rows if r["dead_letter_queue"])
        except Exception as exc:  # noqa: BLE001
            report["broker"] = {"reachable": False, "error": type(exc).__name__}
        ok = report["database"]["reachable"] and report["broker"]["reachable"]
        report["status"] = "ok" if ok else "unavailable"
        return respond(200 if ok else 503, report)
