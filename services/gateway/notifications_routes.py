"""Recipients and messages: coordinators and organisation contacts register how they want to
be reached; on-call staff see what never arrived, and why, and can send it again.

Mixed into the gateway service. Personal data stays in the notifications service: answers
carry masked names, phones and addresses only.
"""

from __future__ import annotations

import secrets
from typing import Any

from nameko.rpc import RpcProxy
from werkzeug.wrappers import Response

from services.common import links
from services.common.config import settings
from services.common.deps import call
from services.common.web import http
from services.gateway import pages
from services.gateway.http import allowed, error, respond
from services.gateway.schemas import DigestQuery
from services.notifications.schemas import DeliveryView, MessageQuery


class NotificationRoutes:
    """``/api/recipients/<id>`` (PUT, GET, DELETE), ``/api/notifications`` (GET),
    ``/api/notifications/<id>`` (GET) and ``/api/notifications/<id>/retry`` (POST)."""

    notifications = RpcProxy("notifications")

    @http("PUT", "/api/recipients/<string:recipient_id>")
    @allowed("recipients.write")
    def put_recipient(self, request: Any, recipient_id: str) -> Response:
        answer = call(self.notifications, "put_recipient", recipient_id, request.json_object)
        return respond(201 if answer["created"] else 200, answer["recipient"])

    @http("GET", "/api/recipients/<string:recipient_id>")
    @allowed("recipients.read")
    def get_recipient(self, request: Any, recipient_id: str) -> Response:
        recipient = call(self.notifications, "get_recipient", recipient_id)
        if recipient is None:
            return error(404, f"no recipient {recipient_id!r}")
        return respond(200, recipient)

    @http("DELETE", "/api/recipients/<string:recipient_id>")
    @allowed("recipients.write")
    def delete_recipient(self, request: Any, recipient_id: str) -> Response:
        if not call(self.notifications, "delete_recipient", recipient_id):
            return error(404, f"no recipient {recipient_id!r}")
        return Response(status=204)

    @http("GET", "/api/notifications", query=MessageQuery, invalid="invalid query")
    @allowed("notifications.read")
    def list_notifications(self, request: Any) -> Response:
        messages = call(self.notifications, "list_messages", **request.query)
        return respond(200, {"notifications": messages})

    @http("GET", "/api/notifications/<string:notification_id>")
    @allowed("notifications.read")
    def get_notification(self, request: Any, notification_id: str) -> Response:
        message = call(self.notifications, "get_message", notification_id)
        if message is None:
            return error(404, f"no notification {notification_id!r}")
        return respond(200, message)

    @http("POST", "/api/notifications/<string:notification_id>/retry")
    @allowed("notifications.retry")
    def retry_notification(self, request: Any, notification_id: str) -> Response:
        return respond(202, call(self.notifications, "retry_message", notification_id))

    @http("GET", "/digest/<string:notification_id>", query=DigestQuery, invalid="invalid query")
    def digest_page(self, request: Any, notification_id: str) -> Response:
        """What the link in a digest opens: every update of that delivery, grouped by need
        (signed: ``?sig=``, no account needed; read-only)."""
        query = request.query
        if not links.verify_digest(notification_id, query["sig"],
                                   settings(self.config_).links_secret):
            return error(401, "this link is not valid")
        found = call(self.notifications, "delivery", notification_id)
        if found is None:
            return error(404, "nothing was sent with this link (yet)")
        view = DeliveryView().load(found)
        nonce = secrets.token_urlsafe(16)
        page = pages.render("digest.html", view=view, nonce=nonce,
                            lang=query.get("lang") or view["language"])
        return Response(page, mimetype="text/html", headers={
            "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; "
                                       "base-uri 'none'; form-action 'none'; "
                                       "frame-ancestors 'none'",
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff"})


def openapi_paths() -> dict[str, Any]:
    """These routes in words for ``docs/http.openapi.yaml`` (their parameters and bodies come
    from the routes' declarations; ``services.common.docs`` adds the answers every route may
    give: 400, 401, 413, 415, 503, 504)."""
    import re

    from services.common import docs
    from services.notifications.policy import ADDRESS_FIELD, CHANNELS
    from services.notifications.schemas import (
        RECIPIENT_ID,
        RESERVED_PREFIXES,
        RecipientBody,
    )

    # what RecipientBody checks across fields, spelled out: at least one address, and an
    # address for each channel chosen ("channels holds only the others, or the address")
    body = docs.body_schema(RecipientBody())
    body["anyOf"] = [{"required": [f]} for f in ("email", "phone", "wechat")]
    body["allOf"] = [
        {"anyOf": [{"properties": {"channels": {"items": {
                        "enum": [c for c in CHANNELS if c != channel]}}}},
                   {"required": [address]}]}
        for channel, address in ADDRESS_FIELD.items()]
    body["properties"]["channels"]["uniqueItems"] = True

    def recipient_param(writable: bool) -> dict[str, Any]:
        pattern = RECIPIENT_ID
        if writable:  # ids of contacts known from events are not for the API to write
            reserved = "|".join(re.escape(p) for p in RESERVED_PREFIXES)
            pattern = f"^(?!{reserved}){RECIPIENT_ID[1:]}"
        return {"name": "recipient_id", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": pattern}}

    recipient = docs.record("recipient_id", "managed")
    digest = {"get": {
        "summary": "What the link in a digest opens: every update of that delivery, grouped "
                   "by need, most urgent first (an HTML page; signed link, no account)",
        "security": [],
        "responses": {"200": docs.answer("an HTML page", {"type": "string"}, "text/html"),
                      "400": docs.failure("the signature or language is malformed"),
                      "401": docs.failure("the link's signature is not valid"),
                      "404": docs.failure("nothing was sent with this link (yet)")}}}
    return {
        "/digest/{notification_id}": digest,
        "/api/recipients/{recipient_id}": {
            "put": {"summary": "Register or replace a coordinator or organisation contact: "
                               "addresses, channels, language, time zone, quiet hours, "
                               "digest mode, areas coordinated, organisations",
                    "parameters": [recipient_param(writable=True)],
                    "requestBody": docs.json_body(body),
                    "responses": {"201": docs.answer("created (masked)", recipient),
                                  "200": docs.answer("replaced (masked)", recipient),
                                  "400": docs.failure("invalid (fields names the failing "
                                                      "ones), or an unknown area")}},
            "get": {"summary": "A recipient, masked",
                    "parameters": [recipient_param(writable=False)],
                    "responses": {"200": docs.answer("the recipient", recipient),
                                  "404": docs.failure("unknown recipient")}},
            "delete": {"summary": "Forget a recipient and their contact",
                       "parameters": [recipient_param(writable=False)],
                       "responses": {"204": docs.answer("deleted"),
                                     "404": docs.failure("unknown recipient")}}},
        "/api/notifications": {"get": {
            "summary": "Messages with their state and reason (state=dead: what never arrived)",
            "responses": {"200": docs.answer("notifications", docs.listing(
                "notifications", docs.record("notification_id", "state")))}}},
        "/api/notifications/{notification_id}": {"get": {
            "summary": "One message: template, state, channel, attempts, reason, text",
            "responses": {"200": docs.answer("the message",
                                             docs.record("notification_id", "state")),
                          "404": docs.failure("unknown message")}}},
        "/api/notifications/{notification_id}/retry": {"post": {
            "summary": "Queue a dead message again (to whoever is registered now, for an "
                       "area or organisation that had nobody)",
            "responses": {"202": docs.answer("queued: the ids of the messages queued",
                                             docs.listing("queued", {"type": "string"})),
                          "404": docs.failure("unknown message"),
                          "409": docs.failure("not dead, or still nobody to send it to")}}},
    }
