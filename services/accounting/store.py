"""Accounting's storage: the append-only ledger."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, UpdateOne

from services.common.store import BaseStore, Tx


class AccountingStore(BaseStore):
    collections = {"ledger": [[("category", ASCENDING)], [("kind", ASCENDING)]]}

    def append(self, tx: Tx, entry: dict[str, Any]) -> None:
        """Append an entry; its id is derived from its cause, so it is written once (an
        entry already in the ledger is left as it is). The entries of a transaction (of a
        whole batch) are written together as it commits, in one request."""
        entries = tx.shared.setdefault("ledger", {})
        entries.setdefault(entry["_id"], entry)

        def write() -> None:
            self.db.ledger.bulk_write(
                [UpdateOne({"_id": key}, {"$setOnInsert": {k: v for k, v in e.items()
                                                           if k != "_id"}}, upsert=True)
                 for key, e in entries.items()], ordered=True, session=tx.session)

        tx.before_commit("ledger", write)

    def entries(self) -> list[dict[str, Any]]:
        # reports scan the whole ledger: they are off the hot path (DESIGN.md)
        return list(self.db.ledger.find({}))
