"""The HTTP entrypoint every service uses: JSON in and out, and every error mapped once.

Nameko's own HTTP server answers an unknown route or method with an HTML page and an
exception in a handler with a 500 carrying the exception's text. Here instead:

* an unknown route is a JSON 404, a method the route does not take a JSON 405 with
  ``Allow``; a body larger than ``max_body_bytes`` is 413; a POST/PUT body that is not
  ``application/json`` is 415;
* a route declares the schemas of its body and query string (``@http("POST", "/api/hours",
  body=HoursBody)``): the route reads ``request.body`` / ``request.query``, loaded by them,
  and a failure is a 400 naming every failing field (see :class:`RouteRequest`);
* what a handler raises is mapped in :func:`response_from_exception`: a body that is not
  acceptable JSON 400, a domain error its status, a service that does not answer 504, the
  broker or a database unreachable 503; anything else is a bug: 500 with a reference id that
  the log carries with the traceback, and no internals in the body.

Every service's routes (the gateway's API, each service's ``/metrics`` and ``/healthz``) use
:data:`http` from here, so one server per process serves them all.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from functools import cached_property
from typing import Any

from kombu.exceptions import OperationalError
from marshmallow import Schema, ValidationError
from nameko.exceptions import RemoteError
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from pymongo.errors import ConnectionFailure
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request, Response

from services.common import contract, errors, wire
from services.common.config import settings
from services.common.deps import RpcTimeout

log = logging.getLogger(__name__)

# exception names that mean "a database or the broker is unreachable", as a remote service
# reports them over RPC
UNREACHABLE = frozenset({
    "ServerSelectionTimeoutError", "AutoReconnect", "NetworkTimeout", "ConnectionFailure",
    "OperationalError", "ConnectionRefusedError", "ConnectionResetError", "ExecutionTimeout",
    "NotPrimaryError", "WaitQueueTimeoutError",
})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class HttpError(Exception):
    """An answer other than success, raised anywhere below an entrypoint: status, message and
    optionally the failing fields (``{"data.quantity": "Must be ..."}``)."""

    status = 400

    def __init__(self, message: str, fields: dict[str, str] | None = None,
                 status: int | None = None, allowed: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.allowed = allowed
        if status is not None:
            self.status = status


class Unavailable(HttpError):
    """A dependency (the broker, a database, a service) cannot be reached now: 503."""

    status = 503


def json_error(status: int, message: str, fields: dict[str, str] | None = None,
               headers: dict[str, str] | None = None,
               allowed: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    if allowed is not None:  # a refusal (403) names what the caller may do instead
        body["allowed"] = allowed
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", "Bearer")
    return Response(json.dumps(body, ensure_ascii=False), status=status,
                    mimetype="application/json", headers=all_headers)


def response_from_exception(exc: BaseException) -> Response:
    """The one mapping from what a route raised to what the client gets."""
    if isinstance(exc, HttpError):
        return json_error(exc.status, exc.message, exc.fields, allowed=exc.allowed)
    if isinstance(exc, errors.DomainError):
        # a service's refusal, raised in a route or by a service over RPC (it arrives as
        # itself: services.common.errors)
        statuses = {errors.NotFound: 404, errors.Conflict: 409, errors.Invalid: 400,
                    errors.NoAnswer: 504}
        status = next((s for kind, s in statuses.items() if isinstance(exc, kind)), 400)
        return json_error(status, exc.message, exc.fields)
    if isinstance(exc, wire.DecodeError):
        return json_error(400, f"body is not acceptable JSON: {exc.reason}")
    if isinstance(exc, RequestEntityTooLarge):
        return json_error(413, "the body is too large")
    if isinstance(exc, RpcTimeout):
        return json_error(504, str(exc))
    if isinstance(exc, ConnectionFailure):
        return json_error(503, "the database is unreachable; try again shortly")
    if isinstance(exc, OperationalError | socket.error | ConnectionError):
        return json_error(503, "the message broker is unreachable; try again shortly")
    if isinstance(exc, RemoteError) and exc.exc_type in UNREACHABLE:
        return json_error(503, "a service cannot reach its database or the broker; "
                               "try again shortly")
    if isinstance(exc, HTTPException) and exc.code and exc.code < 500:
        return json_error(exc.code, exc.description or exc.name)
    reference = uuid.uuid4().hex[:12]
    log.error("unexpected error answering a request (reference %s)", reference,
              exc_info=(type(exc), exc, exc.__traceback__))
    return json_error(500, f"internal error (reference {reference})")


class JsonWsgiApp(WsgiApp):
    """Nameko's WSGI app with JSON answers for unknown routes, methods and large bodies."""

    def __init__(self, server: WebServer, max_body_bytes: int):
        super().__init__(server)
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = RouteRequest(environ, shallow=True)
        request.max_content_length = self.max_body_bytes
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
        except RequestRedirect as exc:
            rv = json_error(exc.code, f"this resource is at {exc.new_url}",
                            headers={"Location": exc.new_url})
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            rv = json_error(405, f"{request.method} is not allowed on {request.path} "
                                 f"(allowed: {allowed})", headers={"Allow": allowed})
        except NotFound:
            rv = json_error(404, f"no such resource: {request.path}")
        except HTTPException as exc:
            rv = response_from_exception(exc)
        else:
            if (request.content_length or 0) > self.max_body_bytes:
                rv = json_error(413, f"the body is {request.content_length:,} bytes; at most "
                                     f"{self.max_body_bytes:,} are accepted")
            else:
                request.path_values = values
                rv = provider.handle_request(request)
        return rv(environ, start_response)


class JsonWebServer(WebServer):
    def get_wsgi_app(self) -> JsonWsgiApp:
        return JsonWsgiApp(self, settings(self.container.config).max_body_bytes)


SchemaSpec = type[Schema] | Schema | None


def _instance(schema: SchemaSpec) -> Schema | None:
    return schema() if isinstance(schema, type) else schema


class HttpEntrypoint(HttpRequestHandler):
    """A route. Bodies of POST/PUT must be JSON; errors are mapped by
    :func:`response_from_exception`. ``body`` and ``query`` are the schemas the route's JSON
    body and query string are loaded by (a class or an instance); a failure answers 400 with
    ``invalid`` as its message and every failing field named."""

    server = JsonWebServer()

    def __init__(  # noqa: PLR0913 - the route's declaration: each keyword is one fact of it
            self, method: str, url: str, expected_exceptions: Any = (),
            accepts: tuple[str, ...] = (), body: SchemaSpec = None,
            query: SchemaSpec = None, invalid: str = "invalid request",
            **kwargs: Any):
        # body types a route takes besides JSON (a spreadsheet upload: text/csv, XLSX)
        self.accepts = accepts
        self.body_schema, self.query_schema = _instance(body), _instance(query)
        self.invalid = invalid
        # errors that are answers, not bugs: nameko does not log them as failures
        if not isinstance(expected_exceptions, tuple):
            expected_exceptions = (expected_exceptions,)
        super().__init__(method, url,
                         expected_exceptions=(HttpError, errors.DomainError, wire.DecodeError,
                                              *expected_exceptions),
                         **kwargs)

    def handle_request(self, request: Request) -> Response:
        if (request.method in BODY_METHODS and _has_body(request) and not _is_json(request)
                and (request.mimetype or "") not in self.accepts):
            allowed = ", ".join(("application/json", *self.accepts))
            return json_error(415, f"the body must be one of: {allowed}")
        request.route = self
        return super().handle_request(request)

    def response_from_exception(self, exc: Exception) -> Response:
        return response_from_exception(exc)


class RouteRequest(Request):
    """A request as a route sees it: its body and query string loaded by the schemas the
    route declares (:class:`HttpEntrypoint`).

    Each is loaded when the route first reads it, not before the route runs: what a route
    checks first (the credential and what it may do, a path naming nothing) is answered
    first, so a caller without a valid token gets 401, not a 400 for its body."""

    route: HttpEntrypoint | None = None

    @cached_property
    def json_object(self) -> dict[str, Any]:
        """The body as sent (a JSON object, decoded within the limits); when the route
        declares a body schema, only once that schema has accepted it."""
        if self._body_schema is not None:
            self.body  # noqa: B018 - loading it is the check
        return self._decoded

    @cached_property
    def body(self) -> dict[str, Any]:
        """What the route's body schema loaded from the JSON object sent."""
        if self._body_schema is None:
            raise LookupError(f"{self.path}: the route declares no body schema")
        return self._load(self._body_schema, self._decoded)

    @cached_property
    def query(self) -> dict[str, Any]:
        """What the route's query schema loaded from the query string."""
        schema = self.route.query_schema if self.route is not None else None
        if schema is None:
            raise LookupError(f"{self.path}: the route declares no query schema")
        return self._load(schema, self.args.to_dict())

    @property
    def _body_schema(self) -> Schema | None:
        return self.route.body_schema if self.route is not None else None

    @cached_property
    def _decoded(self) -> dict[str, Any]:
        try:
            return json_body(self)
        except wire.DecodeError as exc:
            raise HttpError(f"body is not valid JSON: {exc.reason}") from None

    def _load(self, schema: Schema, values: Any) -> dict[str, Any]:
        try:
            return schema.load(values)
        except ValidationError as exc:
            invalid = self.route.invalid if self.route is not None else "invalid request"
            raise HttpError(invalid, contract.flatten_errors(exc.messages)) from None


def _has_body(request: Request) -> bool:
    if request.content_length:
        return True
    return request.headers.get("Transfer-Encoding", "").lower() == "chunked"


def _is_json(request: Request) -> bool:
    """JSON, or not said: a body declared as something else (a form, XML...) is refused. The
    server reports a body sent without a type as ``text/plain``, so that is read as JSON."""
    mimetype = request.mimetype or ""
    return mimetype in ("", "text/plain", "application/json") or mimetype.endswith("+json")


def json_body(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object, decoded within the limits, or :class:`HttpError`."""
    cfg_limit = request.max_content_length or wire.MAX_MESSAGE_BYTES
    body = wire.decode(request.get_data() or b"null", max_bytes=cfg_limit)
    if not isinstance(body, dict):
        raise HttpError("body must be a JSON object")
    return body


http = HttpEntrypoint.decorator


def routes_of(service: type) -> list[HttpEntrypoint]:
    """The routes a service class serves (its methods' HTTP entrypoints), by method name."""
    return [ep for name in sorted(dir(service))
            for ep in getattr(getattr(service, name), "nameko_entrypoints", ())
            if isinstance(ep, HttpEntrypoint)]
