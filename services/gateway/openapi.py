"""``docs/http.openapi.yaml``: the gateway's routes as an OpenAPI 3.0.3 document.

Which routes there are, their path and query parameters and their JSON bodies come from the
routes themselves (the URL and the ``body``/``query`` schemas each ``@http`` declares:
:func:`services.common.docs.route_paths`); the tables here (and ``openapi_paths`` of the
gateway's route modules) add what words say: summaries, answers, refined parameters, bodies
that are not the gateway's to check. A route the tables do not describe, or a description of
a route that is gone, stops the document being written. ``python -m services.docs`` writes
the file; a test checks it against an OpenAPI validator.
"""

from __future__ import annotations

from typing import Any

from services.common.docs import (
    ERROR_SCHEMA,
    accepted,
    answer,
    failure,
    listing,
    object_schema,
    openapi_schema,
    query_params,
    record,
    route_paths,
    with_generic_answers,
)
from services.common.web import routes_of
from services.gateway import coordination_routes, notifications_routes, people_routes, schemas
from services.gateway.service import GatewayService


def openapi() -> dict[str, Any]:
    """The gateway's HTTP API as an OpenAPI 3.0.3 document."""

    public: list[dict[str, Any]] = []
    paths: dict[str, Any] = {
        "/api/needs": {
            "post": {
                "summary": "Post a need (accepted as a need_posted event; matched moments "
                           "later)",
                "responses": {"202": accepted("need_id"),
                              "409": failure("the need_id was posted before with other "
                                             "content (the first stands)")}}},
        "/api/needs/{need_id}": {"get": {
            "summary": "A need with its status, fulfilled quantity and assignments",
            "responses": {"200": answer("the need", record("need_id", "status", "quantity")),
                          "404": failure("unknown need (it may still be on its way)")}}},
        "/api/donations": {"post": {
            "summary": "Record a received donation (a donation_received event)",
            "responses": {"202": accepted("donation_id"),
                          "409": failure("the donation_id was recorded before with other "
                                         "content (the first stands)")}}},
        "/api/stock": {"get": {
            "summary": "Lots with what is still available",
            "responses": {"200": answer("lots", listing("lots", record(
                "lot_id", "category", "available")))}}},
        "/api/areas": {"get": {"summary": "The tier tree: district, streets, communities",
                               "responses": {"200": answer("areas", listing("areas"))}}},
        "/api/categories": {"get": {"summary": "The category catalogue with units",
                                    "responses": {"200": answer("categories",
                                                                listing("categories"))}}},
        **domain_paths(),
        "/api/offers/{offer_id}/{answer}": {
            "post": {
                "summary": "A volunteer accepts or declines an offer (a credential allowed "
                           "offers.answer, or the signed link's ?sig=: bound to this offer "
                           "and this answer, until it expires)",
                "parameters": [
                    {"name": "answer", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": ["accept", "decline"]}},
                    {"name": "sig", "in": "query", "required": False,
                     "schema": {"type": "string"}}],
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": answer("the need, with its new offer or assignment",
                                  record("need_id", "status")),
                    "401": failure("no valid credential and no valid signature (forged, for "
                                   "the other answer or another offer, or expired)"),
                    "404": failure("answer is neither accept nor decline"),
                    "409": failure("the offer is not open (answered, lapsed or unknown)")}},
            "get": {
                "summary": "What a link in a message opens: a page asking the volunteer to "
                           "confirm with a POST (a GET changes nothing: mail scanners open "
                           "links)",
                "parameters": [
                    {"name": "answer", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": ["accept", "decline"]}},
                    {"name": "sig", "in": "query", "required": True,
                     "schema": {"type": "string"}}],
                "security": public,
                "responses": {
                    "200": answer("an HTML page", {"type": "string"}, "text/html"),
                    "401": failure("the link's signature is not valid or has expired"),
                    "404": failure("answer is neither accept nor decline")}}},
        "/api/status": {"get": {
            "summary": "Queues (depth, ready, unacked, consumers, rates, dead letters), "
                       "open needs by tier and urgency, oldest open need per tier, supply "
                       "by category, assignments per hour",
            "responses": {"200": answer("status", record("queues", "needs"))}}},
        "/api/dashboard": {"get": {
            "summary": "The on-call report (the same as relief-ops status --json), with "
                       "its threshold checks",
            "parameters": [
                {"name": "max_depth", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0}},
                {"name": "max_dead_letters", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0}},
                {"name": "max_age", "in": "query", "required": False,
                 "description": "4h sets every tier; community=2h,district=2d sets some "
                                "(durations: 3600, 45m, 4h, 2d); repeatable",
                 "schema": {"type": "array", "items": {"type": "string"}},
                 "style": "form", "explode": True}],
            "responses": {"200": answer("report", {"type": "object"})}}},
        "/api/history": {"get": {
            "summary": "The dashboard's key figures sampled every minute by the gateway "
                       "(open needs per tier, dead letters, assignments this hour, queue "
                       "depth), the last 24 hours, kept across restarts",
            # the route reads its query itself (services/gateway/history.py)
            "parameters": query_params(schemas.HistoryQuery()),
            "responses": {"200": answer("samples", openapi_schema(
                object_schema(schemas.History())))}}},
        "/dashboard": {"get": {
            "summary": "The on-call dashboard page (no data in it; its script reads "
                       "/api/dashboard with the token)",
            "security": public,
            "responses": {"200": answer("an HTML page", {"type": "string"}, "text/html")}}},
        "/console": {"get": {
            "summary": "The coordinators' console (zh-CN, English switch; no data in it: its "
                       "script signs in with POST /api/session and uses this API)",
            "security": public,
            "responses": {"200": answer("an HTML page", {"type": "string"}, "text/html")}}},
        "/health": {"get": {
            "summary": "Broker and database reachability, consumers per queue (no auth)",
            "security": public,
            "responses": {"200": answer("healthy", record("status", "database", "broker")),
                          "503": answer("broker or database unreachable (the same report)",
                                        record("status", "database", "broker"))}}},
        "/healthz": {"get": {
            "summary": "The gateway process itself: its database reachable (no auth)",
            "security": public,
            "responses": {"200": answer("ok", {"type": "string"}, "text/plain"),
                          "503": answer("what is wrong", {"type": "string"}, "text/plain")}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics of the gateway process (no auth)",
            "security": public,
            "responses": {"200": answer("metrics in the Prometheus text format",
                                        {"type": "string"}, "text/plain")}}},
    }
    paths.update(notifications_routes.openapi_paths())
    for path, operations in coordination_routes.openapi_paths().items():
        paths.setdefault(path, {}).update(operations)
    paths.update(people_routes.openapi_paths())
    return {
        "openapi": "3.0.3",
        "info": {"title": "Relief Exchange gateway", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA,
                        "Accepted": openapi_schema(object_schema(schemas.Accepted()))},
        },
        "security": [{"bearer": []}],
        "paths": with_generic_answers(route_paths(routes_of(GatewayService), paths)),
    }


def domain_paths() -> dict[str, Any]:
    """Coordinators' domain routes (``services/gateway/domain_routes.py``)."""

    lot_after = record("lot_id", "available", "repeated")
    return {
        "/api/hours": {
            "post": {"summary": "Log volunteer hours (an hours_logged event); pending until "
                                "a coordinator decides",
                     "responses": {"202": accepted("hours_id"),
                                   "409": failure("the hours_id was logged before with "
                                                  "other content (the first stands)")}},
            "get": {"summary": "Logged hours, by status (pending, approved, rejected)",
                    "responses": {"200": answer("hours", listing("hours"))}}},
        "/api/hours/{hours_id}/decision": {"post": {
            "summary": "Approve (hours_approved: counted) or reject (hours_rejected: never "
                       "counted) pending hours; the same decision again is harmless",
            "responses": {"200": answer("decided", record("hours_id", "status", "repeated")),
                          "404": failure("unknown hours (they may still be on their way)"),
                          "409": failure("already decided the other way")}}},
        "/api/hours/decisions": {"post": {
            "summary": "Approve or reject many pending hours at once (up to 500; a season's "
                       "imported sheet in parts): each as one decision; what cannot be "
                       "decided is named in refused with the reason",
            "responses": {"200": answer("decided: counts by outcome (approved, rejected, "
                                        "repeated, refused) and each refusal's reason",
                                        record("decision", "counts", "refused"))}}},
        "/api/lots/{lot_id}/write-offs": {"post": {
            "summary": "Write off stock (expired, damaged, lost): taken from matching's reach "
                       "first, then a stock_changed event; idempotent by request_id",
            "responses": {"200": answer("the lot after the write-off", lot_after),
                          "404": failure("unknown lot"),
                          "409": failure("refused: not that much stock is free")}}},
        "/api/lots/{lot_id}/transfers": {"post": {
            "summary": "Move stock to another warehouse: taken from matching's reach first, "
                       "then the lot is decremented and a lot made at the destination (same "
                       "category, unit, expiry; its share of the value), announced as "
                       "stock_changed (transferred) and donation_received with transfer_of; "
                       "idempotent by request_id",
            "responses": {"200": answer("the source lot after the transfer, and to_lot_id",
                                        record("lot_id", "available", "repeated",
                                               "to_lot_id")),
                          "404": failure("unknown lot"),
                          "409": failure("refused: not that much stock is free, or the "
                                         "request_id's lot id is taken")}}},
        "/api/pledges": {
            "post": {"summary": "Record a pledge (pledge_made); the same pledge_id again is "
                                "harmless",
                     "responses": {"201": answer("the pledge (created: false if known)",
                                                 record("pledge_id", "status", "created"))}},
            "get": {"summary": "Pledges with received, remaining, status (open, partial, "
                               "received) and overdue; open=true: not fully received",
                    "responses": {"200": answer("pledges", listing("pledges"))}}},
        "/api/pledges/{pledge_id}": {"get": {
            "summary": "One pledge and the parts received",
            "responses": {"200": answer("the pledge", record("pledge_id", "status", "parts")),
                          "404": failure("unknown pledge")}}},
        "/api/pledges/{pledge_id}/parts": {"post": {
            "summary": "A part of a pledge arrived: accepted as a donation_received with "
                       "pledge_id (a lot, a receipt), counted on the pledge; idempotent by "
                       "donation_id",
            "responses": {"202": accepted("donation_id"), "404": failure("unknown pledge"),
                          "409": failure("the donation_id was recorded before with other "
                                         "content (the first stands)")}}},
        "/api/donations/{donation_id}/receipt": {"get": {
            "summary": "The numbered donor receipt, printable HTML (zh-CN or en)",
            "responses": {"200": {"description": "HTML; header X-Receipt-No",
                                  "headers": {"X-Receipt-No": {"schema": {"type": "string"}}},
                                  "content": {"text/html": {"schema": {"type": "string"}}}},
                          "404": failure("unknown donation (it may still be on its way)")}}},
        "/api/organisations": {
            "post": {"summary": "Register a founding or member organisation with its contacts",
                     "responses": {"201": answer("registered (created: false if known)",
                                                 record("organisation_id", "created"))}},
            "get": {"summary": "Organisations (without contacts)",
                    "responses": {"200": answer("organisations", listing("organisations"))}}},
        "/api/organisations/{organisation_id}/status-reports": {
            "post": {"summary": "An organisation's periodic status report: activities, areas, "
                                "staff health, resumption of work (status_reported); "
                                "idempotent by report_id. A report missing a period later "
                                "raises status_report_missing",
                     "responses": {"201": answer("recorded (repeated: true if known)",
                                                 record("report_id", "repeated")),
                                   "404": failure("unknown organisation"),
                                   "409": failure("the report_id belongs to another "
                                                  "organisation")}},
            "get": {"summary": "An organisation's status reports, oldest first",
                    "responses": {"200": answer("reports", listing("reports"))}}},
        "/api/organisations/reporting": {"get": {
            "summary": "Each organisation's last report, next due time and whether it is "
                       "overdue (overdue=true|false filters)",
            "responses": {"200": answer("organisations", listing("organisations"))}}},
        "/api/training": {"post": {
            "summary": "Record a training session and its attendance",
            "responses": {"201": answer("recorded (created: false if known)",
                                        record("session_id", "created"))}}},
        "/api/ledger/report": {"get": {
            "summary": "Received, allocated, written off, in stock (quantity and yuan) and "
                       "approved hours, by category, donor, street, community, programme or date",
            "responses": {"200": answer("report rows", {"type": "object"})}}},
        "/api/ledger/export": {"get": {
            "summary": "The report as CSV or XLSX (with a bulletin sheet)",
            "responses": {"200": {"description": "the file", "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                    "schema": {"type": "string", "format": "binary"}}}}}}},
        "/api/bulletin": {"get": {
            "summary": "The coalition bulletin (zh-CN or en): goods with units and values, "
                       "volunteers and approved hours, organisations, training, programmes",
            "responses": {"200": {"description": "figures and text (format=text: plain text)",
                                  "content": {"application/json": {"schema": {
                                                  "type": "object"}},
                                              "text/plain": {"schema": {"type": "string"}}}}}}},
        "/api/reconciliation": {"get": {
            "summary": "received + transferred in = allocated + written off + transferred "
                       "out + in stock, per category and warehouse, in quantity and in yuan; "
                       "differences lists every row that does not hold",
            "responses": {"200": answer("balanced, rows, differences",
                                        record("balanced", "differences"))}}},
    }
