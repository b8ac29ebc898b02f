"""The unit of work runs in the transaction the store gives (its own, or a batch's it
joins), never one of its own."""

from datetime import UTC, datetime

from services.common.config import settings
from services.common.store import Tx
from services.common.uow import Scope
from tests.unit.fakes import REF


class BatchLike:
    """A store in a batch: every ``atomically`` joins the one shared transaction."""

    def __init__(self):
        self.tx = Tx(None, None, "matching")
        self.calls = []

    def atomically(self, work, *, event=None, consumer=None):
        self.calls.append((event, consumer))
        return work(self.tx)


def test_units_of_a_batch_share_its_transaction_and_its_outbox():
    store = BatchLike()
    scope = Scope(store, REF, settings({}))
    at = datetime(2020, 2, 10, 9, 0, tzinfo=UTC)

    def work(u):
        u.tx.shared.setdefault("seen", []).append(u.now)
        u.emit("need_expired", {"need_id": f"N{len(u.tx.shared['seen'])}",
                                "community_id": "QY-S01-C01", "category": "masks",
                                "unfulfilled_quantity": 1, "unit": "piece"})
        return u.tx

    first = scope.atomically(work, now=at, consumer="c1")
    second = scope.atomically(work, consumer="c2")

    assert first is second is store.tx
    assert store.tx.shared["seen"][0] == at and store.tx.shared["seen"][1] > at
    assert [e["data"]["need_id"] for e in store.tx.events] == ["N1", "N2"]
    assert [c for _, c in store.calls] == ["c1", "c2"]
