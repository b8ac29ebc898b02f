"""The coordinators' console, served by the gateway: ``GET /console``, one page (zh-CN by
default, English at a touch, phone-width) with no data in it.

Its script signs in through ``POST /api/session`` and then uses the same HTTP API, with the
same roles and areas, as any other client: there is no route for the console alone, so a
coordinator cannot see or do through it, even by editing its address, what the API refuses
them. The session token is kept in ``sessionStorage`` (this tab only). The page lives in
``console.html`` beside this module (a template, not strings in code)."""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Response

from services.common.web import http

PAGE = Path(__file__).with_name("console.html")


@cache
def template() -> str:
    return PAGE.read_text(encoding="utf-8")


class ConsoleRoutes:
    """Mixed into the gateway service: ``GET /console``."""

    @http("GET", "/console")
    def console_page(self, request: Any) -> Response:
        nonce = secrets.token_urlsafe(16)
        return Response(template().replace("{{nonce}}", nonce), status=200,
                        mimetype="text/html", headers={
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                "form-action 'none'; frame-ancestors 'none'"),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        })
