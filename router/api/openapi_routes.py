"""The OpenAPI document served at `/openapi.json`: the seed spec plus router's additions.

The seed's operations and schemas are served as the seed has them; router's own operations
(Twilio import, credentials, call records, health) are added beside them, and every
operation declares its error answers (router/api/openapi_additions.py, which also adds
router's fields on the seed's phone number schemas, listed in the document). Router's
extensions to the seed's own shapes (SPEC §12: `call.ringing` filters and the `reject`
action) widen the seed's schema at a few places, listed in `x-router-extensions`: each
JSON pointer there is served as `oneOf` the seed's schema and the extensions' schemas,
so everything the seed accepts is still accepted, and nothing else changes.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

import yaml
from aiohttp import web
from pydantic.json_schema import models_json_schema

from router.api.edge import json_response
from router.api.openapi_additions import (
    add_error_responses,
    add_router_fields,
    add_router_operations,
)
from router.models.credentials import CREATE_CREDENTIAL_MODELS, CREDENTIAL_MODELS
from router.models.ringing import (
    AttestationHookFilter,
    CallerNumberHookFilter,
    RejectPhoneNumberHookAction,
    ScheduleHookFilter,
)
from router.models.wire import WireModel
from router.state import OPENAPI

routes = web.RouteTableDef()

_REF = "#/components/schemas/{model}"
EXTENSIONS_KEY = "x-router-extensions"
# Where router widens a seed schema (a JSON pointer into the document), and with what.
EXTENSION_POINTS: dict[str, tuple[type[WireModel], ...]] = {
    "/components/schemas/PhoneNumberHookCallRinging/properties/filters/items": (
        CallerNumberHookFilter,
        AttestationHookFilter,
        ScheduleHookFilter,
    ),
    "/components/schemas/PhoneNumberHookCallRinging/properties/do/items": (
        RejectPhoneNumberHookAction,
    ),
}


def _seed() -> dict[str, Any]:
    folder = resources.files("router.openapi")
    seed: dict[str, Any] = yaml.safe_load(folder.joinpath("phone-numbers.openapi.yml").read_text())
    return seed


def _import_dto() -> dict[str, Any]:
    folder = resources.files("router.openapi")
    schema: dict[str, Any] = json.loads(
        folder.joinpath("ImportTwilioPhoneNumberDTO.schema.json").read_text()
    )
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    return schema


def _one_of(names: list[str]) -> dict[str, Any]:
    return {"oneOf": [{"$ref": _REF.format(model=n)} for n in names]}


def _add_extensions(doc: dict[str, Any]) -> None:
    """Widen the seed at each `EXTENSION_POINTS` pointer, and list them in the document."""
    schemas = doc["components"]["schemas"]
    models = [m for added in EXTENSION_POINTS.values() for m in added]
    _, generated = models_json_schema(
        [(m, "validation") for m in models], by_alias=True, ref_template=_REF
    )
    for name, schema in generated.get("$defs", {}).items():
        if name in schemas:
            raise ValueError(f"router extension {name} would replace the seed's schema")
        schema["x-router-extension"] = True
        schemas[name] = schema
    listed: dict[str, list[str]] = {}
    for pointer, added in EXTENSION_POINTS.items():
        *parents, last = pointer.strip("/").split("/")
        parent: dict[str, Any] = doc
        for key in parents:
            parent = parent[key]
        seed = parent[last]
        refs = [{"$ref": _REF.format(model=m.__name__), "title": m.__name__} for m in added]
        # A seed `oneOf` (the ringing hook's actions) gains members; anything else (the
        # filters' single `$ref`) becomes the first member of a new `oneOf`.
        parent[last] = (
            {**seed, "oneOf": [*seed["oneOf"], *refs]}
            if set(seed) == {"oneOf"}
            else {"oneOf": [seed, *refs]}
        )
        listed[pointer] = [m.__name__ for m in added]
    doc[EXTENSIONS_KEY] = listed


def _operation(op_id: str, summary: str, **extra: Any) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": summary,
        "tags": ["Credentials" if "Credential" in op_id else "Phone Numbers"],
        "security": [{"bearer": []}],
        **extra,
    }


def build_document() -> dict[str, Any]:
    """The whole API's OpenAPI document (a fresh copy: callers may change theirs)."""
    return copy.deepcopy(_document())


@cache
def _document() -> dict[str, Any]:
    # Parsing the seed and generating the credential schemas costs ~0.2 s: once per process.
    doc = _seed()
    schemas = doc["components"]["schemas"]
    schemas["ImportTwilioPhoneNumberDTO"] = _import_dto()
    models = [(m, "validation") for m in CREATE_CREDENTIAL_MODELS.values()]
    models += [(m, "serialization") for m in CREDENTIAL_MODELS.values()]
    _, generated = models_json_schema(models, by_alias=True, ref_template=_REF)  # type: ignore[arg-type]
    for name, schema in generated.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    create_names = [m.__name__ for m in CREATE_CREDENTIAL_MODELS.values()]
    record_names = [m.__name__ for m in CREDENTIAL_MODELS.values()]
    phone_number = copy.deepcopy(doc["paths"]["/phone-number"]["post"]["responses"])
    id_param = [{"name": "id", "required": True, "in": "path", "schema": {"type": "string"}}]

    def body(names: list[str]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": _one_of(names)}}}

    def answer(status: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {status: {"description": "", "content": {"application/json": {"schema": schema}}}}

    doc["tags"].append({"name": "Credentials", "description": "Provider credentials."})
    doc["paths"]["/phone-number/import/twilio"] = {
        "post": _operation(
            "PhoneNumberController_importTwilio",
            "Import Twilio Number",
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": _REF.format(model="ImportTwilioPhoneNumberDTO")}
                    }
                },
            },
            responses=phone_number,
        )
    }
    doc["paths"]["/credential"] = {
        "post": _operation(
            "CredentialController_create",
            "Create Credential",
            requestBody=body(create_names),
            responses=answer("201", _one_of(record_names)),
        ),
        "get": _operation(
            "CredentialController_findAll",
            "List Credentials",
            # The same `limit` and time filters as the seed's `GET /phone-number`.
            parameters=copy.deepcopy(doc["paths"]["/phone-number"]["get"]["parameters"]),
            responses=answer("200", {"type": "array", "items": _one_of(record_names)}),
        ),
    }
    doc["paths"]["/credential/{id}"] = {
        "get": _operation(
            "CredentialController_findOne",
            "Get Credential",
            parameters=id_param,
            responses=answer("200", _one_of(record_names)),
        ),
        "patch": _operation(
            "CredentialController_update",
            "Update Credential",
            parameters=id_param,
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            responses=answer("200", _one_of(record_names)),
        ),
        "delete": _operation(
            "CredentialController_remove",
            "Delete Credential",
            parameters=id_param,
            responses=answer("200", _one_of(record_names)),
        ),
    }
    _add_extensions(doc)
    _fix_contradictions(schemas)
    add_router_fields(doc)
    add_router_operations(doc)
    add_error_responses(doc)
    # The schemas pydantic writes (credentials, extensions) use JSON Schema 2020-12's
    # `type: "null"` and `const`, which OpenAPI 3.0 does not have: the document is 3.1,
    # whose schemas are JSON Schema 2020-12 (the seed's 3.0 parts read the same there).
    doc["openapi"] = "3.1.0"
    doc["info"]["title"] = "router API"
    return doc


def _fix_contradictions(schemas: dict[str, Any]) -> None:
    """The seed's four places that declare a type none of their own values has (its
    generator's slips: Vapi's API sends strings and numbers there), declared as the values
    are, so the document validates. Each is checked first: a changed seed fails loudly."""
    for name, field, wrong, right in (
        ("BackoffPlan", "type", "object", "string"),
        ("TransferPlan", "sipVerb", "object", "string"),
    ):
        spot = schemas[name]["properties"][field]
        if spot.get("type") != wrong or not all(isinstance(v, str) for v in spot["enum"]):
            raise ValueError(f"the seed's {name}.{field} changed: check _fix_contradictions")
        spot["type"] = right
    codes = schemas["BackoffPlan"]["properties"]["excludedStatusCodes"]["items"]
    if codes != {"type": "object"}:
        raise ValueError("the seed's excludedStatusCodes changed: check _fix_contradictions")
    codes["type"] = "number"  # HTTP status codes; its own example is [400, 401, 403, 404]
    ended = schemas["PhoneNumberCallEndingHookFilter"]["properties"]["oneOf"]
    if ended.get("type") != "array" or ended.get("enum") != ended["items"].get("enum"):
        raise ValueError("the seed's ending hook filter changed: check _fix_contradictions")
    del ended["enum"]  # an array equal to one of six strings: the enum is its items'


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])
