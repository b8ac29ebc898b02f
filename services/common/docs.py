"""The documents' building blocks: the AsyncAPI of every event, and the schema converter and
answer helpers the gateway's OpenAPI is made of (``services.gateway.openapi``);
``python -m services.docs`` writes both files.

One converter turns a marshmallow schema into JSON Schema (Draft 7, what AsyncAPI 2 payloads
are); :func:`openapi_schema` then rewrites it in the OpenAPI 3.0 dialect. Every validator of a
field is carried over (lengths, ranges, choices, patterns, formats), so a document is never
looser than the code that checks the messages; what a schema checks across fields is described
(:data:`RULES`), or, for the HTTP bodies, also spelled out with ``anyOf`` where OpenAPI 3.0
can say it.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, fields, validate

from services.common import contract
from services.common.topology import (
    DLX,
    INTAKE_DLQ,
    INTAKE_EXCHANGE,
    consumer_specs,
    event_exchange,
)

# What a schema checks across its fields (``@validates_schema``) or in code (``@validates``),
# which JSON Schema cannot say: the documents say it in words. Keyed by the validator's name:
# the field the rule is about (it is described only on schemas that have that field) and the
# rule. A validator without an entry here must have a docstring (a unit test checks).
RULES: dict[str, tuple[str | None, str]] = {
    "_measurable": ("quantity", "quantity must come to at least a thousandth of its unit's "
                                "base unit (quantities are kept in thousandths)"),
    "_box_declared": ("box_size", "box_size and box_unit go together; box_unit is what one "
                                  "box holds (piece, kg..., never box); box_size only for "
                                  "goods counted in boxes"),
    "_adds_up": ("total", "healthy + fever + quarantined must not exceed total"),
    "_reachable": (None, "at least one of email, phone, wechat; each channel needs its "
                         "address (email: email, sms: phone, wechat: wechat); no channel "
                         "twice"),
    "_timezone": ("timezone", "timezone must be an IANA time zone name (Asia/Shanghai)"),
}


# a field's JSON type, the first that matches (subclasses before their bases)
SIMPLE_TYPES: tuple[tuple[type, dict[str, Any]], ...] = (
    (fields.UUID, {"type": "string", "format": "uuid"}),
    (fields.DateTime, {"type": "string", "format": "date-time"}),
    (fields.Date, {"type": "string", "format": "date"}),
    (fields.Email, {"type": "string", "format": "email"}),
    (fields.Boolean, {"type": "boolean"}),
    (fields.Integer, {"type": "integer"}),
    (fields.Number, {"type": "number"}),  # Float too
)


def field_schema(field: fields.Field) -> dict[str, Any]:
    """JSON Schema (Draft 7) for one marshmallow field, with every validator carried over."""
    out = _type_schema(field)
    array = out.get("type") == "array"
    for v in field.validators:
        out.update(_validator_schema(v, array))
    if field.allow_none and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _type_schema(field: fields.Field) -> dict[str, Any]:
    if isinstance(field, fields.Nested):
        nested = field.nested if isinstance(field.nested, Schema) else field.nested()
        return object_schema(nested)
    if isinstance(field, fields.List):
        return {"type": "array", "items": field_schema(field.inner)}
    if isinstance(field, fields.Dict):
        out: dict[str, Any] = {"type": "object"}
        if field.value_field is not None:
            out["additionalProperties"] = field_schema(field.value_field)
        return out
    return dict(next((schema for kind, schema in SIMPLE_TYPES if isinstance(field, kind)),
                     {"type": "string"}))


def _validator_schema(v: Any, array: bool) -> dict[str, Any]:
    """What one validator says in JSON Schema (``array``: lengths count items)."""
    out: dict[str, Any] = {}
    if isinstance(v, validate.OneOf):
        out["enum"] = list(v.choices)
    elif isinstance(v, validate.Equal):
        out["const"] = v.comparable
    elif isinstance(v, validate.Range):
        if v.min is not None:
            out["minimum" if v.min_inclusive else "exclusiveMinimum"] = v.min
        if v.max is not None:
            out["maximum" if v.max_inclusive else "exclusiveMaximum"] = v.max
    elif isinstance(v, validate.Length):
        low, high = ("minItems", "maxItems") if array else ("minLength", "maxLength")
        if v.equal is not None:
            out[low] = out[high] = v.equal
        if v.min is not None:
            out[low] = v.min
        if v.max is not None:
            out[high] = v.max
    elif isinstance(v, validate.Regexp):
        out["pattern"] = v.regex.pattern
    return out


def object_schema(schema: Schema, closed: bool = False) -> dict[str, Any]:
    """JSON Schema (Draft 7) for a marshmallow schema; ``closed``: unknown fields refused."""
    props = {(f.data_key or name): field_schema(f) for name, f in schema.fields.items()
             if not f.dump_only}
    required = sorted((f.data_key or name) for name, f in schema.fields.items() if f.required)
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if closed:
        out["additionalProperties"] = False
    text = " ".join((type(schema).__doc__ or "").split())
    rules = rules_of(schema)
    if rules:
        text = (text + " " if text else "") + "Also checked: " + "; ".join(rules) + "."
    if text:
        out["description"] = text
    return out


def rules_of(schema: Schema) -> list[str]:
    """The descriptions of what ``schema`` checks beyond its fields' validators."""
    out = []
    for tag in ("validates_schema", "validates"):
        for name, *_ in schema._hooks.get(tag, ()):
            about, text = RULES.get(name, (None, ""))
            if about is not None and about not in schema.fields:
                continue
            method = getattr(type(schema), name)
            text = text or " ".join((method.__doc__ or "").split())
            out.append(text or f"{name} (undescribed)")
    return out


def openapi_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema (Draft 7) rewritten in OpenAPI 3.0's dialect: boolean exclusive bounds
    beside ``minimum``/``maximum``, ``nullable`` instead of a ``null`` type, ``enum`` instead
    of ``const``."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties",):
            out[key] = {name: openapi_schema(s) for name, s in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties"
                                         and isinstance(value, dict)):
            out[key] = openapi_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [openapi_schema(s) for s in value]
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0]
            if "null" in value:
                out["nullable"] = True
        else:
            out[key] = value
    return out


def asyncapi() -> dict[str, Any]:
    consumers: dict[tuple[str, str], list[str]] = {}
    for spec in consumer_specs():
        for key in spec.routing_keys:
            consumers.setdefault((spec.exchange, key), []).append(spec.name)
    messages = {}
    for type_, cls in contract.EVENT_SCHEMAS.items():
        envelope = object_schema(contract.EnvelopeSchema(), closed=True)
        envelope["properties"]["type"] = {"const": type_}
        envelope["properties"]["data"] = object_schema(cls())
        messages[type_] = {"name": type_, "contentType": "application/json",
                           "payload": envelope}
    channels: dict[str, Any] = {}
    channels[INTAKE_EXCHANGE] = {
        "description": (
            "Durable topic exchange for outside systems. Routing key = event type; "
            "persistent messages; content type application/json. A duplicate event_id is "
            "ignored (the same event again); an event_id accepted before with other "
            f"content, and any invalid message, go to queue {INTAKE_DLQ} with header "
            "x-relief-error giving the reason."),
        "publish": {"operationId": "publish_to_intake",
                    "message": {"oneOf": [{"$ref": f"#/components/messages/{t}"}
                                          for t in contract.INTAKE_TYPES]}},
        "bindings": {"amqp": {"is": "routingKey", "exchange": {
            "name": INTAKE_EXCHANGE, "type": "topic", "durable": True, "autoDelete": False}}},
    }
    for source, types in contract.PRODUCERS.items():
        for type_ in types:
            exchange = event_exchange(source)
            channels[f"{exchange}/{type_}"] = {
                "description": (f"Published by {source} (routing key {type_}). Consumed by: "
                                + (", ".join(consumers.get((exchange, type_), [])) or "nobody "
                                   "yet (kept by the alternate exchange relief.unroutable)")),
                "subscribe": {"operationId": f"{source}_{type_}",
                              "message": {"$ref": f"#/components/messages/{type_}"}},
                "bindings": {"amqp": {"is": "routingKey", "exchange": {
                    "name": exchange, "type": "topic", "durable": True, "autoDelete": False}}},
            }
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "Relief Exchange events",
            "version": str(contract.CURRENT_VERSION),
            "description": (
                "Every event travels in the envelope {event_id, type, version, occurred_at, "
                "source, data}. Consumers are idempotent by event_id. A message a consumer "
                f"cannot handle is dead-lettered through exchange {DLX} to queue "
                "dlq.<queue> with headers x-relief-error, x-relief-error-kind, "
                "x-relief-queue, x-relief-attempts."),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages},
    }


# -- the HTTP contract -------------------------------------------------------------------------
# What a route declares (its URL, its body and query schemas) is its parameters and body
# (:func:`route_paths`); the gateway's route tables add what is particular to each route in
# words; :func:`with_generic_answers` adds what the gateway's HTTP layer answers on any route
# (``services/common/web.py``).

ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error answer. fields names each failing field (data.quantity) with "
                   "what is wrong with it.",
    "required": ["error"],
    "properties": {"error": {"type": "string"},
                   "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                   "allowed": {"type": "array", "items": {"type": "string"},
                               "description": "with a 403: what the caller may do"}},
}
GENERIC = {
    "400": "not acceptable: the body is not a JSON object (or nested too deep), or a field or "
           "query parameter fails; fields names each failing one",
    "401": "missing, wrong or expired bearer token (operator token, session or API key)",
    "403": "the credential is valid but its role, area or scope does not allow this; error "
           "says what was refused and allowed what the caller may do",
    "413": "the body is larger than the gateway accepts",
    "415": "a body declared as something other than application/json",
    "503": "the broker, a database or a service cannot be reached now; try again shortly",
    "504": "a service did not answer in time",
}
BODY_METHODS = ("post", "put", "patch")
# a path parameter is one URL segment: no slash, and not . or .. (clients rewrite those)
SEGMENT = r"^(?!\.\.?$)[^/\x00-\x1f\x7f]+$"


def answer(description: str, schema: dict[str, Any] | None = None,
           media: str = "application/json") -> dict[str, Any]:
    """A response object; ``schema`` for its body (in ``media``)."""
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return out


def failure(description: str) -> dict[str, Any]:
    """An error response: its body is the shared Error schema."""
    return answer(description, ERROR)


def body_schema(schema: Schema) -> dict[str, Any]:
    """A strict request body's schema (unknown fields refused), in OpenAPI's dialect."""
    return openapi_schema(object_schema(schema, closed=True))


def json_body(schema: Schema | dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body from a marshmallow schema (or a ready schema)."""
    ready = schema if isinstance(schema, dict) else body_schema(schema)
    return {"required": True, "content": {"application/json": {"schema": ready}}}


def path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": SEGMENT}}


def query_params(schema: Schema) -> list[dict[str, Any]]:
    """A query schema's fields as query parameters (unknown ones are refused: 400)."""
    return [{"name": f.data_key or name, "in": "query", "required": bool(f.required),
             "schema": openapi_schema(field_schema(f))} for name, f in schema.fields.items()]


def listing(key: str, item: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{key: [...]}``: a list answer."""
    return {"type": "object", "required": [key],
            "properties": {key: {"type": "array", "items": item or {"type": "object"}}}}


def record(*keys: str) -> dict[str, Any]:
    """An object answer that always carries ``keys``."""
    return {"type": "object", "required": list(keys)}


def with_generic_answers(paths: dict[str, Any]) -> dict[str, Any]:
    """Add the answers the HTTP layer gives on any route: 413 everywhere; 400 and 415 where
    there may be a body; 400, 401, 403, 503 and 504 wherever a bearer token is accepted. A route's
    own description of a status wins. Statuses are listed in order."""
    out: dict[str, Any] = {}
    for path, operations in paths.items():
        out[path] = {}
        for method, op in operations.items():
            codes = {"413"}
            if method in BODY_METHODS:
                codes |= {"400", "415"}
            if op.get("security") is None or {"bearer": []} in op["security"]:
                codes |= {"400", "401", "403", "503", "504"}
            responses = dict(op["responses"])
            for code in codes:
                responses.setdefault(code, failure(GENERIC[code]))
            if "401" in responses:
                responses["401"] = {**responses["401"], "headers": {"WWW-Authenticate": {
                    "description": "Bearer", "schema": {"type": "string"}}}}
            out[path][method] = {**op, "responses": dict(sorted(responses.items()))}
    return out


def accepted(id_key: str) -> dict[str, Any]:
    """A 202 answer: the event accepted (its effects follow), naming the ``id_key`` posted."""
    return answer("accepted", {"allOf": [{"$ref": "#/components/schemas/Accepted"},
                                         record(id_key)]})


# -- routes: what each declares ----------------------------------------------------------------
_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def route_path(url: str) -> str:
    """A werkzeug rule (``/api/hours/<string:hours_id>``) as an OpenAPI path."""
    return _PARAM.sub(r"{\1}", url)


def declared_operation(route: Any) -> dict[str, Any]:
    """What a route's declaration says (an :class:`~services.common.web.HttpEntrypoint`):
    its path parameters (from the URL), its query parameters and its JSON body (from the
    schemas it loads them with)."""
    out: dict[str, Any] = {}
    params = [path_param(name) for name in _PARAM.findall(route.url)]
    if getattr(route, "query_schema", None) is not None:
        params += query_params(route.query_schema)
    if params:
        out["parameters"] = params
    if getattr(route, "body_schema", None) is not None:
        out["requestBody"] = json_body(route.body_schema)
    return out


def route_paths(routes: list[Any], described: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI paths of ``routes``: each operation is what its declaration says
    (:func:`declared_operation`) with what ``described`` says in words (summary, security,
    answers). A description may refine a declared parameter (the same name: an enum, a
    pattern), add one the route reads itself, or give a body of another kind (an upload, or
    one another service checks). A route without a description, or a description of no
    route, is a ValueError: the document cannot leave a route out or name one that is gone."""
    declared = {(route_path(r.url), method.lower()): r for r in routes
                for method in r.method.split(",")}
    out: dict[str, Any] = {}
    for path, operations in described.items():
        for method, words in operations.items():
            route = declared.pop((path, method), None)
            if route is None:
                raise ValueError(f"{method.upper()} {path} is described but no route serves it")
            op = declared_operation(route)
            given = {(p["name"], p["in"]): p for p in words.get("parameters", ())}
            params = [given.pop((p["name"], p["in"]), p) for p in op.get("parameters", ())]
            params += given.values()
            merged: dict[str, Any] = {"summary": words["summary"]}
            if params:
                merged["parameters"] = params
            body = words.get("requestBody", op.get("requestBody"))
            if body is not None:
                merged["requestBody"] = body
            merged.update({k: v for k, v in words.items()
                           if k not in ("summary", "parameters", "requestBody")})
            out.setdefault(path, {})[method] = merged
    if declared:
        missing = ", ".join(f"{m.upper()} {p}" for p, m in sorted(declared))
        raise ValueError(f"routes without a description in the HTTP document: {missing}")
    return out
