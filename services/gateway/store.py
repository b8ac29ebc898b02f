"""The gateway's storage: accounts, sessions, API keys, sign-in attempts, the audit log, and
the dashboard's history of key figures.

Secrets are never stored: passwords as argon2 hashes, session tokens and API key secrets as
SHA-256 digests (they are random and long, so a fast digest is enough to make a stolen
database useless for signing in). The audit log is append-only: this class inserts into it
and reads it, and has no way to change or remove an entry.

``history`` holds one document per UTC hour (``_id`` ``"2026-12-02T09"``) with that hour's
minute samples inside (``samples.<MM>``): a sample is one ``update_one`` by ``_id``, the last
24 hours are read by their ids (no sort, no range over samples: the local database server
scans a collection for those), and documents older than a day are deleted when a new hour
begins, so the collection never holds more than about 25 documents."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from services.common import contract
from services.common.store import BaseStore

KEEP_HOURS = 24


def hour_id(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H")


class GatewayStore(BaseStore):
    collections = {"api_keys": [], "history": [], "accounts": [],
                   "sessions": [[("account_id", ASCENDING)]],
                   "invitations": [[("account_id", ASCENDING)]],
                   "signin_attempts": [], "audit": [[("at", ASCENDING)]],
                   "imports": []}

    def ping(self) -> bool:
        self.db.command("ping")
        return True

    def record_sample(self, at: datetime, figures: dict[str, Any]) -> None:
        """The figures of minute ``at`` (UTC); a second sample in the same minute (another
        gateway replica) replaces the first."""
        result = self.db.history.update_one(
            {"_id": hour_id(at)}, {"$set": {f"samples.{at:%M}": figures}}, upsert=True)
        if result.upserted_id is not None:  # a new hour: forget what is older than a day
            self.db.history.delete_many(
                {"_id": {"$lt": hour_id(at - timedelta(hours=KEEP_HOURS + 1))}})

    def history(self, now: datetime, hours: int = KEEP_HOURS) -> list[dict[str, Any]]:
        """Minute samples of the last ``hours`` hours up to ``now``, oldest first:
        ``{"at": datetime, **figures}``."""
        ids = [hour_id(now - timedelta(hours=h)) for h in range(hours - 1, -1, -1)]
        docs = {d["_id"]: d for d in self.db.history.find({"_id": {"$in": ids}})}
        first = now - timedelta(hours=hours)
        out = []
        for hour in ids:
            for minute, figures in sorted((docs.get(hour) or {}).get("samples", {}).items()):
                at = datetime.strptime(f"{hour}:{minute}+0000", "%Y-%m-%dT%H:%M%z")
                if first < at <= now:
                    out.append({"at": at, **figures})
        return out

    # -- accounts ------------------------------------------------------------------------
    def add_account(self, doc: dict[str, Any]) -> bool:
        """Insert a new account; False when the id is taken."""
        try:
            self.db.accounts.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    def account(self, account_id: str) -> dict[str, Any] | None:
        return self.db.accounts.find_one({"_id": account_id})

    def accounts(self) -> list[dict[str, Any]]:
        return list(self.db.accounts.find({}))

    def update_account(self, account_id: str, values: dict[str, Any]) -> bool:
        return self.db.accounts.update_one({"_id": account_id},
                                           {"$set": values}).matched_count == 1

    # -- sessions ------------------------------------------------------------------------
    def add_session(self, digest: str, account_id: str, expires_at: datetime,
                    address: str) -> None:
        self.db.sessions.insert_one({"_id": digest, "account_id": account_id,
                                     "created_at": contract.now(), "expires_at": expires_at,
                                     "address": address})

    def session(self, digest: str) -> dict[str, Any] | None:
        return self.db.sessions.find_one({"_id": digest})

    def end_session(self, digest: str) -> None:
        self.db.sessions.delete_one({"_id": digest})

    def end_sessions_of(self, account_id: str) -> int:
        return self.db.sessions.delete_many({"account_id": account_id}).deleted_count

    # -- invitations ---------------------------------------------------------------------
    def add_invitation(self, doc: dict[str, Any]) -> int:
        """Store a new invitation (``_id``: its token's digest) and void the account's
        earlier ones that are still open; returns how many were voided."""
        voided = self.void_invitations(doc["account_id"], doc["created_at"])
        self.db.invitations.insert_one(doc)
        return voided

    def void_invitations(self, account_id: str, at: datetime) -> int:
        return self.db.invitations.update_many(
            {"account_id": account_id, "used_at": None, "voided_at": None},
            {"$set": {"voided_at": at}}).modified_count

    def invitation(self, digest: str) -> dict[str, Any] | None:
        return self.db.invitations.find_one({"_id": digest})

    def use_invitation(self, digest: str, now: datetime) -> bool:
        """Mark an open invitation used, atomically: of two acceptances at once, one wins."""
        return self.db.invitations.update_one(
            {"_id": digest, "used_at": None, "voided_at": None, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now}}).modified_count == 1

    # -- API keys ------------------------------------------------------------------------
    def add_key(self, doc: dict[str, Any]) -> None:
        self.db.api_keys.insert_one(doc)

    def key(self, key_id: str) -> dict[str, Any] | None:
        return self.db.api_keys.find_one({"_id": key_id})

    def keys(self) -> list[dict[str, Any]]:
        return list(self.db.api_keys.find({}))

    def revoke_key(self, key_id: str) -> bool:
        result = self.db.api_keys.update_one({"_id": key_id, "revoked_at": None},
                                             {"$set": {"revoked_at": contract.now()}})
        return result.modified_count == 1

    def key_used(self, key_id: str, at: datetime) -> None:
        self.db.api_keys.update_one({"_id": key_id}, {"$set": {"last_used_at": at}})

    # -- sign-in attempts ----------------------------------------------------------------
    def count_attempt(self, keys: list[str], window: timedelta) -> dict[str, int]:
        """Count one sign-in attempt per key (``account:<id>``, ``address:<ip>``) before its
        password is checked, atomically, and return the counts within the window with it:
        attempts made at the same moment each see the others (none slips under the limit).
        A success then takes its attempt back (:meth:`attempt_succeeded`)."""
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        now = contract.now()
        out = {}
        for key in keys:
            # a window that passed starts again (a conditional reset: of two attempts at
            # that moment, the second finds the window started and counts in it)
            self.db.signin_attempts.update_one(
                {"_id": key, "since": {"$lte": now - window}}, {"$set": {"n": 0, "since": now}})
            row = None
            for _ in range(2):  # two first attempts at once: one inserts, the other counts
                try:
                    row = self.db.signin_attempts.find_one_and_update(
                        {"_id": key}, {"$inc": {"n": 1}, "$setOnInsert": {"since": now}},
                        upsert=True, return_document=ReturnDocument.AFTER)
                    break
                except DuplicateKeyError:
                    continue
            out[key] = row["n"] if row else 1
        return out

    def clear_failures(self, key: str) -> None:
        self.db.signin_attempts.delete_one({"_id": key})

    def attempt_succeeded(self, account_key: str, address_key: str) -> None:
        """A right password: the account's failures are forgotten, and the address's count
        loses this attempt (many people signing in from one address are not failures)."""
        self.db.signin_attempts.delete_one({"_id": account_key})
        self.db.signin_attempts.update_one({"_id": address_key, "n": {"$gt": 0}},
                                           {"$inc": {"n": -1}})

    # -- the audit log (append-only) -----------------------------------------------------
    def audit(self, entry: dict[str, Any]) -> None:
        at = contract.now()
        # ids sort by time, so the log reads in order without relying on a clock per field
        self.db.audit.insert_one({"_id": f"{at.strftime('%Y%m%dT%H%M%S%f')}-"
                                         f"{secrets.token_hex(4)}", "at": at, **entry})

    def audit_entries(self, since: datetime | None, actor: str | None,
                      limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if since:
            query["at"] = {"$gte": since}
        if actor:
            query["actor"] = actor
        rows = list(self.db.audit.find(query))
        rows.sort(key=lambda r: r["_id"])  # in memory: sorts are slow in the local database
        return rows[-limit:]

    # -- imports in progress ---------------------------------------------------------------
    def import_started(self, import_id: str, doc: dict[str, Any]) -> None:
        """An import begins (again, when the same file is uploaded again): its progress."""
        now = contract.now()
        self.db.imports.replace_one({"_id": import_id}, {
            **doc, "state": "running", "done": 0, "imported": 0, "duplicates": 0,
            "started_at": now, "updated_at": now}, upsert=True)

    def import_progress(self, import_id: str, values: dict[str, Any]) -> None:
        self.db.imports.update_one({"_id": import_id},
                                   {"$set": {**values, "updated_at": contract.now()}})

    def import_state(self, import_id: str) -> dict[str, Any] | None:
        return self.db.imports.find_one({"_id": import_id})
