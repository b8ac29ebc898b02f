"""Matching's use cases: each runs inside one transaction (``tx``) opened by the service.

Load through the store, decide with the pure engine, claim stock atomically, record, emit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.common import contract, units
from services.common.config import Settings
from services.common.reference import Reference
from services.common.store import Tx
from services.matching import engine
from services.matching.store import MatchingStore, as_engine_lot, as_engine_need


class UnknownReference(ValueError):
    """The event names an area or category this deployment does not know."""


NEXT_TIER = {"community": "street", "street": "district"}


def post_need(store: MatchingStore, tx: Tx, ref: Reference, data: dict[str, Any],
              posted_at: datetime, cfg: Settings) -> dict[str, Any] | None:
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
    store.index_open(tx, doc["_id"], doc["category"], "community",
                     posted_at + timedelta(seconds=cfg.escalation_timeout(doc["urgency"])),
                     doc["needed_by"])
    if doc["kind"] == "service":
        offer_next(store, tx, ref, doc, cfg, posted_at)
    else:
        # the new need joins the category's open needs, so a scarce category is shared fairly
        fill(store, tx, ref, store.open_needs(tx, doc["category"]), lots_by_id=None)
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
        "received_at": contract.now(),
        "programme": data.get("programme"),
    }
    store.serialise(tx, data["category"])
    if not store.insert_lot(tx, doc):
        return 0
    needs = store.open_needs(tx, data["category"])
    return fill(store, tx, ref, needs, lots_by_id=None)


def fill(store: MatchingStore, tx: Tx, ref: Reference, need_docs: list[dict[str, Any]],
         lots_by_id: dict[str, dict[str, Any]] | None = None) -> int:
    """Plan the open goods needs of a batch together (:class:`engine.Planner`), in service
    order; claim, record, emit. Scarce categories are shared by :func:`engine.fair_caps`.

    Stock comes from the warehouses' bins (lots in use order): a decision takes lots from a
    bin's head, so it costs the same however many lots a warehouse holds."""
    now = contract.now()
    docs = {d["_id"]: d for d in need_docs}
    needs = [n for n in engine.order_needs(as_engine_need(d) for d in need_docs)
             if n.remaining > 0 and docs[n.need_id].get("kind", "goods") == "goods"]
    bins: dict[str, list[dict[str, Any]]] = {}
    loaded: set[tuple[str, str]] = set()
    for need in needs:
        wanted = [loc for loc in engine.reach(need, ref.areas)
                  if (need.category, loc) not in loaded]
        bins.update(store.load_bins(tx, need.category, wanted))
        loaded.update((need.category, loc) for loc in wanted)
    lots = {entry["_id"]: entry for entries in bins.values() for entry in entries}
    if lots_by_id is not None:
        lots_by_id.update(lots)

    made = 0
    touched: set[str] = set()
    groups: dict[tuple[str, str], list[engine.Need]] = {}
    for need in needs:
        groups.setdefault((need.category, units.dimension(need.unit)), []).append(need)
    for (category, _), group in sorted(groups.items()):
        caps = _fair_caps(group, docs, bins, ref, now)
        planner = engine.Planner(engine.stock_of(
            (as_engine_lot(e) for bin_id, entries in bins.items()
             if bin_id.startswith(f"{category}|") for e in entries),
            category, group[0].unit), ref.areas, now)
        taken: dict[str, int] = {}
        for need in group:
            cap = share = None
            if caps is not None:
                share = caps.get(need.community_id, 0)
                cap = share - taken.get(need.community_id, 0)
            got = planner.serve(need, limit=cap, share=share)
            taken[need.community_id] = taken.get(need.community_id, 0) + got
        by_need: dict[str, list[engine.Allocation]] = {}
        for alloc in planner.allocations():
            by_need.setdefault(alloc.need_id, []).append(alloc)
        for need_id, allocations in by_need.items():
            made += len(allocations)
            _record(store, tx, docs[need_id], allocations, lots)
            touched.update(f"{category}|{a.location_id}" for a in allocations)
    for bin_id in sorted(touched):
        store.save_bin(tx, bin_id, bins[bin_id], now)
    return made


def _usable(entry: dict[str, Any], now: datetime) -> bool:
    expires = entry.get("expires_at")
    return entry["available"] > 0 and (expires is None or _aware(expires, now) > now)


def _fair_caps(group: list[engine.Need], docs: dict[str, dict[str, Any]],
               bins: dict[str, list[dict[str, Any]]], ref: Reference,
               now: datetime) -> dict[str, int] | None:
    """Per-community caps when the group asks for more than the lots it can reach hold.

    Only contended stock is shared: a warehouse that one community alone can reach is that
    community's (holding it back would help nobody); the warehouses several communities can
    reach are shared so that each contender ends with its fair share of all the stock the
    contenders can reach (``engine.fair_caps``), or its own stock if that is more."""
    category = group[0].category
    demand: dict[str, int] = {}
    weight: dict[str, float] = {}
    for need in group:
        demand[need.community_id] = demand.get(need.community_id, 0) + need.remaining
        beneficiaries = docs[need.need_id].get("beneficiaries") or 1
        weight[need.community_id] = weight.get(need.community_id, 0.0) + (
            need.remaining * beneficiaries)
    own: dict[str, int] = {}
    shared = 0
    contenders: set[str] = set()
    for bin_id, entries in bins.items():
        bin_category, location = bin_id.split("|", 1)
        if bin_category != category:
            continue
        held = sum(e["available"] for e in entries
                   if _usable(e, now) and units.compatible(e["unit"], group[0].unit))
        if held <= 0:
            continue
        communities = {n.community_id for n in group
                       if engine.tier_distance(n, location, ref.areas) is not None}
        if len(communities) == 1:
            (c,) = communities
            own[c] = own.get(c, 0) + held
        elif communities:
            shared += held
            contenders |= communities
    if not contenders:
        return None
    grain = units.MILLI if units.dimension(group[0].unit) in engine.DISCRETE else 1
    caps = engine.fair_caps({c: demand[c] for c in contenders}, weight,
                            shared + sum(own.get(c, 0) for c in contenders), grain)
    if caps is None:
        return None
    # communities outside the contention keep no cap beyond what they ask
    out = {c: demand[c] for c in demand}
    for c in contenders:
        out[c] = max(own.get(c, 0), caps[c])
    return out


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
        "escalations": doc.get("escalations", []),
        "offer": doc.get("offer"),
        "offered_to": doc.get("offered_to", []),
    }


def escalate(store: MatchingStore, tx: Tx, ref: Reference, need_id: str, cfg: Settings,
             now: datetime) -> str | None:
    """Escalate an open need one tier (community -> street -> district), tell that tier's
    coordinators (``need_escalated``) and try again with the stock it can now reach."""
    doc = store.get_need(need_id, tx)
    if doc is None or doc.get("open_category") is None or doc.get("tier") not in NEXT_TIER:
        return None
    store.serialise(tx, doc["category"])
    from_tier = doc.get("tier", "community")
    to_tier = NEXT_TIER[from_tier]
    next_at = now + timedelta(seconds=cfg.escalation_timeout(doc["urgency"]))
    if not store.escalate(tx, need_id, from_tier, to_tier, next_at):
        return None
    chain = ref.areas.chain(doc["community_id"])
    area_id = chain[1] if to_tier == "street" else chain[-1]
    remaining = units.from_milli(doc["quantity_milli"] - doc["fulfilled_milli"], doc["unit"])
    tx.emit("need_escalated", {
        "need_id": need_id, "community_id": doc["community_id"], "category": doc["category"],
        "urgency": doc["urgency"], "from_tier": from_tier, "to_tier": to_tier,
        "area_id": area_id, "remaining": remaining, "unit": doc["unit"],
    }, event_id=contract.derived_id("need_escalated", need_id, to_tier))
    if doc.get("kind", "goods") == "goods":
        fill(store, tx, ref, store.open_needs(tx, doc["category"]), lots_by_id=None)
    elif doc.get("status") == "open":
        offer_next(store, tx, ref, {**doc, "tier": to_tier}, cfg, now)
    return to_tier


def expire(store: MatchingStore, tx: Tx, need_id: str) -> bool:
    """A need past its ``needed_by`` closes as expired; what it received stays given."""
    doc = store.get_need(need_id, tx)
    if doc is None or doc.get("open_category") is None:
        return False
    store.serialise(tx, doc["category"])
    if not store.close(tx, need_id, "expired"):
        return False
    tx.emit("need_expired", {
        "need_id": need_id, "community_id": doc["community_id"], "category": doc["category"],
        "unfulfilled_quantity": units.from_milli(doc["quantity_milli"] - doc["fulfilled_milli"],
                                                 doc["unit"]),
        "unit": doc["unit"],
    }, event_id=contract.derived_id("need_expired", need_id))
    return True


def due(index: list[dict[str, Any]], now: datetime
        ) -> tuple[list[str], list[str], list[str]]:
    """From the open-needs index: (needs to expire, needs to escalate, offers that lapsed)."""
    expire_ids, escalate_ids, lapsed = [], [], []
    for entry in index:
        if entry.get("needed_by") and _aware(entry["needed_by"], now) <= now:
            expire_ids.append(entry["_id"])
            continue
        if entry.get("offer_expires_at") and _aware(entry["offer_expires_at"], now) <= now:
            lapsed.append(entry["_id"])
        if entry.get("tier") in NEXT_TIER and _aware(entry["escalate_at"], now) <= now:
            escalate_ids.append(entry["_id"])
    return expire_ids, escalate_ids, lapsed


def _aware(dt: datetime, now: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=now.tzinfo)


# -- service needs: offers to volunteers ---------------------------------------------------

def week_of(now: datetime) -> str:
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


def as_volunteer(doc: dict[str, Any], week: str) -> engine.Volunteer:
    return engine.Volunteer(doc["_id"], doc.get("home_community_id", ""),
                            frozenset(doc.get("skills", [])), doc.get("weekly_hours_cap"),
                            float((doc.get("load") or {}).get(week, 0.0)),
                            doc.get("checked_at"), bool(doc.get("check_passing")))


def offer_next(store: MatchingStore, tx: Tx, ref: Reference, doc: dict[str, Any],
               cfg: Settings, now: datetime) -> bool:
    """Offer an open service need to the best eligible volunteer (never one offered it
    before); book the hours against their weekly cap. False when nobody is eligible: the need
    stays open until a volunteer becomes available or it escalates."""
    week = week_of(now)
    need = as_engine_need(doc)
    volunteers = [as_volunteer(v, week) for v in store.volunteers_with_skill(tx, doc["category"])]
    offer = engine.choose_volunteer(
        need, doc["quantity"], volunteers, ref.areas, now,
        exclude=frozenset(doc.get("offered_to", [])),
        check_valid_hours=cfg.health_check_valid_hours)
    if offer is None:
        return False
    chosen = next(v for v in volunteers if v.volunteer_id == offer.volunteer_id)
    store.take_hours(tx, offer.volunteer_id, week, offer.hours, chosen.weekly_hours_cap)
    offer_id = f"{doc['_id']}~{len(doc.get('offered_to', [])) + 1}"
    expires_at = now + timedelta(seconds=cfg.offer_lease_seconds)
    record = {"offer_id": offer_id, "volunteer_id": offer.volunteer_id, "hours": offer.hours,
              "week": week, "made_at": now, "expires_at": expires_at,
              "tier_distance": offer.tier_distance, "score": offer.score,
              "explanation": offer.explanation}
    store.set_offer(tx, doc["_id"], record, "offered", offered_to=offer.volunteer_id)
    doc.update(offer=record, status="offered",
               offered_to=[*doc.get("offered_to", []), offer.volunteer_id])
    tx.emit("offer_made", {
        "offer_id": offer_id, "need_id": doc["_id"], "volunteer_id": offer.volunteer_id,
        "community_id": doc["community_id"], "category": doc["category"],
        "quantity": doc["quantity"], "unit": doc["unit"], "expires_at": expires_at,
        "urgency": doc["urgency"],
    }, event_id=contract.derived_id("offer_made", offer_id))
    return True


class OfferNotOpen(LookupError):
    """The offer does not exist, or was already answered, lapsed or withdrawn."""


def answer_offer(store: MatchingStore, tx: Tx, ref: Reference, offer_id: str, accept: bool,
                 cfg: Settings, now: datetime, outcome: str = "declined") -> dict[str, Any]:
    """A volunteer accepts (the need is served) or declines (the next volunteer is offered
    it); an unanswered offer lapses the same way (``outcome="lapsed"``)."""
    need_id = offer_id.rsplit("~", 1)[0]
    doc = store.get_need(need_id, tx)
    offer = (doc or {}).get("offer")
    if not doc or not offer or offer["offer_id"] != offer_id or doc["status"] != "offered":
        raise OfferNotOpen(offer_id)
    store.serialise(tx, doc["category"])
    volunteer_id = offer["volunteer_id"]
    if accept:
        assignment = {"assignment_id": f"{need_id}#{len(doc.get('assignments', [])) + 1}",
                      "volunteer_id": volunteer_id, "offer_id": offer_id,
                      "quantity": doc["quantity"], "unit": doc["unit"], "hours": offer["hours"],
                      "tier_distance": offer["tier_distance"], "score": offer["score"],
                      "explanation": offer["explanation"].replace("offered to", "served by"),
                      "made_at": now}
        if not store.fulfil_service(tx, need_id, offer_id, doc["quantity_milli"], assignment):
            raise OfferNotOpen(offer_id)
        tx.emit("offer_accepted", {"offer_id": offer_id, "need_id": need_id,
                                   "volunteer_id": volunteer_id, "outcome": "accepted"},
                event_id=contract.derived_id("offer_accepted", offer_id))
        tx.emit("need_fulfilled", {"need_id": need_id, "community_id": doc["community_id"],
                                   "category": doc["category"], "quantity": doc["quantity"],
                                   "unit": doc["unit"]},
                event_id=contract.derived_id("need_fulfilled", need_id))
    else:
        store.give_back_hours(tx, volunteer_id, offer["week"], offer["hours"])
        store.set_offer(tx, need_id, None, "open")
        doc.update(offer=None, status="open")
        tx.emit("offer_released", {"offer_id": offer_id, "need_id": need_id,
                                   "volunteer_id": volunteer_id, "outcome": outcome},
                event_id=contract.derived_id("offer_released", offer_id))
        offer_next(store, tx, ref, doc, cfg, now)
    return need_view(store.get_need(need_id, tx))


def volunteer_changed(store: MatchingStore, tx: Tx, ref: Reference, volunteer_id: str,
                      values: dict[str, Any], cfg: Settings, now: datetime) -> int:
    """Update matching's view of a volunteer; if they can serve, offer them the open service
    needs of their skills, most urgent first. Returns the number of offers made."""
    current = store.get_volunteer(tx, volunteer_id) or {}
    skills = values.get("skills", current.get("skills", []))
    for skill in sorted(skills):
        store.serialise(tx, skill)
    store.upsert_volunteer(tx, volunteer_id, values)
    made = 0
    for skill in sorted(skills):
        waiting = [d for d in store.open_needs(tx, skill)
                   if d.get("kind") == "service" and d.get("status") == "open"]
        for need in engine.order_needs(as_engine_need(d) for d in waiting):
            doc = next(d for d in waiting if d["_id"] == need.need_id)
            made += offer_next(store, tx, ref, doc, cfg, now)
    return made


def withdraw(store: MatchingStore, tx: Tx, lot_id: str, quantity: float, unit: str,
             reference: str, reason: str) -> dict[str, Any]:
    """Take stock out of matching's reach before another service writes it off or moves it:
    claimed exactly like an allocation, so stock is never both allocated and written off.
    Idempotent by ``reference``. Returns ``{"ok": bool, "available": <in the lot's unit>}``."""
    lot = store.get_lot(tx, lot_id)
    if lot is None:
        return {"ok": False, "error": f"unknown lot {lot_id!r}"}
    store.serialise(tx, lot["category"])
    done = store.get_withdrawal(tx, reference)
    if done is not None:
        return {"ok": True, "available": units.from_milli(lot["available"], lot["unit"]),
                "repeated": True}
    if not units.compatible(unit, lot["unit"]):
        return {"ok": False, "error": f"{unit} does not measure lot {lot_id} ({lot['unit']})"}
    milli = units.to_milli(quantity, unit)
    if lot["available"] < milli:
        return {"ok": False, "available": units.from_milli(lot["available"], lot["unit"]),
                "error": "not enough unallocated stock in the lot"}
    store.claim(tx, lot_id, milli)
    bin_id = f"{lot['category']}|{lot['location_id']}"
    entries = store.load_bins(tx, lot["category"], [lot["location_id"]]).get(bin_id, [])
    for entry in entries:
        if entry["_id"] == lot_id:
            entry["available"] -= milli
    store.save_bin(tx, bin_id, entries, contract.now())
    store.record_withdrawal(tx, {"_id": reference, "lot_id": lot_id, "milli": milli,
                                 "reason": reason, "at": contract.now()})
    return {"ok": True, "available": units.from_milli(lot["available"] - milli, lot["unit"])}
