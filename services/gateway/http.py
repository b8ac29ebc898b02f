"""Helpers for the gateway's HTTP entrypoints: JSON responses, errors, who is asking and
whether they may.

Route groups live in their own modules (mixins of ``GatewayService``) and share these. Each
route says the action it is (``@allowed("needs.post")``); the decorator turns the bearer
credential into a :class:`~services.gateway.policy.Principal` (401 when there is none),
refuses an action the principal's role or scope lacks (403, naming what it may do), and
writes every write request to the audit log, refused or not. A route that touches an area
or an organisation checks it with :func:`authorise` once it knows which."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import date, datetime
from functools import wraps
from typing import Any

from werkzeug.wrappers import Response

from services.common import contract, errors, web, wire
from services.common.config import settings
from services.common.deps import call
from services.gateway import policy
from services.gateway.policy import Principal

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_PREFIX, KEY_PREFIX = "rs_", "rk_"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def respond(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, default=_default, ensure_ascii=False), status=status,
                    mimetype="application/json", headers=headers)


error = web.json_error  # error(status, message, fields=None): a JSON error answer


def digest(secret: str) -> str:
    """How a random token is kept: its SHA-256 (bytes as sent: any header text is fine)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def bearer(request: Any) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def token_ok(config: dict[str, Any], request: Any) -> bool:
    """Whether the request carries the operator token."""
    expected = settings(config).admin_token
    token = bearer(request)
    # compared as bytes: a token with characters outside ASCII is simply wrong, not an error
    return bool(expected and token and hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"), expected.encode("utf-8")))


def principal_of(service: Any, request: Any) -> Principal | None:
    """Who the bearer credential names: the operator token, a live session of an enabled
    account, or an API key that is not revoked; None for anything else."""
    if token_ok(service.config_, request):
        return policy.operator()
    token = bearer(request)
    if len(token) > 256:
        return None
    if token.startswith(SESSION_PREFIX):
        session = service.store.session(digest(token))
        if session is None or session["expires_at"] <= contract.now():
            return None
        account = service.store.account(session["account_id"])
        if account is None or account.get("disabled"):
            return None
        return policy.for_account(account, credential=f"session:{session['_id'][:12]}")
    if token.startswith(KEY_PREFIX):
        key_id, _, secret = token[len(KEY_PREFIX):].partition("_")
        key = service.store.key(key_id) if key_id and secret else None
        if key is None or key.get("revoked_at") or not hmac.compare_digest(
                key["digest"], digest(secret)):
            return None
        service.store.key_used(key_id, contract.now())
        return policy.for_key(key)
    return None


def forbidden(exc: policy.Forbidden) -> web.HttpError:
    return web.HttpError(exc.message, status=403, allowed=exc.allowed)


def authorise(service: Any, request: Any, action: str, *, area: str | None = None,
              organisation: str | None = None, what: str | None = None) -> None:
    """Raise a 403 unless the request's principal may do ``action`` in ``area`` for
    ``organisation`` (the route knows which once it has read the body or the record)."""
    try:
        policy.authorise(request.principal, action, service.reference.areas, area=area,
                         organisation=organisation, what=what)
    except policy.Forbidden as exc:
        raise forbidden(exc) from None


def address(request: Any) -> str:
    return str(request.remote_addr or "unknown")


def record(service: Any, request: Any, principal: Principal | None, action: str,
           status: int, **detail: Any) -> None:
    """One audit entry: who (and with which credential), what, from where, and how it
    ended. Never the body (personal data stays out of the log)."""
    entry = {"actor": principal.id if principal else "anonymous",
             "kind": principal.kind if principal else None,
             "role": principal.role if principal else None,
             "credential": principal.credential if principal else None,
             "action": action, "method": request.method, "path": request.path[:512],
             "status": status, "address": address(request)}
    entry.update({k: v for k, v in detail.items() if v is not None})
    try:
        service.store.audit(entry)
    except Exception:  # noqa: BLE001 - the answer stands; the gap is logged loudly
        log.exception("could not write an audit entry", extra={"action": action})


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, web.HttpError | errors.DomainError | wire.DecodeError):
        return web.response_from_exception(exc).status_code
    return 500


def allowed(action: str) -> Any:
    """Require a credential whose principal may do ``action``; audit every write."""

    def decorate(handler: Any) -> Any:
        @wraps(handler)
        def wrapper(self: Any, request: Any, *args: Any, **kwargs: Any) -> Response:
            principal = principal_of(self, request)
            audited = request.method in WRITE_METHODS
            if principal is None:
                if audited:
                    record(self, request, None, action, 401)
                return error(401, "a valid bearer token is required (the operator token, a "
                                  "session from POST /api/session, or an API key)")
            request.principal = principal
            status = 500
            try:
                try:
                    # the role may do this at all; whose record and which area it touches
                    # the route checks once it has read them (``authorise`` below)
                    policy.authorise(principal, action, organisation=principal.organisation_id)
                except policy.Forbidden as exc:
                    raise forbidden(exc) from None
                response = handler(self, request, *args, **kwargs)
                status = response.status_code
                return response
            except BaseException as exc:
                status = _status_of(exc)
                raise
            finally:
                if audited:
                    # what the write was about: its path's ids, and what the route adds
                    target = {**(getattr(request, "path_values", None) or {}),
                              **(getattr(request, "audit_target", None) or {})}
                    record(self, request, principal, action, status, target=target or None)

        return wrapper

    return decorate


def submit(intake: Any, envelope: dict[str, Any], caller: str, id_field: str,
           value: str) -> dict[str, Any]:
    """Hand an event to intake under the event id derived from ``value`` (its ``id_field``):
    the same again is a harmless duplicate; other content under that id is refused with a
    409 naming the field (the first stands)."""
    try:
        return call(intake, "submit", envelope, caller)
    except errors.Conflict:
        raise errors.Conflict(f"{id_field} {value!r} was posted before with other content; "
                              "the first stands", {id_field: "already used"}) from None


def volunteer_scopes(volunteers: Any, volunteer_ids: list[str]) -> dict[str, Any]:
    """Each volunteer's home community and organisation (volunteers' ``volunteer_scopes``),
    asked 1,000 at a time: what an area or an organisation is checked against."""
    out: dict[str, Any] = {}
    for start in range(0, len(volunteer_ids), 1000):
        out.update(call(volunteers, "volunteer_scopes", volunteer_ids[start:start + 1000]))
    return out
