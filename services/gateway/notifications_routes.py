"""Recipients and messages: coordinators and organisation contacts register how they want to
be reached; on-call staff see what never arrived, and why, and can send it again.

Mixed into the gateway service. Personal data stays in the notifications service: answers
carry masked names, phones and addresses only.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from services.common import contract
from services.common.deps import call
from services.gateway.http import authorised, error, json_body, respond
from services.notifications.schemas import MessageQuery


class NotificationRoutes:
    """``/api/recipients/<id>`` (PUT, GET, DELETE), ``/api/notifications`` (GET),
    ``/api/notifications/<id>`` (GET) and ``/api/notifications/<id>/retry`` (POST)."""

    notifications = RpcProxy("notifications")

    @http("PUT", "/api/recipients/<string:recipient_id>")
    @authorised
    def put_recipient(self, request: Any, recipient_id: str) -> Response:
        body, problem = json_body(request)
        if problem:
            return problem
        answer = call(self.notifications, "put_recipient", recipient_id, body)
        if "error" in answer:
            return error(400, answer["error"], answer.get("fields"))
        return respond(201 if answer["created"] else 200, answer["recipient"])

    @http("GET", "/api/recipients/<string:recipient_id>")
    @authorised
    def get_recipient(self, request: Any, recipient_id: str) -> Response:
        recipient = call(self.notifications, "get_recipient", recipient_id)
        if recipient is None:
            return error(404, f"no recipient {recipient_id!r}")
        return respond(200, recipient)

    @http("DELETE", "/api/recipients/<string:recipient_id>")
    @authorised
    def delete_recipient(self, request: Any, recipient_id: str) -> Response:
        if not call(self.notifications, "delete_recipient", recipient_id):
            return error(404, f"no recipient {recipient_id!r}")
        return Response(status=204)

    @http("GET", "/api/notifications")
    @authorised
    def list_notifications(self, request: Any) -> Response:
        try:
            query = MessageQuery().load(request.args.to_dict())
        except ValidationError as exc:
            return error(400, "invalid query", contract.flatten_errors(exc.messages))
        messages = call(self.notifications, "list_messages", **query)
        return respond(200, {"notifications": messages})

    @http("GET", "/api/notifications/<string:notification_id>")
    @authorised
    def get_notification(self, request: Any, notification_id: str) -> Response:
        message = call(self.notifications, "get_message", notification_id)
        if message is None:
            return error(404, f"no notification {notification_id!r}")
        return respond(200, message)

    @http("POST", "/api/notifications/<string:notification_id>/retry")
    @authorised
    def retry_notification(self, request: Any, notification_id: str) -> Response:
        answer = call(self.notifications, "retry_message", notification_id)
        if "error" in answer:
            status = 404 if answer["error"].startswith("no message") else 409
            return error(status, answer["error"])
        return respond(202, answer)


def openapi_paths() -> dict[str, Any]:
    """These routes for ``docs/http.openapi.yaml`` (merged by ``services.common.docs``)."""
    from services.common.docs import object_schema
    from services.notifications.schemas import STATES, RecipientBody

    error_schema = {"type": "object", "properties": {"error": {"type": "string"},
                                                     "fields": {"type": "object"}}}

    def answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"description": description}
        if schema:
            out["content"] = {"application/json": {"schema": schema}}
        return out

    def path_param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    common = {"401": answer("missing or wrong bearer token", error_schema),
              "504": answer("a service did not answer in time", error_schema)}
    recipient = [path_param("recipient_id")]
    notification = [path_param("notification_id")]
    return {
        "/api/recipients/{recipient_id}": {
            "put": {"summary": "Register or replace a coordinator or organisation contact: "
                               "addresses, channels, language, time zone, quiet hours, "
                               "digest mode, areas coordinated, organisations",
                    "parameters": recipient,
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": object_schema(RecipientBody(), closed=True)}}},
                    "responses": {"201": answer("created (masked)"),
                                  "200": answer("replaced (masked)"),
                                  "400": answer("invalid: fields names the failing ones",
                                                error_schema), **common}},
            "get": {"summary": "A recipient, masked", "parameters": recipient,
                    "responses": {"200": answer("the recipient"),
                                  "404": answer("unknown recipient", error_schema),
                                  **common}},
            "delete": {"summary": "Forget a recipient and their contact", "parameters": recipient,
                       "responses": {"204": answer("deleted"),
                                     "404": answer("unknown recipient", error_schema),
                                     **common}}},
        "/api/notifications": {"get": {
            "summary": "Messages with their state and reason (state=dead: what never arrived)",
            "parameters": [
                {"name": "state", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": list(STATES)}},
                {"name": "recipient", "in": "query", "required": False,
                 "schema": {"type": "string"}},
                {"name": "need_id", "in": "query", "required": False,
                 "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": answer("notifications"),
                          "400": answer("invalid query", error_schema), **common}}},
        "/api/notifications/{notification_id}": {"get": {
            "summary": "One message: template, state, channel, attempts, reason, text",
            "parameters": notification,
            "responses": {"200": answer("the message"),
                          "404": answer("unknown message", error_schema), **common}}},
        "/api/notifications/{notification_id}/retry": {"post": {
            "summary": "Queue a dead message again (to whoever is registered now, for an "
                       "area or organisation that had nobody)",
            "parameters": notification,
            "responses": {"202": answer("queued: the ids of the messages queued"),
                          "404": answer("unknown message", error_schema),
                          "409": answer("not dead, or still nobody to send it to",
                                        error_schema), **common}}},
    }
