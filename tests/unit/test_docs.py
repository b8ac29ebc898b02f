"""The published contracts (docs/) are generated from the code, valid, and no looser than it."""

from datetime import UTC, date, datetime

import jsonschema
import pytest
import yaml
from marshmallow import ValidationError
from nameko.web.handlers import HttpRequestHandler
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from services import docs as docs_files
from services.common import contract, docs
from services.common.web import HttpEntrypoint, routes_of
from services.gateway import openapi as gateway_openapi
from services.gateway.schemas import DigestQuery
from services.gateway.service import GatewayService
from services.notifications.schemas import RecipientBody


def test_docs_match_the_schemas():
    assert docs_files.main(["--check"]) == 0, "docs/ is stale: run `make docs`"


# -- HTTP: OpenAPI 3.0.3 ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def openapi():
    return gateway_openapi.openapi()


def test_the_http_contract_is_valid_openapi_3_0(openapi):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV30SpecValidator(openapi).iter_errors()]
    assert errors == []
    validate(yaml.safe_load((docs_files.DOCS / "http.openapi.yaml").read_text(encoding="utf-8")))


def gateway_routes() -> set[tuple[str, str]]:
    found = set()
    for name in dir(GatewayService):
        for ep in getattr(getattr(GatewayService, name), "nameko_entrypoints", ()):
            if isinstance(ep, HttpRequestHandler):
                path = ep.url.replace("<string:", "{").replace(">", "}")
                found.add((ep.method.lower(), path))
    return found


def operations(openapi):
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            yield method, path, op


def test_every_route_of_the_gateway_is_documented(openapi):
    assert {(m, p) for m, p, _ in operations(openapi)} == gateway_routes()


def test_what_a_route_declares_is_what_the_document_says(openapi):
    declared = 0
    for route in routes_of(GatewayService):
        op = openapi["paths"][docs.route_path(route.url)][route.method.lower()]
        if route.body_schema is not None:
            assert op["requestBody"] == docs.json_body(route.body_schema), route.url
            declared += 1
        if route.query_schema is not None:
            names = [p["name"] for p in op["parameters"] if p["in"] == "query"]
            assert names == [f.data_key or n for n, f in route.query_schema.fields.items()]
            declared += 1
    assert declared >= 30  # the loop saw the routes (35 declarations when written)


def test_a_route_cannot_be_left_out_of_the_document_nor_one_that_is_gone_kept():
    route = HttpEntrypoint("GET", "/api/lots/<string:lot_id>/history", query=DigestQuery)
    with pytest.raises(ValueError, match="GET /api/lots/{lot_id}/history"):
        docs.route_paths([route], {})
    words = {"get": {"summary": "a lot's history", "responses": {"200": docs.answer("ok")}}}
    with pytest.raises(ValueError, match="no route serves it"):
        docs.route_paths([], {"/api/lots/{lot_id}/history": words})
    op = docs.route_paths([route], {"/api/lots/{lot_id}/history": words})[
        "/api/lots/{lot_id}/history"]["get"]
    assert [(p["name"], p["in"]) for p in op["parameters"]] == [
        ("lot_id", "path"), ("sig", "query"), ("lang", "query")]
    assert op["summary"] == "a lot's history" and "requestBody" not in op


def test_every_route_documents_the_answers_the_http_layer_gives(openapi):
    for method, path, op in operations(openapi):
        codes = set(op["responses"])
        wanted = {"413"}
        if method in ("post", "put"):
            wanted |= {"400", "415"}
        if op.get("security") is None or {"bearer": []} in op["security"]:
            wanted |= {"400", "401", "503", "504"}
        assert wanted <= codes, (method, path, wanted - codes)
        for code, response in op["responses"].items():
            if code >= "400" and path not in ("/health", "/healthz"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)


def test_routes_document_their_own_refusals(openapi):
    paths = openapi["paths"]
    offer = paths["/api/offers/{offer_id}/{answer}"]
    assert {"401", "404", "409"} <= set(offer["post"]["responses"])
    assert {"401", "404"} <= set(offer["get"]["responses"])
    reports = paths["/api/organisations/{organisation_id}/status-reports"]["post"]
    assert {"404", "409"} <= set(reports["responses"])
    assert {"404", "409"} <= set(paths["/api/hours/{hours_id}/decision"]["post"]["responses"])
    assert "404" in paths["/api/pledges/{pledge_id}/parts"]["post"]["responses"]


def body_of(openapi, method, path):
    return openapi["paths"][path][method]["requestBody"]["content"]["application/json"][
        "schema"]


def test_validators_are_carried_over_in_the_openapi_dialect(openapi):
    need = body_of(openapi, "post", "/api/needs")["properties"]
    assert need["quantity"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                                "maximum": contract.QUANTITY_MAX}
    assert need["beneficiaries"]["type"] == "integer"
    assert need["need_id"]["minLength"] == 1 and need["need_id"]["maxLength"] == 128
    assert need["need_id"]["pattern"] == contract.ID_PATTERN
    assert need["urgency"]["enum"] == list(contract.URGENCIES)
    assert need["contact"]["properties"]["email"]["format"] == "email"
    recipient = body_of(openapi, "put", "/api/recipients/{recipient_id}")
    assert recipient["properties"]["channels"]["maxItems"] == 3  # a list's Length
    assert recipient["properties"]["digest_minutes"]["nullable"] is True
    events = docs.asyncapi()["components"]["messages"]
    draft7 = events["need_posted"]["payload"]["properties"]["data"]["properties"]["quantity"]
    assert draft7["exclusiveMinimum"] == 0  # JSON Schema's numeric form stays in AsyncAPI


def accepted_by(schema, body) -> bool:
    try:
        schema.load(body)
    except ValidationError:
        return False
    return True


RECIPIENTS = [
    {},
    {"name": "王芳"},
    {"wechat": "wangfang"},
    {"email": "wang.fang@example.org", "channels": ["email"]},
    {"email": "not an address"},
    {"wechat": ""},
    {"phone": "13700001111", "channels": ["sms", "wechat"]},
    {"phone": "13700001111", "wechat": "wf", "channels": ["sms", "wechat"]},
    {"phone": "13700001111", "channels": ["sms", "sms"]},
    {"wechat": "wf", "channels": ["email"]},
    {"wechat": "wf", "surprise": 1},
    {"wechat": "wf", "quiet_hours": None, "digest_minutes": None},
    {"wechat": "wf", "digest_minutes": 0},
    {"wechat": "wf", "quiet_hours": {"start": "22:00", "end": "7:00"}},
]


@pytest.mark.parametrize("body", RECIPIENTS)
def test_a_recipient_the_spec_allows_is_one_the_service_accepts(openapi, body):
    spec = OAS30Validator(body_of(openapi, "put", "/api/recipients/{recipient_id}"),
                          format_checker=oas30_format_checker)
    assert spec.is_valid(body) == accepted_by(RecipientBody(), body)


NEED = {"need_id": "N-1", "community_id": "QY-S05-C02", "kind": "goods",
        "category": "thermometers", "quantity": 3, "unit": "piece", "urgency": "critical"}


@pytest.mark.parametrize("change", [
    {}, {"quantity": 0}, {"quantity": 2e9}, {"need_id": ""}, {"need_id": "x" * 129},
    {"need_id": "a\x00b"}, {"urgency": "whenever"}, {"beneficiaries": 2.5},
    {"beneficiaries": -1}, {"contact": {"email": "nobody"}}, {"surprise": True},
])
def test_a_need_the_spec_allows_is_one_the_gateway_accepts(openapi, change):
    from services.gateway.schemas import NeedBody

    spec = OAS30Validator(body_of(openapi, "post", "/api/needs"),
                          format_checker=oas30_format_checker)
    body = {**NEED, **change}
    assert spec.is_valid(body) == accepted_by(NeedBody(), body)


def test_every_rule_a_body_checks_across_fields_is_described():
    from services.gateway import domain_routes, schemas

    bodies = [schemas.NeedBody(), schemas.DonationBody(), RecipientBody(),
              domain_routes.StatusReportBody().fields["staff"].nested(),
              domain_routes.PledgeBody()]
    for body in bodies:
        rules = docs.rules_of(body)
        assert rules and not any("undescribed" in r for r in rules), type(body).__name__


# -- events: AsyncAPI 2.6 --------------------------------------------------------------------
def test_asyncapi_documents_every_event_and_required_field():
    spec = yaml.safe_load(docs_files.render()[docs_files.DOCS / "events.asyncapi.yaml"])
    messages = spec["components"]["messages"]
    assert set(messages) == set(contract.EVENT_SCHEMAS)
    need = messages["need_posted"]["payload"]["properties"]["data"]
    assert {"need_id", "community_id", "kind", "category", "quantity", "unit",
            "urgency"} <= set(need["required"])
    assert need["properties"]["urgency"]["enum"] == list(contract.URGENCIES)
    intake = spec["channels"]["relief.intake"]["publish"]["message"]["oneOf"]
    assert len(intake) == len(contract.INTAKE_TYPES)


# The part of the AsyncAPI 2.6 document structure this project uses, field names as the
# specification defines them: a misspelt or misplaced key fails here.
REF = {"type": "object", "required": ["$ref"], "additionalProperties": False,
       "properties": {"$ref": {"type": "string", "pattern": "^#/components/messages/[a-z_]+$"}}}
OPERATION = {
    "type": "object", "required": ["message"], "additionalProperties": False,
    "properties": {
        "operationId": {"type": "string"}, "summary": {"type": "string"},
        "description": {"type": "string"},
        "message": {"oneOf": [REF, {"type": "object", "required": ["oneOf"],
                                    "additionalProperties": False,
                                    "properties": {"oneOf": {"type": "array", "minItems": 1,
                                                             "items": REF}}}]}}}
AMQP_CHANNEL = {
    "type": "object", "required": ["is"], "additionalProperties": False,
    "properties": {
        "is": {"enum": ["routingKey", "queue"]},
        "bindingVersion": {"type": "string"},
        "exchange": {"type": "object", "additionalProperties": False, "properties": {
            "name": {"type": "string", "maxLength": 255},
            "type": {"enum": ["topic", "direct", "fanout", "default", "headers"]},
            "durable": {"type": "boolean"}, "autoDelete": {"type": "boolean"},
            "vhost": {"type": "string"}}}}}
ASYNCAPI_2_6 = {
    "type": "object", "required": ["asyncapi", "info", "channels"],
    "additionalProperties": False,
    "properties": {
        "asyncapi": {"const": "2.6.0"},
        "id": {"type": "string"},
        "defaultContentType": {"type": "string"},
        "info": {"type": "object", "required": ["title", "version"],
                 "additionalProperties": False,
                 "properties": {"title": {"type": "string"}, "version": {"type": "string"},
                                "description": {"type": "string"}}},
        "channels": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object", "additionalProperties": False,
            "anyOf": [{"required": ["publish"]}, {"required": ["subscribe"]}],
            "properties": {"description": {"type": "string"},
                           "publish": OPERATION, "subscribe": OPERATION,
                           "bindings": {"type": "object", "additionalProperties": False,
                                        "properties": {"amqp": AMQP_CHANNEL}}}}},
        "components": {"type": "object", "additionalProperties": False, "properties": {
            "messages": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["payload"], "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "title": {"type": "string"},
                               "messageId": {"type": "string"},
                               "contentType": {"type": "string"},
                               "payload": {"type": "object"}}}}}}},
}


@pytest.fixture(scope="module")
def asyncapi():
    return yaml.safe_load((docs_files.DOCS / "events.asyncapi.yaml").read_text(encoding="utf-8"))


def test_the_events_contract_has_the_asyncapi_2_6_structure(asyncapi):
    jsonschema.Draft7Validator.check_schema(ASYNCAPI_2_6)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(ASYNCAPI_2_6).iter_errors(asyncapi)]
    assert errors == []
    messages = asyncapi["components"]["messages"]
    operation_ids = []
    for name, channel in asyncapi["channels"].items():
        for kind in ("publish", "subscribe"):
            if kind not in channel:
                continue
            operation_ids.append(channel[kind].get("operationId"))
            message = channel[kind]["message"]
            for ref in message.get("oneOf", [message]):
                assert ref["$ref"].rsplit("/", 1)[1] in messages, (name, ref)
    # what the AsyncAPI parser insists on once references are resolved: operation ids are
    # unique, and so are message ids (a message published on two channels has none)
    assert len(operation_ids) == len(set(operation_ids)) and None not in operation_ids
    assert not any("messageId" in m for m in messages.values())


def test_every_payload_is_a_draft_7_json_schema(asyncapi):
    for name, message in asyncapi["components"]["messages"].items():
        try:
            jsonschema.Draft7Validator.check_schema(message["payload"])
        except jsonschema.SchemaError as exc:
            pytest.fail(f"{name}: {exc.message}")


def test_events_the_contract_builds_satisfy_their_payloads(asyncapi):
    payloads = {n: m["payload"] for n, m in asyncapi["components"]["messages"].items()}
    samples = {
        "need_posted": {**NEED, "contact": {"name": "李四", "phone": "13700001111"},
                        "needed_by": datetime(2020, 2, 3, 8, tzinfo=UTC)},
        "donation_received": {"donation_id": "D-1", "donor": {"name": "好医生集团",
                                                                "kind": "company"},
                              "location_id": "QY-S05", "category": "thermometers",
                              "quantity": 10, "unit": "piece", "value_yuan": 1200},
        "hours_logged": {"hours_id": "H-1", "volunteer_id": "V-1", "hours": 2.5,
                         "date": date(2020, 2, 3)},
    }
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    for type_, data in samples.items():
        event = contract.build(type_, data, source="test")
        jsonschema.Draft7Validator(payloads[type_], format_checker=checker).validate(event)
        wrong = {**event, "data": {**event["data"], "quantity": 0}}
        if "quantity" in event["data"]:
            assert not jsonschema.Draft7Validator(payloads[type_]).is_valid(wrong)
