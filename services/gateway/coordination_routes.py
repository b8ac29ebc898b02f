"""Coordinators' lists, programmes and service deliveries: needs, donations, lots and
volunteers filtered by area, status, category, programme and day, a page at a time (JSON,
or CSV / XLSX to open in a spreadsheet); programmes with their activities and reach;
services delivered per programme.

Mixed into ``GatewayService``; the same operator token as the neighbouring routes. A list
answers ``{"items": [...], "next": <cursor>}``: pass ``after=<next>`` for the page after.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from typing import Any

from marshmallow import fields, validate
from nameko.rpc import RpcProxy
from werkzeug.wrappers import Response

from services.common import contract, errors, sheets
from services.common.deps import call
from services.common.web import http
from services.gateway import imports, policy, schemas
from services.gateway.domain_routes import HoursBody
from services.gateway.http import (
    allowed,
    error,
    forbidden,
    respond,
    submit,
    volunteer_scopes,
)

FORMATS = ("json", "csv", "xlsx")
EXPORT_MAX_ROWS = 5000  # an export walks the pages up to this many rows
NEED_STATUSES = ("open", "partial", "offered", "fulfilled", "expired")


class _ListQuery(contract.Strict, contract.ListQuery):
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS))
    lang = fields.String(load_default="zh-CN", validate=validate.OneOf(sheets.LANGS))


class NeedsQuery(_ListQuery):
    status = fields.String(validate=validate.OneOf(NEED_STATUSES))
    kind = fields.String(validate=validate.OneOf(contract.NEED_KINDS))
    urgency = fields.String(validate=validate.OneOf(contract.URGENCIES))


class DonationsQuery(_ListQuery):
    acquisition = fields.String(validate=validate.OneOf(contract.ACQUISITIONS))


class LotsQuery(DonationsQuery):
    status = fields.String(validate=validate.OneOf(("available", "empty")))


class VolunteersQuery(_ListQuery):
    """``category``: a skill; ``status``: the last health check."""

    status = fields.String(validate=validate.OneOf(("passing", "failing", "unchecked")))
    organisation_id = contract.identifier()


class ProgrammeBody(contract.Strict, contract.ProgrammeRecorded):
    """A programme's figures; ``recorded_at`` defaults to now."""

    recorded_at = fields.AwareDateTime(default_timezone=UTC)


class DeliveryBody(contract.Strict, contract.ServiceDelivered):
    pass


class VolunteerBody(contract.Strict, contract.VolunteerRegistered):
    pass


PROGRESS_EVERY = 25  # rows between two writes of an import's progress


def import_id(data: bytes) -> str:
    """An import's id: the SHA-256 of the uploaded file (what ``sha256sum`` prints)."""
    return hashlib.sha256(data).hexdigest()


class ImportQuery(contract.Strict):
    """``good_rows=true``: import the rows without errors even when others have some
    (otherwise a file with any wrong row imports nothing); ``dry_run=true``: check only."""

    good_rows = fields.Boolean(load_default=False)
    dry_run = fields.Boolean(load_default=False)


class TemplateQuery(contract.Strict):
    lang = fields.String(load_default="zh-CN", validate=validate.OneOf(sheets.LANGS))
    format = fields.String(load_default="xlsx", validate=validate.OneOf(("xlsx", "csv")))


# what each import's rows are loaded by: the API's own bodies
IMPORT_BODIES = {"needs": schemas.NeedBody, "donations": schemas.DonationBody,
                 "volunteers": VolunteerBody, "hours": HoursBody, "deliveries": DeliveryBody,
                 "programmes": ProgrammeBody}
# kinds a POST sends to volunteers directly (not as events through intake)
TO_VOLUNTEERS = {"deliveries": ("record_delivery", DeliveryBody),
                 "programmes": ("record_programme", ProgrammeBody)}
UPLOAD_TYPES = ("text/csv", sheets.XLSX_TYPE, "application/octet-stream",
                "application/vnd.ms-excel")


def _t(key: str, zh: str, en: str, kind: str = "text") -> sheets.Column:
    return (key, zh, en, kind)


NEED_COLUMNS = (
    _t("need_id", "需求编号", "need id"), _t("status", "状态", "status"),
    _t("kind", "类型", "kind"), _t("category", "类别", "category"),
    _t("community_id", "社区", "community"), _t("tier", "层级", "tier"),
    _t("urgency", "紧急程度", "urgency"), _t("quantity", "数量", "quantity", "quantity"),
    _t("unit", "单位", "unit"),
    _t("fulfilled_quantity", "已满足数量", "fulfilled", "quantity"),
    _t("remaining_quantity", "未满足数量", "remaining", "quantity"),
    _t("beneficiaries", "受益人数", "beneficiaries", "count"),
    _t("programme", "服务计划", "programme"), _t("needed_by", "需要日期", "needed by"),
    _t("posted_at", "发布时间", "posted at"))
DONATION_COLUMNS = (
    _t("donation_id", "捐赠编号", "donation id"), _t("receipt_no", "收据编号", "receipt no."),
    _t("acquisition", "来源", "acquisition"), _t("category", "类别", "category"),
    _t("quantity", "数量", "quantity", "quantity"), _t("unit", "单位", "unit"),
    _t("value_yuan", "价值（元）", "value (yuan)", "money"),
    _t("value_method", "估值方式", "valuation"),
    _t("face_value_yuan", "每单位保额/面值（元）", "cover or face value each (yuan)", "money"),
    _t("location_id", "入库地点", "warehouse"), _t("programme", "服务计划", "programme"),
    _t("pledge_id", "认捐编号", "pledge id"), _t("received_at", "接收时间", "received at"))
LOT_COLUMNS = (
    _t("lot_id", "批次编号", "lot id"), _t("category", "类别", "category"),
    _t("location_id", "仓库", "warehouse"), _t("unit", "单位", "unit"),
    _t("quantity", "入库数量", "quantity", "quantity"),
    _t("available", "可用数量", "available", "quantity"),
    _t("allocated", "已分配数量", "allocated", "quantity"),
    _t("written_off", "报损数量", "written off", "quantity"),
    _t("transferred", "调出数量", "transferred", "quantity"),
    _t("value_yuan", "价值（元）", "value (yuan)", "money"),
    _t("acquisition", "来源", "acquisition"), _t("programme", "服务计划", "programme"),
    _t("expires_at", "过期时间", "expires at"), _t("received_at", "接收时间", "received at"))
VOLUNTEER_COLUMNS = (
    _t("volunteer_id", "志愿者编号", "volunteer id"),
    _t("home_community_id", "所在社区", "home community"), _t("skills", "技能", "skills"),
    _t("organisation_id", "所属机构", "organisation"),
    _t("weekly_hours_cap", "每周时长上限", "weekly hours cap", "quantity"),
    _t("health_check", "最近健康检查", "last health check"),
    _t("registered_at", "登记时间", "registered at"))

LISTS = {  # name: (service, RPC, columns)
    "needs": ("matching", "list_needs", NEED_COLUMNS),
    "donations": ("donations", "list_donations", DONATION_COLUMNS),
    "lots": ("donations", "list_lots", LOT_COLUMNS),
    "volunteers": ("volunteers", "list_volunteers", VOLUNTEER_COLUMNS),
}
FILTERS = ("area", "category", "programme", "status", "kind", "urgency", "acquisition",
           "organisation_id")


class CoordinationRoutes:
    """``GET /api/needs``, ``/api/donations``, ``/api/lots``, ``/api/volunteers`` (lists);
    ``POST``/``GET /api/programmes``; ``POST /api/services/deliveries``."""

    intake = RpcProxy("intake")
    matching = RpcProxy("matching")
    donations = RpcProxy("donations")
    volunteers = RpcProxy("volunteers")

    def _list(self, request: Any, name: str, action: str) -> Response:
        query = request.query
        if query.get("area") and query["area"] not in self.reference.areas:
            return error(400, "invalid query", {"area": f"unknown area {query['area']!r}"})
        principal = request.principal
        areas = principal.areas
        if areas is not None:
            # a coordinator (or an area-scoped key) lists within their area: theirs, or
            # one inside it they name; with several, they name which
            if not query.get("area"):
                if len(areas) != 1:
                    return error(400, "invalid query", {"area": (
                        f"name one of your areas ({', '.join(areas)}) or one inside them")})
                query["area"] = areas[0]
            if not policy.within(areas, query["area"], self.reference.areas):
                raise forbidden(policy.Forbidden(
                    f"{principal.label} acts within {', '.join(areas)} and may not list "
                    f"{name} of {query['area']}", principal.can_do()))
        if principal.organisation_id and action in policy.OWN_ACTIONS:
            # an organisation lists its own (its volunteers), never another's
            if query.get("organisation_id") not in (None, principal.organisation_id):
                raise forbidden(policy.Forbidden(
                    f"{principal.label} acts for organisation {principal.organisation_id} "
                    f"and may not list {name} of {query['organisation_id']}",
                    principal.can_do()))
            query["organisation_id"] = principal.organisation_id
        filters = {k: query[k] for k in FILTERS if query.get(k)}
        for key, value in (("from", query.get("from_")), ("to", query.get("to"))):
            if value:
                filters[key] = value.isoformat()
        service, method, columns = LISTS[name]
        proxy = getattr(self, service)
        if query["format"] == "json":
            return respond(200, call(proxy, method, filters, query.get("after"),
                                     query["limit"], timeout=30.0))
        rows, after = [], query.get("after")
        while len(rows) < EXPORT_MAX_ROWS:
            got = call(proxy, method, filters, after, contract.LIST_PAGE_MAX, timeout=30.0)
            rows += got["items"]
            after = got["next"]
            if after is None:
                break
        rows = rows[:EXPORT_MAX_ROWS]
        filename = f"relief-{name}.{query['format']}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"',
                   "X-Rows": str(len(rows)), "X-Truncated": "true" if after else "false"}
        if query["format"] == "csv":
            return Response(sheets.to_csv(columns, rows, query["lang"]).encode("utf-8"),
                            status=200, content_type=sheets.CSV_TYPE, headers=headers)
        body = sheets.to_xlsx([(name, columns, rows)], query["lang"])
        return Response(body, status=200, content_type=sheets.XLSX_TYPE, headers=headers)

    @http("GET", "/api/needs", query=NeedsQuery)
    @allowed("needs.read")
    def list_needs(self, request: Any) -> Response:
        return self._list(request, "needs", "needs.read")

    @http("GET", "/api/donations", query=DonationsQuery)
    @allowed("ledger.read")
    def list_donations(self, request: Any) -> Response:
        return self._list(request, "donations", "ledger.read")

    @http("GET", "/api/lots", query=LotsQuery)
    @allowed("stock.read")
    def list_lots(self, request: Any) -> Response:
        return self._list(request, "lots", "stock.read")

    @http("GET", "/api/volunteers", query=VolunteersQuery)
    @allowed("hours.read")
    def list_volunteers(self, request: Any) -> Response:
        return self._list(request, "volunteers", "hours.read")

    # -- programmes and the services they deliver ----------------------------------------
    @http("POST", "/api/programmes", body=ProgrammeBody)
    @allowed("training.write")
    def post_programme(self, request: Any) -> Response:
        """Record a programme's figures (``programme_recorded``); the same figures again are
        harmless, new ones replace them. An organisation records its own programme only
        (``organisation_ids`` naming it alone)."""
        body = request.json_object
        own = request.principal.organisation_id
        if own:
            named = body.get("organisation_ids") or [own]
            if named != [own]:
                raise forbidden(policy.Forbidden(
                    f"{request.principal.label} acts for organisation {own} and may record "
                    f"only its own programme (organisation_ids [{own!r}])",
                    request.principal.can_do()))
            body = {**body, "organisation_ids": [own]}
        return respond(201, call(self.volunteers, "record_programme", body))

    @http("GET", "/api/programmes")
    @allowed("bulletin.read")
    def get_programmes(self, request: Any) -> Response:
        return respond(200, {"programmes": call(self.volunteers, "programmes")})

    @http("POST", "/api/services/deliveries", body=DeliveryBody)
    @allowed("training.write")
    def post_delivery(self, request: Any) -> Response:
        """Services a programme delivered (``service_delivered``); idempotent by
        ``delivery_id``. An organisation records its own deliveries only."""
        body = request.json_object
        own = request.principal.organisation_id
        if own:
            if body.get("organisation_id") not in (None, own):
                raise forbidden(policy.Forbidden(
                    f"{request.principal.label} acts for organisation {own} and may not "
                    f"record deliveries of {body['organisation_id']}",
                    request.principal.can_do()))
            body = {**body, "organisation_id": own}
        return respond(201, call(self.volunteers, "record_delivery", body))


    # -- bulk import from spreadsheets -----------------------------------------------------
    @http("GET", "/api/imports/<string:kind>/template", query=TemplateQuery)
    @allowed("reference.read")
    def get_import_template(self, request: Any, kind: str) -> Response:
        if kind not in imports.KINDS:
            return error(404, f"no import of {kind!r} (one of {', '.join(imports.KINDS)})")
        query = request.query
        body = imports.template(kind, query["lang"], query["format"])
        filename = f"relief-import-{kind}-{query['lang']}.{query['format']}"
        return Response(body, status=200,
                        content_type=sheets.CSV_TYPE if query["format"] == "csv"
                        else sheets.XLSX_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @http("POST", "/api/imports/<string:kind>", accepts=UPLOAD_TYPES, query=ImportQuery)
    @allowed("imports.write")
    def post_import(self, request: Any, kind: str) -> Response:
        """Import a sheet of needs, donations, volunteers, hours or service deliveries: every
        row checked first; then each good row goes the way one POST of it would (intake,
        or volunteers for deliveries) under the id a POST would derive, so uploading the
        same file again imports nothing twice."""
        if kind not in imports.KINDS:
            return error(404, f"no import of {kind!r} (one of {', '.join(imports.KINDS)})")
        query = request.query
        data = request.get_data() or b""
        try:
            table = imports.read_table(data, request.mimetype or "")
            rows = imports.rows_of(kind, table, IMPORT_BODIES[kind](), self.reference)
        except imports.FileRefused as exc:
            return error(400, str(exc))
        return self._import(request, {kind: rows}, query, import_id(data))

    @http("POST", "/api/imports", accepts=UPLOAD_TYPES, query=ImportQuery)
    @allowed("imports.write")
    def post_workbook_import(self, request: Any) -> Response:
        """Import a workbook whose sheets are named by what they hold (``donations`` or
        物资, ``volunteers`` or 志愿者, ``hours`` or 服务时长, ``deliveries`` or 服务成效,
        ``needs`` or 需求): every sheet checked before anything is imported."""
        query = request.query
        data = request.get_data() or b""
        try:
            tables = imports.read_workbook(data)
            sheets_ = {kind: imports.rows_of(kind, table, IMPORT_BODIES[kind](),
                                             self.reference)
                       for kind, table in tables.items()}
        except imports.FileRefused as exc:
            return error(400, str(exc))
        return self._import(request, sheets_, query, import_id(data))

    @http("GET", "/api/imports/progress/<string:import_id>")
    @allowed("imports.write")
    def get_import_progress(self, request: Any, import_id: str) -> Response:
        """How far an import is (while its upload is still being answered, or after): rows
        to submit, done, imported, duplicates, its state. The id is the SHA-256 of the
        uploaded file in hex (``sha256sum``), so whoever uploads it knows it at once."""
        doc = self.store.import_state(import_id)
        if doc is None:
            return error(404, f"no import {import_id!r} (the id is the file's SHA-256)")
        doc["import_id"] = doc.pop("_id")
        return respond(200, doc)

    def _import(self, request: Any, sheets_: dict[str, list[imports.Row]],
                query: dict[str, Any], import_id_: str) -> Response:
        self._refuse_rows_outside(request.principal, sheets_)
        reports = {kind: {
            "kind": kind, "rows": len(rows), "valid": sum(r.ok for r in rows),
            "invalid": sum(not r.ok for r in rows), "imported": 0, "duplicates": 0,
            "dry_run": query["dry_run"],
            "errors": [{"row": r.number, "fields": r.errors} for r in rows if not r.ok]}
            for kind, rows in sheets_.items()}
        bad = {f"{'' if len(sheets_) == 1 else kind + ' '}row {r.number}.{k}": v
               for kind, rows in sheets_.items() for r in rows if not r.ok
               for k, v in sorted(r.errors.items())}
        if bad and not query["good_rows"]:
            wrong = sum(x["invalid"] for x in reports.values())
            total = sum(x["rows"] for x in reports.values())
            # an error answer like any other: ``fields`` names each wrong row's cells
            return error(422, f"{wrong} of {total} rows are wrong; nothing was imported "
                              f"(good_rows=true imports the {total - wrong} others)", bad)
        if not query["dry_run"]:
            self._submit_all(request.principal, sheets_, reports, import_id_)
        if len(reports) == 1:
            return respond(200, next(iter(reports.values())))
        return respond(200, {"sheets": [reports[k] for k in imports.IMPORT_ORDER
                                        if k in reports]})

    def _refuse_rows_outside(self, principal: Any,
                             sheets_: dict[str, list[imports.Row]]) -> None:
        """A row about a place outside the caller's areas (an area-scoped key) is a row
        error, as a POST of it would be refused: needs by community, donations by where the
        stock is, volunteers by home community, hours by the volunteer's home community."""
        areas = principal.areas
        if areas is None:
            return
        tree = self.reference.areas
        volunteer_ids = sorted({r.payload["volunteer_id"] for r in sheets_.get("hours", ())
                                if r.ok})
        homes = {vid: (scope or {}).get("home_community_id")
                 for vid, scope in volunteer_scopes(self.volunteers, volunteer_ids).items()}
        # volunteers registered in the same workbook count where the sheet puts them
        homes.update({r.payload["volunteer_id"]: r.payload.get("home_community_id")
                      for r in sheets_.get("volunteers", ()) if r.ok})
        where = {"needs": lambda p: p.get("community_id"),
                 "donations": lambda p: p.get("location_id"),
                 "volunteers": lambda p: p.get("home_community_id"),
                 "hours": lambda p: homes.get(p["volunteer_id"])}
        for kind, rows in sheets_.items():
            place = where.get(kind)
            if place is None:
                continue
            for row in rows:
                at = place(row.payload) if row.ok else None
                if row.ok and not (at and policy.within(areas, at, tree)):
                    row.errors["row"] = (f"{principal.label} acts within {', '.join(areas)}; "
                                         f"this row is about {at or 'a place not known yet'}")

    def _submit_all(self, principal: Any, sheets_: dict[str, list[imports.Row]],
                    reports: dict[str, dict[str, Any]], import_id_: str) -> None:
        """Every sheet's good rows, in order, with the progress kept for
        ``GET /api/imports/progress/<id>`` (every :data:`PROGRESS_EVERY` rows)."""
        total = sum(r.ok for rows in sheets_.values() for r in rows)
        self.store.import_started(import_id_, {"kinds": sorted(sheets_), "rows": total,
                                               "by": principal.id})
        progress = {"done": 0}

        def step(report: dict[str, Any]) -> None:
            progress["done"] += 1
            if progress["done"] % PROGRESS_EVERY == 0:
                self.store.import_progress(import_id_, {
                    "done": progress["done"],
                    "imported": sum(r["imported"] for r in reports.values()),
                    "duplicates": sum(r["duplicates"] for r in reports.values())})

        try:
            for kind in imports.IMPORT_ORDER:
                if kind in sheets_:
                    self._submit_rows(principal, kind, sheets_[kind], reports[kind], step)
        except Exception as exc:
            self.store.import_progress(import_id_, {
                "state": "failed", "done": progress["done"],
                "reason": f"{type(exc).__name__}: {exc}"[:500]})
            raise
        self.store.import_progress(import_id_, {
            "state": "done", "done": progress["done"], "finished_at": contract.now(),
            "imported": sum(r["imported"] for r in reports.values()),
            "duplicates": sum(r["duplicates"] for r in reports.values())})

    def _submit_rows(self, principal: Any, kind: str, rows: list[imports.Row],
                     report: dict[str, Any], step: Any) -> None:
        """Each good row the way one POST of it goes, under the id that POST derives."""
        spec = imports.KINDS[kind]
        for row in rows:
            if not row.ok:
                continue
            if kind in TO_VOLUNTEERS:  # recorded by volunteers, as their POST does
                method, body = TO_VOLUNTEERS[kind]
                created = call(self.volunteers, method, body().dump(row.payload))["created"]
            else:
                event_id = contract.derived_id("gateway", spec["event"],
                                               row.payload[spec["id"]])
                envelope = contract.build(spec["event"], row.payload, source="gateway-import",
                                          event_id=event_id)
                try:
                    created = not submit(self.intake, envelope, f"gateway:{principal.id}",
                                         spec["id"], row.payload[spec["id"]])["duplicate"]
                except errors.Conflict as exc:  # the row is refused, the others go on
                    report["errors"].append({"row": row.number,
                                             "fields": {spec["id"]: exc.message}})
                    step(report)
                    continue
            report["imported" if created else "duplicates"] += 1
            step(report)


def openapi_paths() -> dict[str, Any]:
    """These routes in words for ``docs/http.openapi.yaml`` (their parameters and bodies come
    from the routes' declarations)."""
    from services.common import docs

    def file_or_page(what: str, item: dict[str, Any]) -> dict[str, Any]:
        return {"description": f"a page of {what} (format=json), or every matching row up "
                               f"to {EXPORT_MAX_ROWS:,} as CSV (UTF-8 with a byte-order "
                               "mark) or XLSX (headers in lang; X-Rows, X-Truncated)",
                "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "items": {"type": "array", "items": item},
                        "next": {"type": "string", "nullable": True}}}},
                    "text/csv": {"schema": {"type": "string"}},
                    sheets.XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}}}

    def listing(what: str, *keys: str) -> dict[str, Any]:
        return {"get": {
            "summary": f"{what.capitalize()}, filtered, a page at a time (after=<next>)",
            "responses": {"200": file_or_page(what, docs.record(*keys)),
                          "400": docs.failure("an unknown filter value or area, or a limit "
                                              f"outside 1-{contract.LIST_PAGE_MAX}")}}}

    kind_param = {"name": "kind", "in": "path", "required": True,
                  "schema": {"type": "string", "enum": list(imports.KINDS)}}
    report = docs.record("kind", "rows", "valid", "invalid", "imported", "duplicates",
                         "errors")
    needs = listing("needs", "need_id", "status", "category")
    donations = listing("donations", "donation_id", "category",
                        "acquisition")
    return {
        "/api/needs": needs,
        "/api/donations": donations,
        "/api/lots": listing("lots", "lot_id", "category", "available"),
        "/api/volunteers": listing("volunteers (contacts masked)",
                                   "volunteer_id", "home_community_id"),
        "/api/programmes": {
            "post": {"summary": "Record a programme's activities, communities, groups, "
                                "participants, reach and outputs (programme_recorded); the "
                                "same figures again are harmless, new ones replace them",
                     "responses": {"201": docs.answer("recorded (created: false if the "
                                                      "same figures were known)",
                                                      docs.record("programme_id", "revision",
                                                                  "created"))}},
            "get": {"summary": "Programmes with their latest figures",
                    "responses": {"200": docs.answer("programmes",
                                                     docs.listing("programmes"))}}},
        "/api/imports/{kind}": {"post": {
            "summary": "Import a spreadsheet (XLSX, or CSV in UTF-8 or GB18030) of needs, "
                       "donations, volunteers, hours or service deliveries, at most "
                       f"{imports.MAX_ROWS:,} rows: every row checked against the API's own "
                       "schema and reference data; a file with a wrong row imports nothing "
                       "unless good_rows=true; good rows flow as the events one POST each "
                       "would make, under the same ids (uploading again imports nothing "
                       "twice)",
            "parameters": [kind_param],
            "requestBody": {"required": True, "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in UPLOAD_TYPES}},
            "responses": {
                "200": docs.answer("imported (or checked, dry_run=true): counts, and "
                                   "with good_rows=true each wrong row's errors", report),
                "400": docs.failure("the file cannot be read: not CSV or XLSX, too many "
                                    "rows or columns, an unknown column, or a bad query"),
                "404": docs.failure("no such import"),
                "415": docs.failure("a body type other than CSV, XLSX or JSON"),
                "422": docs.failure("some rows are wrong: nothing imported; fields "
                                    "names each wrong cell as 'row <n>.<column>'")}}},
        "/api/imports": {"post": {
            "summary": "Import a workbook (XLSX) whose sheets are named by what they hold: "
                       "needs (需求), donations (物资), volunteers (志愿者), hours (服务时长), "
                       "deliveries (服务成效); a template's notes sheet is skipped. Every "
                       "sheet is checked before anything is imported; as for one sheet, "
                       "good_rows=true imports the good rows, dry_run=true only checks",
            "requestBody": {"required": True, "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in UPLOAD_TYPES}},
            "responses": {
                "200": docs.answer("imported (or checked): one report per sheet",
                                   docs.listing("sheets", report)),
                "400": docs.failure("the workbook cannot be read: not XLSX, a sheet of no "
                                    "known kind, too many rows, sheets or columns, an "
                                    "unknown column, or a bad query"),
                "415": docs.failure("a body type other than XLSX, CSV or JSON"),
                "422": docs.failure("some rows are wrong: nothing imported; fields names "
                                    "each wrong cell as '<sheet> row <n>.<column>'")}}},
        "/api/imports/{kind}/template": {"get": {
            "summary": "The sheet to fill in for an import, headers in zh-CN or en (XLSX "
                       "with a sheet saying what each column takes, or CSV)",
            "parameters": [kind_param],
            "responses": {"200": {"description": "the template", "content": {
                "text/csv": {"schema": {"type": "string"}},
                sheets.XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
                "404": docs.failure("no such import")}}},
        "/api/imports/progress/{import_id}": {"get": {
            "summary": "How far an import is, while its upload is being answered or after: "
                       "rows to submit, done, imported, duplicates, state (running, done, "
                       "failed); the id is the uploaded file's SHA-256 in hex",
            "responses": {"200": docs.answer("the import's progress", docs.record(
                              "import_id", "state", "rows", "done", "imported", "duplicates")),
                          "404": docs.failure("no import of that file")}}},
        "/api/services/deliveries": {"post": {
            "summary": "Services a programme delivered: sessions, people served, providers "
                       "(service_delivered); idempotent by delivery_id",
            "responses": {"201": docs.answer("recorded (created: false if known)",
                                             docs.record("delivery_id", "created"))}}},
    }
