"""Vonage end to end: the real `create_app(settings)` over real HTTP, a Vonage credential and
number created through the REST API, webhooks signed as Vonage signs them, and a real local
aiohttp app playing the customer's server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.typing import EventDict

from router.app import create_app
from router.providers import PROVIDERS
from router.settings import Settings

from .vonage_support import (
    API_KEY,
    API_SECRET,
    CALLER,
    NUMBER,
    OTHER_SECRET,
    RUNTIME_URL,
    SIGNATURE_SECRET,
    answer_fields,
    bearer,
    digits,
    event_fields,
    query_hash,
    sha256_hex,
    sign,
)

ROUTER_KEY = "vonage-http-test-api-key"
PUBLIC_URL = "https://router.example.com"
APOLOGY = "Sorry, nobody can take your call right now."
SECRETS = (SIGNATURE_SECRET, API_SECRET, OTHER_SECRET)


def new_uuid() -> str:
    return str(uuid.uuid4())


# --- the customer's server ----------------------------------------------------------------


@dataclass
class Customer:
    """A real local aiohttp app standing in for the customer's server: it answers
    assistant-requests with `reply` after `delay` seconds and records what it got."""

    url: str = ""
    reply: Any = field(default_factory=lambda: {"assistantId": "asst-1"})
    delay: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def assistant_requests(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "assistant-request"]

    async def handle(self, request: web.Request) -> web.Response:
        message = (await request.json())["message"]
        self.messages.append(message)
        if message.get("type") == "assistant-request" and self.delay:
            # A stalled reply, released at teardown so it never holds the test up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.delay)
        return web.json_response(self.reply)


@pytest.fixture
async def customer(aiohttp_server: AiohttpServer) -> AsyncIterator[Customer]:
    the_customer = Customer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", the_customer.handle)
    server = await aiohttp_server(app)
    the_customer.url = str(server.make_url("/assistant-request"))
    yield the_customer
    the_customer.release.set()


# --- the router ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    seconds: float

    @property
    def ncco(self) -> list[dict[str, Any]]:
        assert self.status == 200, self.body
        assert self.content_type == "application/json"
        actions = json.loads(self.body)
        assert isinstance(actions, list)
        return actions


class Router:
    """A started router, driven as an operator and as Vonage would."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client

    async def api(self, method: str, path: str, body: Any = None, expected: int = 200) -> Any:
        async with self.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {ROUTER_KEY}"}
        ) as response:
            data = await response.json()
            assert response.status == expected, data
            return data

    async def create_vonage_number(self, **fields: Any) -> dict[str, Any]:
        """A `vonage` credential and a number on it, through the REST API."""
        credential = await self.api(
            "POST",
            "/credential",
            {
                "provider": "vonage",
                "apiKey": API_KEY,
                "apiSecret": API_SECRET,
                "signatureSecret": SIGNATURE_SECRET,
            },
            201,
        )
        body = {"provider": "vonage", "number": NUMBER, "credentialId": credential["id"]}
        number: dict[str, Any] = await self.api("POST", "/phone-number", body | fields, 201)
        return number

    async def call_record(self, call_uuid: str) -> tuple[int, Any]:
        async with self.client.get(
            f"/call/{call_uuid}", headers={"Authorization": f"Bearer {ROUTER_KEY}"}
        ) as response:
            return response.status, await response.json()

    async def send(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        started = time.perf_counter()
        async with self.client.request(
            method, path, data=body or None, headers=dict(headers)
        ) as response:
            data = await response.read()
            return Answer(
                response.status, data, response.content_type, time.perf_counter() - started
            )

    async def get(
        self,
        fields: Mapping[str, str],
        *,
        path: str = "/vonage/answer",
        token: str | None = None,
    ) -> Answer:
        """A GET with the fields in the query, signed over the query's JSON."""
        token = token or sign(query_hash(fields), iat=time.time())
        return await self.send("GET", f"{path}?{urlencode(dict(fields))}", b"", bearer(token))

    async def post(
        self,
        fields: Mapping[str, Any],
        *,
        path: str = "/vonage/answer",
        token: str | None = None,
        body: bytes | None = None,
    ) -> Answer:
        """A JSON POST, signed over the raw body; `body` replaces what is sent after signing."""
        signed = json.dumps(dict(fields)).encode()
        token = token or sign(sha256_hex(signed), iat=time.time())
        headers = {"Content-Type": "application/json", **bearer(token)}
        return await self.send("POST", path, signed if body is None else body, headers)

    async def event(self, call_uuid: str, status: str, **extra: Any) -> Answer:
        return await self.post(event_fields(status, uuid=call_uuid, **extra), path="/vonage/event")


MakeRouter = Callable[..., Awaitable[Router]]


@pytest.fixture
def make_router(aiohttp_client: AiohttpClient, tmp_path: Path) -> MakeRouter:
    async def make(**overrides: Any) -> Router:
        values: dict[str, Any] = {
            "api_key": SecretStr(ROUTER_KEY),
            "data_dir": tmp_path,
            "public_url": PUBLIC_URL,
            "runtime_url": RUNTIME_URL,
            "apology_message": APOLOGY,
            "redis_connect_retries": 0,
            "redis_retry_delay_seconds": 0,
        }
        client = await aiohttp_client(create_app(Settings(**(values | overrides))))
        return Router(client)

    return make


@pytest.fixture
async def router(make_router: MakeRouter) -> Router:
    return await make_router()


class Logs:
    def __init__(self, events: list[EventDict]) -> None:
        self.events = events

    def named(self, event: str) -> list[EventDict]:
        return [e for e in self.events if e.get("event") == event]


@pytest.fixture(autouse=True)
def logs() -> Iterator[Logs]:
    """The test's structlog events; afterwards no Vonage secret may appear in any of them."""
    with structlog.testing.capture_logs() as events:
        yield Logs(events)
    dumped = json.dumps(events, default=str)
    assert not [secret for secret in SECRETS if secret in dumped]


def runtime_headers(actions: list[dict[str, Any]]) -> dict[str, str]:
    """The websocket headers of an NCCO that is exactly a connect to the runtime."""
    assert [a["action"] for a in actions] == ["connect"]
    (endpoint,) = actions[0]["endpoint"]
    assert endpoint["type"] == "websocket"
    assert endpoint["uri"] == RUNTIME_URL
    assert endpoint["content-type"] == "audio/l16;rate=16000"
    headers: dict[str, str] = endpoint["headers"]
    return headers


# --- answer ----------------------------------------------------------------------------------


async def test_a_signed_get_answer_is_routed_to_the_runtime(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """GET with the query and a signed JWT: the customer's server is asked, and the NCCO
    connects the call to the runtime with the call id and the assistant it chose."""
    number = await router.create_vonage_number(server={"url": customer.url})
    call_uuid = new_uuid()
    answer = await router.get(answer_fields(uuid=call_uuid))
    assert runtime_headers(answer.ncco) == {
        "callId": call_uuid,
        "target": "assistant",
        "targetId": "asst-1",
        "phoneNumberId": number["id"],
    }
    assert answer.ncco[0]["from"] == digits(NUMBER)
    (request,) = customer.assistant_requests
    assert request["customer"] == {"number": CALLER}
    assert request["call"]["phoneCallProviderId"] == call_uuid
    assert request["call"]["phoneCallProvider"] == "vonage"
    (routed,) = logs.named("call.routed")
    assert (routed["provider"], routed["route"]) == ("vonage", "assistant-request")


async def test_a_signed_post_json_answer_is_routed(router: Router, logs: Logs) -> None:
    """`answer_method=POST`: the JSON body is hashed as received and routed alike."""
    await router.create_vonage_number(assistantId="asst-static")
    answer = await router.post(answer_fields(uuid=new_uuid()))
    assert runtime_headers(answer.ncco)["targetId"] == "asst-static"


async def test_a_retried_answer_gets_the_same_ncco_and_one_assistant_request(
    router: Router, customer: Customer
) -> None:
    """Vonage retries an answer URL: the same uuid replays the first decision."""
    await router.create_vonage_number(server={"url": customer.url})
    fields = answer_fields(uuid=new_uuid())
    first, second = await router.get(fields), await router.get(fields)
    assert first.body == second.body
    assert len(customer.assistant_requests) == 1


async def test_an_unknown_number_gets_the_empty_ncco(router: Router, logs: Logs) -> None:
    """No number configured: `[]` ends the call at once (Vonage cannot decline it)."""
    answer = await router.get(answer_fields(to="14155550999", uuid=new_uuid()))
    assert answer.ncco == []
    assert logs.named("webhook.unknown_number")


async def test_a_blocked_number_gets_the_empty_ncco(router: Router, customer: Customer) -> None:
    await router.create_vonage_number(server={"url": customer.url}, status="blocked")
    assert (await router.get(answer_fields(uuid=new_uuid()))).ncco == []
    assert customer.assistant_requests == []


@pytest.mark.parametrize(
    "forge",
    ["other-secret", "tampered-body", "no-token", "alg-none", "expired"],
)
async def test_a_request_that_fails_verification_is_refused_and_never_routed(
    router: Router, customer: Customer, logs: Logs, forge: str
) -> None:
    """Refused (403 without a token at all, before any lookup; else the empty NCCO an
    unknown number gets), a `webhook.rejected` event, and the customer's server never
    hears of it."""
    await router.create_vonage_number(server={"url": customer.url})
    fields = answer_fields(uuid=new_uuid())
    body = json.dumps(fields).encode()
    if forge == "other-secret":
        answer = await router.post(fields, token=sign(sha256_hex(body), secret=OTHER_SECRET))
    elif forge == "tampered-body":
        tampered = json.dumps(fields | {"from": "14155550666"}).encode()
        answer = await router.post(fields, body=tampered)
    elif forge == "no-token":
        answer = await router.send(
            "POST", "/vonage/answer", body, {"Content-Type": "application/json"}
        )
    elif forge == "alg-none":
        answer = await router.post(fields, token=sign(sha256_hex(body), algorithm="none"))
    else:
        answer = await router.post(fields, token=sign(sha256_hex(body), iat=time.time() - 3600))
    if forge == "no-token":
        assert answer.status == 403
    else:
        assert (answer.status, answer.body) == (200, PROVIDERS["vonage"].reject().body)
    assert customer.messages == []
    assert logs.named("call.routed") == []
    (rejected,) = logs.named("webhook.rejected")
    assert rejected["provider"] == "vonage"


async def test_the_fallback_answer_url_goes_straight_to_the_failure_branch(
    router: Router, customer: Customer
) -> None:
    """Vonage calls the fallback after the answer URL failed: no assistant-request, the
    apology is spoken and the call ends."""
    await router.create_vonage_number(server={"url": customer.url})
    answer = await router.get(answer_fields(uuid=new_uuid()), path="/vonage/fallback")
    assert answer.ncco == [{"action": "talk", "text": APOLOGY}]
    assert customer.messages == []


async def test_a_slow_server_gets_the_failure_branch_inside_the_vonage_budget(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """The customer's server stalls for 10 s; with `vonage_budget_seconds` at 1 s the NCCO
    arrives inside that second, and it is the failure branch (fallbackDestination)."""
    budget = 1.0
    router = await make_router(vonage_budget_seconds=budget)
    customer.delay = 10.0
    await router.create_vonage_number(
        server={"url": customer.url, "timeoutSeconds": 20},
        fallbackDestination={"type": "number", "number": "+14155550142", "message": ""},
    )
    answer = await router.get(answer_fields(uuid=new_uuid()))
    assert answer.seconds < budget
    assert answer.ncco == [
        {
            "action": "connect",
            "from": digits(NUMBER),
            "endpoint": [{"type": "phone", "number": "14155550142"}],
        }
    ]
    (routed,) = logs.named("call.routed")
    assert (routed["route"], routed["ended_reason"]) == ("fallback", "assistant-request-failed")
    assert routed["assistant_request_outcome"] == "timeout"


# --- events ----------------------------------------------------------------------------------


async def test_events_update_the_call_record_to_completed_with_its_duration(
    router: Router, customer: Customer
) -> None:
    """started → ringing → answered → completed: each acknowledged with 204, and
    `GET /call/{uuid}` shows the final status and the duration."""
    await router.create_vonage_number(server={"url": customer.url})
    call_uuid = new_uuid()
    await router.get(answer_fields(uuid=call_uuid))
    for status in ("started", "ringing", "answered"):
        answer = await router.event(call_uuid, status)
        assert (answer.status, answer.body) == (204, b"")
    status_code, record = await router.call_record(call_uuid)
    assert (status_code, record["status"], record["final"]) == (200, "in-progress", False)
    await router.event(call_uuid, "completed", duration="42")
    _, record = await router.call_record(call_uuid)
    assert (record["status"], record["final"], record["durationSeconds"]) == (
        "completed",
        True,
        42,
    )
    assert record["provider"] == "vonage"


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_duplicate_and_out_of_order_events_are_harmless(
    make_router: MakeRouter, request: pytest.FixtureRequest, backend: str
) -> None:
    """`answered` before `ringing`, a repeated `answered`, `completed` twice and a late
    `ringing`, on either store: the record ends completed, and every event gets 204."""
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    router = await make_router(redis_url=redis_url)
    await router.create_vonage_number(assistantId="asst-1")
    call_uuid = new_uuid()
    await router.get(answer_fields(uuid=call_uuid))
    await router.event(call_uuid, "answered")
    await router.event(call_uuid, "ringing")
    _, record = await router.call_record(call_uuid)
    assert record["status"] == "in-progress"
    await router.event(call_uuid, "answered")
    for _ in range(2):
        assert (await router.event(call_uuid, "completed", duration="7")).status == 204
    assert (await router.event(call_uuid, "ringing")).status == 204
    _, record = await router.call_record(call_uuid)
    assert (record["status"], record["final"], record["durationSeconds"]) == (
        "completed",
        True,
        7,
    )


async def test_events_of_other_legs_and_non_status_events_are_acknowledged_and_ignored(
    router: Router,
) -> None:
    """The runtime's websocket leg, `disconnected` and `transfer`: 204 (never an error,
    which would send Vonage to the fallback URL), and no call record is made."""
    await router.create_vonage_number(assistantId="asst-1")
    leg = new_uuid()
    answers = [
        await router.event(leg, "answered", direction="outbound", to=RUNTIME_URL),
        await router.event(leg, "disconnected"),
        await router.post(
            {"type": "transfer", "uuid": leg, "conversation_uuid_from": "CON-1"},
            path="/vonage/event",
        ),
    ]
    assert [a.status for a in answers] == [204, 204, 204]
    assert (await router.call_record(leg))[0] == 404


async def test_a_forged_event_is_acked_and_changes_nothing(router: Router, logs: Logs) -> None:
    """The ack an unknown number's event gets; the record is not completed."""
    await router.create_vonage_number(assistantId="asst-1")
    call_uuid = new_uuid()
    await router.get(answer_fields(uuid=call_uuid))
    body = json.dumps(event_fields("completed", uuid=call_uuid)).encode()
    forged = sign(sha256_hex(body), secret=OTHER_SECRET, iat=time.time())
    answer = await router.post(
        event_fields("completed", uuid=call_uuid), path="/vonage/event", token=forged
    )
    ack = PROVIDERS["vonage"].ack_status()
    assert (answer.status, answer.body) == (ack.status, ack.body)
    status_code, record = await router.call_record(call_uuid)
    assert status_code == 404 or record["status"] != "completed"
    assert logs.named("webhook.rejected")


# --- runtimes: the dialled leg's events at /vonage/connect -----------------------------------


def connect_events_path(action: dict[str, Any]) -> str:
    assert action["eventType"] == "synchronous" and action["eventMethod"] == "POST"
    (url,) = action["eventUrl"]
    assert url.startswith(f"{PUBLIC_URL}/vonage/connect?"), url
    return str(url).removeprefix(PUBLIC_URL)


def leg_event(status: str, to: str, **extra: Any) -> dict[str, Any]:
    """An event of the leg a `connect` dialled: its own uuid, `direction: outbound`."""
    return {
        "uuid": new_uuid(),
        "conversation_uuid": "CON-" + new_uuid(),
        "status": status,
        "direction": "outbound",
        "from": digits(NUMBER),
        "to": to,
        "timestamp": "2026-12-07T10:00:00.000Z",
        **extra,
    }


async def test_a_runtime_leg_that_fails_moves_on_and_one_answered_carries_on(
    make_router: MakeRouter, tmp_path: Path, logs: Logs
) -> None:
    """The websocket leg `failed`: the answer is the next runtime's `connect` (a SIP
    runtime, `x-router-*` headers); its `unanswered`: the failure branch (the apology).
    Another call's leg `answered`: an empty answer (the call goes on) and a success."""
    runtimes = tmp_path / "runtimes.yaml"
    runtimes.write_text(
        json.dumps(
            {
                "runtimes": [
                    {"name": "ws", "kind": "stream", "url": RUNTIME_URL},
                    {"name": "oai", "kind": "sip", "uri": "sip:agent@sip.example.com"},
                ],
                "routes": [
                    {
                        "match": {"provider": "vonage"},
                        "runtimes": [{"name": "ws"}, {"name": "oai", "weight": 0}],
                    }
                ],
            }
        )
    )
    router = await make_router(runtimes_file=runtimes)
    number = await router.create_vonage_number(assistantId="asst-1")
    call_uuid = new_uuid()
    (first,) = (await router.post(answer_fields(uuid=call_uuid))).ncco
    path = connect_events_path(first)
    assert f"call={call_uuid}" in path and "runtime=ws" in path
    assert (await router.post(leg_event("started", RUNTIME_URL), path=path)).status == 204
    (second,) = (await router.post(leg_event("failed", RUNTIME_URL), path=path)).ncco
    (endpoint,) = second["endpoint"]
    assert endpoint["type"] == "sip" and endpoint["uri"] == "sip:agent@sip.example.com"
    assert endpoint["headers"]["router-call-id"] == call_uuid
    assert endpoint["headers"]["router-phone-number-id"] == number["id"]
    assert second["timeout"] == 15
    failed = await router.post(
        leg_event("unanswered", "sip:agent@sip.example.com"), path=connect_events_path(second)
    )
    assert failed.ncco == [{"action": "talk", "text": APOLOGY}]
    assert [(e["runtime"], e["to_runtime"]) for e in logs.named("runtime.failover")] == [
        ("ws", "oai"),
        ("oai", None),
    ]

    other = new_uuid()
    (connect,) = (await router.post(answer_fields(uuid=other))).ncco
    answered = await router.post(
        leg_event("answered", RUNTIME_URL), path=connect_events_path(connect)
    )
    assert answered.status == 204
    completed = await router.post(
        leg_event("completed", RUNTIME_URL), path=connect_events_path(connect)
    )
    assert completed.status == 204
    assert len(logs.named("runtime.failover")) == 2
