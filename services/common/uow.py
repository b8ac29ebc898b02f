"""The unit of work every service's use cases take: one transaction and what it works with.

A use case that changes state takes a :class:`UnitOfWork`: the service's store, the
transaction it runs in (``tx``: its session, the events it emits, what a batch's handlers
share), the reference data (areas, categories), the settings and ``now`` (one clock for the
whole unit, so a decision and its records agree, and a test can choose the time).

A unit of work never opens a transaction: it is made inside the one ``store.atomically``
gives, which is the caller's own or, in a batch, the batch's shared transaction that
``atomically`` joins (``services/common/store.py``). :meth:`Scope.atomically` is how an
entrypoint or a command makes one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from services.common import contract
from services.common.config import Settings
from services.common.reference import Reference
from services.common.store import Tx

StoreT = TypeVar("StoreT")
T = TypeVar("T")


@dataclass(frozen=True)
class UnitOfWork(Generic[StoreT]):
    """What a use case works with inside one transaction."""

    store: StoreT
    tx: Tx
    ref: Reference
    cfg: Settings
    now: datetime

    def emit(self, type_: str, data: dict[str, Any], event_id: str | None = None,
             occurred_at: Any = None) -> dict[str, Any]:
        """Add an event to this transaction's outbox (validated against the contract)."""
        return self.tx.emit(type_, data, event_id=event_id, occurred_at=occurred_at)


@dataclass(frozen=True)
class Scope(Generic[StoreT]):
    """What a service's entrypoints and commands have outside a transaction: the store,
    the reference data and the settings. :meth:`atomically` runs a use case in a unit of
    work."""

    store: StoreT
    ref: Reference
    cfg: Settings

    def atomically(self, work: Callable[[UnitOfWork[StoreT]], T], *, now: datetime | None = None,
                   event: contract.Event | None = None, consumer: str | None = None) -> T:
        """``work(uow)`` in the transaction ``store.atomically`` gives (with the event's
        processed marker when ``event`` and ``consumer`` are given; the batch's when the
        store runs in one). ``now`` defaults to the time each attempt starts."""

        def run(tx: Tx) -> T:
            return work(UnitOfWork(self.store, tx, self.ref, self.cfg,
                                   now if now is not None else contract.now()))

        return self.store.atomically(run, event=event, consumer=consumer)  # type: ignore[attr-defined]
