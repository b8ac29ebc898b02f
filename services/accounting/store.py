"""Accounting's storage: the append-only ledger."""

from __future__ import annotations

from typing import Any

from pymongo import UpdateOne

from services.common.store import BaseStore, Tx


class AccountingStore(BaseStore):
    # reports read the whole ledger (see ``entries``): no index but the id, which every
    # entry written pays for once
    collections = {"ledger": []}
    # by category and by kind: nothing queries them, and each entry wrote an entry in both
    retired_indexes = {"ledger": ("category_1", "kind_1")}

    def append(self, tx: Tx, entry: dict[str, Any]) -> None:
        """Append an entry; its id is derived from its cause, so it is written once (an
        entry already in the ledger is left as it is). The entries of a transaction (of a
        whole batch) are written together as it commits, in one request."""
        if tx.staged("ledger", entry["_id"]):
            return  # the first entry with this cause stands, as it would in the ledger
        tx.stage("ledger", entry["_id"], UpdateOne(
            {"_id": entry["_id"]},
            {"$setOnInsert": {k: v for k, v in entry.items() if k != "_id"}}, upsert=True))

    def entries(self) -> list[dict[str, Any]]:
        # reports scan the whole ledger: they are off the hot path (DESIGN.md)
        return list(self.db.ledger.find({}))
