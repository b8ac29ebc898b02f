"""Accounting: an append-only ledger of goods and cash in, allocated, written off and moved
between warehouses, pledges, approved volunteer hours, organisations, their status reports
and training, fed only by events; the coalition's figures
(reports, reconciliation, the bulletin) are sums over it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import partial
from typing import Any

from nameko.rpc import rpc

from services.accounting import reports
from services.accounting.store import AccountingStore
from services.common import sheets, units
from services.common.contract import Event
from services.common.deps import ReferenceProvider
from services.common.handler import on_event
from services.common.metrics import ServiceEndpoints
from services.common.store import StoreProvider

# every entry's id is derived from its cause and written only if absent
# (``AccountingStore.append``): an event handled again adds nothing, with no processed marker
ledger_event = partial(on_event, batch=True, keyed_by_cause=True)


class AccountingService(ServiceEndpoints):
    name = "accounting"
    # a batch waits this long for more events (handler.Batcher):
    # the ledger is read by people, not by the next step
    batch_linger_seconds = 0.2

    store: AccountingStore = StoreProvider(AccountingStore, emits=False)
    reference = ReferenceProvider()

    def _append(self, event: Event, make: Callable[..., dict]) -> None:
        entry = make(event)
        self.store.atomically(lambda tx: self.store.append(tx, entry),
                              event=event)  # no marker: the entry's id is its cause

    @ledger_event("donations", "donation_received")
    def on_donation_received(self, event: Event) -> None:
        # a lot made by a transfer is a movement between warehouses, not goods in
        entry = (reports.transferred_in_entry if event.data.get("transfer_of")
                 else reports.goods_in_entry)
        self._append(event, lambda e: entry(
            self.reference, e.data, e.occurred_at, e.event_id))

    @ledger_event("donations", "pledge_made")
    def on_pledge_made(self, event: Event) -> None:
        self._append(event,
                     lambda e: reports.pledge_entry(e.data, e.occurred_at, e.event_id))

    @ledger_event("volunteers", "status_reported")
    def on_status_reported(self, event: Event) -> None:
        self._append(event,
                     lambda e: reports.status_report_entry(e.data, e.occurred_at, e.event_id))

    @ledger_event("matching", "assignment_made")
    def on_assignment_made(self, event: Event) -> None:
        self._append(event, lambda e: reports.allocated_entry(
            self.reference, e.data, e.occurred_at, e.event_id))

    @ledger_event("donations", "stock_changed")
    def on_stock_changed(self, event: Event) -> None:
        # allocations are booked from assignment_made; write-offs and transfers out are new
        entry = {"written_off": reports.written_off_entry,
                 "transferred": reports.transferred_out_entry}.get(event.data["reason"])
        if entry is None:
            return
        self._append(event, lambda e: entry(
            self.reference, e.data, e.occurred_at, e.event_id))

    @ledger_event("volunteers", "hours_approved")
    def on_hours_approved(self, event: Event) -> None:
        self._append(event,
                     lambda e: reports.hours_entry(e.data, e.occurred_at, e.event_id))

    @ledger_event("volunteers", "hours_rejected")
    def on_hours_rejected(self, event: Event) -> None:
        # kept for the audit trail; no figure ever counts a rejected hour
        self._append(event,
                     lambda e: reports.rejected_hours_entry(e.data, e.occurred_at, e.event_id))

    @ledger_event("volunteers", "volunteer_registered")
    def on_volunteer_registered(self, event: Event) -> None:
        self._append(event,
                     lambda e: reports.volunteer_entry(e.data, e.occurred_at, e.event_id))

    @ledger_event("volunteers", "organisation_registered")
    def on_organisation_registered(self, event: Event) -> None:
        self._append(event,
                     lambda e: reports.organisation_entry(e.data, e.occurred_at, e.event_id))

    @ledger_event("volunteers", "training_held")
    def on_training_held(self, event: Event) -> None:
        self._append(event,
                     lambda e: reports.training_entry(e.data, e.occurred_at, e.event_id))

    @ledger_event("volunteers", "service_delivered")
    def on_service_delivered(self, event: Event) -> None:
        self._append(event,
                     lambda e: reports.service_delivery_entry(e.data, e.occurred_at,
                                                              e.event_id))

    @ledger_event("matching", "need_fulfilled")
    def on_need_fulfilled(self, event: Event) -> None:
        # only a service need served counts here (goods are counted from their allocations)
        entry = reports.served_need_entry(self.reference, event.data, event.occurred_at,
                                          event.event_id)
        if entry is None:
            return
        self._append(event, lambda e: entry)

    @ledger_event("volunteers", "programme_recorded")
    def on_programme_recorded(self, event: Event) -> None:
        self._append(event,
                     lambda e: reports.programme_entry(e.data, e.occurred_at, e.event_id))

    # -- reads ------------------------------------------------------------------------------
    @rpc
    def totals(self) -> dict[str, Any]:
        """Quantity and yuan per (kind, category) in the category's unit."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for e in self.store.entries():
            if e["kind"] not in (*reports.GOODS_KINDS, "hours"):
                continue
            unit = "hour" if e["kind"] == "hours" else reports.category_unit(
                self.reference, e["category"], [e])
            row = rows.setdefault((e["kind"], e["category"]), {
                "kind": e["kind"], "category": e["category"], "unit": unit, "milli": 0,
                "fen": 0, "entries": 0})
            row["milli"] += e["milli"]
            row["fen"] += e["value_fen"]
            row["entries"] += 1
        out = [{"kind": r["kind"], "category": r["category"], "unit": r["unit"],
                "quantity": units.from_milli(r["milli"], r["unit"]),
                "value_yuan": reports.yuan(r["fen"]), "entries": r["entries"]}
               for _, r in sorted(rows.items())]
        return {"rows": out}

    @rpc
    def report(self, by: str = "category", start: str | None = None,
               end: str | None = None) -> dict[str, Any]:
        rows = reports.report(self.reference, self.store.entries(), by, start, end)
        return {"by": by, "from": start, "to": end, "rows": rows}

    @rpc
    def bulletin(self, lang: str = "zh-CN", start: str | None = None,
                 end: str | None = None) -> dict[str, Any]:
        figures = reports.bulletin_figures(self.reference, self.store.entries(), start, end)
        return {**figures, "lang": lang,
                "text": reports.bulletin_text(self.reference, figures, lang)}

    @rpc
    def reconcile(self, stock: list[dict[str, Any]]) -> dict[str, Any]:
        """Compare the ledger with donations' stock (passed in: accounting reads no other
        service's database)."""
        return reports.reconcile(self.reference, self.store.entries(), stock)

    @rpc
    def export(self, fmt: str = "csv", by: str = "category", start: str | None = None,
               end: str | None = None, lang: str | None = None) -> dict[str, Any]:
        """The report as CSV text (with a byte-order mark), or as an XLSX workbook (base64)
        with the bulletin sheet; headers in ``lang`` (zh-CN, en; the keys without one)."""
        entries = self.store.entries()
        rows = reports.report(self.reference, entries, by, start, end)
        if fmt == "csv":
            return {"content_type": sheets.CSV_TYPE, "text": reports.to_csv(rows, lang)}
        figures = reports.bulletin_figures(self.reference, entries, start, end)
        return {"content_type": sheets.XLSX_TYPE,
                "base64": base64.b64encode(reports.to_xlsx(rows, figures, lang)).decode("ascii")}
