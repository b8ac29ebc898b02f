"""Notifications' storage: recipients' contacts (personal data lives here) and messages."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING

from services.common.store import BaseStore, Tx


class NotificationsStore(BaseStore):
    collections = {
        "recipients": [],
        "messages": [[("need_id", ASCENDING)]],
    }

    def save_recipient(self, tx: Tx, recipient: dict[str, Any]) -> None:
        self.db.recipients.replace_one({"_id": recipient["_id"]}, recipient, upsert=True,
                                       session=tx.session)

    def add_message(self, tx: Tx, message: dict[str, Any]) -> bool:
        """At most one message per (cause, recipient): the id says which."""
        if self.db.messages.find_one({"_id": message["_id"]}, {"_id": 1}, session=tx.session):
            return False
        self.db.messages.insert_one(message, session=tx.session)
        return True

    def messages_for_need(self, need_id: str) -> list[dict[str, Any]]:
        return list(self.db.messages.find({"need_id": need_id}))
