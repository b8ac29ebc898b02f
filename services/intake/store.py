"""Intake's storage: only the dedupe log (the ``processed`` markers) and the outbox."""

from services.common.store import BaseStore


class IntakeStore(BaseStore):
    collections: dict = {}
