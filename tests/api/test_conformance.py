"""Conformance to the seed spec: the served OpenAPI document, and every operation's responses
with rich bodies of every provider validated against the seed's response schemas."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]  # no stubs in the test extras
import pytest

from router.providers import PROVIDERS

from .conftest import (
    PACKAGED_SPEC_DIR,
    SEED_FILE,
    SHARED_SPEC_DIR,
    SIP_AUTHENTICATION_MASKED,
    Api,
    byo_body,
    conformance,
    expect,
    load_seed,
    patch_contradictions,
    rich_routing,
    sip_authentication,
    telnyx_body,
    telnyx_credential,
    trunk_credential,
    twilio_body,
    twilio_credential,
    vapi_body,
    vonage_body,
    vonage_credential,
    with_extensions,
)

ALL_OPERATIONS = {
    ("POST", "/phone-number", "201"),
    ("GET", "/phone-number", "200"),
    ("GET", "/v2/phone-number", "200"),
    ("GET", "/phone-number/{id}", "200"),
    ("PATCH", "/phone-number/{id}", "200"),
    ("DELETE", "/phone-number/{id}", "200"),
    ("POST", "/phone-number/import/twilio", "201"),
    ("POST", "/credential", "201"),
    ("GET", "/credential", "200"),
    ("GET", "/credential/{id}", "200"),
    ("PATCH", "/credential/{id}", "200"),
    ("DELETE", "/credential/{id}", "200"),
}


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """JSON pointers where two documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        found: list[str] = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                found.append(f"{path}/{key}")
            else:
                found.extend(differences(a[key], b[key], f"{path}/{key}"))
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}/{i}")
        ]
    return [] if a == b else [path]


# Where router documents an extension of a seed schema (SPEC §12), and what it adds. A new
# extension is added here and to the served `x-router-extensions` together.
DOCUMENTED_EXTENSIONS = {
    "/components/schemas/PhoneNumberHookCallRinging/properties/filters/items": [
        "CallerNumberHookFilter",
        "AttestationHookFilter",
        "ScheduleHookFilter",
    ],
    "/components/schemas/PhoneNumberHookCallRinging/properties/do/items": [
        "RejectPhoneNumberHookAction"
    ],
    # SPEC §13: Plivo numbers, offered wherever the seed offers Telnyx's shapes.
    "/paths/~1phone-number/post/requestBody/content/application~1json/schema": [
        "CreatePlivoPhoneNumberDTO"
    ],
    "/paths/~1phone-number/post/responses/201/content/application~1json/schema": [
        "PlivoPhoneNumber"
    ],
    "/paths/~1phone-number/get/responses/200/content/application~1json/schema/items": [
        "PlivoPhoneNumber"
    ],
    "/paths/~1phone-number~1{id}/get/responses/200/content/application~1json/schema": [
        "PlivoPhoneNumber"
    ],
    "/paths/~1phone-number~1{id}/patch/requestBody/content/application~1json/schema": [
        "UpdatePlivoPhoneNumberDTO"
    ],
    "/paths/~1phone-number~1{id}/patch/responses/200/content/application~1json/schema": [
        "PlivoPhoneNumber"
    ],
    "/paths/~1phone-number~1{id}/delete/responses/200/content/application~1json/schema": [
        "PlivoPhoneNumber"
    ],
    "/components/schemas/PhoneNumberPaginatedResponse/properties/results/items": [
        "PlivoPhoneNumber"
    ],
}
# The Plivo shapes: the seed's Telnyx ones with `provider: plivo` (no `additionalProperties`,
# as the seed's own number shapes have none).
PLIVO_SHAPES = {
    "CreatePlivoPhoneNumberDTO": "CreateTelnyxPhoneNumberDTO",
    "UpdatePlivoPhoneNumberDTO": "UpdateTelnyxPhoneNumberDTO",
    "PlivoPhoneNumber": "TelnyxPhoneNumber",
}


def unescaped(pointer: str) -> str:
    """A JSON pointer with its keys as written (`~1` is `/`), as `differences` names paths."""
    keys = pointer.strip("/").split("/")
    return "/" + "/".join(k.replace("~1", "/").replace("~0", "~") for k in keys)


# Router's fields on the seed's phone number schemas (docs/routing.md), and its ending-hook
# reason: added beside the seed's, never replacing one.
_ROUTING_FIELDS = ["maxConcurrentCalls", "overflowDestination"]
DOCUMENTED_PROPERTIES = {
    f"/components/schemas/{name}/properties": sorted(
        [*_ROUTING_FIELDS, *([] if name.endswith("PhoneNumber") else ["status"])]
    )
    for name in [
        "ImportTwilioPhoneNumberDTO",
        *(
            f"{kind}{provider}PhoneNumberDTO"
            for provider in ("Twilio", "Telnyx", "Vonage", "Plivo", "Vapi", "Byo")
            for kind in ("Create", "Update")
        ),
        *(f"{p}PhoneNumber" for p in ("Twilio", "Telnyx", "Vonage", "Plivo", "Vapi", "Byo")),
    ]
}
DOCUMENTED_ENUM_VALUES = {
    "/components/schemas/PhoneNumberCallEndingHookFilter/properties/oneOf/items": [
        "runtime-unavailable"
    ]
}
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


async def test_openapi_json_serves_the_seed_operations_and_schemas_unchanged(api: Api) -> None:
    """`GET /openapi.json` holds every seed path and operation, and every seed schema, as is,
    but where it documents a router extension: there, and only there, the seed's schema is
    one member of a `oneOf` with the extension's (so every seed-valid value stays valid), or
    gains router's fields or enum values. Operations gain only their error answers. The
    seed's four self-contradictions are served fixed (the document is valid OpenAPI:
    test_openapi_json_is_a_valid_openapi_document)."""
    served = expect(await api.get("/openapi.json"), 200)
    seed = patch_contradictions(load_seed())
    assert served["x-router-extensions"] == DOCUMENTED_EXTENSIONS
    assert served["x-router-properties"] == DOCUMENTED_PROPERTIES
    assert served["x-router-enum-values"] == DOCUMENTED_ENUM_VALUES
    expected = with_extensions(seed, served)
    for path, operations in seed["paths"].items():
        for method in operations:
            operation = expected["paths"][path][method]
            answers = dict(served["paths"][path][method]["responses"])
            errors = {s: answers.pop(s) for s in list(answers) if s not in operation["responses"]}
            assert {**served["paths"][path][method], "responses": answers} == operation, path
            assert errors and all(int(s) >= 400 for s in errors), f"{method} {path}"
            assert all(
                e["content"]["application/json"]["schema"] == ERROR_REF for e in errors.values()
            )
    for name in seed["components"]["schemas"]:
        assert served["components"]["schemas"][name] == expected["components"]["schemas"][name]
    for pointer, fields in DOCUMENTED_PROPERTIES.items():
        properties = served
        for key in pointer.strip("/").split("/"):
            properties = properties[key]
        for field in fields:
            assert properties[field]["x-router-extension"] is True, f"{pointer}/{field}"
            assert properties[field]["description"].startswith("Router extension")
    # Widened only at the documented pointers, plus the extensions' own schemas.
    added = {"WeeklyWindow", *(n for names in DOCUMENTED_EXTENSIONS.values() for n in names)}
    allowed = [
        *map(unescaped, DOCUMENTED_EXTENSIONS),
        *(
            f"{p}/{f}"
            for p, fields in DOCUMENTED_PROPERTIES.items()
            if p.split("/")[3] in seed["components"]["schemas"]  # not the Twilio import's
            for f in fields
        ),
        *(f"{p}/enum" for p in DOCUMENTED_ENUM_VALUES),
        *(f"/components/schemas/{n}" for n in added),
    ]
    found = differences(seed, expected)
    assert [d for d in found if not any(d.startswith(a) for a in allowed)] == []
    assert all(any(d.startswith(a) for d in found) for a in allowed)
    for names in DOCUMENTED_EXTENSIONS.values():
        for name in names:
            extension = served["components"]["schemas"][name]
            assert extension["x-router-extension"] is True, name
            assert extension["description"].startswith("Router extension"), name
            if name in PLIVO_SHAPES:
                telnyx = served["components"]["schemas"][PLIVO_SHAPES[name]]
                if "provider" in telnyx["properties"]:
                    assert extension["properties"]["provider"]["enum"] == ["plivo"]
                assert set(extension["properties"]) == set(telnyx["properties"]), name
                assert extension.get("required") == telnyx.get("required"), name
            else:
                assert extension["additionalProperties"] is False, name
    assert served["components"]["securitySchemes"] == seed["components"]["securitySchemes"]
    assert served["security"] == seed["security"]
    # router's additions are there too.
    assert "post" in served["paths"]["/phone-number/import/twilio"]
    assert set(served["paths"]["/credential/{id}"]) == {"get", "patch", "delete"}


async def test_openapi_json_is_a_valid_openapi_document(api: Api) -> None:
    """openapi-spec-validator finds nothing wrong: OpenAPI 3.1 (whose schemas are JSON
    Schema 2020-12, as pydantic writes them: `type: "null"`, `const`)."""
    from openapi_spec_validator import OpenAPIV31SpecValidator

    served = expect(await api.get("/openapi.json"), 200)
    assert served["openapi"] == "3.1.0"
    assert [e.message for e in OpenAPIV31SpecValidator(served).iter_errors()] == []


def test_the_packaged_seed_is_the_shared_seed() -> None:
    """router ships a copy of the wire contract; it is the contract, byte for byte."""
    if not (SHARED_SPEC_DIR / SEED_FILE).is_file():
        pytest.skip("the shared spec folder is not checked out beside the repository")
    for name in (SEED_FILE, "ImportTwilioPhoneNumberDTO.schema.json"):
        assert (PACKAGED_SPEC_DIR / name).read_bytes() == (SHARED_SPEC_DIR / name).read_bytes()


def test_only_the_four_contradictions_are_patched() -> None:
    """The checker's seed differs from the published one in exactly four places."""
    seed = load_seed()
    assert sorted(differences(seed, patch_contradictions(seed))) == [
        "/components/schemas/BackoffPlan/properties/excludedStatusCodes/items/type",
        "/components/schemas/BackoffPlan/properties/type/type",
        "/components/schemas/PhoneNumberCallEndingHookFilter/properties/oneOf/enum",
        "/components/schemas/TransferPlan/properties/sipVerb/type",
    ]


async def test_the_contradictions_are_real_for_spec_valid_values(api: Api) -> None:
    """Unpatched, the seed refuses the very values its own enums and examples name."""
    created = await api.create_number(twilio_body(**rich_routing()))
    schemas = load_seed()["components"]["schemas"]

    def errors(schema_name: str, value: Any) -> list[list[Any]]:
        root = {"$ref": f"#/components/schemas/{schema_name}", "components": {"schemas": schemas}}
        validator = jsonschema.Draft202012Validator(root)
        return sorted(list(e.absolute_path) for e in validator.iter_errors(value))

    assert errors("BackoffPlan", created["server"]["backoffPlan"]) == [
        ["excludedStatusCodes", 0],
        ["excludedStatusCodes", 1],
        ["excludedStatusCodes", 2],
        ["type"],
    ]
    assert errors("TransferPlan", created["fallbackDestination"]["transferPlan"]) == [["sipVerb"]]
    ending_filter = created["hooks"][1]["filters"][0]
    assert errors("PhoneNumberCallEndingHookFilter", ending_filter) == [["oneOf"]]


async def test_every_operation_with_rich_bodies_matches_the_spec(api: Api) -> None:
    """All providers with hooks, transfer plans, servers with backoff plans and custom
    messages, through every operation: each 2xx body validates (checked by `Api`)."""
    before = len(conformance().checked)
    credentials = [
        await api.create_credential(make(name="rich"))
        for make in (telnyx_credential, vonage_credential, twilio_credential, trunk_credential)
    ]
    telnyx, vonage, _, trunk = credentials
    rich = rich_routing()
    numbers = [
        await api.create_number(
            twilio_body(twilioApiKey="SK0123456789", twilioApiSecret="api-secret-1234", **rich)
        ),
        await api.create_number(telnyx_body(telnyx["id"], **rich)),
        await api.create_number(vonage_body(vonage["id"], **rich)),
        await api.create_number(vapi_body(authentication=sip_authentication(), **rich)),
        await api.create_number(vapi_body(None, status="blocked")),
        await api.create_number(byo_body(trunk["id"], **rich)),
        await api.create_number(byo_body(trunk["id"], "abc", numberE164CheckEnabled=False)),
        await api.create_number(byo_body(trunk["id"], None)),
    ]
    imported = expect(
        await api.post(
            "/phone-number/import/twilio",
            {
                "twilioPhoneNumber": "+14155550701",
                "twilioAccountSid": "AC1",
                "twilioAuthToken": "an-auth-token-1234",
                "smsEnabled": False,
                **rich,
            },
        ),
        201,
    )
    numbers.append(imported)
    assert numbers[3]["authentication"] == SIP_AUTHENTICATION_MASKED
    assert numbers[0]["hooks"][0]["do"][0]["destination"]["extension"] == "123#"

    await api.list_numbers()
    await api.page(limit="3", page="2", sortOrder="ASC", search="e")
    await api.page(createdAtGe=numbers[0]["createdAt"], createdAtLe=imported["createdAt"])
    for number in numbers:
        path = f"/phone-number/{number['id']}"
        expect(await api.get(path), 200)
        expect(await api.patch(path, {"name": "patched", "hooks": rich["hooks"][::-1]}), 200)
        expect(await api.patch(path, {"fallbackDestination": None, "server": None}), 200)
    expect(await api.get("/credential"), 200)
    for credential in credentials:
        path = f"/credential/{credential['id']}"
        expect(await api.get(path), 200)
        expect(await api.patch(path, {"name": "patched"}), 200)
    for number in numbers:
        expect(await api.delete(f"/phone-number/{number['id']}"), 200)
    for credential in credentials:
        expect(await api.delete(f"/credential/{credential['id']}"), 200)

    checked = set(conformance().checked[before:])
    assert checked == ALL_OPERATIONS


# Routes router serves that are not API operations: providers' webhooks and the runtime
# callbacks router writes into its answers (form bodies, signed: docs/providers.md).
WEBHOOK_PREFIXES = tuple(f"/{name}/" for name in PROVIDERS)


async def test_every_api_route_is_an_operation_that_declares_its_errors(api: Api) -> None:
    """Each route router serves, but the providers' webhooks, is an operation of
    `/openapi.json`; each declares its error answers with the error body (a 401 where a
    key is needed, a 400 where it takes input, a 404 where it names a resource), and each
    `{id}` is a UUID."""
    served = expect(await api.get("/openapi.json"), 200)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in api.app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "*")
        and not route.resource.canonical.startswith(WEBHOOK_PREFIXES)
    }
    documented = {(m, p) for p, operations in served["paths"].items() for m in operations}
    assert routes == documented
    assert served["components"]["schemas"]["ErrorResponse"]["required"] == [
        "statusCode",
        "error",
        "message",
    ]
    for path, operations in served["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            errors = {s: a for s, a in answers.items() if int(s) >= 400}
            assert "500" in errors, f"{method} {path}"
            assert all(
                a["content"]["application/json"]["schema"] == ERROR_REF
                for s, a in errors.items()
                if (path, s) != ("/readyz", "503")  # not ready: the readiness body
            ), f"{method} {path}"
            if operation["security"]:
                assert "401" in errors and "503" in errors, f"{method} {path}"
            if operation.get("parameters") or "requestBody" in operation:
                assert "400" in errors, f"{method} {path}"
            if "requestBody" in operation:
                assert {"408", "413", "415"} <= set(errors), f"{method} {path}"
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "path":
                    assert "404" in errors, f"{method} {path}"
                    if parameter["name"] == "id":
                        assert parameter["schema"] == {"type": "string", "format": "uuid"}
