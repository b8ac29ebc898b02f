"""Donations' storage: donations, lots, stock movements and the receipt counter."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, InsertOne, UpdateOne

from services.common.handler import Retry
from services.common.store import BaseStore, Tx


class StockInconsistent(ValueError):
    """An allocation names a lot that does not hold the quantity (needs a person to look)."""


class LotNotRecorded(StockInconsistent, Retry):
    """An allocation names a lot this service has not recorded yet: matching and donations
    each consume ``donation_received``, and under load matching's assignment can arrive
    before donations has handled the donation. Retried with back-off (the donation is
    usually a batch behind); dead-lettered with this reason if the lot never comes."""


class DonationsStore(BaseStore):
    collections = {
        "donations": [[("category", ASCENDING)]],
        "lots": [[("category", ASCENDING)]],
        "movements": [[("lot_id", ASCENDING)]],
        "counters": [],
        "pledges": [],
    }

    def insert_donation(self, tx: Tx, donation: dict[str, Any],
                        lot: dict[str, Any]) -> dict[str, Any] | None:
        """Record a donation and its lot unless its id is taken. Returns the donation already
        stored under the id (nothing is written), or None when this one was recorded."""
        first = self.db.donations.find_one({"_id": donation["_id"]}, session=tx.session)
        if first is not None:
            return first
        self.db.donations.insert_one(donation, session=tx.session)
        self.db.lots.insert_one(lot, session=tx.session)
        return None

    def next_number(self, tx: Tx, counter: str) -> int:
        """The next number of a sequence, in the caller's transaction (so a number is used
        by exactly one committed donation)."""
        self.db.counters.update_one({"_id": counter}, {"$inc": {"n": 1}}, upsert=True,
                                    session=tx.session)
        return int(self.db.counters.find_one({"_id": counter}, session=tx.session)["n"])

    def set_receipt_no(self, tx: Tx, donation_id: str, receipt_no: str) -> None:
        self.db.donations.update_one({"_id": donation_id}, {"$set": {"receipt_no": receipt_no}},
                                     session=tx.session)

    def take(self, tx: Tx, lot_id: str, milli: int, fen: int = 0) -> dict[str, Any]:
        return self._move(tx, lot_id, milli, "allocated", fen)

    def write_off(self, tx: Tx, lot_id: str, milli: int, fen: int = 0) -> dict[str, Any]:
        return self._move(tx, lot_id, milli, "written_off", fen)

    def transfer_out(self, tx: Tx, lot_id: str, milli: int, fen: int) -> dict[str, Any]:
        return self._move(tx, lot_id, milli, "transferred", fen)

    def _move(self, tx: Tx, lot_id: str, milli: int, to: str, fen: int = 0) -> dict[str, Any]:
        """Take ``milli`` out of a lot, never below zero, and return the lot as it is then.

        The lot is read once per transaction (per batch) and changed in memory; what the
        transaction took from it is written once, as it commits, by one update conditional
        on the lot still holding all of it (so stock is never taken twice: a lot changed
        meanwhile by another transaction fails the commit, which is retried). The value that
        left with the goods (fen) is kept beside the quantity, so the value still in stock is
        exact and reconciles with the ledger."""
        lot = self._held(tx, lot_id)
        if lot is None:
            raise LotNotRecorded(f"lot {lot_id} is not recorded (yet)")
        if lot.get("available", 0) < milli:
            raise StockInconsistent(f"lot {lot_id} does not hold {milli} milli-units")
        moved = tx.shared.setdefault("lot_moves", {}).setdefault(lot_id, {})
        for name, by in (("available", -milli), (to, milli), (f"{to}_fen", fen)):
            lot[name] = lot.get(name, 0) + by
            moved[name] = moved.get(name, 0) + by
        taken = -moved["available"]
        tx.stage("lots", lot_id,
                 UpdateOne({"_id": lot_id, "available": {"$gte": taken}}, {"$inc": dict(moved)}),
                 or_raise=StockInconsistent(f"lot {lot_id} does not hold {taken} milli-units"))
        return dict(lot)

    def _held(self, tx: Tx, lot_id: str) -> dict[str, Any] | None:
        """The lot as this transaction left it (read once: see :meth:`prefetch`)."""
        held = tx.shared.setdefault("lots", {})
        if lot_id not in held:
            doc = self.db.lots.find_one({"_id": lot_id}, session=tx.session)
            if doc is None:
                return None
            held[lot_id] = doc
        return held[lot_id]

    def prefetch(self, tx: Tx, events: list[Any]) -> None:
        """The lots a batch's allocations take from, and which of them were recorded
        already (their movements), in one read each."""
        made = [e.data for e in events if e.type == "assignment_made"]
        wanted = {d["lot_id"] for d in made}
        held = tx.shared.setdefault("lots", {})
        wanted -= held.keys()
        if wanted:
            for doc in self.db.lots.find({"_id": {"$in": sorted(wanted)}}, session=tx.session):
                held[doc["_id"]] = doc
        if made:
            ids = sorted({d["assignment_id"] for d in made})
            taken = {doc["_id"] for doc in self.db.movements.find(
                {"_id": {"$in": ids}}, {"_id": 1}, session=tx.session)}
            tx.shared.setdefault("movements_known", {}).update(
                {i: i in taken for i in ids})

    def recorded(self, tx: Tx, movement_id: str) -> bool:
        """Whether a movement (an allocation's id is its assignment's) is recorded, in this
        transaction or before it: what a batch read at once, else one lookup by id."""
        known = tx.shared.get("movements_known", {}).get(movement_id)
        if known is not None:
            return known
        return self.db.movements.find_one({"_id": movement_id}, {"_id": 1},
                                          session=tx.session) is not None

    def record_movement(self, tx: Tx, movement: dict[str, Any]) -> None:
        """Written as the transaction commits, with the batch's other movements (one
        request). A movement recorded twice fails as an insert would."""
        tx.shared.setdefault("movements_known", {})[movement["_id"]] = True
        if tx.staged("movements", movement["_id"]):
            tx.write_staged("movements")
            self.db.movements.insert_one(movement, session=tx.session)  # duplicate key
            return
        tx.stage("movements", movement["_id"], InsertOne(movement))

    def movement(self, movement_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        if tx is not None:
            tx.write_staged("movements")
        return self.db.movements.find_one({"_id": movement_id},
                                          session=tx.session if tx else None)

    def lot(self, lot_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        if tx is not None and lot_id in tx.shared.get("lots", {}):
            return dict(tx.shared["lots"][lot_id])
        return self.db.lots.find_one({"_id": lot_id}, session=tx.session if tx else None)

    def insert_lot(self, tx: Tx, lot: dict[str, Any]) -> None:
        self.db.lots.insert_one(lot, session=tx.session)

    # -- pledges ---------------------------------------------------------------------------
    def insert_pledge(self, tx: Tx, pledge: dict[str, Any]) -> bool:
        if self.db.pledges.find_one({"_id": pledge["_id"]}, {"_id": 1}, session=tx.session):
            return False
        self.db.pledges.insert_one(pledge, session=tx.session)
        return True

    def pledge(self, pledge_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return self.db.pledges.find_one({"_id": pledge_id}, session=tx.session if tx else None)

    def pledges(self) -> list[dict[str, Any]]:
        return list(self.db.pledges.find({}))

    def add_pledge_part(self, tx: Tx, pledge_id: str, part: dict[str, Any]) -> None:
        """Count a received part; called once per donation (the lot's insert guards it)."""
        self.db.pledges.update_one(
            {"_id": pledge_id},
            {"$inc": {"received_milli": part["milli"], "received_fen": part["fen"]},
             "$push": {"parts": part}}, session=tx.session)

    def donation(self, donation_id: str) -> dict[str, Any] | None:
        return self.db.donations.find_one({"_id": donation_id})

    def donation_candidates(self, category: str | None) -> list[dict[str, Any]]:
        """Donations a list may show: by the category index when one is asked for."""
        return list(self.db.donations.find({"category": category} if category else {}))

    def lots(self, category: str | None = None,
             location_id: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"category": category} if category else {}
        if location_id:
            query["location_id"] = location_id
        return list(self.db.lots.find(query))
