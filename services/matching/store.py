"""Matching's storage: needs (with their assignments) and its own view of supply."""

from __future__ import annotations

import time
from typing import Any

import eventlet.semaphore
from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne, UpdateOne

from services.common import money, reference
from services.common.contract import now as contract_now
from services.common.handler import Retry
from services.common.store import BaseStore, Tx
from services.matching import engine


class LotChanged(Retry):
    """A lot no longer holds what the snapshot said: rerun the allocation."""


OVERVIEW_SECONDS = 1.0  # how old the on-call overview may be (see ``SharedValue``)


class SharedValue:
    """One value, computed again when it is older than ``seconds``; callers that ask while
    it is being computed wait for that result instead of computing it too."""

    def __init__(self, seconds: float, clock: Any = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._value: tuple[float, Any] | None = None
        self._turn = eventlet.semaphore.Semaphore(1)

    def get(self, compute: Any) -> Any:
        with self._turn:
            if self._value is None or self.clock() - self._value[0] >= self.seconds:
                started = self.clock()
                self._value = (started, compute())
            return self._value[1]


class MatchingStore(BaseStore):
    collections = {
        # open needs by category; and by category and community or tier: the needs that can
        # reach a warehouse are found without reading every open need of the category
        "needs": [[("open_category", ASCENDING)],
                  [("open_category", ASCENDING), ("community_id", ASCENDING)],
                  [("open_category", ASCENDING), ("tier", ASCENDING)]],
        # one document per lot: the authority for the conditional claim (read by id only)
        "supply": [],
        # one document per (category, warehouse) listing its live lots in the order they are
        # used (earliest expiry, then first received): a decision reads a few warehouses,
        # not every lot in them
        "bins": [],
        "category_clock": [],
        # only the open needs, small: what the escalation timer scans
        "open_index": [],
        # stock taken out of matching's reach (write-offs, transfers), by the caller's reference
        "withdrawals": [],
        # matching's view of volunteers, fed by the volunteers service's events
        "volunteers": [[("skills", ASCENDING)]],
    }
    # supply by category: nothing queries it, and every claim rewrote its entry
    retired_indexes = {"supply": ("category_1",)}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._turns: dict[str, eventlet.semaphore.Semaphore] = {}
        self._areas: Any = None
        self.overview = SharedValue(OVERVIEW_SECONDS)

    @property
    def areas(self) -> Any:
        """The tier tree (what a batch's needs can reach: see :meth:`prefetch`)."""
        if self._areas is None:
            self._areas = reference.load(self.cfg.reference_dir).areas
        return self._areas

    def prefetch(self, tx: Tx, events: list[Any]) -> None:
        """What a batch's new needs and lots will look up, in two reads: which of the needs
        exist already (a need posted again), and the warehouse bins they can reach (a new
        need's community, street and district; a new lot's warehouse)."""
        need_ids = [e.data["need_id"] for e in events if e.type == "need_posted"]
        if need_ids:
            found = {d["_id"] for d in self.db.needs.find({"_id": {"$in": need_ids}},
                                                          {"_id": 1}, session=tx.session)}
            tx.shared.setdefault("absent_needs", set()).update(set(need_ids) - found)
        wanted: set[str] = set()
        for e in events:
            d = e.data
            if e.type == "need_posted" and d.get("kind") == "goods" \
                    and d["community_id"] in self.areas.areas:
                wanted.update(f"{d['category']}|{loc}" for loc in
                              self.areas.chain(d["community_id"]))
            elif e.type == "donation_received" and d.get("category") and d.get("location_id"):
                wanted.add(f"{d['category']}|{d['location_id']}")
        self._read_bins(tx, wanted)

    def category_turn(self, category: str) -> Any:
        """This process's turn at a category: its transactions of one category conflict by
        design (:meth:`serialise`), so running them side by side only makes them retry; one
        at a time per process, they conflict only with another instance's."""
        turn = self._turns.get(category)
        if turn is None:
            turn = self._turns[category] = eventlet.semaphore.Semaphore(1)
        return turn

    def on_start(self) -> None:
        """Build the warehouse bins from the lots if they are missing (data written before
        bins existed). Outside transactions; idempotent."""
        if self.db.bins.estimated_document_count() or not self.db.supply.estimated_document_count():
            return
        grouped: dict[str, list[dict[str, Any]]] = {}
        for lot in self.db.supply.find({}):
            if lot.get("available", 0) > 0:
                grouped.setdefault(f"{lot['category']}|{lot['location_id']}", []).append(
                    bin_entry(lot))
        now = contract_now()
        for bin_id, entries in grouped.items():
            live = sorted((e for e in entries if not _expired(e, now)), key=bin_order)
            self.db.bins.replace_one({"_id": bin_id}, {"lots": live}, upsert=True)

    def serialise(self, tx: Tx, category: str) -> None:
        """Make transactions that match the same category conflict, so one retries after the
        other commits. Without it, a need posted while a lot arrives is write skew: each
        transaction misses the other's insert and both commit, leaving the need open beside
        stock it could use. Once per transaction is enough (a batch's needs share one)."""
        done = tx.shared.setdefault("serialised", set())
        if category in done:
            return
        done.add(category)
        self.db.category_clock.update_one({"_id": category}, {"$inc": {"seq": 1}}, upsert=True,
                                          session=tx.session)

    # -- needs ---------------------------------------------------------------------------
    def needs_in(self, community_ids: list[str] | None, status: str | None,
                 limit: int) -> list[dict[str, Any]]:
        """The latest needs of these communities (None: all), newest first. Not a hot path
        (a coordinator's list): no index is kept for it, so posting a need costs no more."""
        query: dict[str, Any] = {}
        if community_ids is not None:
            query["community_id"] = {"$in": community_ids}
        if status:
            query["status"] = status
        rows = list(self.db.needs.find(query))
        rows.sort(key=lambda d: (d.get("posted_at") is not None, d.get("posted_at")),
                  reverse=True)  # in memory: sorts are slow in the local database
        return rows[:limit]

    def get_need(self, need_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        if tx is not None:
            self._write_new_needs(tx)
        return self.db.needs.find_one({"_id": need_id}, session=tx.session if tx else None)

    def posted_need(self, tx: Tx, need_id: str) -> dict[str, Any] | None:
        """The need under ``need_id`` as posted (staged in this batch, or stored): what a
        posting says never changes afterwards, so nothing staged need be written first."""
        staged = tx.shared.get("new_needs", {}).get(need_id)
        if staged is not None:
            return staged
        return self.db.needs.find_one({"_id": need_id}, {"escalations": 0, "offered_to": 0,
                                                          "assignments": 0},
                                      session=tx.session)

    def need_candidates(self, category: str | None, open_only: bool) -> list[dict[str, Any]]:
        """Needs a list may show, with their assignments (the console shows why each lot
        served): by the open index's equality
        when the caller wants open needs of one category, else a scan (lists are off the
        hot path; no index is added to the needs' inserts for them)."""
        query: dict[str, Any] = {"open_category": category} if (open_only and category) else {}
        return list(self.db.needs.find(query, {"escalations": 0, "offered_to": 0,
                                               "note": 0}))

    def insert_need(self, tx: Tx, need: dict[str, Any]) -> bool:
        """Insert a need unless one with its id exists. True if inserted.

        In a batch whose read found no need with this id (:meth:`prefetch`), the need is
        written once, as the batch commits, in its state then (a need met at once is
        inserted met: no second write); else one upsert that says whether it existed."""
        absent = tx.shared.get("absent_needs", set())
        new = tx.shared.setdefault("new_needs", {})
        if need["_id"] in new:
            return False
        if need["_id"] in absent:
            absent.discard(need["_id"])
            staged = {**need, "assignments": list(need.get("assignments", []))}
            new[need["_id"]] = staged
            # the caller's document (the one a plan changes) until it is written
            tx.shared.setdefault("new_need_docs", {})[need["_id"]] = need
            tx.stage("needs", need["_id"], InsertOne(staged))
        else:
            values = {k: v for k, v in need.items() if k != "_id"}
            result = self.db.needs.update_one({"_id": need["_id"]}, {"$setOnInsert": values},
                                              upsert=True, session=tx.session)
            if result.upserted_id is None:
                return False
        # not in the open index yet: a need met at once is never written there
        tx.shared.setdefault("unlisted", set()).add(need["_id"])
        known = tx.shared.get("open_needs", {}).get(need["category"])
        if known is not None and need.get("open_category"):
            known["docs"][need["_id"]] = need
        return True

    def _open(self, tx: Tx, category: str) -> dict[str, Any]:
        """What this transaction (this batch) has read of a category's open needs: the
        documents (the same ones a plan changes; a need inserted or met here is added or
        dropped; any other change to a need forgets them all), and how far they go: every
        open need (``all``), or those that can reach the warehouses of some streets."""
        states = tx.shared.setdefault("open_needs", {})
        state = states.get(category)
        if state is None:
            state = states[category] = {"docs": {}, "all": False, "streets": set(),
                                        "above": False}
            for need in tx.shared.get("new_need_docs", {}).values():  # not written yet
                if need["category"] == category and need.get("open_category") \
                        and need.get("status") != "fulfilled":
                    state["docs"][need["_id"]] = need
        return state

    def _read_open(self, tx: Tx, state: dict[str, Any], query: dict[str, Any]) -> None:
        for doc in self.db.needs.find(query, session=tx.session):
            state["docs"].setdefault(doc["_id"], doc)  # what this transaction has is newer

    def open_needs(self, tx: Tx, category: str) -> list[dict[str, Any]]:
        """Every open need of a category, read once per transaction (per batch)."""
        state = self._open(tx, category)
        if not state["all"]:
            # ``open_category`` is set only while a need is open: a selective equality.
            self._read_open(tx, state, {"open_category": category})
            state["all"] = True
        return list(state["docs"].values())

    def open_needs_reaching(self, tx: Tx, category: str,
                            locations: list[str]) -> list[dict[str, Any]]:
        """The open needs of a category that can draw on a warehouse in ``locations`` (at
        the tier each has reached), read by community and tier: a warehouse's street's
        communities, the needs posted above communities, the needs escalated to the
        district. The cost follows the needs that can reach the warehouses, not every open
        need of the category; a district warehouse is reached by them all."""
        areas = self.areas
        state = self._open(tx, category)
        wanted = [loc for loc in locations if loc in areas.areas]
        if not state["all"]:
            streets: set[str] = set()
            for loc in wanted:
                area = areas.areas[loc]
                if area.parent is None:  # the district: every need reaches it
                    return self.open_needs(tx, category)
                streets.add(loc if areas.tier(loc) == "street" else area.parent)
            posted_at: set[str] = set()  # the community ids to read open needs of
            if not state["above"]:
                posted_at.update(a for a, area in areas.areas.items()
                                 if areas.tier(a) != "community")
                self._read_open(tx, state, {"open_category": category, "tier": "district"})
                state["above"] = True
            new = sorted(streets - state["streets"])
            posted_at.update(c for st in new for c in areas.children.get(st, []))
            state["streets"].update(new)
            if posted_at:  # the needs posted above communities and those of the streets
                self._read_open(tx, state, {"open_category": category,
                                            "community_id": {"$in": sorted(posted_at)}})
        reach = set(wanted)
        return [d for d in state["docs"].values()
                if reach.intersection(engine.reach(as_engine_need(d), areas))]

    def _changed_needs(self, tx: Tx) -> None:
        """A need changed otherwise than by a plan: the open needs read are read again (and
        what is staged is written first, so that the change finds it)."""
        tx.shared.pop("open_needs", None)
        self._write_new_needs(tx)
        tx.write_staged("open_index")

    @staticmethod
    def _write_new_needs(tx: Tx) -> None:
        """Write the needs staged so far (before a query that must find them)."""
        if tx.staged("needs"):
            tx.write_staged("needs")
        tx.shared.pop("new_needs", None)
        tx.shared.pop("new_need_docs", None)

    def record_allocations(self, tx: Tx, need_id: str, fulfilled: int, status: str,
                           assignments: list[dict[str, Any]]) -> None:
        update: dict[str, Any] = {
            "$set": {"fulfilled_milli": fulfilled, "status": status},
            "$push": {"assignments": {"$each": assignments}},
        }
        if status == "fulfilled":
            update["$unset"] = {"open_category": ""}
            for known in tx.shared.get("open_needs", {}).values():
                known["docs"].pop(need_id, None)
            if need_id not in tx.shared.get("unlisted", ()):
                tx.stage("open_index", need_id, DeleteOne({"_id": need_id}))
        staged = tx.shared.get("new_needs", {}).get(need_id)
        if staged is not None:  # inserted as the batch commits: in its state then
            staged.update(fulfilled_milli=fulfilled, status=status)
            staged["assignments"].extend(assignments)
            if status == "fulfilled":
                staged.pop("open_category", None)
            return
        self.db.needs.update_one({"_id": need_id}, update, session=tx.session)

    def index_open(self, tx: Tx, need: dict[str, Any], escalate_at: Any) -> None:
        """List an open need in the small index the timer and the status page read."""
        tx.shared.get("unlisted", set()).discard(need["_id"])
        tx.stage("open_index", need["_id"], ReplaceOne(
            {"_id": need["_id"]},
            {"category": need["category"], "tier": need.get("tier", "community"),
             "escalate_at": escalate_at, "needed_by": need.get("needed_by"),
             "urgency": need["urgency"], "posted_at": need["posted_at"],
             "community_id": need["community_id"]}, upsert=True))

    def count_assignments(self, tx: Tx, category: str, hour: str, made: int) -> None:
        """Assignments per hour, kept on the category's clock document (which every
        transaction of the category writes already, so this adds no contention). The counts
        of a transaction (of a whole batch) are written once, as it commits."""
        counts = tx.shared.setdefault("assignment_counts", {}).setdefault(category, {})
        counts[hour] = counts.get(hour, 0) + made
        tx.stage("category_clock", category, UpdateOne(
            {"_id": category}, {"$inc": {f"made.{h}": n for h, n in counts.items()}},
            upsert=True))

    def assignment_counts(self) -> list[dict[str, Any]]:
        """Each category's assignments per hour (one small document per category)."""
        return list(self.db.category_clock.find({}, {"made": 1}))

    def all_bins(self) -> list[dict[str, Any]]:
        """Every warehouse's live lots (one document per category and warehouse)."""
        return list(self.db.bins.find({}))

    def open_index(self) -> list[dict[str, Any]]:
        return list(self.db.open_index.find({}))

    def open_deadlines(self) -> list[engine.Deadlines]:
        """Every open need's clock, from the small open-needs index."""
        return [engine.Deadlines(e["_id"], e.get("tier", "community"), e.get("escalate_at"),
                                 e.get("needed_by"), e.get("offer_expires_at"))
                for e in self.open_index()]

    def escalate(self, tx: Tx, need_id: str, from_tier: str, to_tier: str,
                 escalate_at: Any) -> bool:
        """Move an open need one tier up, once (a conditional update on its current tier)."""
        self._changed_needs(tx)
        result = self.db.needs.update_one(
            {"_id": need_id, "tier": from_tier, "open_category": {"$exists": True}},
            {"$set": {"tier": to_tier}, "$push": {"escalations": {
                "from_tier": from_tier, "to_tier": to_tier, "at": contract_now()}}},
            session=tx.session)
        if result.modified_count != 1:
            return False
        self.db.open_index.update_one({"_id": need_id}, {"$set": {
            "tier": to_tier, "escalate_at": escalate_at}}, session=tx.session)
        return True

    def close(self, tx: Tx, need_id: str, status: str) -> bool:
        """Close an open need (expired); False if it was no longer open."""
        self._changed_needs(tx)
        result = self.db.needs.update_one(
            {"_id": need_id, "open_category": {"$exists": True}},
            {"$set": {"status": status}, "$unset": {"open_category": ""}}, session=tx.session)
        self.db.open_index.delete_one({"_id": need_id}, session=tx.session)
        return result.modified_count == 1

    def get_lot(self, tx: Tx, lot_id: str) -> dict[str, Any] | None:
        tx.write_staged("supply")  # what this transaction claimed, then counted afresh
        tx.shared.pop("claims", None)
        return self.db.supply.find_one({"_id": lot_id}, session=tx.session)

    def get_withdrawal(self, tx: Tx, reference: str) -> dict[str, Any] | None:
        return self.db.withdrawals.find_one({"_id": reference}, session=tx.session)

    def record_withdrawal(self, tx: Tx, withdrawal: dict[str, Any]) -> None:
        self.db.withdrawals.insert_one(withdrawal, session=tx.session)

    # -- volunteers view ------------------------------------------------------------------
    def upsert_volunteer(self, tx: Tx, volunteer_id: str, values: dict[str, Any]) -> None:
        self.db.volunteers.update_one({"_id": volunteer_id}, {"$set": values}, upsert=True,
                                      session=tx.session)

    def get_volunteer(self, tx: Tx, volunteer_id: str) -> dict[str, Any] | None:
        return self.db.volunteers.find_one({"_id": volunteer_id}, session=tx.session)

    def volunteers_with_skill(self, tx: Tx, skill: str) -> list[dict[str, Any]]:
        return list(self.db.volunteers.find({"skills": skill}, session=tx.session))

    def take_hours(self, tx: Tx, volunteer_id: str, week: str, hours: float,
                   cap: float | None) -> None:
        """Book hours against a volunteer's weekly cap, never past it (conditional update)."""
        query: dict[str, Any] = {"_id": volunteer_id}
        if cap is not None:
            query[f"load.{week}"] = {"$not": {"$gt": cap - hours}}
        result = self.db.volunteers.update_one(query, {"$inc": {f"load.{week}": hours}},
                                               session=tx.session)
        if result.modified_count != 1:
            raise LotChanged(f"volunteer {volunteer_id} has no room for {hours} h")

    def give_back_hours(self, tx: Tx, volunteer_id: str, week: str, hours: float) -> None:
        self.db.volunteers.update_one({"_id": volunteer_id}, {"$inc": {f"load.{week}": -hours}},
                                      session=tx.session)

    def set_offer(self, tx: Tx, need_id: str, offer: dict[str, Any] | None,
                  status: str, offered_to: str | None = None) -> None:
        self._changed_needs(tx)
        update: dict[str, Any] = {"$set": {"offer": offer, "status": status}}
        if offered_to:
            update["$push"] = {"offered_to": offered_to}
        self.db.needs.update_one({"_id": need_id}, update, session=tx.session)
        self.db.open_index.update_one(
            {"_id": need_id}, {"$set": {"offer_expires_at": offer["expires_at"] if offer
                                        else None}}, session=tx.session)

    def fulfil_service(self, tx: Tx, need_id: str, offer_id: str, fulfilled_milli: int,
                       assignment: dict[str, Any]) -> bool:
        self._changed_needs(tx)
        result = self.db.needs.update_one(
            {"_id": need_id, "offer.offer_id": offer_id, "status": "offered"},
            {"$set": {"status": "fulfilled", "offer": None, "fulfilled_milli": fulfilled_milli},
             "$unset": {"open_category": ""}, "$push": {"assignments": assignment}},
            session=tx.session)
        if result.modified_count == 1:
            self.db.open_index.delete_one({"_id": need_id}, session=tx.session)
        return result.modified_count == 1

    # -- supply view ---------------------------------------------------------------------
    def insert_lot(self, tx: Tx, lot: dict[str, Any]) -> bool:
        if self.db.supply.find_one({"_id": lot["_id"]}, {"_id": 1}, session=tx.session):
            return False
        self.db.supply.insert_one(lot, session=tx.session)
        if lot["available"] > 0:
            bin_id = f"{lot['category']}|{lot['location_id']}"
            current = self.load_bins(tx, lot["category"], [lot["location_id"]])
            entries = current.get(bin_id, []) + [bin_entry(lot)]
            self.save_bin(tx, bin_id, entries, contract_now())
        return True

    def load_bins(self, tx: Tx, category: str, locations: list[str]
                  ) -> dict[str, list[dict[str, Any]]]:
        """Each warehouse's live lots of a category, in the order they are used. A bin is
        read once per transaction (per batch): later reads get it as this transaction left
        it (the entries are the same objects a plan changes, and :meth:`save_bin` keeps
        what it saved)."""
        ids = [f"{category}|{location}" for location in locations]
        seen = self._read_bins(tx, ids)
        return {bin_id: seen[bin_id] for bin_id in ids if seen[bin_id]}

    def _read_bins(self, tx: Tx, bin_ids: Any) -> dict[str, list[dict[str, Any]]]:
        """Read the bins this transaction has not read yet, in one request."""
        seen = tx.shared.setdefault("bins", {})
        missing = sorted({b for b in bin_ids if b not in seen})
        if missing:
            for b in missing:
                seen[b] = []
            query = {"_id": missing[0]} if len(missing) == 1 else {"_id": {"$in": missing}}
            for doc in self.db.bins.find(query, session=tx.session):
                seen[doc["_id"]] = doc.get("lots") or []
        return seen

    def save_bin(self, tx: Tx, bin_id: str, entries: list[dict[str, Any]], now: Any) -> None:
        """Keep the lots that can still be used (not empty, not expired), in use order. The
        bin is written once, as the transaction (the batch) commits, in its last state."""
        live = sorted((e for e in entries if e["available"] > 0 and not _expired(e, now)),
                      key=bin_order)
        tx.shared.setdefault("bins", {})[bin_id] = live
        tx.stage("bins", bin_id, ReplaceOne({"_id": bin_id}, {"lots": live}, upsert=True))

    def claim(self, tx: Tx, lot_id: str, quantity: int, taken_fen: int | None = None) -> None:
        """Take ``quantity`` from a lot, never below zero (a conditional atomic update).

        ``taken_fen`` is the value that has left the lot once this take is made (see
        :func:`take_value`); it is set, not added, so a lot recorded before values were
        kept starts from the same figure in its document and in its warehouse's bin."""
        claimed = tx.shared.setdefault("claims", {})
        total, fen = claimed.get(lot_id, (0, None))
        total += quantity
        fen = taken_fen if taken_fen is not None else fen
        claimed[lot_id] = (total, fen)
        update: dict[str, Any] = {"$inc": {"available": -total}}
        if fen is not None:
            update["$set"] = {"taken_fen": fen}
        # what the transaction (the batch) takes from the lot, in one conditional update as
        # it commits: the lot must still hold all of it, or nothing is taken
        tx.stage("supply", lot_id,
                 UpdateOne({"_id": lot_id, "available": {"$gte": total}}, update),
                 or_raise=LotChanged(f"lot {lot_id} has less than {total} available"))


BIN_FIELDS = ("_id", "category", "location_id", "unit", "quantity", "available", "value_yuan",
              "taken_fen", "expires_at", "received_at", "programme")


def taken_fen(lot: dict[str, Any]) -> int:
    """The value (fen) that has already left a lot: allocated and withdrawn. A lot recorded
    before this was kept counts the rule's value of the quantity gone."""
    if lot.get("taken_fen") is not None:
        return int(lot["taken_fen"])
    return money.value_of(money.to_fen(lot["value_yuan"]), lot["quantity"],
                          lot["quantity"] - lot["available"])


def take_value(lot: dict[str, Any], milli: int) -> tuple[int, int]:
    """What taking ``milli`` out of a lot (a supply document or a bin entry, before the
    take) is worth, and the lot's value taken once it is made, both in fen
    (:func:`money.share_fen`)."""
    before = taken_fen(lot)
    share = money.share_fen(lot["quantity"], money.to_fen(lot["value_yuan"]),
                            lot["quantity"] - lot["available"], before, milli)
    return share, before + share


def _expired(entry: dict[str, Any], now: Any) -> bool:
    expires = entry.get("expires_at")
    if expires is None:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=now.tzinfo)
    return expires <= now


def bin_entry(lot: dict[str, Any]) -> dict[str, Any]:
    return {k: lot.get(k) for k in BIN_FIELDS}


def bin_order(entry: dict[str, Any]) -> tuple:
    """The order a warehouse's lots are used in: the engine's, within one tier distance."""
    return engine.lot_order(entry.get("expires_at"), entry.get("received_at"), entry["_id"])


def as_engine_lot(doc: dict[str, Any]) -> engine.Lot:
    return engine.Lot(doc["_id"], doc["category"], doc["location_id"], doc["available"],
                      doc["unit"], doc.get("expires_at"), doc.get("received_at"))


def as_engine_need(doc: dict[str, Any]) -> engine.Need:
    return engine.Need(doc["_id"], doc["category"], doc["community_id"],
                       doc["quantity_milli"] - doc["fulfilled_milli"], doc["unit"],
                       doc["urgency"], doc.get("needed_by"), doc.get("posted_at"),
                       doc.get("tier", "community"))
