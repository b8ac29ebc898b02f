"""Matching's use cases: each runs inside one transaction (``tx``) opened by the service.

Load through the store, decide with the pure engine, claim stock atomically, record, emit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common import contract, units
from services.common.reference import Reference
from services.common.store import Tx
from services.matching import engine
from services.matching.store import MatchingStore, as_engine_lot, as_engine_need


class UnknownReference(ValueError):
    """The event names an area or category this deployment does not know."""


def candidate_locations(need: engine.Need, ref: Reference) -> list[str]:
    """Warehouses whose lots the need may draw on, given how far it has escalated."""
    areas = ref.areas
    chain = areas.chain(need.community_id)
    reach = engine.TIER_REACH.get(need.tier, 0)
    if reach >= 2:
        return list(areas.areas)
    if reach >= 1 and len(chain) > 1:
        return chain + [c for c in areas.children.get(chain[1], []) if c not in chain]
    return chain


def post_need(store: MatchingStore, tx: Tx, ref: Reference, data: dict[str, Any],
              posted_at: datetime) -> dict[str, Any] | None:
    """Record a posted need and try to fill it. Returns the need, or None if it existed."""
    if data["community_id"] not in ref.areas:
        raise UnknownReference(f"unknown community_id {data['community_id']!r}")
    store.serialise(tx, data["category"])
    if store.get_need(data["need_id"], tx) is not None:
        return None  # the same need posted again under a new event id: keep the first
    doc = {
        "_id": data["need_id"],
        "community_id": data["community_id"],
        "street_id": ref.areas.street_of(data["community_id"]),
        "kind": data["kind"],
        "category": data["category"],
        "quantity": data["quantity"],
        "unit": data["unit"],
        "quantity_milli": units.to_milli(data["quantity"], data["unit"]),
        "fulfilled_milli": 0,
        "urgency": data["urgency"],
        "needed_by": data.get("needed_by"),
        "beneficiaries": data.get("beneficiaries"),
        "programme": data.get("programme"),
        "note": data.get("note"),
        "posted_at": posted_at,
        "tier": "community",
        "status": "open",
        "open_category": data["category"],
        "assignments": [],
    }
    store.insert_need(tx, doc)
    fill(store, tx, ref, [doc], lots_by_id=None)
    return doc


def add_lot(store: MatchingStore, tx: Tx, ref: Reference, data: dict[str, Any]) -> int:
    """Add a received lot to the supply view and re-match the open needs of its category,
    most urgent first. Returns the number of allocations made."""
    lot_id = data.get("lot_id") or data["donation_id"]
    doc = {
        "_id": lot_id,
        "category": data["category"],
        "location_id": data["location_id"],
        "unit": data["unit"],
        "quantity": units.to_milli(data["quantity"], data["unit"]),
        "available": units.to_milli(data["quantity"], data["unit"]),
        "value_yuan": data["value_yuan"],
        "expires_at": data.get("expires_at"),
        "programme": data.get("programme"),
    }
    store.serialise(tx, data["category"])
    if not store.insert_lot(tx, doc):
        return 0
    needs = store.open_needs(tx, data["category"])
    return fill(store, tx, ref, needs, lots_by_id=None)


def fill(store: MatchingStore, tx: Tx, ref: Reference, need_docs: list[dict[str, Any]],
         lots_by_id: dict[str, dict[str, Any]] | None) -> int:
    """Allocate to each need in priority order from the lots it may use; claim, record, emit."""
    now = contract.now()
    lots_by_id = {} if lots_by_id is None else lots_by_id
    loaded: set[tuple[str, str]] = set()
    docs = {d["_id"]: d for d in need_docs}
    made = 0
    for need in engine.order_needs(as_engine_need(d) for d in need_docs):
        if need.remaining <= 0:
            continue
        wanted = [loc for loc in candidate_locations(need, ref)
                  if (need.category, loc) not in loaded]
        for lot in store.lots_at(tx, need.category, wanted):
            lots_by_id.setdefault(lot["_id"], lot)
        loaded.update((need.category, loc) for loc in wanted)
        pool = [as_engine_lot(lot) for lot in lots_by_id.values()
                if lot["category"] == need.category]
        allocations = engine.allocate(need, pool, ref.areas, now)
        if allocations:
            made += len(allocations)
            _record(store, tx, docs[need.need_id], allocations, lots_by_id)
    return made


def _record(store: MatchingStore, tx: Tx, need_doc: dict[str, Any],
            allocations: list[engine.Allocation], lots_by_id: dict[str, dict[str, Any]]) -> None:
    now = contract.now()
    fulfilled = need_doc["fulfilled_milli"]
    records = []
    for alloc in allocations:
        lot = lots_by_id[alloc.lot_id]
        store.claim(tx, alloc.lot_id, alloc.quantity)
        lot["available"] -= alloc.quantity
        fulfilled += alloc.quantity
        seq = len(need_doc["assignments"]) + len(records) + 1
        assignment_id = f"{need_doc['_id']}#{seq}"
        value = round(lot["value_yuan"] * alloc.quantity / lot["quantity"], 2) if lot[
            "quantity"] else 0.0
        record = {
            "assignment_id": assignment_id,
            "lot_id": alloc.lot_id,
            "location_id": alloc.location_id,
            "quantity": units.from_milli(alloc.quantity, need_doc["unit"]),
            "unit": need_doc["unit"],
            "lot_quantity": units.from_milli(alloc.quantity, lot["unit"]),
            "lot_unit": lot["unit"],
            "tier_distance": alloc.tier_distance,
            "value_yuan": value,
            "score": alloc.score,
            "explanation": alloc.explanation,
            "made_at": now,
        }
        records.append(record)
        tx.emit("assignment_made", {
            "assignment_id": assignment_id,
            "need_id": need_doc["_id"],
            "community_id": need_doc["community_id"],
            "category": need_doc["category"],
            "quantity": record["quantity"],
            "unit": record["unit"],
            "lot_id": alloc.lot_id,
            "lot_quantity": record["lot_quantity"],
            "lot_unit": record["lot_unit"],
            "location_id": alloc.location_id,
            "tier_distance": alloc.tier_distance,
            "value_yuan": value,
            "programme": need_doc.get("programme") or lot.get("programme"),
            "explanation": alloc.explanation,
        }, event_id=contract.derived_id("assignment_made", assignment_id))
    status = "fulfilled" if fulfilled >= need_doc["quantity_milli"] else "partial"
    store.record_allocations(tx, need_doc["_id"], fulfilled, status, records)
    need_doc["fulfilled_milli"] = fulfilled
    need_doc["assignments"].extend(records)
    need_doc["status"] = status
    if status == "fulfilled":
        tx.emit("need_fulfilled", {
            "need_id": need_doc["_id"],
            "community_id": need_doc["community_id"],
            "category": need_doc["category"],
            "quantity": need_doc["quantity"],
            "unit": need_doc["unit"],
        }, event_id=contract.derived_id("need_fulfilled", need_doc["_id"]))


def need_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The public shape of a need (``GET /api/needs/<id>``); no personal data is kept here."""
    fulfilled = units.from_milli(doc["fulfilled_milli"], doc["unit"])
    return {
        "need_id": doc["_id"],
        "status": doc["status"],
        "kind": doc["kind"],
        "category": doc["category"],
        "community_id": doc["community_id"],
        "tier": doc.get("tier", "community"),
        "urgency": doc["urgency"],
        "quantity": doc["quantity"],
        "unit": doc["unit"],
        "fulfilled_quantity": fulfilled,
        "remaining_quantity": round(doc["quantity"] - fulfilled, 6),
        "needed_by": doc.get("needed_by"),
        "posted_at": doc.get("posted_at"),
        "beneficiaries": doc.get("beneficiaries"),
        "programme": doc.get("programme"),
        "assignments": doc.get("assignments", []),
    }
