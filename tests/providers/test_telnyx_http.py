"""Telnyx end to end: the real `create_app(settings)` over real HTTP, the number and its
credential created through the API, webhooks signed with a key generated here, and a real
local aiohttp app as the customer's server."""

from __future__ import annotations

import asyncio
import base64
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.typing import EventDict

from router.app import create_app
from router.providers import twiml
from router.settings import Settings
from router.state import STORE

API_KEY = "telnyx-http-api-key-of-the-default-org"
TELNYX_API_KEY = "KEY-telnyx-api-key-SECRET-http-01"
PUBLIC_URL = "https://router.example.com"
RUNTIME_URL = "wss://runtime.example.com/stream"
NUMBER = "+14155550100"
CALLER = "+14155550123"
APOLOGY = "Sorry, nobody can take your call right now."

_calls = iter(range(1, 1_000_000))


def call_sid() -> str:
    """A fresh Telnyx call control id."""
    return f"v3:TeXmL{next(_calls):08d}-aiQ_x"


def quoted(sid: str) -> str:
    return sid.replace(":", "%3A")


def voice_form(sid: str, **overrides: str) -> dict[str, str]:
    form = {
        "AccountSid": "f5586561-8ff0-4291-a51b-c7dfe4139ff9",
        "CallSid": sid,
        "CallSidLegacy": sid,
        "CallStatus": "ringing",
        "ConnectionId": "1494404757140276705",
        "Direction": "inbound",
        "From": CALLER,
        "To": NUMBER,
    }
    return form | overrides


def status_form(sid: str, status: str, sequence: int, **overrides: str) -> dict[str, str]:
    form = voice_form(sid, CallStatus=status, SequenceNumber=str(sequence))
    return form | {"CallbackSource": "call-progress-events"} | overrides


# --- the customer's server ----------------------------------------------------------------


@dataclass
class Customer:
    """A real local aiohttp app standing in for the customer's server."""

    url: str = ""
    reply: Any = field(default_factory=lambda: {"assistantId": "asst-from-server"})
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]

    async def wait_for(self, kind: str, count: int, within: float = 2.0) -> list[dict[str, Any]]:
        """The messages of `kind` once `count` arrived, or all there are after `within` s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within), self.arrived:
                await self.arrived.wait_for(lambda: len(self.messages(kind)) >= count)
        return self.messages(kind)

    async def handle(self, request: web.Request) -> web.Response:
        message = (await request.json())["message"]
        async with self.arrived:
            self.received.append(message)
            self.arrived.notify_all()
        if message["type"] != "assistant-request":
            return web.json_response({})
        if self.delay:
            # A stalled reply waits out its delay, or the end of the test.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.delay)
        return web.json_response(self.reply)


@pytest.fixture
async def customer(aiohttp_server: AiohttpServer) -> AsyncIterator[Customer]:
    the_customer = Customer()
    app = web.Application()
    app.router.add_post("/assistant-request", the_customer.handle)
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
    def root(self) -> ET.Element:
        assert self.status == 200, self.body
        assert self.content_type == "text/xml"
        return ET.fromstring(self.body)  # noqa: S314  # the router's own output


class Router:
    """A started router app, driven as Telnyx and an operator would."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client
        self.key = Ed25519PrivateKey.generate()

    async def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        async with self.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response:
            data = await response.json()
            assert response.status < 300, data
            return data

    async def create_number(self, **fields: Any) -> dict[str, Any]:
        """POST /credential with this router's Telnyx public key, then POST /phone-number."""
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        credential = await self.api(
            "POST",
            "/credential",
            {
                "provider": "telnyx",
                "apiKey": TELNYX_API_KEY,
                "publicKey": base64.b64encode(raw).decode(),
            },
        )
        body = {"provider": "telnyx", "number": NUMBER, "credentialId": credential["id"]}
        number: dict[str, Any] = await self.api("POST", "/phone-number", body | fields)
        return number

    async def call_record(self, path_id: str) -> tuple[int, Any]:
        async with self.client.get(
            f"/call/{path_id}", headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response:
            return response.status, await response.json()

    def signed_headers(
        self, body: bytes, *, timestamp: int | None = None, key: Ed25519PrivateKey | None = None
    ) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = (key or self.key).sign(f"{stamp}|".encode() + body)
        return {
            "telnyx-timestamp": stamp,
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        }

    async def post(
        self,
        fields: Mapping[str, str],
        *,
        path: str = "/telnyx/voice",
        timestamp: int | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> Answer:
        """A form POST as Telnyx sends it, signed over the raw body."""
        body = urlencode(fields).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **self.signed_headers(body, timestamp=timestamp, key=key),
        }
        return await self.send("POST", path, body, headers)

    async def get(self, fields: Mapping[str, str], *, path: str = "/telnyx/voice") -> Answer:
        """A GET as Telnyx sends it: the fields in the query, the empty body signed."""
        return await self.send("GET", f"{path}?{urlencode(fields)}", b"", self.signed_headers(b""))

    async def send(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        started = time.perf_counter()
        async with self.client.request(
            method, path, data=body or None, headers=dict(headers)
        ) as response:
            data = await response.read()
            return Answer(
                response.status, data, response.content_type, time.perf_counter() - started
            )


MakeRouter = Callable[..., Awaitable[Router]]


@pytest.fixture
def make_router(aiohttp_client: AiohttpClient, tmp_path: Path) -> MakeRouter:
    async def make(**overrides: Any) -> Router:
        values: dict[str, Any] = {
            "api_key": SecretStr(API_KEY),
            "data_dir": tmp_path / "data",
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


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[EventDict]]:
    """Every structlog event of the test; afterwards, the Telnyx API key is in none of them."""
    with structlog.testing.capture_logs() as events:
        yield events
    assert TELNYX_API_KEY not in json.dumps(events, default=str)


def named(logs: list[EventDict], event: str) -> list[EventDict]:
    return [e for e in logs if e.get("event") == event]


def stream(root: ET.Element) -> tuple[str, dict[str, str]]:
    """The stream URL and Parameters of a `<Connect><Stream>` document (exactly that)."""
    assert [child.tag for child in root] == ["Connect"]
    (element,) = list(root[0])
    assert element.tag == "Stream"
    assert element.get("bidirectionalMode") == "rtp"
    return str(element.get("url")), {str(p.get("name")): str(p.get("value")) for p in element}


# --- routing --------------------------------------------------------------------------------


async def test_a_get_voice_request_is_refused_unrouted(
    router: Router, logs: list[EventDict]
) -> None:
    """A signed GET is refused with 403: its query fields are not covered by the signature."""
    await router.create_number(assistantId="asst-static")
    answer = await router.get(voice_form(call_sid()))
    assert answer.status == 403
    assert [e["reason"] for e in named(logs, "webhook.rejected")] == ["unsigned-query"]
    assert named(logs, "call.routed") == []


async def test_a_static_assistant_connects_the_stream_with_ids_in_the_path(
    router: Router, logs: list[EventDict]
) -> None:
    """A signed POST for a number with an assistantId answers `<Connect><Stream>`
    to `{runtime}/{callId}/assistant/{assistantId}`."""
    number = await router.create_number(assistantId="asst-static")
    sid = call_sid()
    form = voice_form(sid)
    answer = await router.post(form)
    url, params = stream(answer.root)
    assert url == f"{RUNTIME_URL}/{quoted(sid)}/assistant/asst-static"
    assert params == {
        "callId": sid,
        "target": "assistant",
        "targetId": "asst-static",
        "phoneNumberId": number["id"],
    }
    (event,) = named(logs, "call.routed")
    assert (event["provider"], event["route"], event["call_id"]) == ("telnyx", "assistant", sid)


async def test_an_unknown_number_is_rejected(router: Router, logs: list[EventDict]) -> None:
    """No number for `To`: `<Reject/>` alone, so Telnyx does not answer the call."""
    await router.create_number(assistantId="asst-1")
    answer = await router.post(voice_form(call_sid(), To="+14155550999"))
    assert [child.tag for child in answer.root] == ["Reject"]
    # The key names the call's account (numbers on an account credential are keyed so).
    unknown = named(logs, "webhook.unknown_number")[0]["to"]
    assert unknown == f"telnyx:{voice_form('x')['AccountSid']}:+14155550999"


async def test_a_blocked_number_is_rejected(router: Router) -> None:
    number = await router.create_number(assistantId="asst-1")
    await router.api("PATCH", f"/phone-number/{number['id']}", {"status": "blocked"})
    answer = await router.post(voice_form(call_sid()))
    assert [child.tag for child in answer.root] == ["Reject"]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("other-key", "bad-signature"),
        ("stale", "stale-timestamp"),
        ("future", "stale-timestamp"),
        ("forged-body", "bad-signature"),
    ],
)
async def test_a_bad_signature_is_refused_logged_and_never_routed(
    router: Router, customer: Customer, logs: list[EventDict], tamper: str, reason: str
) -> None:
    """The `<Reject/>` an unknown number gets, a `webhook.rejected` event with the reason,
    no assistant-request."""
    await router.create_number(server={"url": customer.url})
    form = voice_form(call_sid())
    now = int(time.time())
    if tamper == "other-key":
        answer = await router.post(form, key=Ed25519PrivateKey.generate())
    elif tamper in ("stale", "future"):
        answer = await router.post(form, timestamp=now + (-301 if tamper == "stale" else 301))
    else:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            **router.signed_headers(urlencode(form).encode()),
        }
        forged = urlencode(form | {"From": "+19005550000"}).encode()
        answer = await router.send("POST", "/telnyx/voice", forged, headers)
    assert [child.tag for child in answer.root] == ["Reject"]
    (event,) = named(logs, "webhook.rejected")
    assert (event["provider"], event["reason"]) == ("telnyx", reason)
    assert named(logs, "call.routed") == []
    assert customer.received == []


async def test_unsigned_requests_are_403(router: Router, logs: list[EventDict]) -> None:
    await router.create_number(assistantId="asst-1")
    body = urlencode(voice_form(call_sid())).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await router.send("POST", "/telnyx/voice", body, headers)
    assert answer.status == 403
    assert named(logs, "webhook.rejected")[0]["reason"] == "missing-signature"


# --- the customer's server ------------------------------------------------------------------


async def test_an_assistant_request_number_asks_the_server_once_per_call(
    router: Router, customer: Customer
) -> None:
    """The server's assistantId lands in the stream path; a Telnyx retry of the same CallSid
    gets the same TeXML and sends no second assistant-request."""
    number = await router.create_number(server={"url": customer.url})
    sid = call_sid()
    first = await router.post(voice_form(sid))
    url, _ = stream(first.root)
    assert url == f"{RUNTIME_URL}/{quoted(sid)}/assistant/asst-from-server"
    (request,) = customer.messages("assistant-request")
    assert request["call"]["phoneCallProvider"] == "telnyx"
    assert request["call"]["phoneCallProviderId"] == sid
    assert request["phoneNumber"]["id"] == number["id"]
    assert request["customer"] == {"number": CALLER}
    retry = await router.post(voice_form(sid))
    assert retry.body == first.body
    assert len(customer.messages("assistant-request")) == 1


async def test_a_transient_assistant_is_read_by_the_runtime_from_the_call_record(
    router: Router, customer: Customer
) -> None:
    """`{runtime}/{callId}/assistant` with no id: GET /call/{callId} holds the config, by the
    call id as sent and as the runtime finds it percent-encoded in its path."""
    customer.reply = {"assistant": {"firstMessage": "Hi from a transient assistant"}}
    await router.create_number(server={"url": customer.url})
    sid = call_sid()
    url, params = stream((await router.post(voice_form(sid))).root)
    assert url == f"{RUNTIME_URL}/{quoted(sid)}/assistant"
    assert "targetId" not in params
    for path_id in (sid, quoted(sid)):
        status, record = await router.call_record(path_id)
        assert status == 200, record
        outcome = record["decision"]["outcome"]
        assert (outcome["target"], outcome["targetId"]) == ("assistant", None)
        assert outcome["config"]["assistant"]["firstMessage"] == "Hi from a transient assistant"


async def test_a_slow_server_gets_the_failure_branch_inside_a_short_budget(
    make_router: MakeRouter, customer: Customer, logs: list[EventDict]
) -> None:
    """With `telnyx_budget_seconds=1`, a server that would answer in 10 s is given up on:
    the fallbackDestination is dialled, and the answer leaves inside the budget."""
    router = await make_router(telnyx_budget_seconds=1.0)
    customer.delay = 10.0
    await router.create_number(
        server={"url": customer.url},
        fallbackDestination={"type": "number", "number": "+14155550199", "message": "One moment"},
    )
    answer = await router.post(voice_form(call_sid()))
    assert 0.5 < answer.seconds < 1.0
    root = answer.root
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root[0].text == "One moment"
    assert root.findtext("Dial/Number") == "+14155550199"
    (event,) = named(logs, "call.routed")
    assert (event["route"], event["ended_reason"]) == ("fallback", "assistant-request-failed")
    assert event["assistant_request_outcome"] == "timeout"


async def test_a_slow_server_without_fallback_gets_the_apology(
    make_router: MakeRouter, customer: Customer
) -> None:
    router = await make_router(telnyx_budget_seconds=0.6)
    customer.delay = 10.0
    await router.create_number(server={"url": customer.url})
    answer = await router.post(voice_form(call_sid()))
    assert answer.seconds < 0.6
    assert [(c.tag, c.text) for c in answer.root] == [("Say", APOLOGY), ("Hangup", None)]


async def test_a_server_answering_inside_the_budget_is_followed(
    make_router: MakeRouter, customer: Customer
) -> None:
    """A server that takes 0.3 s of a 1.5 s budget is waited for."""
    router = await make_router(telnyx_budget_seconds=1.5)
    customer.delay = 0.3
    await router.create_number(server={"url": customer.url})
    answer = await router.post(voice_form(call_sid()))
    assert 0.3 <= answer.seconds < 1.5
    url, _ = stream(answer.root)
    assert url.endswith("/assistant/asst-from-server")


async def test_the_fallback_url_goes_straight_to_the_failure_branch(
    router: Router, customer: Customer
) -> None:
    """Telnyx's failover URL: no assistant-request, the apology."""
    await router.create_number(server={"url": customer.url})
    answer = await router.post(voice_form(call_sid()), path="/telnyx/fallback")
    assert [(c.tag, c.text) for c in answer.root] == [("Say", APOLOGY), ("Hangup", None)]
    assert customer.received == []


# --- status callbacks -----------------------------------------------------------------------


async def test_a_status_callback_updates_the_call_record(router: Router) -> None:
    """A static call has no record until its status callback; then GET /call/{callId} shows
    the final status and duration."""
    await router.create_number(assistantId="asst-1")
    sid = call_sid()
    await router.post(voice_form(sid))
    assert (await router.call_record(sid))[0] == 404
    ack = await router.post(
        status_form(sid, "completed", 3, CallDuration="45"), path="/telnyx/status"
    )
    assert (ack.root.tag, list(ack.root)) == ("Response", [])
    status, record = await router.call_record(sid)
    assert status == 200, record
    assert (record["provider"], record["status"], record["final"]) == ("telnyx", "completed", True)
    assert record["durationSeconds"] == 45


async def test_duplicate_and_out_of_order_status_callbacks_are_harmless(
    router: Router, customer: Customer, logs: list[EventDict]
) -> None:
    """completed(3), a late in-progress(2), completed(3) again: the record stays completed,
    every callback is acknowledged, and the server hears `ended` once (nothing twice)."""
    await router.create_number(server={"url": customer.url})
    sid = call_sid()
    await router.post(voice_form(sid))
    for status, sequence in (("ringing", 1), ("completed", 3), ("in-progress", 2)):
        extra = {"CallDuration": "45"} if status == "completed" else {}
        answer = await router.post(
            status_form(sid, status, sequence, **extra), path="/telnyx/status"
        )
        assert answer.status == 200
    duplicate = await router.post(
        status_form(sid, "completed", 3, CallDuration="45"), path="/telnyx/status"
    )
    assert duplicate.status == 200
    _, record = await router.call_record(sid)
    assert (record["status"], record["final"], record["durationSeconds"]) == (
        "completed",
        True,
        45,
    )
    await customer.wait_for("status-update", 1)
    await asyncio.sleep(0.1)  # a second `ended` would have arrived by now
    updates = customer.messages("status-update")
    assert [u["status"] for u in updates].count("ended") == 1
    assert len(updates) == len({u["status"] for u in updates})  # nothing forwarded twice
    assert {u["call"]["phoneCallProviderId"] for u in updates} == {sid}
    assert len(named(logs, "call.status")) == 4


async def test_a_badly_signed_status_callback_is_acked_and_changes_nothing(
    router: Router,
) -> None:
    """The ack an unknown number's callback gets; no call record."""
    await router.create_number(assistantId="asst-1")
    sid = call_sid()
    answer = await router.post(
        status_form(sid, "completed", 3), path="/telnyx/status", key=Ed25519PrivateKey.generate()
    )
    assert (answer.status, answer.body) == (200, twiml.EMPTY)
    assert (await router.call_record(sid))[0] == 404


# --- runtimes: the same callbacks as Twilio's, under /telnyx/ --------------------------------


def callback_path(url: str) -> str:
    assert url.startswith(f"{PUBLIC_URL}/telnyx/"), url
    return url.removeprefix(PUBLIC_URL)


def stream_callback_form(sid: str, event: str) -> dict[str, str]:
    """A TeXML `<Stream>` status callback (Twilio's fields; no From or To)."""
    return {
        "AccountSid": voice_form(sid)["AccountSid"],
        "CallSid": sid,
        "StreamSid": "ST-telnyx-1",
        "StreamEvent": event,
    }


async def telnyx_runtimes(make_router: MakeRouter, tmp_path: Path) -> Router:
    path = tmp_path / "runtimes.yaml"
    path.write_text(
        json.dumps(
            {
                "runtimes": [
                    {"name": "a", "kind": "stream", "url": "wss://a.example.com/stream"},
                    {"name": "relay", "kind": "conversation-relay", "url": "wss://r.example/ws"},
                ],
                "routes": [
                    {
                        "match": {"assistantId": "asst-relay", "provider": "telnyx"},
                        "runtimes": [{"name": "relay"}, {"name": "a", "weight": 0}],
                    },
                    {"match": {"assistantId": "asst-1"}, "runtimes": [{"name": "a"}]},
                ],
            }
        )
    )
    return await make_router(runtimes_file=path)


async def test_a_texml_stream_that_started_hangs_up_and_one_that_did_not_falls_back(
    make_router: MakeRouter, tmp_path: Path, logs: list[EventDict]
) -> None:
    """`<Connect action>` and the stream's `statusCallback` under /telnyx/, signed over the
    body like every Telnyx webhook: started then the action → `<Hangup/>`; `stream-failed`
    then the action → the failure branch (`fallbackDestination`)."""
    router = await telnyx_runtimes(make_router, tmp_path)
    await router.create_number(
        assistantId="asst-1", fallbackDestination={"type": "number", "number": "+14155550142"}
    )
    ok, failing = call_sid(), call_sid()
    for sid, event in ((ok, "stream-started"), (failing, "stream-failed")):
        root = (await router.post(voice_form(sid))).root
        connect = root[0]
        (element,) = list(connect)
        assert element.get("url", "").startswith("wss://a.example.com/stream/")
        status = callback_path(element.get("statusCallback", ""))
        assert (await router.post(stream_callback_form(sid, event), path=status)).status == 200
        after = (
            await router.post(
                voice_form(sid, CallStatus="in-progress"),
                path=callback_path(connect.get("action", "")),
            )
        ).root
        if sid == ok:
            assert [child.tag for child in after] == ["Hangup"]
        else:
            assert [child.tag for child in after] == ["Say", "Dial"]
    [failover] = named(logs, "runtime.failover")
    assert (failover["runtime"], failover["to_runtime"]) == ("a", None)
    assert failover["ended_reason"] == "runtime-unavailable"


async def test_a_texml_conversation_relay_fails_over_to_a_stream_runtime(
    make_router: MakeRouter, tmp_path: Path
) -> None:
    router = await telnyx_runtimes(make_router, tmp_path)
    await router.create_number(assistantId="asst-relay")
    sid = call_sid()
    root = (await router.post(voice_form(sid))).root
    (relay,) = list(root[0])
    assert relay.tag == "ConversationRelay" and relay.get("url") == "wss://r.example/ws"
    action = callback_path(root[0].get("action", ""))
    after = await router.post(
        voice_form(sid, CallStatus="in-progress", ErrorCode="64105"), path=action
    )
    connect = after.root[0]
    assert connect.get("action", "").startswith(f"{PUBLIC_URL}/telnyx/connect")
    (stream,) = list(connect)
    assert stream.tag == "Stream"
    assert stream.get("url", "").startswith("wss://a.example.com/stream/")
    assert stream.get("codec") == "PCMU"


# --- numbers keyed by the Telnyx account (`accountId`, a router extension) -------------------

ACCOUNT = voice_form("x")["AccountSid"]
OTHER_API_KEY = "telnyx-http-api-key-of-the-other-org"


async def account_router(make_router: MakeRouter) -> Router:
    from router.settings import OrgConfig

    return await make_router(orgs=[OrgConfig(id="other", apiKeys=[SecretStr(OTHER_API_KEY)])])


async def telnyx_number_of(
    router: Router, api_key: str, key: Ed25519PrivateKey, account: str | None, **fields: Any
) -> tuple[int, Any]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    credential: dict[str, Any] = {
        "provider": "telnyx",
        "apiKey": TELNYX_API_KEY,
        "publicKey": base64.b64encode(raw).decode(),
    }
    if account is not None:
        credential["accountId"] = account
    headers = {"Authorization": f"Bearer {api_key}"}
    async with router.client.post("/credential", json=credential, headers=headers) as reply:
        created = await reply.json()
        assert reply.status == 201, created
    body = {"provider": "telnyx", "number": NUMBER, "credentialId": created["id"], **fields}
    async with router.client.post("/phone-number", json=body, headers=headers) as reply:
        return reply.status, await reply.json()


async def test_a_number_on_an_account_credential_is_found_by_that_account_only(
    make_router: MakeRouter, logs: list[EventDict]
) -> None:
    """`accountId` on the credential: the number is keyed `telnyx:<accountId>:+E164`; a
    call naming the account routes; one naming another account (signed with the same key)
    finds no number."""
    router = await account_router(make_router)
    status, _ = await telnyx_number_of(router, API_KEY, router.key, ACCOUNT, assistantId="a-1")
    assert status == 201
    store = router.client.app[STORE]
    assert await store.lookup(f"telnyx:{ACCOUNT}:{NUMBER}") is not None
    assert await store.lookup(f"telnyx:{NUMBER}") is None
    ours = (await router.post(voice_form(call_sid()))).root
    assert ours[0].tag == "Connect"
    other = await router.post(voice_form(call_sid(), AccountSid="0" * 8 + ACCOUNT[8:]))
    assert other.root[0].tag == "Reject"
    assert len(named(logs, "webhook.unknown_number")) == 1


async def test_a_registration_without_the_account_blocks_nothing(
    make_router: MakeRouter,
) -> None:
    """Org `other` registered the number first with a credential naming no account (its
    key `telnyx:+E164`); the owner's account credential registers it beside: a 201, and the
    owner's calls reach the owner's number."""
    router = await account_router(make_router)
    squatter_key = Ed25519PrivateKey.generate()
    status, _ = await telnyx_number_of(
        router, OTHER_API_KEY, squatter_key, None, assistantId="their-assistant"
    )
    assert status == 201
    status, _ = await telnyx_number_of(router, API_KEY, router.key, ACCOUNT, assistantId="ours")
    assert status == 201
    root = (await router.post(voice_form(call_sid()))).root
    _, parameters = stream(root)
    assert parameters["targetId"] == "ours"


async def test_a_credentials_account_id_can_be_set_but_not_changed(
    make_router: MakeRouter,
) -> None:
    router = await account_router(make_router)
    status, number = await telnyx_number_of(router, API_KEY, router.key, None, assistantId="a")
    assert status == 201
    path = f"/credential/{number['credentialId']}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with router.client.patch(path, json={"accountId": ACCOUNT}, headers=headers) as reply:
        assert reply.status == 200, await reply.text()
    # Keyed by number until its next update; the account's key falls back to it.
    assert (await router.post(voice_form(call_sid()))).root[0].tag == "Connect"
    async with router.client.patch(path, json={"accountId": "acct-2"}, headers=headers) as reply:
        assert reply.status == 400
        assert "accountId cannot be changed" in (await reply.json())["message"][0]
