"""The API tests' fixtures: the real `create_app(settings)` over real HTTP, on both backends.

Every request goes through `Api`, a Vapi-style client that checks what it gets back: each
2xx body against the response schema of its operation in the seed OpenAPI document, and
each error against the NestJS shape (`statusCode`, `error`, `message`). So every test
here is also a conformance test.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

# No stubs for jsonschema in the test extras; it is used through two calls.
import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient

from router.api.openapi_routes import build_document
from router.app import create_app
from router.settings import OrgConfig, Settings

API_KEY = "api-key-of-the-default-org"
OTHER_KEY = "api-key-of-the-other-org"
DEFAULT_ORG = "default"
OTHER_ORG = "other"
SIP_DOMAIN = "sip.test.example"

# Secrets are distinctive strings, so a leak is found by a plain substring search.
TWILIO_AUTH_TOKEN = "twilio-auth-token-SECRET-0001"
TWILIO_API_SECRET = "twilio-api-secret-SECRET-0002"
SIP_PASSWORD = "sip-digest-password-SECRET-03"
TELNYX_API_KEY = "KEYtelnyx-api-key-SECRET-0004"
VONAGE_API_SECRET = "vonage-api-secret-SECRET-0005"
VONAGE_SIGNATURE_SECRET = "vonage-signature-SECRET-0006"
CREDENTIAL_AUTH_TOKEN = "credential-auth-token-SECRET-7"
TRUNK_PASSWORD = "trunk-auth-password-SECRET-08"
SECRETS = (
    TWILIO_AUTH_TOKEN,
    TWILIO_API_SECRET,
    SIP_PASSWORD,
    TELNYX_API_KEY,
    VONAGE_API_SECRET,
    VONAGE_SIGNATURE_SECRET,
    CREDENTIAL_AUTH_TOKEN,
    TRUNK_PASSWORD,
)
TELNYX_PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()
SIP_USERNAME = "sip-digest-username-0001"


def masked(secret: str) -> str:
    """SPEC 2: masked with the length kept, the last four shown (secrets here are long)."""
    assert len(secret) >= 12
    return "*" * (len(secret) - 4) + secret[-4:]


SIP_AUTHENTICATION_MASKED = {
    "realm": "sip.example.com",
    "username": SIP_USERNAME,
    "password": masked(SIP_PASSWORD),
}

REPO = Path(__file__).resolve().parents[2]
# The wire contract lives beside the repository; the package carries a copy of it, used
# where the shared folder is not checked out (and compared with it where it is).
SHARED_SPEC_DIR = REPO.parent / "shared" / "spec"
PACKAGED_SPEC_DIR = REPO / "router" / "openapi"
SEED_FILE = "phone-numbers.openapi.yml"
SPEC_DIR = SHARED_SPEC_DIR if (SHARED_SPEC_DIR / SEED_FILE).is_file() else PACKAGED_SPEC_DIR


# --- request bodies ---------------------------------------------------------------------------


def twilio_body(number: str = "+14155550100", **extra: Any) -> dict[str, Any]:
    return {
        "provider": "twilio",
        "number": number,
        "twilioAccountSid": "AC0123456789abcdef0123456789abcdef",
        "twilioAuthToken": TWILIO_AUTH_TOKEN,
        **extra,
    }


def telnyx_body(credential_id: str, number: str = "+14155550101", **extra: Any) -> dict[str, Any]:
    return {"provider": "telnyx", "number": number, "credentialId": credential_id, **extra}


def vonage_body(credential_id: str, number: str = "+14155550102", **extra: Any) -> dict[str, Any]:
    return {"provider": "vonage", "number": number, "credentialId": credential_id, **extra}


def vapi_body(
    sip_uri: str | None = "sip:front-desk@sip.example.com", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": "vapi", **extra}
    if sip_uri is not None:
        body["sipUri"] = sip_uri
    return body


def byo_body(
    credential_id: str, number: str | None = "+14155550103", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"provider": "byo-phone-number", "credentialId": credential_id}
    if number is not None:
        body["number"] = number
    return {**body, **extra}


def sip_authentication() -> dict[str, Any]:
    return {"realm": "sip.example.com", "username": SIP_USERNAME, "password": SIP_PASSWORD}


def telnyx_credential(**extra: Any) -> dict[str, Any]:
    return {
        "provider": "telnyx",
        "apiKey": TELNYX_API_KEY,
        "publicKey": TELNYX_PUBLIC_KEY,
        **extra,
    }


def vonage_credential(**extra: Any) -> dict[str, Any]:
    return {
        "provider": "vonage",
        "apiKey": "vonage-key-1",
        "apiSecret": VONAGE_API_SECRET,
        "signatureSecret": VONAGE_SIGNATURE_SECRET,
        **extra,
    }


def twilio_credential(**extra: Any) -> dict[str, Any]:
    return {
        "provider": "twilio",
        "accountSid": "AC0123456789abcdef0123456789abcdef",
        "authToken": CREDENTIAL_AUTH_TOKEN,
        **extra,
    }


def trunk_credential(**extra: Any) -> dict[str, Any]:
    return {
        "provider": "byo-sip-trunk",
        "gateways": [{"ip": "203.0.113.10", "port": 5060}],
        "outboundAuthenticationPlan": {
            "authUsername": "trunk-user",
            "authPassword": TRUNK_PASSWORD,
        },
        **extra,
    }


CREDENTIAL_BODIES: dict[str, Callable[..., dict[str, Any]]] = {
    "telnyx": telnyx_credential,
    "vonage": vonage_credential,
    "twilio": twilio_credential,
    "byo-sip-trunk": trunk_credential,
}


# Router's extensions to ringing hooks (SPEC §12): every filter and the reject action.
ROUTER_RINGING_HOOK: dict[str, Any] = {
    "on": "call.ringing",
    "filters": [
        {"type": "startsWith", "key": "number", "startsWith": ["1"]},
        {"type": "oneOf", "key": "number", "oneOf": ["+14155550123", "+442071838750"]},
        {"type": "oneOf", "key": "attestation", "oneOf": ["C", "failed", "none"]},
        {
            "type": "schedule",
            "timeZone": "America/New_York",
            "weekly": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "17:00"},
                {"days": ["sat"], "from": "22:00", "to": "02:00"},
                {"days": ["sun"], "from": "00:00", "to": "24:00"},
            ],
            "exceptDates": ["2026-12-25", "2027-01-01"],
            "match": "outside",
        },
    ],
    "do": [{"type": "reject"}],
}


def rich_routing() -> dict[str, Any]:
    """Every routing field of the seed, each with nested plans, messages and bounds in use,
    and a ringing hook of router's extensions (`ROUTER_RINGING_HOOK`)."""
    return {
        "name": "Front desk",
        "assistantId": "assistant-1",
        "squadId": "squad-1",
        "workflowId": "workflow-1",
        "server": {
            "url": "https://customer.example.com/vapi",
            "timeoutSeconds": 20,
            "headers": {"X-Team": "voice", "X-Retries": 2},
            "credentialId": "550e8400-e29b-41d4-a716-446655440000",
            "staticIpAddressesEnabled": False,
            "encryptedPaths": ["call.customer.number"],
            "backoffPlan": {
                "type": "exponential",
                "maxRetries": 3,
                "baseDelaySeconds": 0.5,
                "excludedStatusCodes": [400, 401, 404],
            },
        },
        "hooks": [
            {
                "on": "call.ringing",
                "filters": [{"type": "startsWith", "key": "number", "startsWith": ["91", "86"]}],
                "do": [
                    {
                        "type": "transfer",
                        "destination": {
                            "type": "number",
                            "number": "+14155559999",
                            "extension": "123#",
                            "callerId": "{{customer.number}}",
                            "message": {
                                "type": "custom-message",
                                "content": "Connecting you now.",
                                "contents": [
                                    {"type": "text", "text": "Un momento.", "language": "es"}
                                ],
                            },
                            "transferPlan": {
                                "mode": "warm-transfer-say-message",
                                "message": "A caller from the hotline.",
                                "timeout": 30,
                            },
                        },
                    }
                ],
            },
            {
                "on": "call.ending",
                "filters": [
                    {
                        "type": "oneOf",
                        "key": "call.endedReason",
                        "oneOf": ["assistant-request-failed", "assistant-request-returned-error"],
                    }
                ],
                "do": {"type": "say", "exact": "Sorry, we could not connect you."},
            },
            ROUTER_RINGING_HOOK,
        ],
        "fallbackDestination": {
            "type": "sip",
            "sipUri": "sip:operator@pbx.example.com",
            "callerId": "+14155550000",
            "sipHeaders": {"X-Reason": "fallback"},
            "message": "Transferring you to an operator.",
            "transferPlan": {
                "mode": "warm-transfer-experimental",
                "sipVerb": "dial",
                "dialTimeout": 45,
                "twiml": "<Say>Hello</Say>",
                "contextEngineeringPlan": {"type": "lastNMessages", "maxMessages": 5},
                "summaryPlan": {"enabled": True, "timeoutSeconds": 10},
                "fallbackPlan": {"message": "Nobody is available.", "endCallEnabled": False},
                "holdAudioUrl": "https://cdn.example.com/hold.mp3",
            },
        },
    }


# --- the spec -----------------------------------------------------------------------------------


def load_seed() -> dict[str, Any]:
    """The seed OpenAPI document, as published (a fresh copy)."""
    return copy.deepcopy(_parsed_seed())


@cache
def _parsed_seed() -> dict[str, Any]:
    seed: dict[str, Any] = yaml.safe_load((SPEC_DIR / SEED_FILE).read_text())
    return seed


def patch_contradictions(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` with the seed's four self-contradictions fixed, and nothing else.

    Each spot declares a type no value of its own enum could have, so no response that
    uses the field at all could validate (Vapi's generator emitted these; its API sends
    strings and numbers there). Each spot is asserted first so a changed seed fails here.
    """
    fixed = copy.deepcopy(doc)
    schemas = fixed["components"]["schemas"]
    backoff_type = schemas["BackoffPlan"]["properties"]["type"]
    sip_verb = schemas["TransferPlan"]["properties"]["sipVerb"]
    status_codes = schemas["BackoffPlan"]["properties"]["excludedStatusCodes"]["items"]
    ended_reasons = schemas["PhoneNumberCallEndingHookFilter"]["properties"]["oneOf"]
    # `type: object` with a string enum: nothing is both an object and "fixed".
    assert backoff_type["type"] == "object" and backoff_type["enum"] == ["fixed", "exponential"]
    backoff_type["type"] = "string"
    # Same: `type: object`, default "refer", enum of strings.
    assert sip_verb["type"] == "object" and sip_verb["enum"] == ["refer", "bye", "dial"]
    sip_verb["type"] = "string"
    # HTTP status codes declared as objects; its own example is [400, 401, 403, 404].
    assert status_codes == {"type": "object"}
    status_codes["type"] = "number"
    # An array whose value must equal one of six strings; the real enum is on its items.
    assert (
        ended_reasons["type"] == "array" and ended_reasons["enum"] == ended_reasons["items"]["enum"]
    )
    del ended_reasons["enum"]
    return fixed


def with_extensions(doc: dict[str, Any], served: dict[str, Any]) -> dict[str, Any]:
    """A copy of the seed `doc` widened where the served document says router extends it
    (`x-router-extensions`: JSON pointer → the names of the schemas added there): the
    seed's schema at each pointer becomes one member of a `oneOf` with the added ones (a
    seed `oneOf` gains members), and the added schemas join the components. Everything
    else is the seed's own; so a body valid against this is seed-valid but at those spots."""
    widened = copy.deepcopy(doc)
    schemas = widened["components"]["schemas"]
    added_names: set[str] = set()
    for pointer, names in served["x-router-extensions"].items():
        *parents, last = [k.replace("~1", "/").replace("~0", "~") for k in pointer[1:].split("/")]
        parent = widened
        for key in parents:
            parent = parent[key]
        seed = parent[last]
        refs = [{"$ref": f"#/components/schemas/{name}", "title": name} for name in names]
        if set(seed) == {"oneOf"}:
            parent[last] = {"oneOf": [*seed["oneOf"], *refs]}
        else:
            parent[last] = {"oneOf": [seed, *refs]}
        added_names.update(names)
    # Router's fields on seed schemas and values in seed enums, as served.
    for pointer, fields in served.get("x-router-properties", {}).items():
        if pointer.split("/")[3] not in schemas:
            continue  # router's own schema (the Twilio import's), not the seed's
        properties, given = _at(widened, pointer), _at(served, pointer)
        for field in fields:
            assert field not in properties, f"router's {field} must not replace the seed's"
            properties[field] = given[field]
            for ref in re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(given[field])):
                assert ref in schemas, f"{pointer}/{field} refers to {ref}, not a seed schema"
    for pointer, values in served.get("x-router-enum-values", {}).items():
        items = _at(widened, pointer)
        assert not set(values) & set(items["enum"])
        items["enum"] = [*items["enum"], *values]
    # The added schemas, and the ones they refer to, exactly as served.
    pending = sorted(added_names)
    while pending:
        name = pending.pop()
        assert name not in schemas, f"an extension must not replace the seed's {name}"
        schemas[name] = served["components"]["schemas"][name]
        for ref in re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(schemas[name])):
            if ref not in schemas and ref not in pending:
                pending.append(ref)
    return widened


def _at(doc: dict[str, Any], pointer: str) -> Any:
    node: Any = doc
    for key in pointer.strip("/").split("/"):
        node = node[key]
    return node


# Request paths to the path templates of the documents (import before `{id}`).
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/phone-number$"), "/phone-number"),
    (re.compile(r"^/v2/phone-number$"), "/v2/phone-number"),
    (re.compile(r"^/phone-number/import/twilio$"), "/phone-number/import/twilio"),
    (re.compile(r"^/phone-number/[^/]+$"), "/phone-number/{id}"),
    (re.compile(r"^/credential$"), "/credential"),
    (re.compile(r"^/credential/[^/]+$"), "/credential/{id}"),
)


class Conformance:
    """Validates response bodies against the response schema of their operation.

    Seed operations are checked against the seed file itself, widened only where router
    documents an extension of it (`with_extensions`); router's own operations (Twilio
    import, credentials) against the document router serves, whose seed part is asserted
    identical to the seed, but for those documented extensions, in test_conformance.
    """

    def __init__(self, seed: dict[str, Any], served: dict[str, Any]) -> None:
        self._seed = seed
        self._served = served
        self._validators: dict[tuple[str, str, str], Any] = {}
        self.checked: list[tuple[str, str, str]] = []

    def template(self, path: str) -> str | None:
        for pattern, template in _ROUTES:
            if pattern.match(path):
                return template
        return None

    def validator(self, template: str, method: str, status: str) -> Any:
        key = (template, method, status)
        if key not in self._validators:
            doc = self._seed if template in self._seed["paths"] else self._served
            operation = doc["paths"][template][method]
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            # `#/components/...` refs resolve against this root, which carries the components.
            root = {"allOf": [schema], "components": doc["components"]}
            self._validators[key] = jsonschema.Draft202012Validator(
                root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            )
        return self._validators[key]

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        template = self.template(path)
        if template is None:
            return
        validator = self.validator(template, method.lower(), str(status))
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {path} {status} breaks the spec: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5]
        )
        self.checked.append((method.upper(), template, str(status)))


@cache
def conformance() -> Conformance:
    """One checker for the session (validators are compiled once)."""
    served = build_document()  # router serves the seed with those four places fixed
    return Conformance(with_extensions(patch_contradictions(load_seed()), served), served)


# --- the client ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    text: str
    headers: Mapping[str, str]


def check_error_shape(reply: Reply) -> None:
    """An error is JSON in the NestJS shape Vapi clients parse, and nothing else."""
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.text
    body = reply.body
    assert isinstance(body, dict), reply.text
    assert set(body) == {"statusCode", "error", "message"}, reply.text
    assert body["statusCode"] == reply.status
    assert body["error"] == HTTPStatus(reply.status).phrase
    message = body["message"]
    if isinstance(message, list):
        assert message and all(isinstance(m, str) and m for m in message), reply.text
    else:
        assert isinstance(message, str) and message, reply.text


def expect(reply: Reply, status: int) -> Any:
    """The body of a reply that must have this status."""
    assert reply.status == status, f"expected {status}, got {reply.status}: {reply.text}"
    return reply.body


def messages(reply: Reply) -> str:
    """All of an error's messages as one string, for `in` checks."""
    message = reply.body["message"]
    return " | ".join(message) if isinstance(message, list) else str(message)


def rejected(reply: Reply, status: int = 400) -> str:
    """The messages of a reply that must be an error of this status."""
    assert reply.status == status, f"expected {status}, got {reply.status}: {reply.text}"
    return messages(reply)


_NO_BODY: Any = object()
# Operators' endpoints answer in their own small shapes, not the API's error shape.
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Api:
    """A Vapi-style client of one app: JSON in, JSON out, bearer auth, every reply checked."""

    def __init__(self, client: TestClient[web.Request, web.Application], key: str | None) -> None:
        self.client = client
        self.key = key

    @property
    def app(self) -> web.Application:
        return self.client.app

    def with_key(self, key: str | None) -> Api:
        """The same app, seen with another bearer key (another org, a bad key or none)."""
        return Api(self.client, key)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = _NO_BODY,
        *,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        sent: dict[str, str] = {}
        if self.key is not None:
            sent["Authorization"] = f"Bearer {self.key}"
        sent.update(headers or {})
        extra: dict[str, Any] = {}
        if body is not _NO_BODY:
            extra["json"] = body
        if data is not None:
            extra["data"] = data
        async with self.client.request(
            method, path, headers=sent, params=params, **extra
        ) as response:
            text = await response.text()
            parsed = json.loads(text) if response.content_type == "application/json" else None
            reply = Reply(response.status, parsed, text, response.headers)
        if 200 <= reply.status < 300:
            conformance().check(method, path, reply.status, reply.body)
        elif reply.status >= 400 and path not in OPS_PATHS:
            check_error_shape(reply)
        return reply

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Reply:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = _NO_BODY, **kwargs: Any) -> Reply:
        return await self.call("POST", path, body, **kwargs)

    async def patch(self, path: str, body: Any = _NO_BODY, **kwargs: Any) -> Reply:
        return await self.call("PATCH", path, body, **kwargs)

    async def delete(self, path: str) -> Reply:
        return await self.call("DELETE", path)

    async def create_number(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = expect(await self.post("/phone-number", body), 201)
        return created

    async def create_credential(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = expect(await self.post("/credential", body), 201)
        return created

    async def list_numbers(self, **params: str) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = expect(await self.get("/phone-number", params), 200)
        return listed

    async def page(self, **params: str) -> dict[str, Any]:
        paged: dict[str, Any] = expect(await self.get("/v2/phone-number", params), 200)
        return paged


# --- fixtures -------------------------------------------------------------------------------------

MakeSettings = Callable[..., Settings]
StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture(params=["embedded", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The store behind the app; a test may narrow it with `parametrize("backend", [...])`."""
    name: str = request.param
    return name


@pytest.fixture
def make_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> MakeSettings:
    """Settings of the backend under test, two orgs (`default` and `other`), plus overrides."""
    redis_url: str | None = request.getfixturevalue("redis_url") if backend == "redis" else None

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "api_key": API_KEY,
            "orgs": [OrgConfig(id=OTHER_ORG, apiKeys=[SecretStr(OTHER_KEY)])],
            "sip_domain": SIP_DOMAIN,
            "redis_connect_retries": 0,
            "redis_retry_delay_seconds": 0,
            "data_dir": tmp_path / "data",
            "redis_url": redis_url,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def start_api(aiohttp_client: AiohttpClient, make_settings: MakeSettings) -> StartApi:
    """Start one more app (closed at teardown, or earlier with `api.client.close()`)."""

    async def start(settings: Settings | None = None, key: str | None = API_KEY) -> Api:
        client = await aiohttp_client(create_app(settings or make_settings()))
        return Api(client, key)

    return start


@pytest.fixture
async def api(start_api: StartApi) -> Api:
    """The app on the backend under test, as the `default` org."""
    return await start_api()


@pytest.fixture
def other(api: Api) -> Api:
    """The same app as the `other` org."""
    return api.with_key(OTHER_KEY)
