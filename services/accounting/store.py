"""Accounting's storage: the append-only ledger."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING

from services.common.store import BaseStore, Tx


class AccountingStore(BaseStore):
    collections = {"ledger": [[("category", ASCENDING)], [("kind", ASCENDING)]]}

    def append(self, tx: Tx, entry: dict[str, Any]) -> bool:
        """Append an entry; its id is derived from its cause, so it is written once."""
        if self.db.ledger.find_one({"_id": entry["_id"]}, {"_id": 1}, session=tx.session):
            return False
        self.db.ledger.insert_one(entry, session=tx.session)
        return True

    def entries(self) -> list[dict[str, Any]]:
        # reports scan the whole ledger: they are off the hot path (DESIGN.md)
        return list(self.db.ledger.find({}))
