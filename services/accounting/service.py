"""Accounting: an append-only ledger of goods in, goods allocated and volunteer hours,
fed only by events; the coalition's figures are sums over it."""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from services.accounting.store import AccountingStore
from services.common.contract import Event
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider


class AccountingService(ServiceEndpoints):
    name = "accounting"

    store: AccountingStore = StoreProvider(AccountingStore, emits=False)

    @on_event("donations", "donation_received")
    def on_donation_received(self, event: Event) -> None:
        d = event.data
        entry = {"_id": f"in:{d.get('lot_id') or d['donation_id']}", "kind": "goods_in",
                 "category": d["category"], "quantity": d["quantity"], "unit": d["unit"],
                 "value_yuan": d["value_yuan"], "location_id": d["location_id"],
                 "donor": d["donor"]["name"], "donor_kind": d["donor"]["kind"],
                 "programme": d.get("programme"), "at": event.occurred_at,
                 "event_id": event.event_id}
        self.store.atomically(lambda tx: self.store.append(tx, entry),
                              event=event, consumer="on_donation_received")

    @on_event("matching", "assignment_made")
    def on_assignment_made(self, event: Event) -> None:
        d = event.data
        entry = {"_id": f"allocated:{d['assignment_id']}", "kind": "goods_allocated",
                 "category": d["category"], "quantity": d["lot_quantity"],
                 "unit": d["lot_unit"], "value_yuan": d["value_yuan"],
                 "location_id": d["location_id"], "community_id": d["community_id"],
                 "need_id": d["need_id"], "programme": d.get("programme"),
                 "at": event.occurred_at, "event_id": event.event_id}
        self.store.atomically(lambda tx: self.store.append(tx, entry),
                              event=event, consumer="on_assignment_made")

    @rpc
    def totals(self) -> dict[str, Any]:
        """Quantity and yuan per (kind, category, unit): the bulletin's raw figures."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.store.entries():
            key = f"{e['kind']}/{e['category']}/{e['unit']}"
            row = out.setdefault(key, {"kind": e["kind"], "category": e["category"],
                                       "unit": e["unit"], "quantity": 0.0, "value_yuan": 0.0,
                                       "entries": 0})
            row["quantity"] = round(row["quantity"] + e["quantity"], 6)
            row["value_yuan"] = round(row["value_yuan"] + e["value_yuan"], 2)
            row["entries"] += 1
        return {"rows": sorted(out.values(), key=lambda r: (r["kind"], r["category"]))}
