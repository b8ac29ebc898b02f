"""Coordinators' domain routes: hours and their approval, write-offs and transfers, pledges
and their parts, donor receipts, organisations, their status reports, training, ledger
reports and exports, reconciliation and the bulletin.

Mixed into ``GatewayService``. Bodies are strict (unknown fields: 400 with the fields named);
every command is idempotent by an id the caller chooses, so a retried request is harmless."""

from __future__ import annotations

import base64
from typing import Any

from marshmallow import fields, validate
from nameko.rpc import RpcProxy
from werkzeug.wrappers import Response

from services.common import contract
from services.common.deps import call
from services.common.web import http
from services.gateway import policy
from services.gateway.http import (
    allowed,
    authorise,
    error,
    forbidden,
    respond,
    submit,
    volunteer_scopes,
)

LANGS = ("zh-CN", "en")
GROUPINGS = ("category", "donor", "street", "community", "programme", "date")


class HoursBody(contract.Strict, contract.HoursLogged):
    pass


class DecisionBody(contract.Strict):
    decision = fields.String(required=True, validate=validate.OneOf(("approve", "reject")))
    note = fields.String(validate=validate.Length(max=2000))


DECISIONS_MAX = 500  # hours decided in one request (a season's sheet goes in parts)


class DecisionsBody(DecisionBody):
    hours_ids = fields.List(contract.identifier(required=True), required=True,
                            validate=validate.Length(min=1, max=DECISIONS_MAX))


class WriteOffBody(contract.Strict):
    request_id = contract.identifier(required=True)
    quantity = contract.quantity(required=True)
    unit = contract.unit(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(contract.WRITE_OFF_REASONS))
    note = fields.String(validate=validate.Length(max=2000))


class TransferBody(contract.Strict):
    request_id = contract.identifier(required=True)
    quantity = contract.quantity(required=True)
    unit = contract.unit(required=True)
    to_location_id = contract.identifier(required=True)


class PledgeBody(contract.Strict, contract.PledgeMade):
    pass


class PledgePartBody(contract.Strict):
    """A part of a pledge received: ``donation_id`` is its idempotency key. Category and
    donor come from the pledge; unit and warehouse default to the pledge's; the value to
    its share of the promised value (cash: its amount)."""

    donation_id = contract.identifier(required=True)
    quantity = contract.quantity(required=True)
    unit = contract.unit()
    location_id = contract.identifier()
    value_yuan = contract.amount()
    value_method = fields.String(validate=validate.OneOf(contract.VALUE_METHODS))
    expires_at = fields.AwareDateTime()


class PledgesQuery(contract.Strict):
    open = fields.Boolean(load_default=False)


class StaffBody(contract.Strict, contract.StaffHealth):
    pass


class StatusReportBody(contract.Strict, contract.StatusReported):
    class Meta(contract.Strict.Meta):
        exclude = ("organisation_id", "reported_at")

    staff = fields.Nested(StaffBody, required=True)


class ReportingQuery(contract.Strict):
    overdue = fields.Boolean()


class OrganisationContact(contract.Strict, contract.ContactSchema):
    role = fields.String(validate=validate.Length(max=100))


class OrganisationBody(contract.Strict, contract.OrganisationRegistered):
    contacts = fields.List(fields.Nested(OrganisationContact), load_default=list)


class TrainingBody(contract.Strict, contract.TrainingHeld):
    pass


class LangQuery(contract.Strict):
    lang = fields.String(load_default="zh-CN", validate=validate.OneOf(LANGS))


class PeriodQuery(contract.Strict):
    from_ = fields.Date(data_key="from")
    to = fields.Date()


class ReportQuery(PeriodQuery):
    by = fields.String(load_default="category", validate=validate.OneOf(GROUPINGS))


class ExportQuery(ReportQuery):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "xlsx")))
    # headers in this language; without it, the column keys (what programs read)
    lang = fields.String(validate=validate.OneOf(LANGS))


class BulletinQuery(PeriodQuery):
    lang = fields.String(load_default="zh-CN", validate=validate.OneOf(LANGS))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "text")))


class HoursQuery(contract.Strict):
    status = fields.String(validate=validate.OneOf(("pending", "approved", "rejected")))
    volunteer_id = contract.identifier()


AUDIT_ROWS_MAX = 50_000  # the latest entries an export carries
AUDIT_COLUMNS = (
    ("at", "时间", "at", "text"), ("actor", "操作者", "actor", "text"),
    ("role", "角色", "role", "text"), ("credential", "凭据", "credential", "text"),
    ("action", "操作", "action", "text"), ("method", "方法", "method", "text"),
    ("path", "路径", "path", "text"), ("status", "结果", "status", "count"),
    ("target", "对象", "target", "text"), ("address", "来源地址", "address", "text"))


def with_audit_sheet(book_bytes: bytes, entries: list[dict[str, Any]], start: str | None,
                     end: str | None, lang: str | None) -> bytes:
    """The ledger workbook with the audit log of the same period as one more sheet."""
    import io

    from openpyxl import load_workbook

    from services.common import sheets

    rows = [e for e in entries
            if (start is None or e["at"].date().isoformat() >= start)
            and (end is None or e["at"].date().isoformat() <= end)]
    book = load_workbook(io.BytesIO(book_bytes))
    sheets.add_sheet(book, "审计日志" if lang == "zh-CN" else "audit", AUDIT_COLUMNS,
                     [{**r, "at": r["at"].isoformat()} for r in rows], lang)
    return sheets.save(book)


def _period(query: dict[str, Any]) -> tuple[str | None, str | None]:
    start, end = query.get("from_"), query.get("to")
    return (start.isoformat() if start else None, end.isoformat() if end else None)


class DomainRoutes:
    """A service's refusal (``services.common.errors``) reaches the caller as raised: routes
    that can meet one declare it expected (an answer, not a failure), and the entrypoint maps
    it to its status."""

    intake = RpcProxy("intake")
    donations = RpcProxy("donations")
    volunteers = RpcProxy("volunteers")
    accounting = RpcProxy("accounting")

    # -- whose volunteer ------------------------------------------------------------------
    def _check_volunteer(self, request: Any, action: str, volunteer_id: str,
                         what: str) -> None:
        """403 unless the volunteer's home community is in my area (and, for an
        organisation, the volunteer is one of its own). The operator and the district act
        on anyone, known yet or not."""
        principal = request.principal
        if principal.areas is None and not principal.organisation_id:
            authorise(self, request, action, what=what)
            return
        scope = call(self.volunteers, "volunteer_scopes", [volunteer_id]).get(volunteer_id)
        if scope is None:
            raise forbidden(policy.Forbidden(
                f"volunteer {volunteer_id} is not known (yet), so {principal.label} may not "
                f"{what.split(' of ')[0]} for them: their registration must arrive first",
                principal.can_do()))
        authorise(self, request, action, area=scope.get("home_community_id"),
                  organisation=scope.get("organisation_id"), what=what)

    def _sees(self, principal: Any, scope: dict[str, Any] | None) -> bool:
        if scope is None:
            return False
        if principal.organisation_id and scope.get("organisation_id") != \
                principal.organisation_id:
            return False
        return policy.within(principal.areas, scope.get("home_community_id") or "",
                             self.reference.areas)

    # -- volunteer hours -----------------------------------------------------------------
    @http("POST", "/api/hours", body=HoursBody)
    @allowed("hours.post")
    def post_hours(self, request: Any) -> Response:
        """Log hours (an ``hours_logged`` event through intake); they wait for approval."""
        data = request.body
        self._check_volunteer(request, "hours.post", data["volunteer_id"],
                              f"log hours of volunteer {data['volunteer_id']}")
        event_id = contract.derived_id("gateway", "hours_logged", data["hours_id"])
        envelope = contract.build("hours_logged", data, source="gateway", event_id=event_id)
        answer = submit(self.intake, envelope, f"gateway:{request.principal.id}", "hours_id",
                        data["hours_id"])
        return respond(202, {"hours_id": data["hours_id"], "event_id": answer["event_id"],
                             "duplicate": answer["duplicate"],
                             "status_url": f"/api/hours?volunteer_id={data['volunteer_id']}"})

    @http("GET", "/api/hours", query=HoursQuery)
    @allowed("hours.read")
    def get_hours(self, request: Any) -> Response:
        query = request.query
        rows = call(self.volunteers, "hours", query.get("status"), query.get("volunteer_id"))
        principal = request.principal
        if principal.areas is not None or principal.organisation_id:
            # only the hours of volunteers in my area (or of my organisation)
            scopes = volunteer_scopes(self.volunteers,
                                      sorted({r["volunteer_id"] for r in rows}))
            rows = [r for r in rows if self._sees(principal, scopes.get(r["volunteer_id"]))]
        return respond(200, {"hours": rows})

    @http("POST", "/api/hours/<string:hours_id>/decision", body=DecisionBody)
    @allowed("hours.decide")
    def decide_hours(self, request: Any, hours_id: str) -> Response:
        data = request.body
        principal = request.principal
        if principal.areas is not None or principal.organisation_id:
            entry = call(self.volunteers, "hours_entry", hours_id)
            if entry is None:
                return error(404, f"no hours {hours_id!r} (they may still be on their way)")
            self._check_volunteer(request, "hours.decide", entry["volunteer_id"],
                                  f"decide hours of volunteer {entry['volunteer_id']}")
        return respond(200, call(self.volunteers, "decide_hours", hours_id,
                                 data["decision"] == "approve", data.get("note")))

    @http("POST", "/api/hours/decisions", body=DecisionsBody)
    @allowed("hours.decide")
    def decide_many_hours(self, request: Any) -> Response:
        """Approve or reject many pending hours at once (imported hours count only once
        approved): each decided as one decision would be; hours of volunteers outside my
        area (or organisation), unknown hours and hours decided the other way are named in
        ``refused`` with the reason and change nothing."""
        data = request.body
        ids = list(dict.fromkeys(data["hours_ids"]))
        refused: dict[str, str] = {}
        principal = request.principal
        if principal.areas is not None or principal.organisation_id:
            owners = call(self.volunteers, "hours_volunteers", ids)
            scopes = volunteer_scopes(self.volunteers, sorted(set(owners.values())))
            for hours_id in ids:
                if hours_id not in owners:
                    refused[hours_id] = f"no hours {hours_id!r} (they may still be on their way)"
                elif not self._sees(principal, scopes.get(owners[hours_id])):
                    refused[hours_id] = (f"{principal.label} may not decide hours of "
                                         f"volunteer {owners[hours_id]}")
        allowed_ids = [h for h in ids if h not in refused]
        result = {"decision": data["decision"], "counts": {}, "refused": {}}
        if allowed_ids:
            result = call(self.volunteers, "decide_many_hours", allowed_ids,
                          data["decision"] == "approve", data.get("note"), timeout=30.0)
        result["refused"].update(refused)
        if refused:
            result["counts"]["refused"] = result["counts"].get("refused", 0) + len(refused)
        return respond(200, result)

    # -- stock -----------------------------------------------------------------------------
    @http("POST", "/api/lots/<string:lot_id>/write-offs", body=WriteOffBody)
    @allowed("lots.write")
    def write_off(self, request: Any, lot_id: str) -> Response:
        data = request.body
        return respond(200, call(self.donations, "write_off", data["request_id"], lot_id,
                                 data["quantity"], data["unit"], data["reason"],
                                 data.get("note"), timeout=20.0))

    @http("POST", "/api/lots/<string:lot_id>/transfers", body=TransferBody)
    @allowed("lots.write")
    def transfer(self, request: Any, lot_id: str) -> Response:
        """Move stock to another warehouse; the new lot is at ``to_lot_id``."""
        data = request.body
        return respond(200, call(self.donations, "transfer", data["request_id"], lot_id,
                                 data["quantity"], data["unit"], data["to_location_id"],
                                 timeout=20.0))

    # -- pledges ---------------------------------------------------------------------------
    @http("POST", "/api/pledges", body=PledgeBody)
    @allowed("pledges.write")
    def post_pledge(self, request: Any) -> Response:
        authorise(self, request, "pledges.write",
                  organisation=request.body["donor"].get("donor_id"),
                  what="record a pledge")
        return respond(201, call(self.donations, "make_pledge", request.json_object))

    @http("GET", "/api/pledges", query=PledgesQuery)
    @allowed("pledges.read")
    def get_pledges(self, request: Any) -> Response:
        """Pledges; ``open=true``: those not (fully) received yet."""
        return respond(200, {"pledges": call(self.donations, "pledges",
                                             request.query["open"])})

    @http("GET", "/api/pledges/<string:pledge_id>")
    @allowed("pledges.read")
    def get_pledge(self, request: Any, pledge_id: str) -> Response:
        return respond(200, call(self.donations, "pledge", pledge_id))

    @http("POST", "/api/pledges/<string:pledge_id>/parts", body=PledgePartBody)
    @allowed("pledges.write")
    def post_pledge_part(self, request: Any, pledge_id: str) -> Response:
        """A part of the pledge arrived: accepted as a donation (202), counted on the pledge
        once its lot is recorded."""
        body = request.json_object
        if request.principal.organisation_id:
            pledge = call(self.donations, "pledge", pledge_id)
            authorise(self, request, "pledges.write",
                      organisation=(pledge.get("donor") or {}).get("donor_id"),
                      what=f"record a part of pledge {pledge_id}")
        return respond(202, call(self.donations, "receive_pledge", pledge_id, body,
                                 timeout=20.0))

    @http("GET", "/api/donations/<string:donation_id>/receipt", query=LangQuery)
    @allowed("receipts.read")
    def get_receipt(self, request: Any, donation_id: str) -> Response:
        receipt = call(self.donations, "receipt", donation_id, request.query["lang"])
        # a coordinator prints the receipts of what was received in their area
        authorise(self, request, "receipts.read", area=receipt.get("location_id") or "",
                  organisation=receipt.get("donor_id"),
                  what=f"read the receipt of donation {donation_id}")
        return Response(receipt["html"], status=200, mimetype="text/html",
                        headers={"X-Receipt-No": receipt["receipt_no"]})

    # -- organisations and training ------------------------------------------------------
    @http("POST", "/api/organisations", body=OrganisationBody)
    @allowed("organisations.write")
    def post_organisation(self, request: Any) -> Response:
        return respond(201, call(self.volunteers, "register_organisation",
                                 request.json_object))

    @http("GET", "/api/organisations")
    @allowed("organisations.read")
    def get_organisations(self, request: Any) -> Response:
        return respond(200, {"organisations": call(self.volunteers, "organisations")})

    @http("POST", "/api/organisations/<string:organisation_id>/status-reports",
          body=StatusReportBody)
    @allowed("status_reports.write")
    def post_status_report(self, request: Any, organisation_id: str) -> Response:
        """An organisation's periodic status report (idempotent by ``report_id``)."""
        body = request.json_object
        authorise(self, request, "status_reports.write", organisation=organisation_id,
                  what=f"send a status report for {organisation_id}")
        return respond(201, call(self.volunteers, "report_status", organisation_id, body))

    @http("GET", "/api/organisations/<string:organisation_id>/status-reports")
    @allowed("status_reports.read")
    def get_status_reports(self, request: Any, organisation_id: str) -> Response:
        authorise(self, request, "status_reports.read", organisation=organisation_id,
                  what=f"read the status reports of {organisation_id}")
        return respond(200, {"reports": call(self.volunteers, "status_reports",
                                             organisation_id)})

    @http("GET", "/api/organisations/reporting", query=ReportingQuery)
    @allowed("organisations.read")
    def get_reporting(self, request: Any) -> Response:
        """Each organisation's last report, next due time, overdue or not."""
        return respond(200, {"organisations": call(self.volunteers, "reporting",
                                                   request.query.get("overdue"))})

    @http("POST", "/api/training", body=TrainingBody)
    @allowed("training.write")
    def post_training(self, request: Any) -> Response:
        return respond(201, call(self.volunteers, "record_training", request.json_object))

    # -- figures ---------------------------------------------------------------------------
    @http("GET", "/api/ledger/report", query=ReportQuery)
    @allowed("ledger.read")
    def get_report(self, request: Any) -> Response:
        query = request.query
        start, end = _period(query)
        return respond(200, call(self.accounting, "report", query["by"], start, end,
                                 timeout=30.0))

    @http("GET", "/api/ledger/export", query=ExportQuery)
    @allowed("ledger.read")
    def get_export(self, request: Any) -> Response:
        query = request.query
        start, end = _period(query)
        out = call(self.accounting, "export", query["format"], query["by"], start, end,
                   query.get("lang"), timeout=30.0)
        name = f"relief-{query['by']}.{query['format']}"
        body = out["text"].encode("utf-8") if "text" in out else base64.b64decode(out["base64"])
        if query["format"] == "xlsx" and request.principal.may("audit.read"):
            # who did what, beside the figures it produced (for those who may read it)
            body = with_audit_sheet(body, self.store.audit_entries(None, None, AUDIT_ROWS_MAX),
                                    start, end, query.get("lang"))
        return Response(body, status=200, content_type=out["content_type"],
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @http("GET", "/api/bulletin", query=BulletinQuery)
    @allowed("bulletin.read")
    def get_bulletin(self, request: Any) -> Response:
        query = request.query
        start, end = _period(query)
        bulletin = call(self.accounting, "bulletin", query["lang"], start, end, timeout=30.0)
        if query["format"] == "text":
            return Response(bulletin["text"], status=200, mimetype="text/plain")
        return respond(200, bulletin)

    @http("GET", "/api/reconciliation")
    @allowed("ledger.read")
    def get_reconciliation(self, request: Any) -> Response:
        """received = allocated + in stock + written off, per category and warehouse; any
        row where the ledger and the stock disagree is listed under ``differences``."""
        stock = call(self.donations, "stock_summary", timeout=30.0)
        return respond(200, call(self.accounting, "reconcile", stock, timeout=30.0))
