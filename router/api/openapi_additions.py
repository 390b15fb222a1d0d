"""What `/openapi.json` says beyond the seed: the error answers of every operation, router's
extra fields and values on the seed's schemas, and router's operations outside the
Phone Numbers and Credentials APIs (call records, health, metrics, the document itself).

Each addition to a seed schema is listed in the document (`x-router-properties`,
`x-router-enum-values`) and marked `x-router-extension`, as the `oneOf` widenings of
`x-router-extensions` are: a client generated from the seed alone still reads every
answer, and a reader sees what is router's.
"""

from __future__ import annotations

import copy
from typing import Any, Final

ERROR_SCHEMA: Final = "ErrorResponse"
PROPERTIES_KEY: Final = "x-router-properties"
ENUM_VALUES_KEY: Final = "x-router-enum-values"
_REF: Final = "#/components/schemas/{model}"

# The body of every error answer (router/errors.py: NestJS's shape, which Vapi answers).
ERROR_BODY: Final[dict[str, Any]] = {
    "type": "object",
    "description": (
        "Router extension: an error answer, in the shape of Vapi's (NestJS): the status, "
        "its reason phrase, and a message (a list of them for a refused body or query)."
    ),
    "x-router-extension": True,
    "required": ["statusCode", "error", "message"],
    "properties": {
        "statusCode": {"type": "integer", "minimum": 400, "maximum": 599},
        "error": {"type": "string"},
        "message": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    },
}

# Why each status is answered; which operations answer it is decided in `_statuses`.
_WHY: Final[dict[str, str]] = {
    "400": "The body, a query parameter or the id is not valid; `message` lists why.",
    "401": "No bearer key, or not one of an org's API keys (`WWW-Authenticate: Bearer`).",
    "404": "No such resource in the key's org.",
    "408": "The body did not arrive whole in time (the connection is closed).",
    "409": "The number (or SIP URI) is already in use by another phone number.",
    "413": "The body is larger than ROUTER_MAX_BODY_BYTES.",
    "415": "The body is not JSON (`Content-Type` other than application/json).",
    "500": "A fault of router's, or stored secrets that ROUTER_SECRET_KEY cannot read.",
    "502": "Twilio's answer, when router configures the number there, was an error.",
    "503": "The store (or Twilio, when router configures the number) is unavailable; "
    "nothing was applied, retry later.",
}

# Router's fields on the seed's phone number schemas (docs/routing.md; SPEC §12).
_ROUTING_DTOS: Final = ("Twilio", "Telnyx", "Vonage", "Plivo", "Vapi", "Byo")
_STATUS_INPUT: Final[dict[str, Any]] = {
    "type": "string",
    "enum": ["active", "blocked"],
    "description": "Router extension: `blocked` numbers reject their calls.",
    "x-router-extension": True,
}
_MAX_CONCURRENT: Final[dict[str, Any]] = {
    "type": "integer",
    "minimum": 1,
    "maximum": 100000,
    "description": (
        "Router extension: how many calls the number takes at once, across every worker; "
        "the others go to `overflowDestination` (else hear the apology)."
    ),
    "x-router-extension": True,
}
_OVERFLOW_WHY: Final = "Router extension: where calls over `maxConcurrentCalls` are transferred."
# Router's ending-hook reason: no runtime took the call (docs/runtimes.md).
_ENDED_REASONS: Final = (
    "/components/schemas/PhoneNumberCallEndingHookFilter/properties/oneOf/items",
    ["runtime-unavailable"],
)


def add_router_fields(doc: dict[str, Any]) -> None:
    """Router's fields and enum values on the seed's schemas, listed in the document."""
    schemas = doc["components"]["schemas"]
    listed: dict[str, list[str]] = {}
    names = ["ImportTwilioPhoneNumberDTO"]
    for provider in _ROUTING_DTOS:
        record = "ByoPhoneNumber" if provider == "Byo" else f"{provider}PhoneNumber"
        names += [f"Create{provider}PhoneNumberDTO", f"Update{provider}PhoneNumberDTO", record]
    for name in names:
        properties = schemas[name]["properties"]
        overflow = copy.deepcopy(properties["fallbackDestination"])
        added = {
            "maxConcurrentCalls": _MAX_CONCURRENT,
            "overflowDestination": {
                **overflow,
                "description": _OVERFLOW_WHY,
                "x-router-extension": True,
            },
        }
        if "status" not in properties:  # records have it; router's DTOs take it too
            added["status"] = _STATUS_INPUT
        _add(properties, added, name)
        listed[f"/components/schemas/{name}/properties"] = sorted(added)
    doc[PROPERTIES_KEY] = listed
    pointer, values = _ENDED_REASONS
    items = _at(doc, pointer)
    if any(v in items["enum"] for v in values):
        raise ValueError(f"the seed's {pointer} has router's values already")
    items["enum"] = [*items["enum"], *values]
    doc[ENUM_VALUES_KEY] = {pointer: values}


def _add(properties: dict[str, Any], added: dict[str, Any], name: str) -> None:
    for field in added:
        if field in properties:
            raise ValueError(f"router's {field} would replace the seed's in {name}")
    properties.update(copy.deepcopy(added))


def _at(doc: dict[str, Any], pointer: str) -> dict[str, Any]:
    node: dict[str, Any] = doc
    for key in pointer.strip("/").split("/"):
        node = node[key]
    return node


def add_router_operations(doc: dict[str, Any]) -> None:
    """The call record the runtime reads, and the unauthenticated operational endpoints."""
    health = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "ready", "degraded", "unavailable"]},
            "store": {"type": "string", "enum": ["ok", "unavailable"]},
            "cachedNumbers": {"type": "integer", "minimum": 0},
        },
    }
    public: dict[str, Any] = {"tags": ["Operations"], "security": []}
    doc["tags"].append({"name": "Operations", "description": "Router's operational endpoints."})
    doc["tags"].append({"name": "Calls", "description": "Call records (router extension)."})
    doc["paths"]["/call/{callId}"] = {
        "get": {
            "operationId": "CallRecordController_findOne",
            "summary": "Get Call Record",
            "description": (
                "Router extension: the call record the runtime reads (decision, transient "
                "configuration), while it lives (ROUTER_CALL_RECORD_TTL_SECONDS)."
            ),
            "tags": ["Calls"],
            "security": [{"bearer": []}],
            "parameters": [
                {
                    "name": "callId",
                    "in": "path",
                    "required": True,
                    "description": "The provider's call id (CallSid, call control id, uuid).",
                    "schema": {"type": "string", "minLength": 1},
                }
            ],
            "responses": _json("200", {"type": "object"}),
        }
    }
    for path, op_id, summary, responses in (
        ("/healthz", "HealthController_live", "Liveness", _json("200", health)),
        (
            "/readyz",
            "HealthController_ready",
            "Readiness",
            {**_json("200", health), **_json("503", health)},
        ),
        (
            "/metrics",
            "MetricsController_scrape",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text exposition.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
        (
            "/openapi.json",
            "OpenApiController_document",
            "This document",
            _json("200", {"type": "object"}),
        ),
    ):
        doc["paths"][path] = {
            "get": {"operationId": op_id, "summary": summary, **public, "responses": responses}
        }


def _json(status: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {
        status: {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def add_error_responses(doc: dict[str, Any]) -> None:
    """Every operation's error answers, each with the error body; path ids as UUIDs."""
    doc["components"]["schemas"][ERROR_SCHEMA] = copy.deepcopy(ERROR_BODY)
    error = {"$ref": _REF.format(model=ERROR_SCHEMA)}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in _statuses(path, method, operation):
                if status in responses:
                    continue
                answer = _json(status, error, _WHY[status])[status]
                if status == "401":
                    answer["headers"] = {
                        "WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}
                    }
                responses[status] = answer
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "path" and parameter["name"] == "id":
                    parameter["schema"] = {"type": "string", "format": "uuid"}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    """The error statuses `method path` answers (router/api/*: what each handler raises)."""
    if operation.get("security") == []:  # health, metrics, this document: no input
        return ["500"]
    statuses = ["401", "500", "503"]
    if operation.get("parameters") or "requestBody" in operation:
        statuses.append("400")
    if "{" in path:
        statuses.append("404")
    if "requestBody" in operation:
        statuses += ["408", "413", "415"]
    if path.startswith("/phone-number") and method in ("post", "patch"):
        statuses += ["409", "502"]
    return sorted(statuses)
