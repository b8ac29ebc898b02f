"""The HTTP gateway: JSON in and out, validated; every route checks who asks and whether
their role, area or scope allows it (``services.gateway.policy``); commands go to the other
services by RPC. POSTs are accepted as events through intake (the same path and dedupe as
outside systems), so a POST answers 202 and its effects follow within moments."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from nameko.rpc import RpcProxy
from werkzeug.wrappers import Response

from services.common import contract, links
from services.common.config import settings
from services.common.deps import Config, ReferenceProvider, call
from services.common.management import Management
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider
from services.common.web import HttpError, http
from services.gateway import policy, schemas
from services.gateway.console import ConsoleRoutes
from services.gateway.coordination_routes import CoordinationRoutes
from services.gateway.dashboard import DashboardRoutes
from services.gateway.domain_routes import DomainRoutes
from services.gateway.history import HistoryRoutes
from services.gateway.http import (
    allowed,
    authorise,
    error,
    principal_of,
    record,
    respond,
    submit,
)
from services.gateway.notifications_routes import NotificationRoutes
from services.gateway.people_routes import PeopleRoutes
from services.gateway.status import StatusRoutes
from services.gateway.store import GatewayStore
from services.ops.report import queue_rows

log = logging.getLogger(__name__)


class GatewayService(DomainRoutes, CoordinationRoutes, StatusRoutes, DashboardRoutes,
                     HistoryRoutes, NotificationRoutes, PeopleRoutes, ConsoleRoutes,
                     ServiceEndpoints):
    name = "gateway"

    store: GatewayStore = StoreProvider(GatewayStore, emits=False)
    reference = ReferenceProvider()
    config_ = Config()
    intake = RpcProxy("intake")
    matching = RpcProxy("matching")
    donations = RpcProxy("donations")

    # -- writes: accepted as events --------------------------------------------------------
    @http("POST", "/api/needs", body=schemas.NeedBody)
    @allowed("needs.post")
    def post_need(self, request: Any) -> Response:
        return self._submit(request, "need_posted", "need_id", "/api/needs/")

    @http("POST", "/api/donations", body=schemas.DonationBody)
    @allowed("donations.post")
    def post_donation(self, request: Any) -> Response:
        return self._submit(request, "donation_received", "donation_id", "/api/stock?category=")

    def _submit(self, request: Any, type_: str, id_field: str, status_prefix: str) -> Response:
        data = request.body
        if type_ == "need_posted":
            authorise(self, request, "needs.post", area=data["community_id"],
                      what="post a need")
        else:
            authorise(self, request, "donations.post", area=data["location_id"],
                      organisation=data["donor"].get("donor_id"), what="record a donation")
        # the same id posted twice is the same event: a retried POST is harmless, and the
        # same id with other content is refused (409), never taken for the first
        event_id = contract.derived_id("gateway", type_, data[id_field])
        envelope = contract.build(type_, data, source="gateway", event_id=event_id)
        answer = submit(self.intake, envelope, f"gateway:{request.principal.id}", id_field,
                        data[id_field])
        status_key = data[id_field] if type_ == "need_posted" else data["category"]
        return respond(202, {id_field: data[id_field], "event_id": answer["event_id"],
                             "duplicate": answer["duplicate"],
                             "status_url": f"{status_prefix}{status_key}"})

    # -- reads --------------------------------------------------------------------------
    @http("GET", "/api/needs/<string:need_id>")
    @allowed("needs.read")
    def get_need(self, request: Any, need_id: str) -> Response:
        need = call(self.matching, "get_need", need_id)
        if need is None:
            return error(404, f"no need {need_id!r} (it may still be on its way)")
        authorise(self, request, "needs.read", area=need.get("community_id"),
                  what=f"read need {need_id}")
        return respond(200, need)

    @http("GET", "/api/stock", query=schemas.StockQuery, invalid="invalid query")
    @allowed("stock.read")
    def get_stock(self, request: Any) -> Response:
        lots = call(self.donations, "stock", request.query.get("category"))
        areas = request.principal.areas  # a coordinator sees the stock their area can reach
        lots = [lot for lot in lots if policy.reaches(areas, lot["location_id"],
                                                      self.reference.areas)]
        return respond(200, {"lots": lots})

    @http("GET", "/api/areas")
    @allowed("reference.read")
    def get_areas(self, request: Any) -> Response:
        return respond(200, {"areas": self.reference.areas.tree()})

    @http("GET", "/api/categories")
    @allowed("reference.read")
    def get_categories(self, request: Any) -> Response:
        return respond(200, {"categories": self.reference.catalogue.as_list()})

    # -- a volunteer's answer to an offer ---------------------------------------------------
    @http("POST", "/api/offers/<string:offer_id>/<string:answer>")
    def answer_offer(self, request: Any, offer_id: str, answer: str) -> Response:
        """Accept or decline an offer: with the operator token, or with the signed link the
        volunteer received (``?sig=``)."""
        if answer not in ("accept", "decline"):
            return error(404, "answer must be accept or decline")
        signed = links.verify(offer_id, answer, request.args.get("sig", ""),
                              settings(self.config_).links_secret)
        if not signed:
            principal = principal_of(self, request)
            if principal is None:
                record(self, request, None, "offers.answer", 401)
                return error(401, "a valid bearer token or link signature is required "
                                  "(a link answers its own offer, with its own answer, "
                                  "until it expires)")
            request.principal = principal
            try:
                authorise(self, request, "offers.answer")
            except HttpError:
                record(self, request, principal, "offers.answer", 403)
                raise
        else:
            principal = None
        need = call(self.matching, "answer_offer", offer_id, answer == "accept")
        record(self, request, principal, "offers.answer", 200 if need else 409,
               target={"offer_id": offer_id, "answer": answer},
               link=True if signed else None)
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
        if not links.verify(offer_id, answer, sig, settings(self.config_).links_secret):
            return error(401, "this link is not valid (or has expired)")
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
