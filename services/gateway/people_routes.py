"""People and partner systems: sign-in and sessions, accounts (by an admin), API keys and
the audit log.

Mixed into ``GatewayService``. Passwords are argon2id hashes (argon2-cffi's defaults, the
RFC 9106 low-memory profile); a session token and an API key are shown once, when made, and
kept as digests. Failed sign-ins are counted per account and per address: past either limit
within the window, sign-in answers 429 until the window has passed, even with the right
password. Every request here that changes something is in the audit log, signing in (and
failing to) included.

An account may be made with an invitation instead of a first password: the account waits,
unable to sign in, while notifications sends a link (``/console#invite=<token>``) by e-mail
or SMS; the token is kept as a digest only, works once and for ``invitation_seconds``, and
accepting it sets the password and signs in. A new invitation voids the account's older ones.
"""

from __future__ import annotations

import functools
import re
import secrets
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool
from werkzeug.wrappers import Response

from services.common import contract, web
from services.common.config import settings
from services.common.deps import call
from services.common.logs import mask_email, mask_phone
from services.common.web import http
from services.gateway import policy, schemas
from services.gateway.http import (
    KEY_PREFIX,
    SESSION_PREFIX,
    address,
    allowed,
    bearer,
    digest,
    error,
    record,
    respond,
)
from services.notifications.settings import notify_settings

HASHER = PasswordHasher()
INVITATION_PREFIX = "ri_"
# what the audit log records as the path of an acceptance: never the token itself
ACCEPT_PATH = "/api/invitations/{token}"


@functools.cache
def _absent() -> str:
    """Checked against when the account does not exist, so that an unknown account takes as
    long to refuse as a wrong password."""
    return HASHER.hash(secrets.token_urlsafe(16))


def _password_ok(stored: str | None, given: str) -> bool:
    # hashing takes a few hundred milliseconds of CPU by design: in a real thread, so that
    # the gateway's other requests are not held up meanwhile
    try:
        return tpool.execute(HASHER.verify, stored or _absent(), given) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def hash_password(password: str) -> str:
    return tpool.execute(HASHER.hash, password)


def account_view(doc: dict[str, Any]) -> dict[str, Any]:
    """An account as answers show it: never its hash."""
    out = {"account_id": doc["_id"], "role": doc["role"]}
    for key in ("name", "area_id", "organisation_id", "created_at", "created_by",
                "password_changed_at", "invited_at", "activated_at", "disabled_at"):
        if doc.get(key) is not None:
            out[key] = doc[key]
    out["permissions"] = list(doc.get("permissions") or [])
    out["disabled"] = bool(doc.get("disabled"))
    out["invited"] = bool(doc.get("invited"))  # waits for its invitation to be accepted
    out["may"] = policy.for_account(doc, "").can_do()
    return out


def key_view(doc: dict[str, Any]) -> dict[str, Any]:
    """An API key as answers show it: never its secret (shown once, when it is made)."""
    return {"key_id": doc["_id"], "name": doc["name"], "scopes": doc["scopes"],
            "areas": doc.get("areas") or [], "organisation_id": doc.get("organisation_id"),
            "created_at": doc["created_at"], "created_by": doc.get("created_by"),
            "last_used_at": doc.get("last_used_at"), "revoked_at": doc.get("revoked_at"),
            "may": policy.for_key(doc).can_do()}


class PeopleRoutes:
    """``/api/session``, ``/api/me``, ``/api/accounts``, ``/api/keys``, ``/api/audit``."""

    # -- sign-in -------------------------------------------------------------------------
    @http("POST", "/api/session", body=schemas.SignInBody)
    def sign_in(self, request: Any) -> Response:
        data = request.body
        cfg = settings(self.config_)
        window = timedelta(seconds=cfg.signin_window_seconds)
        account_id = data["account_id"]
        keys = [f"account:{account_id}", f"address:{address(request)}"]
        # counted before the password is checked: attempts at the same time see each other
        attempts = self.store.count_attempt(keys, window)
        target = {"account_id": account_id}
        if (attempts[keys[0]] > cfg.signin_max_failures_account
                or attempts[keys[1]] > cfg.signin_max_failures_address):
            record(self, request, None, "session.create", 429, target=target)
            wait = int(cfg.signin_window_seconds)
            return error(429, "too many failed sign-ins for this account or from this "
                              f"address; try again in {wait // 60 or 1} minutes, or ask an "
                              "admin to reset the password",
                         headers={"Retry-After": str(wait)})
        account = self.store.account(account_id)
        stored = account.get("password_hash") if account else None
        if not _password_ok(stored, data["password"]) or account.get("disabled"):
            record(self, request, None, "session.create", 401, target=target)
            return error(401, "wrong account or password")
        self.store.attempt_succeeded(keys[0], keys[1])
        if HASHER.check_needs_rehash(stored):
            self.store.update_account(account_id, {
                "password_hash": hash_password(data["password"])})
        principal, answer = self._open_session(request, account)
        record(self, request, principal, "session.create", 201, target=target)
        return respond(201, answer, {"Cache-Control": "no-store"})

    def _open_session(self, request: Any, account: dict[str, Any]
                      ) -> tuple[policy.Principal, dict[str, Any]]:
        """A new session for ``account``: its principal, and the answer that carries the
        token (shown this once: it is kept as a digest)."""
        cfg = settings(self.config_)
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        expires_at = contract.now() + timedelta(seconds=cfg.session_seconds)
        self.store.add_session(digest(token), account["_id"], expires_at, address(request))
        principal = policy.for_account(account, f"session:{digest(token)[:12]}")
        return principal, {"token": token, "expires_at": expires_at,
                           "account": account_view(account)}

    @http("DELETE", "/api/session")
    @allowed("session.read")
    def sign_out(self, request: Any) -> Response:
        token = bearer(request)
        if not token.startswith(SESSION_PREFIX):
            return error(400, "only a session is signed out (revoke an API key with "
                              "DELETE /api/keys/<key_id>)")
        self.store.end_session(digest(token))
        return Response(status=204)

    @http("GET", "/api/me")
    @allowed("session.read")
    def whoami(self, request: Any) -> Response:
        p = request.principal
        return respond(200, {"id": p.id, "kind": p.kind, "role": p.role,
                             "areas": list(p.areas) if p.areas is not None else None,
                             "organisation_id": p.organisation_id, "may": p.can_do()})

    # -- accounts ------------------------------------------------------------------------
    @http("POST", "/api/accounts", body=schemas.AccountBody)
    @allowed("accounts.manage")
    def create_account(self, request: Any) -> Response:
        data = request.body
        tree = self.reference.areas
        problems = policy.check_account(data["role"], data.get("area_id"),
                                        data.get("organisation_id"), tree, tree.tier)
        if problems:
            return error(400, "invalid request", problems)
        now = contract.now()
        invite = data.pop("invite", None)
        doc = {"_id": data["account_id"], "role": data["role"],
               **{k: v for k, v in data.items() if k not in ("account_id", "role", "password")},
               "created_at": now, "created_by": request.principal.id, "disabled": False}
        if invite:
            # where its invitations go (kept for a new one): it cannot sign in until accepted
            doc.update({"invited": True, "invite": invite, "invited_at": now})
        else:
            doc.update({"password_hash": hash_password(data["password"]),
                        "password_changed_at": now})
        if not self.store.add_account(doc):
            return error(409, f"account {data['account_id']!r} exists")
        answer = account_view(doc)
        if invite:
            answer["invitation"] = self._invite(request, doc)
        return respond(201, answer)

    @http("POST", "/api/accounts/<string:account_id>/invitation")
    @allowed("accounts.manage")
    def reinvite(self, request: Any, account_id: str) -> Response:
        """Send an invited account a new invitation (lost, expired): the older ones are
        void."""
        account = self.store.account(account_id)
        if account is None:
            return error(404, f"no account {account_id!r}")
        if not account.get("invited") or not account.get("invite") or account.get("disabled"):
            return error(409, f"account {account_id!r} waits for no invitation (it has a "
                              "password, or is disabled): reset its password instead")
        self.store.update_account(account_id, {"invited_at": contract.now()})
        return respond(201, {**account_view(account), "invitation": self._invite(request,
                                                                                 account)})

    def _invite(self, request: Any, account: dict[str, Any]) -> dict[str, Any]:
        """A new invitation for ``account`` (its older ones void), sent by notifications.
        The token goes into the link only; the gateway keeps its digest."""
        now = contract.now()
        token = INVITATION_PREFIX + secrets.token_urlsafe(32)
        invitation_id = "i" + secrets.token_hex(8)
        expires_at = now + timedelta(seconds=settings(self.config_).invitation_seconds)
        voided = self.store.add_invitation({
            "_id": digest(token), "invitation_id": invitation_id,
            "account_id": account["_id"], "created_at": now,
            "created_by": request.principal.id, "expires_at": expires_at,
            "used_at": None, "voided_at": None})
        request.audit_target = {"account_id": account["_id"], "invitation_id": invitation_id,
                                "invitations_voided": voided or None}
        invite = account["invite"]
        contact = {k: invite[k] for k in ("email", "phone") if invite.get(k)}
        if account.get("name"):
            contact["name"] = account["name"]
        link = f"{notify_settings(self.config_).public_url.rstrip('/')}/console#invite={token}"
        message = call(self.notifications, "send_invitation", invitation_id, contact,
                       invite.get("language") or "zh-CN", link, account["role"],
                       account.get("area_id"))
        return {"invitation_id": invitation_id, "expires_at": expires_at,
                "channel": "email" if invite.get("email") else "sms",
                "sent_to": mask_email(invite["email"]) if invite.get("email")
                else mask_phone(invite["phone"]),
                "notification_id": message["notification_id"]}

    @http("POST", "/api/invitations/<string:token>", body=schemas.AcceptBody)
    def accept_invitation(self, request: Any, token: str) -> Response:
        """The invitee chooses their password: the account is active and signed in (201,
        a session as sign-in answers). A token works once, until it expires."""
        now = contract.now()
        key = digest(token) if len(token) <= 256 else ""
        found = self.store.invitation(key) if key else None
        account = self.store.account(found["account_id"]) if found else None
        target = {"account_id": found["account_id"], "invitation_id": found["invitation_id"]} \
            if found else None
        refusal = policy.invitation_refusal(found, account, now)
        if refusal is None:
            password_hash = hash_password(request.body["password"])
            if not self.store.use_invitation(key, now):  # accepted meanwhile, or voided
                refusal = 410, "this invitation was used already (or replaced)"
        if refusal is not None:
            record(self, request, None, "invitations.accept", refusal[0], target=target,
                   path=ACCEPT_PATH)
            return error(*refusal)
        self.store.update_account(account["_id"], {
            "password_hash": password_hash, "password_changed_at": now, "invited": False,
            "activated_at": now})
        self.store.clear_failures(f"account:{account['_id']}")
        account = self.store.account(account["_id"])
        principal, answer = self._open_session(request, account)
        record(self, request, principal, "invitations.accept", 201, target=target,
               path=ACCEPT_PATH)
        return respond(201, answer, {"Cache-Control": "no-store"})

    @http("GET", "/api/accounts")
    @allowed("accounts.manage")
    def list_accounts(self, request: Any) -> Response:
        rows = sorted(self.store.accounts(), key=lambda d: d["_id"])
        return respond(200, {"accounts": [account_view(d) for d in rows]})

    @http("POST", "/api/accounts/<string:account_id>/password", body=schemas.PasswordBody)
    @allowed("accounts.manage")
    def reset_password(self, request: Any, account_id: str) -> Response:
        """An admin sets a new password; the account's sessions end and its failed
        sign-ins are forgotten."""
        data = request.body
        if self.store.account(account_id) is None:  # before the (deliberately slow) hash
            return error(404, f"no account {account_id!r}")
        now = contract.now()
        # a password set by an admin supersedes an invitation that was not accepted
        self.store.update_account(account_id, {"password_hash": hash_password(data["password"]),
                                               "password_changed_at": now, "invited": False})
        self.store.void_invitations(account_id, now)
        ended = self.store.end_sessions_of(account_id)
        self.store.clear_failures(f"account:{account_id}")
        return respond(200, {**account_view(self.store.account(account_id)),
                             "sessions_ended": ended})

    @http("DELETE", "/api/accounts/<string:account_id>")
    @allowed("accounts.manage")
    def disable_account(self, request: Any, account_id: str) -> Response:
        """Disable an account (kept, for the audit log to name): it cannot sign in and its
        sessions end."""
        if not self.store.update_account(account_id, {"disabled": True,
                                                      "disabled_at": contract.now()}):
            return error(404, f"no account {account_id!r}")
        self.store.end_sessions_of(account_id)
        return Response(status=204)

    # -- API keys ------------------------------------------------------------------------
    @http("POST", "/api/keys", body=schemas.KeyBody)
    @allowed("accounts.manage")
    def create_key(self, request: Any) -> Response:
        data = request.body
        unknown = [a for a in data["areas"] if a not in self.reference.areas]
        if unknown:
            return error(400, "invalid request", {"areas": f"unknown areas: {unknown}"})
        key_id = "k" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        doc = {"_id": key_id, "name": data["name"], "scopes": sorted(set(data["scopes"])),
               "areas": sorted(set(data["areas"])),
               "organisation_id": data.get("organisation_id"), "digest": digest(secret),
               "created_at": contract.now(), "created_by": request.principal.id,
               "last_used_at": None, "revoked_at": None}
        self.store.add_key(doc)
        # the only time the key is seen: it is kept as a digest
        return respond(201, {**key_view(doc), "token": f"{KEY_PREFIX}{key_id}_{secret}"},
                       {"Cache-Control": "no-store"})

    @http("GET", "/api/keys")
    @allowed("accounts.manage")
    def list_keys(self, request: Any) -> Response:
        rows = sorted(self.store.keys(), key=lambda d: d["created_at"])
        return respond(200, {"keys": [key_view(d) for d in rows]})

    @http("DELETE", "/api/keys/<string:key_id>")
    @allowed("accounts.manage")
    def revoke_key(self, request: Any, key_id: str) -> Response:
        if self.store.key(key_id) is None:
            return error(404, f"no API key {key_id!r}")
        self.store.revoke_key(key_id)  # revoking twice is harmless
        return Response(status=204)

    # -- the audit log -------------------------------------------------------------------
    # -- on-call actions on the broker (relief-ops asks first) -----------------------------
    @http("POST", "/api/on-call/dead-letters/<string:queue>/replay", body=schemas.ReplayBody)
    @allowed("deadletters.replay")
    def allow_replay(self, request: Any, queue: str) -> Response:
        """Allow and record a replay of dead letters (``relief-ops dlq replay`` acts on the
        broker only once this answered 201): who, which queue, which messages."""
        messages = request.body.get("messages")
        request.audit_target = {"messages": len(messages) if messages else "all"}
        return respond(201, {"queue": _queue_name(queue), "messages": messages or "all",
                             "recorded": True})

    @http("POST", "/api/on-call/dead-letters/<string:queue>/purge")
    @allowed("deadletters.purge")
    def allow_purge(self, request: Any, queue: str) -> Response:
        """Allow and record a purge of a dead-letter queue (``relief-ops dlq purge``)."""
        return respond(201, {"queue": _queue_name(queue), "recorded": True})

    @http("GET", "/api/audit", query=schemas.AuditQuery)
    @allowed("audit.read")
    def get_audit(self, request: Any) -> Response:
        """The latest entries (``limit``), oldest first; ``since`` and ``actor`` filter."""
        query = request.query
        rows = self.store.audit_entries(query.get("since"), query.get("actor"),
                                        query["limit"])
        return respond(200, {"entries": [{"entry_id": r.pop("_id"), **r} for r in rows]})


def _queue_name(queue: str) -> str:
    if not re.match(schemas.QUEUE_NAME, queue):
        raise web.HttpError("invalid request", {"queue": "not a queue name (a-z, 0-9, . _ : -, "
                                                "at most 255)"})
    return queue


def openapi_paths() -> dict[str, Any]:
    """These routes in words for ``docs/http.openapi.yaml`` (their parameters and bodies come
    from the routes' declarations)."""
    from services.common import docs

    account = docs.record("account_id", "role", "permissions", "disabled", "may")
    key = docs.record("key_id", "name", "scopes", "areas", "may")
    public: list[dict[str, Any]] = []
    return {
        "/api/session": {
            "post": {"summary": "Sign in with an account and its password: a session token "
                                "(Authorization: Bearer rs_...) that expires",
                     "security": public,
                     "responses": {
                         "201": docs.answer("signed in: the token (shown once), expires_at, "
                                            "the account",
                                            docs.record("token", "expires_at", "account")),
                         "401": docs.failure("wrong account or password (or the account is "
                                             "disabled)"),
                         "429": {**docs.failure("too many failed sign-ins for the account or "
                                                "from the address within the window"),
                                 "headers": {"Retry-After": {
                                     "description": "seconds",
                                     "schema": {"type": "string"}}}}}},
            "delete": {"summary": "Sign out: the session ends",
                       "responses": {"204": docs.answer("signed out"),
                                     "400": docs.failure("the credential is not a session")}}},
        "/api/me": {"get": {
            "summary": "Who the credential is: role, areas, organisation, what it may do",
            "responses": {"200": docs.answer("the principal",
                                             docs.record("id", "kind", "role", "may"))}}},
        "/api/accounts": {
            "post": {"summary": "Create an account (admin): role, the area a coordinator "
                                "coordinates, the organisation of an organisation account, "
                                "permissions (replay), and a first password or an invitation "
                                "(invite: an email or a phone, a language) sent by e-mail or "
                                "SMS with a link to choose the password (valid 72 h)",
                     "responses": {"201": docs.answer("created", account),
                                   "409": docs.failure("the account id is taken")}},
            "get": {"summary": "Accounts (admin), without their password hashes",
                    "responses": {"200": docs.answer("accounts",
                                                     docs.listing("accounts", account))}}},
        "/api/accounts/{account_id}/invitation": {"post": {
            "summary": "Send an invited account a new invitation (admin): a new token by "
                       "e-mail or SMS, the older ones void",
            "responses": {"201": docs.answer("sent: the account and the invitation (its id, "
                                             "expiry, channel, masked address; never the "
                                             "token)", account),
                          "404": docs.failure("unknown account"),
                          "409": docs.failure("the account has a password or is disabled")}}},
        "/api/invitations/{token}": {"post": {
            "summary": "Accept an invitation: the invitee chooses their password (the same "
                       "rules as accounts'); the account is active and signed in. The token "
                       "(from the link /console#invite=<token>) works once",
            "security": public,
            "responses": {
                "201": docs.answer("accepted and signed in: the session token (shown once), "
                                   "expires_at, the account",
                                   docs.record("token", "expires_at", "account")),
                "404": docs.failure("no such invitation"),
                "410": docs.failure("the invitation was used, replaced by a newer one, "
                                    "expired, or its account disabled")}}},
        "/api/accounts/{account_id}/password": {"post": {
            "summary": "Reset an account's password (admin): its sessions end",
            "responses": {"200": docs.answer("reset", account),
                          "404": docs.failure("unknown account")}}},
        "/api/accounts/{account_id}": {"delete": {
            "summary": "Disable an account (admin): no sign-in, its sessions end; kept for "
                       "the audit log",
            "responses": {"204": docs.answer("disabled"),
                          "404": docs.failure("unknown account")}}},
        "/api/keys": {
            "post": {"summary": "Make an API key for a partner system or script (admin): "
                                "scopes (actions, or the event types it posts), areas, "
                                "organisation. The token is shown in this answer only",
                     "responses": {"201": docs.answer("made: the token (rk_..., shown once)",
                                                      {"allOf": [key, docs.record("token")]})}},
            "get": {"summary": "API keys (admin): scopes, areas, last used, revoked; never "
                               "the secret",
                    "responses": {"200": docs.answer("keys", docs.listing("keys", key))}}},
        "/api/keys/{key_id}": {"delete": {
            "summary": "Revoke an API key (admin); again is harmless",
            "responses": {"204": docs.answer("revoked"),
                          "404": docs.failure("unknown key")}}},
        "/api/on-call/dead-letters/{queue}/replay": {"post": {
            "summary": "Allow and record a replay of dead letters (on-call with the replay "
                       "permission, admin): relief-ops asks before it replays",
            "responses": {"201": docs.answer("allowed and recorded",
                                             docs.record("queue", "messages", "recorded")),
                          "400": docs.failure("not a queue name, or a bad list of messages")}}},
        "/api/on-call/dead-letters/{queue}/purge": {"post": {
            "summary": "Allow and record a purge of a dead-letter queue (on-call with the "
                       "purge permission, admin): relief-ops asks before it purges",
            "responses": {"201": docs.answer("allowed and recorded",
                                             docs.record("queue", "recorded")),
                          "400": docs.failure("not a queue name")}}},
        "/api/audit": {"get": {
            "summary": "The audit log (admin): every write through the gateway, every "
                       "sign-in, account, key and on-call action: who, with which "
                       "credential, what, when, from where, how it ended. Append-only",
            "responses": {"200": docs.answer("entries, oldest first", docs.listing(
                "entries", docs.record("entry_id", "at", "actor", "action", "status")))}}},
    }
