"""Coordinators' domain routes: hours and their approval, write-offs and transfers, pledges
and their parts, donor receipts, organisations, their status reports, training, ledger
reports and exports, reconciliation and the bulletin.

Mixed into ``GatewayService``. Bodies are strict (unknown fields: 400 with the fields named);
every command is idempotent by an id the caller chooses, so a retried request is harmless."""

from __future__ import annotations

import base64
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from services.common import contract, units
from services.common.deps import call
from services.gateway.http import authorised, error, json_body, respond

LANGS = ("zh-CN", "en")
GROUPINGS = ("category", "donor", "street", "community", "programme", "date")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class HoursBody(contract.HoursLogged):
    class Meta:
        unknown = RAISE


class DecisionBody(_Strict):
    decision = fields.String(required=True, validate=validate.OneOf(("approve", "reject")))
    note = fields.String(validate=validate.Length(max=2000))


class WriteOffBody(_Strict):
    request_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    quantity = fields.Float(required=True, allow_nan=False,
                            validate=validate.Range(min=0, min_inclusive=False))
    unit = fields.String(required=True, validate=validate.OneOf(units.KNOWN_UNITS))
    reason = fields.String(required=True, validate=validate.OneOf(contract.WRITE_OFF_REASONS))
    note = fields.String(validate=validate.Length(max=2000))


class TransferBody(_Strict):
    request_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    quantity = fields.Float(required=True, allow_nan=False,
                            validate=validate.Range(min=0, min_inclusive=False))
    unit = fields.String(required=True, validate=validate.OneOf(units.KNOWN_UNITS))
    to_location_id = fields.String(required=True, validate=validate.Length(min=1, max=128))


class PledgeBody(contract.PledgeMade):
    class Meta:
        unknown = RAISE


class PledgePartBody(_Strict):
    """A part of a pledge received: ``donation_id`` is its idempotency key. Category and
    donor come from the pledge; unit and warehouse default to the pledge's; the value to
    its share of the promised value (cash: its amount)."""

    donation_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    quantity = fields.Float(required=True, allow_nan=False,
                            validate=validate.Range(min=0, min_inclusive=False))
    unit = fields.String(validate=validate.OneOf(units.KNOWN_UNITS))
    location_id = fields.String(validate=validate.Length(min=1, max=128))
    value_yuan = fields.Float(allow_nan=False, validate=validate.Range(min=0))
    value_method = fields.String(validate=validate.OneOf(contract.VALUE_METHODS))
    expires_at = fields.AwareDateTime()


class PledgesQuery(_Strict):
    open = fields.Boolean(load_default=False)


class StaffBody(contract.StaffHealth):
    class Meta:
        unknown = RAISE


class StatusReportBody(contract.StatusReported):
    class Meta:
        unknown = RAISE
        exclude = ("organisation_id", "reported_at")

    staff = fields.Nested(StaffBody, required=True)


class ReportingQuery(_Strict):
    overdue = fields.Boolean()


class OrganisationContact(contract.ContactSchema):
    class Meta:
        unknown = RAISE

    role = fields.String(validate=validate.Length(max=100))


class OrganisationBody(contract.OrganisationRegistered):
    class Meta:
        unknown = RAISE

    contacts = fields.List(fields.Nested(OrganisationContact), load_default=list)


class TrainingBody(contract.TrainingHeld):
    class Meta:
        unknown = RAISE


class LangQuery(_Strict):
    lang = fields.String(load_default="zh-CN", validate=validate.OneOf(LANGS))


class PeriodQuery(_Strict):
    from_ = fields.Date(data_key="from")
    to = fields.Date()


class ReportQuery(PeriodQuery):
    by = fields.String(load_default="category", validate=validate.OneOf(GROUPINGS))


class ExportQuery(ReportQuery):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "xlsx")))


class BulletinQuery(PeriodQuery):
    lang = fields.String(load_default="zh-CN", validate=validate.OneOf(LANGS))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "text")))


class HoursQuery(_Strict):
    status = fields.String(validate=validate.OneOf(("pending", "approved", "rejected")))
    volunteer_id = fields.String(validate=validate.Length(min=1, max=128))


def _json(request: Any, schema: Any) -> tuple[Any, Any, Response | None]:
    """The request's JSON object and what ``schema`` loads from it, or an error response."""
    body, problem = json_body(request)
    if problem:
        return None, None, problem
    data, problem = _load(schema, body)
    return body, data, problem


def _load(schema: Schema, values: Any) -> tuple[dict[str, Any], Response | None]:
    try:
        return schema.load(values), None
    except ValidationError as exc:
        return {}, error(400, "invalid request", contract.flatten_errors(exc.messages))


def _period(query: dict[str, Any]) -> tuple[str | None, str | None]:
    start, end = query.get("from_"), query.get("to")
    return (start.isoformat() if start else None, end.isoformat() if end else None)


def _answer(result: dict[str, Any], ok: int = 200) -> Response:
    """A service's answer: ``{"error", "status"}`` becomes that HTTP error."""
    if "error" in result:
        return error(int(result.get("status", 400)), result["error"], result.get("fields"))
    return respond(ok, result)


class DomainRoutes:
    intake = RpcProxy("intake")
    donations = RpcProxy("donations")
    volunteers = RpcProxy("volunteers")
    accounting = RpcProxy("accounting")

    # -- volunteer hours -----------------------------------------------------------------
    @http("POST", "/api/hours")
    @authorised
    def post_hours(self, request: Any) -> Response:
        """Log hours (an ``hours_logged`` event through intake); they wait for approval."""
        body, data, problem = _json(request, HoursBody())
        if problem:
            return problem
        event_id = contract.derived_id("gateway", "hours_logged", data["hours_id"])
        envelope = contract.build("hours_logged", data, source="gateway", event_id=event_id)
        answer = call(self.intake, "submit", envelope)
        if "error" in answer:
            return error(400, answer["error"], answer.get("fields"))
        return respond(202, {"hours_id": data["hours_id"], "event_id": answer["event_id"],
                             "duplicate": answer["duplicate"],
                             "status_url": f"/api/hours?volunteer_id={data['volunteer_id']}"})

    @http("GET", "/api/hours")
    @authorised
    def get_hours(self, request: Any) -> Response:
        query, problem = _load(HoursQuery(), request.args.to_dict())
        if problem:
            return problem
        rows = call(self.volunteers, "hours", query.get("status"), query.get("volunteer_id"))
        return respond(200, {"hours": rows})

    @http("POST", "/api/hours/<string:hours_id>/decision")
    @authorised
    def decide_hours(self, request: Any, hours_id: str) -> Response:
        body, data, problem = _json(request, DecisionBody())
        if problem:
            return problem
        result = call(self.volunteers, "decide_hours", hours_id,
                      data["decision"] == "approve", data.get("note"))
        return _answer(result)

    # -- stock -----------------------------------------------------------------------------
    @http("POST", "/api/lots/<string:lot_id>/write-offs")
    @authorised
    def write_off(self, request: Any, lot_id: str) -> Response:
        body, data, problem = _json(request, WriteOffBody())
        if problem:
            return problem
        result = call(self.donations, "write_off", data["request_id"], lot_id,
                      data["quantity"], data["unit"], data["reason"], data.get("note"),
                      timeout=20.0)
        return _answer(result)

    @http("POST", "/api/lots/<string:lot_id>/transfers")
    @authorised
    def transfer(self, request: Any, lot_id: str) -> Response:
        """Move stock to another warehouse; the new lot is at ``to_lot_id``."""
        body, data, problem = _json(request, TransferBody())
        if problem:
            return problem
        return _answer(call(self.donations, "transfer", data["request_id"], lot_id,
                            data["quantity"], data["unit"], data["to_location_id"],
                            timeout=20.0))

    # -- pledges ---------------------------------------------------------------------------
    @http("POST", "/api/pledges")
    @authorised
    def post_pledge(self, request: Any) -> Response:
        body, _, problem = _json(request, PledgeBody())
        if problem:
            return problem
        return _answer(call(self.donations, "make_pledge", body), ok=201)

    @http("GET", "/api/pledges")
    @authorised
    def get_pledges(self, request: Any) -> Response:
        """Pledges; ``open=true``: those not (fully) received yet."""
        query, problem = _load(PledgesQuery(), request.args.to_dict())
        if problem:
            return problem
        return respond(200, {"pledges": call(self.donations, "pledges", query["open"])})

    @http("GET", "/api/pledges/<string:pledge_id>")
    @authorised
    def get_pledge(self, request: Any, pledge_id: str) -> Response:
        pledge = call(self.donations, "pledge", pledge_id)
        if pledge is None:
            return error(404, f"no pledge {pledge_id!r}")
        return respond(200, pledge)

    @http("POST", "/api/pledges/<string:pledge_id>/parts")
    @authorised
    def post_pledge_part(self, request: Any, pledge_id: str) -> Response:
        """A part of the pledge arrived: accepted as a donation (202), counted on the pledge
        once its lot is recorded."""
        body, data, problem = _json(request, PledgePartBody())
        if problem:
            return problem
        return _answer(call(self.donations, "receive_pledge", pledge_id, body, timeout=20.0),
                       ok=202)

    @http("GET", "/api/donations/<string:donation_id>/receipt")
    @authorised
    def get_receipt(self, request: Any, donation_id: str) -> Response:
        query, problem = _load(LangQuery(), request.args.to_dict())
        if problem:
            return problem
        receipt = call(self.donations, "receipt", donation_id, query["lang"])
        if receipt is None:
            return error(404, f"no donation {donation_id!r} (it may still be on its way)")
        return Response(receipt["html"], status=200, mimetype="text/html",
                        headers={"X-Receipt-No": receipt["receipt_no"]})

    # -- organisations and training ------------------------------------------------------
    @http("POST", "/api/organisations")
    @authorised
    def post_organisation(self, request: Any) -> Response:
        body, data, problem = _json(request, OrganisationBody())
        if problem:
            return problem
        return _answer(call(self.volunteers, "register_organisation", body), ok=201)

    @http("GET", "/api/organisations")
    @authorised
    def get_organisations(self, request: Any) -> Response:
        return respond(200, {"organisations": call(self.volunteers, "organisations")})

    @http("POST", "/api/organisations/<string:organisation_id>/status-reports")
    @authorised
    def post_status_report(self, request: Any, organisation_id: str) -> Response:
        """An organisation's periodic status report (idempotent by ``report_id``)."""
        body, _, problem = _json(request, StatusReportBody())
        if problem:
            return problem
        return _answer(call(self.volunteers, "report_status", organisation_id, body), ok=201)

    @http("GET", "/api/organisations/<string:organisation_id>/status-reports")
    @authorised
    def get_status_reports(self, request: Any, organisation_id: str) -> Response:
        return respond(200, {"reports": call(self.volunteers, "status_reports",
                                             organisation_id)})

    @http("GET", "/api/organisations/reporting")
    @authorised
    def get_reporting(self, request: Any) -> Response:
        """Each organisation's last report, next due time, overdue or not."""
        query, problem = _load(ReportingQuery(), request.args.to_dict())
        if problem:
            return problem
        return respond(200, {"organisations": call(self.volunteers, "reporting",
                                                   query.get("overdue"))})

    @http("POST", "/api/training")
    @authorised
    def post_training(self, request: Any) -> Response:
        body, data, problem = _json(request, TrainingBody())
        if problem:
            return problem
        return _answer(call(self.volunteers, "record_training", body), ok=201)

    # -- figures ---------------------------------------------------------------------------
    @http("GET", "/api/ledger/report")
    @authorised
    def get_report(self, request: Any) -> Response:
        query, problem = _load(ReportQuery(), request.args.to_dict())
        if problem:
            return problem
        start, end = _period(query)
        return respond(200, call(self.accounting, "report", query["by"], start, end,
                                 timeout=30.0))

    @http("GET", "/api/ledger/export")
    @authorised
    def get_export(self, request: Any) -> Response:
        query, problem = _load(ExportQuery(), request.args.to_dict())
        if problem:
            return problem
        start, end = _period(query)
        out = call(self.accounting, "export", query["format"], query["by"], start, end,
                   timeout=30.0)
        name = f"relief-{query['by']}.{query['format']}"
        body = out["text"].encode("utf-8") if "text" in out else base64.b64decode(out["base64"])
        return Response(body, status=200, content_type=out["content_type"],
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @http("GET", "/api/bulletin")
    @authorised
    def get_bulletin(self, request: Any) -> Response:
        query, problem = _load(BulletinQuery(), request.args.to_dict())
        if problem:
            return problem
        start, end = _period(query)
        bulletin = call(self.accounting, "bulletin", query["lang"], start, end, timeout=30.0)
        if query["format"] == "text":
            return Response(bulletin["text"], status=200, mimetype="text/plain")
        return respond(200, bulletin)

    @http("GET", "/api/reconciliation")
    @authorised
    def get_reconciliation(self, request: Any) -> Response:
        """received = allocated + in stock + written off, per category and warehouse; any
        row where the ledger and the stock disagree is listed under ``differences``."""
        stock = call(self.donations, "stock_summary", timeout=30.0)
        return respond(200, call(self.accounting, "reconcile", stock, timeout=30.0))
