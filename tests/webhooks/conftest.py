"""End-to-end fixtures: the real `create_app(settings)` over real HTTP, a real local
aiohttp app playing the customer's server, Twilio requests signed by twilio-python.

- `make_router(**settings)` starts a router (embedded store in `tmp_path` unless a
  `redis_url` is given) and wraps its test client in `Router`: numbers and credentials
  are created through the REST API, webhooks are sent signed, answers parsed as TwiML.
- `customer` is a local HTTP server with a scripted reply per request (status, body,
  delay); it records every request it got, so tests count assistant-requests and
  retries, and read the headers and bodies the router sent.
- `logs` captures every structlog event of a test (`capture_logs`); after each test,
  every captured value is searched for the fixed secrets below: none may appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.typing import EventDict
from twilio.request_validator import RequestValidator

from router.app import create_app
from router.settings import OrgConfig, Settings
from router.state import NUMBER_CACHE

API_KEY = "webhooks-api-key-of-the-default-org"
OTHER_KEY = "webhooks-api-key-of-the-other-org"
ACME_KEY = "webhooks-api-key-of-the-acme-org"
DEFAULT_ORG = "default"
OTHER_ORG = "other"
ACME_ORG = "acme"

# Secrets are distinctive strings, so a leak is found by a plain substring search.
TOKEN = "twilio-auth-token-SECRET-webhooks-01"
OTHER_TOKEN = "twilio-auth-token-SECRET-webhooks-02"
CREDENTIAL_TOKEN = "credential-auth-token-SECRET-03"
API_SECRET = "twilio-api-secret-SECRET-webhooks-04"
SERVER_HEADER_SECRET = "Bearer server-header-SECRET-webhooks-05"
SERVER_SECRET = "org-server-secret-SECRET-webhooks-06"
SIP_PASSWORD = "sip-password-SECRET-webhooks-07"
SHARED_KEY_SECRET = "twilio-shared-key-SECRET-webhooks-08"
SECRETS = (
    TOKEN,
    OTHER_TOKEN,
    CREDENTIAL_TOKEN,
    API_SECRET,
    SERVER_HEADER_SECRET,
    SERVER_SECRET,
    SIP_PASSWORD,
    SHARED_KEY_SECRET,
)

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
OTHER_ACCOUNT_SID = "ACfedcba9876543210fedcba9876543210"
NUMBER = "+14155550100"
CALLER = "+14155550123"
CALLER_MASKED = "********0123"
PUBLIC_URL = "https://router.example.com"
RUNTIME_URL = "wss://runtime.example.com/stream"
APOLOGY = "Sorry, nobody can take your call right now."

_call_counter = iter(range(1, 1_000_000))


def call_sid() -> str:
    """A fresh CallSid: CA and 32 hex digits."""
    return f"CA{next(_call_counter):032x}"


def voice_form(sid: str | None = None, **overrides: str) -> dict[str, str]:
    """The fields of an inbound voice webhook as Twilio sends them."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid or call_sid(),
        "CallStatus": "ringing",
        "Called": NUMBER,
        "Caller": CALLER,
        "Direction": "inbound",
        "From": CALLER,
        "FromCountry": "US",
        "To": NUMBER,
        "ToCountry": "US",
    }
    return form | overrides


def status_form(sid: str, status: str, **overrides: str) -> dict[str, str]:
    """The fields of a status callback."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": status,
        "Direction": "inbound",
        "From": CALLER,
        "To": NUMBER,
    }
    return form | overrides


def sign(url: str, params: Mapping[str, str] | None = None, token: str = TOKEN) -> str:
    """X-Twilio-Signature as twilio-python computes it."""
    return str(RequestValidator(token).compute_signature(url, dict(params or {})))


def twiml(body: bytes) -> ET.Element:
    """The root of a TwiML answer."""
    return ET.fromstring(body)  # noqa: S314  # the router's own output, not untrusted input


def verbs(root: ET.Element) -> list[str]:
    """The tags directly under `<Response>`."""
    assert root.tag == "Response"
    return [child.tag for child in root]


def stream_parameters(root: ET.Element) -> dict[str, str]:
    """`<Connect><Stream>`'s parameters, asserting the document is exactly that."""
    assert verbs(root) == ["Connect"]
    connect = root[0]
    assert [child.tag for child in connect] == ["Stream"]
    stream = connect[0]
    assert stream.get("url") == RUNTIME_URL
    assert all(child.tag == "Parameter" for child in stream)
    return {str(p.get("name")): str(p.get("value")) for p in stream}


def said(root: ET.Element) -> list[str]:
    """The texts of every `<Say>` anywhere in the document."""
    return [say.text or "" for say in root.iter("Say")]


def spoken_then_hung_up(root: ET.Element) -> str:
    """The text of a `<Say><Hangup/>` document (one Say, nothing else)."""
    assert verbs(root) == ["Say", "Hangup"]
    assert len(root[0]) == 0  # no element smuggled inside the Say
    return root[0].text or ""


def dialled(root: ET.Element) -> ET.Element:
    """The single noun of the document's `<Dial>`, asserting `[Say] Dial` and nothing else."""
    tags = verbs(root)
    assert tags in (["Say", "Dial"], ["Dial"])
    dial = root[-1]
    assert len(dial) == 1
    return dial[0]


# --- the customer's server ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """What the customer's server answers to one request."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    delay: float = 0.0

    async def render(self, release: asyncio.Event) -> web.Response:
        if self.delay:
            # Waits out the delay, or until the test ends: a stalled reply never holds teardown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), self.delay)
        if self.body is not None:
            return web.Response(status=self.status, body=self.body)
        return web.json_response({} if self.json is None else self.json, status=self.status)


@dataclass(frozen=True, slots=True)
class Received:
    """One request the customer's server got."""

    method: str
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    at: float

    @property
    def message(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        message = data["message"]
        assert isinstance(message, dict)
        return message


@dataclass
class Customer:
    """A real local aiohttp app standing in for the customer's server."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _script: list[Reply] = field(default_factory=lambda: [Reply(json={"assistantId": "asst-1"})])
    _status_reply: Reply = field(default_factory=Reply)
    _served: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def reply(self, *replies: Reply) -> None:
        """Answer assistant-requests with `replies` in turn, the last one from then on."""
        self._script = list(replies)
        self._served = 0

    def reply_to_status(self, reply: Reply) -> None:
        self._status_reply = reply

    @property
    def assistant_requests(self) -> list[Received]:
        return [r for r in self.received if r.message.get("type") == "assistant-request"]

    @property
    def status_updates(self) -> list[Received]:
        return [r for r in self.received if r.message.get("type") == "status-update"]

    async def wait_for_status_updates(self, count: int, within: float = 2.0) -> list[Received]:
        """Wait until `count` status-updates arrived (or `within` seconds passed)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while len(self.status_updates) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        return self.status_updates

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        received = Received(request.method, request.path, request.headers, body, time.monotonic())
        self.received.append(received)
        self._arrived.set()
        try:
            kind = received.message.get("type")
        except (ValueError, KeyError, AssertionError):
            kind = None
        if kind == "status-update":
            return await self._status_reply.render(self.release)
        reply = self._script[min(self._served, len(self._script) - 1)]
        self._served += 1
        return await reply.render(self.release)


async def start_customer(aiohttp_server: AiohttpServer) -> Customer:
    """A customer's server on 127.0.0.1 (another org's, say, beside `customer`)."""
    the_customer = Customer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", the_customer.handle)
    server = await aiohttp_server(app)
    the_customer.url = str(server.make_url("/assistant-request"))
    return the_customer


@pytest.fixture
async def customer(aiohttp_server: AiohttpServer) -> AsyncIterator[Customer]:
    """The customer's server on 127.0.0.1; answers `{"assistantId": "asst-1"}` by default."""
    the_customer = await start_customer(aiohttp_server)
    yield the_customer
    the_customer.release.set()


# --- the router ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The router's answer to a webhook."""

    status: int
    body: bytes
    content_type: str
    seconds: float

    @property
    def root(self) -> ET.Element:
        assert self.status == 200, self.body
        assert self.content_type == "text/xml"
        return twiml(self.body)


class Router:
    """A started router app behind a test client, driven as Twilio and an operator would."""

    def __init__(self, client: TestClient[web.Request, web.Application], settings: Settings):
        self.client = client
        self.settings = settings

    async def writes_settled(self, writes: int, within: float = 2.0) -> None:
        """Wait until this worker's number cache has taken the invalidations of `writes`
        writes of its own. With Redis each arrives twice: delivered by the writer before
        it answers, and again over pub/sub later. That echo, arriving after a call warmed
        the cache, drops what the call cached: tests about cache hits wait for it."""
        each = 2 if self.settings.redis_url else 1
        cache = self.client.app[NUMBER_CACHE]
        async with asyncio.timeout(within):
            while cache.invalidations < writes * each:  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0.005)

    # --- REST API -----------------------------------------------------------------------------

    async def create_number(self, *, key: str = API_KEY, **fields: Any) -> dict[str, Any]:
        """POST /phone-number: a Twilio number with its auth token unless `fields` say otherwise."""
        body: dict[str, Any] = {
            "provider": "twilio",
            "number": NUMBER,
            "twilioAccountSid": ACCOUNT_SID,
            "twilioAuthToken": TOKEN,
        }
        body.update(fields)
        body = {k: v for k, v in body.items() if v is not None}
        return await self._api("POST", "/phone-number", key, body, 201)

    async def patch_number(self, number_id: str, *, key: str = API_KEY, **fields: Any) -> None:
        await self._api("PATCH", f"/phone-number/{number_id}", key, fields, 200)

    async def create_credential(self, body: dict[str, Any], key: str = API_KEY) -> dict[str, Any]:
        return await self._api("POST", "/credential", key, body, 201)

    async def call_record(self, sid: str, key: str = API_KEY) -> tuple[int, Any]:
        """GET /call/{sid} as the runtime reads it: (HTTP status, JSON body)."""
        async with self.client.get(
            f"/call/{sid}", headers={"Authorization": f"Bearer {key}"}
        ) as response:
            return response.status, await response.json()

    async def _api(
        self, method: str, path: str, key: str, body: dict[str, Any], expected: int
    ) -> dict[str, Any]:
        async with self.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            data = await response.json()
            assert response.status == expected, data
            assert isinstance(data, dict)
            return data

    # --- webhooks -----------------------------------------------------------------------------

    async def post(
        self,
        fields: Mapping[str, str],
        *,
        path: str = "/twilio/voice",
        token: str = TOKEN,
        signed_url: str | None = None,
        signature: str | None = None,
        signed: bool = True,
    ) -> Answer:
        """A form POST as Twilio sends it, signed over `signed_url` (default: the public URL);
        `signed=False` leaves the signature header out."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signed:
            signature = signature or sign(signed_url or PUBLIC_URL + path, fields, token)
            headers["X-Twilio-Signature"] = signature
        return await self.send("POST", path, urlencode(fields).encode(), headers)

    async def get(self, fields: Mapping[str, str], *, path: str = "/twilio/voice") -> Answer:
        """A GET as Twilio sends it: the fields in the query, the whole URL signed."""
        path_and_query = f"{path}?{urlencode(fields)}"
        headers = {"X-Twilio-Signature": sign(PUBLIC_URL + path_and_query, None)}
        return await self.send("GET", path_and_query, b"", headers)

    async def post_json(self, fields: Mapping[str, str], *, path: str = "/twilio/voice") -> Answer:
        """A JSON POST: `bodySHA256` in the signed URL, the URL alone signed."""
        body = json.dumps(dict(fields))
        path_and_query = f"{path}?bodySHA256={RequestValidator(TOKEN).compute_hash(body)}"
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Signature": sign(PUBLIC_URL + path_and_query, None),
        }
        return await self.send("POST", path_and_query, body.encode(), headers)

    async def voice(self, fields: Mapping[str, str] | None = None) -> Answer:
        return await self.post(fields if fields is not None else voice_form())

    async def status(self, sid: str, status: str, **extra: str) -> Answer:
        return await self.post(status_form(sid, status, **extra), path="/twilio/status")

    async def send(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        started = time.perf_counter()
        async with self.client.request(
            method, path, data=body or None, headers=dict(headers)
        ) as response:
            data = await response.read()
            return Answer(
                response.status, data, response.content_type, time.perf_counter() - started
            )

    async def send_raw(self, method: str, path: str, headers: bytes, body: bytes = b"") -> Answer:
        """A request written as raw bytes on a socket: no HTTP client sends a header that is
        not UTF-8, a forger may. `headers` are whole lines, each ending in CRLF."""
        server = self.client.server
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        ).encode()
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(head + headers + b"\r\n" + body)
            answer = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
        status_line, _, rest = answer.partition(b"\r\n")
        answer_head, _, data = rest.partition(b"\r\n\r\n")
        content_type = ""
        for line in answer_head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-type":
                content_type = value.decode().split(";", 1)[0].strip()
        status = int(status_line.split(b" ", 2)[1])
        return Answer(status, data, content_type, time.perf_counter() - started)


MakeRouter = Callable[..., Awaitable[Router]]


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """The settings every test starts from; `overrides` replace any of them."""
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "orgs": [OrgConfig(id=OTHER_ORG, apiKeys=[SecretStr(OTHER_KEY)])],
        "public_url": PUBLIC_URL,
        "runtime_url": RUNTIME_URL,
        "data_dir": data_dir,
        "apology_message": APOLOGY,
        "twilio_budget_seconds": 3.0,
        "redis_connect_retries": 0,
        "redis_retry_delay_seconds": 0,
        "log_caller": "last4",
        # Two orgs: a loopback customer server must be allowed by name (no SSRF by default).
        "server_allowed_networks": "127.0.0.0/8",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_router(aiohttp_client: AiohttpClient, tmp_path: Path) -> MakeRouter:
    """Start a router over `settings_for(...)`; each call is another app (another worker)."""
    started = 0

    async def make(**overrides: Any) -> Router:
        nonlocal started
        started += 1
        settings = settings_for(tmp_path / f"data-{started}", **overrides)
        client = await aiohttp_client(create_app(settings))
        return Router(client, settings)

    return make


@pytest.fixture
async def router(make_router: MakeRouter) -> Router:
    """A router on the embedded store."""
    return await make_router()


@pytest.fixture(params=["embedded", "redis"])
async def router_on(request: pytest.FixtureRequest, make_router: MakeRouter) -> Router:
    """A router on each store backend."""
    if request.param == "embedded":
        return await make_router()
    return await make_router(redis_url=request.getfixturevalue("redis_url"))


# --- logs ---------------------------------------------------------------------------------


class Logs:
    """The structlog events of one test, as `capture_logs` captures them."""

    def __init__(self, events: list[EventDict]) -> None:
        self.events = events

    def named(self, event: str) -> list[EventDict]:
        return [e for e in self.events if e.get("event") == event]

    def routed(self) -> list[EventDict]:
        return self.named("call.routed")

    def one_routed(self) -> EventDict:
        routed = self.routed()
        assert len(routed) == 1, routed
        return routed[0]


@pytest.fixture(autouse=True)
def logs() -> Iterator[Logs]:
    """Every structlog event of the test, app shutdown included; afterwards, no secret may
    appear in any value of any of them."""
    with structlog.testing.capture_logs() as events:
        yield Logs(events)
    dumped = json.dumps(events, default=str)
    leaked = [secret for secret in SECRETS if secret in dumped]
    assert not leaked, f"secrets in log events: {leaked}"
