"""Intake's storage: the dedupe log (the ``processed`` markers), which also says who sent
each accepted event, and the outbox."""

from __future__ import annotations

from typing import Any

from services.common import contract
from services.common.store import BaseStore


class IntakeStore(BaseStore):
    collections: dict = {}

    def marker(self, key: str, event: contract.Event | None) -> dict[str, Any]:
        """An accepted event's marker is its receipt, written in the same request: who sent
        it. ``source`` is the publisher the broker authenticated (or the gateway's caller)
        when known, else what the envelope claims; both kept."""
        doc = super().marker(key, event)
        if event is not None:
            doc.update(type=event.type, source=event.publisher or event.source,
                       publisher=event.publisher, claimed_source=event.source,
                       fingerprint=contract.fingerprint(event.data))
        return doc

    def accepted_otherwise(self, key: str, event: contract.Event) -> bool:
        """Whether the event accepted under this marker said something else than ``event``
        (another type or other data under the same event id). Read only for a duplicate;
        a marker from before fingerprints were kept is taken as the same."""
        first = self.db.processed.find_one({"_id": key}, {"type": 1, "fingerprint": 1})
        if first is None or "fingerprint" not in first:
            return False
        return (first.get("type"), first["fingerprint"]) != (
            event.type, contract.fingerprint(event.data))

