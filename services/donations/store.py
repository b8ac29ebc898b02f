"""Donations' storage: donations, lots and stock movements."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING

from services.common.store import BaseStore, Tx


class StockInconsistent(ValueError):
    """An allocation names a lot that does not hold the quantity (needs a person to look)."""


class DonationsStore(BaseStore):
    collections = {
        "donations": [],
        "lots": [[("category", ASCENDING)]],
        "movements": [[("lot_id", ASCENDING)]],
    }

    def insert_donation(self, tx: Tx, donation: dict[str, Any], lot: dict[str, Any]) -> bool:
        if self.db.donations.find_one({"_id": donation["_id"]}, {"_id": 1}, session=tx.session):
            return False
        self.db.donations.insert_one(donation, session=tx.session)
        self.db.lots.insert_one(lot, session=tx.session)
        return True

    def take(self, tx: Tx, lot_id: str, milli: int) -> dict[str, Any]:
        result = self.db.lots.update_one(
            {"_id": lot_id, "available": {"$gte": milli}},
            {"$inc": {"available": -milli, "allocated": milli}},
            session=tx.session,
        )
        if result.modified_count != 1:
            raise StockInconsistent(f"lot {lot_id} does not hold {milli} milli-units")
        return self.db.lots.find_one({"_id": lot_id}, session=tx.session)

    def record_movement(self, tx: Tx, movement: dict[str, Any]) -> None:
        self.db.movements.insert_one(movement, session=tx.session)

    def lots(self, category: str | None = None) -> list[dict[str, Any]]:
        query = {"category": category} if category else {}
        return list(self.db.lots.find(query))
