"""Volunteers' storage: volunteers (with their contact), health checks and logged hours."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING

from services.common.store import BaseStore, Tx


class VolunteersStore(BaseStore):
    collections = {
        "volunteers": [[("home_community_id", ASCENDING)]],
        "health_checks": [[("volunteer_id", ASCENDING)]],
        "hours": [[("volunteer_id", ASCENDING)]],
    }

    def upsert_volunteer(self, tx: Tx, volunteer: dict[str, Any]) -> bool:
        """Returns True when the volunteer is new."""
        result = self.db.volunteers.update_one(
            {"_id": volunteer["_id"]}, {"$set": volunteer}, upsert=True, session=tx.session)
        return result.upserted_id is not None

    def add(self, tx: Tx, collection: str, doc: dict[str, Any]) -> bool:
        if self.db[collection].find_one({"_id": doc["_id"]}, {"_id": 1}, session=tx.session):
            return False
        self.db[collection].insert_one(doc, session=tx.session)
        return True

    def set_fields(self, tx: Tx, volunteer_id: str, values: dict[str, Any]) -> None:
        self.db.volunteers.update_one({"_id": volunteer_id}, {"$set": values},
                                      session=tx.session)
