"""The OpenAPI document served at `/openapi.json`: the seed spec plus router's additions.

The seed's operations and schemas are served as the seed has them; router's own operations
(Twilio import, credentials, call records, health) are added beside them, and every
operation declares its error answers (router/api/openapi_additions.py, which also adds
router's fields on the seed's phone number schemas, listed in the document). Router's
extensions to the seed's own shapes (SPEC §12: `call.ringing` filters and the `reject`
action; SPEC §13: Plivo numbers) widen the seed's schema at a few places, listed in
`x-router-extensions`: each JSON pointer there is served as `oneOf` the seed's schema and
the extensions' schemas, so everything the seed accepts is still accepted, and nothing
else changes.
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
# Router extension (SPEC §13): Plivo numbers. Their shapes are the seed's Telnyx ones (a
# number on a credential) with `provider: plivo`: wherever the seed offers Telnyx's shape,
# Plivo's is offered beside it.
PLIVO_SHAPES: dict[str, str] = {
    "CreatePlivoPhoneNumberDTO": "CreateTelnyxPhoneNumberDTO",
    "UpdatePlivoPhoneNumberDTO": "UpdateTelnyxPhoneNumberDTO",
    "PlivoPhoneNumber": "TelnyxPhoneNumber",
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


def _pointer_keys(pointer: str) -> list[str]:
    """The keys of a JSON pointer (RFC 6901: `~1` is `/`, `~0` is `~`)."""
    return [key.replace("~1", "/").replace("~0", "~") for key in pointer.strip("/").split("/")]


def _pointer(keys: list[str]) -> str:
    return "/" + "/".join(str(key).replace("~", "~0").replace("/", "~1") for key in keys)


def _plivo_points(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Each place the seed offers a Telnyx number shape (a `oneOf` member), with the Plivo
    shape to offer beside it (not the Twilio import's answer: it is a Twilio number)."""
    plivo_of = {f"#/components/schemas/{telnyx}": plivo for plivo, telnyx in PLIVO_SHAPES.items()}
    found: dict[str, list[str]] = {}

    def walk(node: Any, keys: list[str]) -> None:
        if isinstance(node, dict):
            for member in node.get("oneOf", ()):
                if isinstance(member, dict) and member.get("$ref") in plivo_of:
                    found[_pointer(keys)] = [plivo_of[member["$ref"]]]
            for key, value in node.items():
                walk(value, [*keys, key])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, [*keys, str(index)])

    walk(doc, [])
    imported = _pointer(["paths", "/phone-number/import/twilio"])
    return {pointer: names for pointer, names in found.items() if not pointer.startswith(imported)}


def _plivo_schema(telnyx: dict[str, Any], name: str) -> dict[str, Any]:
    """The seed's Telnyx shape as Plivo's: `provider: plivo`, the texts naming Plivo."""
    schema: dict[str, Any] = json.loads(json.dumps(telnyx).replace("Telnyx", "Plivo"))
    if "provider" in schema["properties"]:  # not in update shapes, as in the seed's
        schema["properties"]["provider"] = {
            "type": "string",
            "description": "Router extension: a number on Plivo (SPEC §13).",
            "enum": ["plivo"],
        }
    schema["description"] = (
        f"Router extension (SPEC §13): {name}, a number on Plivo verified with the "
        "`plivo` credential `credentialId` names (X-Plivo-Signature-V3)."
    )
    schema["x-router-extension"] = True
    return schema


def _add_extensions(doc: dict[str, Any]) -> None:
    """Widen the seed at each `EXTENSION_POINTS` pointer and where it offers Telnyx number
    shapes (Plivo's beside them), and list them in the document."""
    schemas = doc["components"]["schemas"]
    points: dict[str, list[str]] = {
        pointer: [m.__name__ for m in added] for pointer, added in EXTENSION_POINTS.items()
    }
    points |= _plivo_points(doc)
    for plivo, telnyx in PLIVO_SHAPES.items():
        if plivo in schemas:
            raise ValueError(f"router extension {plivo} would replace the seed's schema")
        schemas[plivo] = _plivo_schema(schemas[telnyx], plivo)
    models = [m for added in EXTENSION_POINTS.values() for m in added]
    _, generated = models_json_schema(
        [(m, "validation") for m in models], by_alias=True, ref_template=_REF
    )
    for name, schema in generated.get("$defs", {}).items():
        if name in schemas:
            raise ValueError(f"router extension {name} would replace the seed's schema")
        schema["x-router-extension"] = True
        schemas[name] = schema
    for pointer, names in points.items():
        *parents, last = _pointer_keys(pointer)
        parent: dict[str, Any] = doc
        for key in parents:
            parent = parent[key]
        seed = parent[last]
        refs = [{"$ref": _REF.format(model=name), "title": name} for name in names]
        # A seed `oneOf` (the ringing hook's actions) gains members; anything else (the
        # filters' single `$ref`) becomes the first member of a new `oneOf`.
        parent[last] = (
            {**seed, "oneOf": [*seed["oneOf"], *refs]}
            if set(seed) == {"oneOf"}
            else {"oneOf": [seed, *refs]}
        )
    doc[EXTENSIONS_KEY] = points


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
