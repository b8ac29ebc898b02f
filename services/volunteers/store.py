"""Volunteers' storage: volunteers (with their contact), health checks, logged hours,
organisations (with their contacts and reporting state), training sessions and status
reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING

from services.common.store import BaseStore, Tx


class VolunteersStore(BaseStore):
    collections = {
        "volunteers": [[("home_community_id", ASCENDING)]],
        "health_checks": [[("volunteer_id", ASCENDING)]],
        "hours": [[("volunteer_id", ASCENDING)], [("status", ASCENDING)]],
        "organisations": [],
        "training": [],
        "status_reports": [[("organisation_id", ASCENDING)]],
        "deliveries": [],
        "programmes": [],
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

    def put(self, tx: Tx, collection: str, doc: dict[str, Any]) -> None:
        self.db[collection].replace_one({"_id": doc["_id"]}, doc, upsert=True,
                                        session=tx.session)

    def get(self, tx: Tx, collection: str, doc_id: str) -> dict[str, Any] | None:
        return self.db[collection].find_one({"_id": doc_id}, session=tx.session)

    def set_fields(self, tx: Tx, volunteer_id: str, values: dict[str, Any]) -> None:
        self.db.volunteers.update_one({"_id": volunteer_id}, {"$set": values},
                                      session=tx.session)

    def set_status(self, tx: Tx, hours_id: str, status: str, note: str | None,
                   at: datetime) -> None:
        # conditional on "pending": two coordinators deciding at once cannot both win
        result = self.db.hours.update_one(
            {"_id": hours_id, "status": "pending"},
            {"$set": {"status": status, "decided_at": at, "note": note}}, session=tx.session)
        if result.modified_count != 1:
            raise RuntimeError(f"hours {hours_id} were decided concurrently")

    def hours(self, status: str | None = None,
              volunteer_id: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if status:
            query["status"] = status
        if volunteer_id:
            query["volunteer_id"] = volunteer_id
        return list(self.db.hours.find(query))

    def volunteer_candidates(self, community_id: str | None) -> list[dict[str, Any]]:
        """Volunteers a list may show: by the home-community index for one community."""
        query = {"home_community_id": community_id} if community_id else {}
        return list(self.db.volunteers.find(query))

    def volunteer_scopes(self, volunteer_ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = self.db.volunteers.find({"_id": {"$in": volunteer_ids}},
                                       {"home_community_id": 1, "organisation_id": 1})
        return {r["_id"]: {"home_community_id": r.get("home_community_id"),
                           "organisation_id": r.get("organisation_id")} for r in rows}

    def hours_volunteers(self, hours_ids: list[str]) -> dict[str, str]:
        """Whose hours each is (hours id -> volunteer id), for those that exist."""
        rows = self.db.hours.find({"_id": {"$in": hours_ids}}, {"volunteer_id": 1})
        return {r["_id"]: r["volunteer_id"] for r in rows}

    def hours_entry(self, hours_id: str) -> dict[str, Any] | None:
        return self.db.hours.find_one({"_id": hours_id})

    def all(self, collection: str) -> list[dict[str, Any]]:
        return list(self.db[collection].find({}))

    def reports(self, organisation_id: str) -> list[dict[str, Any]]:
        rows = list(self.db.status_reports.find({"organisation_id": organisation_id}))
        return sorted(rows, key=lambda r: r["reported_at"])  # sorts are slow in the database

    def report_received(self, tx: Tx, organisation_id: str, at: datetime,
                        summary: dict[str, Any]) -> None:
        # reports are stamped by this service on arrival, so the latest is the last one
        self.db.organisations.update_one(
            {"_id": organisation_id},
            {"$set": {"last_report_at": at, "last_report": summary}}, session=tx.session)

    def mark_alerted(self, tx: Tx, organisation_id: str, due_at: datetime) -> bool:
        """Claim the alert for this due time: only one instance's transaction wins."""
        result = self.db.organisations.update_one(
            {"_id": organisation_id, "alerted_for": {"$ne": due_at}},
            {"$set": {"alerted_for": due_at}}, session=tx.session)
        return result.modified_count == 1
