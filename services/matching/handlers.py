"""Matching's use cases: each takes a :class:`~services.common.uow.UnitOfWork` (the store,
the transaction the service opened or the batch's it joined, the reference data, the settings
and ``now``).

Load through the store, decide with the pure engine, claim stock atomically, record, emit.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from services.common import contract, listing, money, units
from services.common.reference import Reference
from services.common.uow import UnitOfWork
from services.matching import engine
from services.matching.store import MatchingStore, as_engine_lot, as_engine_need, take_value

Unit = UnitOfWork[MatchingStore]


class UnknownReference(ValueError):
    """The event names an area or category this deployment does not know."""


NEXT_TIER = engine.NEXT_TIER
# what a need posting says about the need (its contact is for notifications, not kept here)
POSTED = ("community_id", "kind", "category", "quantity", "unit", "urgency", "needed_by",
          "beneficiaries", "programme", "note")


def post_need(u: Unit, data: dict[str, Any], posted_at: datetime) -> dict[str, Any] | None:
    """Record a posted need and try to fill it. Returns the need, or None if it existed."""
    store, tx, ref = u.store, u.tx, u.ref
    if data["community_id"] not in ref.areas:
        raise UnknownReference(f"unknown community_id {data['community_id']!r}")
    store.serialise(tx, data["category"])
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
    if not store.insert_need(tx, doc):
        # the id is taken: the same need posted again under a new event id is harmless,
        # another need under its id is refused (the first stands)
        differs = contract.differences(store.posted_need(tx, doc["_id"]) or {}, doc, POSTED)
        if differs:
            raise contract.IdReused("need_id", doc["_id"], differs)
        return None
    if doc["kind"] == "goods":
        # Stock the new need can reach that other open needs have not taken is stock that
        # fairness held back: only then is it planned, with the open needs that contend for
        # that stock (so a scarce category is shared fairly). With none, the need waits.
        reach = engine.reach(as_engine_need(doc), ref.areas)
        found = store.load_bins(tx, doc["category"], reach)
        bins = {f"{doc['category']}|{loc}": found.get(f"{doc['category']}|{loc}", [])
                for loc in reach}
        stocked = [loc for loc in reach
                   if any(_usable(e, u.now) and units.compatible(e["unit"], doc["unit"])
                          for e in bins[f"{doc['category']}|{loc}"])]
        if stocked:
            others = [d for d in contenders(u, doc["category"], stocked)
                      if d["_id"] != doc["_id"]]
            fill(u, [*others, doc], bins=bins)  # ``doc`` learns its status
    if doc.get("status") != "fulfilled":
        timeout = u.cfg.escalation_timeout(doc["urgency"])
        store.index_open(tx, doc, posted_at + timedelta(seconds=timeout))
    if doc["kind"] == "service":
        # offered as of its posting, like its escalation clock
        offer_next(replace(u, now=posted_at), doc)
    return doc


def add_lot(u: Unit, data: dict[str, Any]) -> int:
    """Add a received lot to the supply view and re-match the open needs of its category,
    most urgent first. Returns the number of allocations made."""
    store, tx = u.store, u.tx
    lot_id = data.get("lot_id") or data["donation_id"]
    doc = {
        "_id": lot_id,
        "category": data["category"],
        "location_id": data["location_id"],
        "unit": data["unit"],
        "quantity": units.to_milli(data["quantity"], data["unit"]),
        "available": units.to_milli(data["quantity"], data["unit"]),
        "value_yuan": data["value_yuan"],
        "taken_fen": 0,
        "expires_at": data.get("expires_at"),
        "received_at": u.now,
        "programme": data.get("programme"),
    }
    store.serialise(tx, data["category"])
    if not store.insert_lot(tx, doc):
        return 0
    if doc["available"] <= 0:
        return 0
    # the open needs that can draw on the lot's warehouse, with whoever contends with them
    needs = contenders(u, data["category"], [data["location_id"]])
    return fill(u, needs, lots_by_id=None)


def contenders(u: Unit, category: str, locations: list[str]) -> list[dict[str, Any]]:
    """The open needs of ``category`` a plan of stock in ``locations`` must include: those
    that can reach these warehouses, then those that can reach any other warehouse with
    stock the first can reach, and so on (the stock they contend for, and so its fair
    shares, are the same as if every open need of the category were planned: a need that
    can reach no stock of theirs takes nothing from them and is given nothing). What this
    costs follows the needs in contention, not the open needs of the category."""
    store, tx, areas = u.store, u.tx, u.ref.areas
    found: dict[str, dict[str, Any]] = {}
    explored: set[str] = set()
    frontier = set(locations)
    while frontier:
        explored |= frontier
        for need in store.open_needs_reaching(tx, category, sorted(frontier)):
            found.setdefault(need["_id"], need)
        reached: set[str] = set()
        for need in found.values():
            reached.update(engine.reach(as_engine_need(need), areas))
        more = sorted(reached - explored)
        bins = store.load_bins(tx, category, more)
        frontier = {bin_id.split("|", 1)[1] for bin_id, entries in bins.items()
                    if any(_usable(e, u.now) for e in entries)}
        explored.update(more)
    return list(found.values())


def fill(u: Unit, need_docs: list[dict[str, Any]],
         lots_by_id: dict[str, dict[str, Any]] | None = None,
         bins: dict[str, list[dict[str, Any]]] | None = None) -> int:
    """Plan the open goods needs of a batch together (:class:`engine.Planner`), in service
    order; claim, record, emit. Scarce categories are shared by :func:`engine.fair_caps`.

    Stock comes from the warehouses' bins (lots in use order): a decision takes lots from a
    bin's head, so it costs the same however many lots a warehouse holds. ``bins`` are bins
    the caller already read in this transaction (``{"category|location": lots}``)."""
    store, tx, ref, now = u.store, u.tx, u.ref, u.now
    docs = {d["_id"]: d for d in need_docs}
    needs = [n for n in engine.order_needs(as_engine_need(d) for d in need_docs)
             if n.remaining > 0 and docs[n.need_id].get("kind", "goods") == "goods"]
    bins = dict(bins or {})
    loaded: set[tuple[str, str]] = set()
    for bin_id in bins:
        category, location = bin_id.split("|", 1)
        loaded.add((category, location))
    for need in needs:
        wanted = [loc for loc in engine.reach(need, ref.areas)
                  if (need.category, loc) not in loaded]
        bins.update(store.load_bins(tx, need.category, wanted))
        loaded.update((need.category, loc) for loc in wanted)
    lots = {entry["_id"]: entry for entries in bins.values() for entry in entries}
    if lots_by_id is not None:
        lots_by_id.update(lots)

    made = 0
    made_in: dict[str, int] = {}
    touched: set[str] = set()
    groups: dict[tuple[str, str], list[engine.Need]] = {}
    for need in needs:
        groups.setdefault((need.category, units.dimension(need.unit)), []).append(need)
    for (category, _), group in sorted(groups.items()):
        stock = engine.stock_of(
            (as_engine_lot(e) for bin_id, entries in bins.items()
             if bin_id.startswith(f"{category}|") for e in entries),
            category, group[0].unit)
        caps = engine.contended_caps(
            group, {n.need_id: docs[n.need_id].get("beneficiaries") for n in group},
            stock, ref.areas, now)
        by_need: dict[str, list[engine.Allocation]] = {}
        for alloc in engine.serve_fairly(engine.Planner(stock, ref.areas, now), group, caps):
            by_need.setdefault(alloc.need_id, []).append(alloc)
        for need_id, allocations in by_need.items():
            made += len(allocations)
            made_in[category] = made_in.get(category, 0) + len(allocations)
            _record(u, docs[need_id], allocations, lots)
            touched.update(f"{category}|{a.location_id}" for a in allocations)
    for bin_id in sorted(touched):
        store.save_bin(tx, bin_id, bins[bin_id], now)
    for category, count in sorted(made_in.items()):
        store.count_assignments(tx, category, now.strftime("%Y-%m-%dT%H:00"), count)
    return made


def _usable(entry: dict[str, Any], now: datetime) -> bool:
    expires = entry.get("expires_at")
    return entry["available"] > 0 and (expires is None or _aware(expires, now) > now)


def _record(u: Unit, need_doc: dict[str, Any], allocations: list[engine.Allocation],
            lots_by_id: dict[str, dict[str, Any]]) -> None:
    store, tx, now = u.store, u.tx, u.now
    fulfilled = need_doc["fulfilled_milli"]
    records = []
    asked = units.from_milli(need_doc["quantity_milli"], need_doc["unit"])
    for alloc in allocations:
        lot = lots_by_id[alloc.lot_id]
        # the share of the lot's value is cumulative, so its allocations add up to it exactly
        fen, taken = take_value(lot, alloc.quantity)
        store.claim(tx, alloc.lot_id, alloc.quantity, taken_fen=taken)
        lot["available"] -= alloc.quantity
        lot["taken_fen"] = taken
        fulfilled += alloc.quantity
        seq = len(need_doc["assignments"]) + len(records) + 1
        assignment_id = f"{need_doc['_id']}#{seq}"
        value = money.to_yuan(fen)
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
            "value_fen": fen,  # what a release would give back to the lot
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
            "need_quantity": asked,
            "need_assigned": units.from_milli(fulfilled, need_doc["unit"]),
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
            "completed_by": records[-1]["assignment_id"],
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


OPEN_STATUSES = ("open", "partial", "offered")


def need_list(store: MatchingStore, ref: Reference, filters: dict[str, Any],
              after: str | None, limit: int) -> dict[str, Any]:
    """A page of needs (``GET /api/needs``) with their assignments: by area (the community
    and the areas above it), status, kind, category, urgency, programme and posting day."""
    status = filters.get("status")
    within = listing.areas_within(ref, filters["area"]) if filters.get("area") else None
    docs = store.need_candidates(filters.get("category"), status in OPEN_STATUSES)

    def keep(d: dict[str, Any]) -> bool:
        return ((within is None or d["community_id"] in within)
                and all(d.get(k) == filters[k] for k in ("status", "kind", "category",
                                                         "urgency", "programme")
                        if filters.get(k))
                and listing.in_period(d.get("posted_at"), filters.get("from"),
                                      filters.get("to")))

    def view(d: dict[str, Any]) -> dict[str, Any]:
        out = need_view(d)  # with its assignments and their explanations (the console)
        for k in ("escalations", "offered_to"):
            out.pop(k, None)
        return out

    return listing.page(docs, keep, view, after, limit)


def escalate(u: Unit, need_id: str) -> str | None:
    """Escalate an open need one tier (community -> street -> district), tell that tier's
    coordinators (``need_escalated``) and try again with the stock it can now reach."""
    store, tx, ref = u.store, u.tx, u.ref
    doc = store.get_need(need_id, tx)
    if doc is None or doc.get("open_category") is None or doc.get("tier") not in NEXT_TIER:
        return None
    store.serialise(tx, doc["category"])
    from_tier = doc.get("tier", "community")
    to_tier = NEXT_TIER[from_tier]
    next_at = u.now + timedelta(seconds=u.cfg.escalation_timeout(doc["urgency"]))
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
        fill(u, store.open_needs(tx, doc["category"]), lots_by_id=None)
    elif doc.get("status") == "open":
        offer_next(u, {**doc, "tier": to_tier})
    return to_tier


def expire(u: Unit, need_id: str) -> bool:
    """A need past its ``needed_by`` closes as expired; what it received stays given."""
    store, tx = u.store, u.tx
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


def _aware(dt: datetime, now: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=now.tzinfo)


# -- service needs: offers to volunteers ---------------------------------------------------


def as_volunteer(doc: dict[str, Any], week: str) -> engine.Volunteer:
    return engine.Volunteer(doc["_id"], doc.get("home_community_id", ""),
                            frozenset(doc.get("skills", [])), doc.get("weekly_hours_cap"),
                            float((doc.get("load") or {}).get(week, 0.0)),
                            doc.get("checked_at"), bool(doc.get("check_passing")))


def offer_next(u: Unit, doc: dict[str, Any]) -> bool:
    """Offer an open service need to the best eligible volunteer (never one offered it
    before); book the hours against their weekly cap. False when nobody is eligible: the need
    stays open until a volunteer becomes available or it escalates."""
    store, tx, ref, cfg, now = u.store, u.tx, u.ref, u.cfg, u.now
    week = engine.week_of(now)
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


def answer_offer(u: Unit, offer_id: str, accept: bool,
                 outcome: str = "declined") -> dict[str, Any]:
    """A volunteer accepts (the need is served) or declines (the next volunteer is offered
    it); an unanswered offer lapses the same way (``outcome="lapsed"``)."""
    store, tx, now = u.store, u.tx, u.now
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
                                   "unit": doc["unit"], "programme": doc.get("programme"),
                                   "beneficiaries": doc.get("beneficiaries"),
                                   "volunteer_id": volunteer_id},
                event_id=contract.derived_id("need_fulfilled", need_id))
    else:
        store.give_back_hours(tx, volunteer_id, offer["week"], offer["hours"])
        store.set_offer(tx, need_id, None, "open")
        doc.update(offer=None, status="open")
        tx.emit("offer_released", {"offer_id": offer_id, "need_id": need_id,
                                   "volunteer_id": volunteer_id, "outcome": outcome},
                event_id=contract.derived_id("offer_released", offer_id))
        offer_next(u, doc)
    return need_view(store.get_need(need_id, tx))


def volunteer_changed(u: Unit, volunteer_id: str, values: dict[str, Any]) -> int:
    """Update matching's view of a volunteer; if they can serve, offer them the open service
    needs of their skills, most urgent first. Returns the number of offers made."""
    store, tx = u.store, u.tx
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
            made += offer_next(u, doc)
    return made


def withdraw(u: Unit, lot_id: str, quantity: float, unit: str, reference: str,
             reason: str) -> dict[str, Any]:
    """Take stock out of matching's reach before another service writes it off or moves it:
    claimed exactly like an allocation, so stock is never both allocated and written off.
    The stock takes its share of the lot's value (:func:`money.share_fen`, as allocations
    do): the caller books that value, so everything that leaves a lot adds up to its value.
    Idempotent by ``reference``. Returns ``{"ok": bool, "available": <in the lot's unit>,
    "value_fen": int, "value_yuan": float}``."""
    store, tx = u.store, u.tx
    lot = store.get_lot(tx, lot_id)
    if lot is None:
        return {"ok": False, "error": f"unknown lot {lot_id!r}"}
    store.serialise(tx, lot["category"])
    done = store.get_withdrawal(tx, reference)
    if done is not None:
        answer = {"ok": True, "available": units.from_milli(lot["available"], lot["unit"]),
                  "repeated": True}
        if done.get("fen") is not None:
            answer.update(value_fen=done["fen"], value_yuan=money.to_yuan(done["fen"]))
        return answer
    if not units.compatible(unit, lot["unit"]):
        return {"ok": False, "error": f"{unit} does not measure lot {lot_id} ({lot['unit']})"}
    milli = units.to_milli(quantity, unit)
    if lot["available"] < milli:
        return {"ok": False, "available": units.from_milli(lot["available"], lot["unit"]),
                "error": "not enough unallocated stock in the lot"}
    # the stock leaves with its share of the lot's value, by the rule allocations use
    fen, taken = take_value(lot, milli)
    store.claim(tx, lot_id, milli, taken_fen=taken)
    bin_id = f"{lot['category']}|{lot['location_id']}"
    entries = store.load_bins(tx, lot["category"], [lot["location_id"]]).get(bin_id, [])
    for entry in entries:
        if entry["_id"] == lot_id:
            entry["available"] -= milli
            entry["taken_fen"] = taken
    store.save_bin(tx, bin_id, entries, u.now)
    store.record_withdrawal(tx, {"_id": reference, "lot_id": lot_id, "milli": milli,
                                 "fen": fen, "reason": reason, "at": u.now})
    return {"ok": True, "available": units.from_milli(lot["available"] - milli, lot["unit"]),
            "value_fen": fen, "value_yuan": money.to_yuan(fen)}
