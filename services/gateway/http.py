"""Helpers for the gateway's HTTP entrypoints: JSON responses, errors, bearer-token auth.

Route groups live in their own modules (mixins of ``GatewayService``) and share these."""

from __future__ import annotations

import hmac
import json
from datetime import date, datetime
from functools import wraps
from typing import Any

from werkzeug.wrappers import Response

from services.common.config import settings
from services.common.deps import RpcTimeout


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def respond(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, default=_default, ensure_ascii=False), status=status,
                    mimetype="application/json", headers=headers)


def error(status: int, message: str, fields: dict | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return respond(status, body, headers)


def token_ok(config: dict[str, Any], request: Any) -> bool:
    expected = settings(config).admin_token
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return bool(expected and token and hmac.compare_digest(token, expected))


def authorised(handler: Any) -> Any:
    """Require ``Authorization: Bearer <token>`` matching the operator token; turn a service
    that does not answer into 504."""

    @wraps(handler)
    def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Response:
        if not token_ok(self.config_, request):
            return error(401, "a valid bearer token is required")
        try:
            return handler(self, request, *args, **kwargs)
        except RpcTimeout as exc:
            return error(504, str(exc))

    return wrapper


def json_body(request: Any) -> tuple[Any, Response | None]:
    """The request's JSON object, or an error response."""
    try:
        body = json.loads(request.get_data(as_text=True) or "null")
    except ValueError as exc:
        return None, error(400, f"body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return None, error(400, "body must be a JSON object")
    return body, None
