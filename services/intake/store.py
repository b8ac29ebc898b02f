"""Intake's storage: the dedupe log (the ``processed`` markers), the outbox, and who sent
each accepted event (``received``)."""

from __future__ import annotations

from typing import Any

from pymongo import InsertOne

from services.common import contract
from services.common.store import BaseStore, Tx


class IntakeStore(BaseStore):
    collections: dict = {"received": []}

    def record_receipt(self, tx: Tx, event: contract.Event) -> None:
        """Who sent an accepted event: ``source`` is the publisher the broker authenticated
        (or the gateway's caller) when known, else what the envelope claims; both kept."""
        # a batch's receipts go in one request, as it commits
        tx.stage("received", event.event_id, InsertOne({
            "_id": event.event_id, "type": event.type,
            "source": event.publisher or event.source, "publisher": event.publisher,
            "claimed_source": event.source, "received_at": contract.now()}))

    def receipt(self, event_id: str) -> dict[str, Any] | None:
        return self.db.received.find_one({"_id": event_id})
