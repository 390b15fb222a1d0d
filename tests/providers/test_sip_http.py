"""The SIP edge end to end: the real `create_app(settings)` over real HTTP, numbers and
credentials made through the REST API, a real local aiohttp app as the customer's server,
digest responses computed here from the RFC formulas."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.typing import EventDict

from router.app import create_app
from router.settings import Settings

API_KEY = "sip-http-api-key-of-the-default-org"
EDGE_SECRET = "edge-secret-SECRET-sip-http-01"
SIP_PASSWORD = "sip-password-SECRET-http-0001"
SIP_USERNAME = "sip-username-http-000001"
SECRETS = (EDGE_SECRET, SIP_PASSWORD)
RUNTIME_URL = "wss://runtime.example.com/stream"
SIP_URI = "sip:support@sip.example.com"
TRUNK_NUMBER = "+14155550100"
CALLER = "+14155550123"


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_answer(challenge: dict[str, Any], uri: str, password: str = SIP_PASSWORD) -> str:
    """What a SIP phone sends back for `challenge` (MD5, qop=auth, RFC 2617)."""
    assert challenge["algorithm"] == "MD5" and challenge["qop"] == "auth"
    realm, nonce, cnonce, nc = challenge["realm"], challenge["nonce"], "4a8f11cc", "00000001"
    ha1 = md5(f"{SIP_USERNAME}:{realm}:{password}")
    ha2 = md5(f"INVITE:{uri}")
    response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{SIP_USERNAME}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


@dataclass
class Customer:
    """The customer's server: answers every assistant-request with `reply`."""

    url: str = ""
    reply: dict[str, Any] = field(default_factory=lambda: {"assistantId": "asst-dynamic"})
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.json_response(self.reply)


@pytest.fixture
async def customer(aiohttp_server: AiohttpServer) -> Customer:
    the_customer = Customer()
    app = web.Application()
    app.router.add_post("/assistant-request", the_customer.handle)
    server = await aiohttp_server(app)
    the_customer.url = str(server.make_url("/assistant-request"))
    return the_customer


@dataclass
class Edge:
    """The router behind a test client, driven as an operator and a SIP edge would."""

    client: TestClient[web.Request, web.Application]

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response:
            data = await response.json()
            assert response.status in (200, 201), data
            return data

    async def route(
        self, body: dict[str, Any], *, secret: str | None = EDGE_SECRET, path: str = "/sip/route"
    ) -> tuple[int, Any]:
        headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
        async with self.client.post(path, json=body, headers=headers) as response:
            text = await response.text()
            if response.status != 200:
                return response.status, text
            assert response.content_type == "application/json"
            return response.status, json.loads(text)

    async def decide(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.decide_at("/sip/route", body)

    async def decide_at(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = await self.route(body, path=path)
        assert status == 200, answer
        assert isinstance(answer, dict)
        return answer


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "data_dir": tmp_path,
        "sip_edge_secret": SecretStr(EDGE_SECRET),
        "runtime_url": RUNTIME_URL,
        "sip_budget_seconds": 3.0,
    }
    return Settings(**(values | overrides))


@pytest.fixture
async def edge(aiohttp_client: AiohttpClient, tmp_path: Path) -> Edge:
    return Edge(await aiohttp_client(create_app(settings(tmp_path))))


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[EventDict]]:
    """Every structlog event of the test; none may carry the edge secret or a password."""
    with structlog.testing.capture_logs() as events:
        yield events
    dumped = json.dumps(events, default=str)
    assert not [secret for secret in SECRETS if secret in dumped]


def invite(**fields: Any) -> dict[str, Any]:
    """A route request for a fresh SIP Call-ID to the vapi number."""
    body = {
        "callId": f"{uuid.uuid4().hex}@pbx.example.com",
        "from": f"<sip:{CALLER}@carrier.example.com>;tag=1",
        "to": "support",
        "toUri": SIP_URI,
        "sourceIp": "203.0.113.7",
        "headers": {"X-Campaign": "spring"},
        "method": "INVITE",
    }
    return {k: v for k, v in (body | fields).items() if v is not None}


async def vapi_number(edge: Edge, **fields: Any) -> dict[str, Any]:
    body = {
        "provider": "vapi",
        "sipUri": SIP_URI,
        "authentication": {"username": SIP_USERNAME, "password": SIP_PASSWORD},
        "assistantId": "asst-1",
    }
    return dict(await edge.api("POST", "/phone-number", {**body, **fields}))


def routed(logs: list[EventDict]) -> list[EventDict]:
    return [e for e in logs if e.get("event") == "call.routed"]


# --- the digest round trip ----------------------------------------------------------------


async def test_a_protected_number_challenges_then_connects_with_a_correct_digest(
    edge: Edge, logs: list[EventDict]
) -> None:
    """No credentials: a challenge. The phone's answer to it: connect to the assistant."""
    number = await vapi_number(edge)
    request = invite()
    challenge = await edge.decide(request)
    assert challenge["action"] == "challenge"
    assert (challenge["status"], challenge["realm"], challenge["stale"]) == (
        401,
        "sip.example.com",
        False,
    )
    assert challenge["header"] == "WWW-Authenticate"
    assert f'nonce="{challenge["nonce"]}"' in challenge["value"]

    answer = await edge.decide({**request, "authorization": digest_answer(challenge, SIP_URI)})
    assert answer["action"] == "connect"
    assert (answer["target"], answer["targetId"], answer["runtimeUrl"]) == (
        "assistant",
        "asst-1",
        RUNTIME_URL,
    )
    assert answer["callId"].startswith(request["callId"] + "~")
    assert answer["sipCallId"] == request["callId"]
    assert answer["headers"]["x-router-call-id"] == answer["callId"]
    assert answer["phoneNumberId"] == number["id"]
    assert (answer["route"], answer["endedReason"], answer["trace"]) == (
        "assistant",
        None,
        ["assistantId"],
    )
    # The challenge decided nothing: one `webhook.challenged`, then one routed call.
    (challenged,) = [e for e in logs if e.get("event") == "webhook.challenged"]
    assert challenged["reason"] == "digest-challenge:missing-authorization"
    (only,) = routed(logs)
    assert "render_warnings" not in only
    assert only["provider"] == "sip" and only["to"] == SIP_URI


async def test_an_unauthenticated_invite_never_reaches_the_customer_server(
    edge: Edge, customer: Customer
) -> None:
    """A challenged INVITE to an assistant-request number sends no assistant-request:
    the digest is checked before anything is decided."""
    body = {
        "provider": "vapi",
        "sipUri": SIP_URI,
        "authentication": {"username": SIP_USERNAME, "password": SIP_PASSWORD},
        "server": {"url": customer.url},
    }
    await edge.api("POST", "/phone-number", body)
    challenge = await edge.decide(invite())
    assert challenge["action"] == "challenge"
    assert customer.received == []


async def test_a_wrong_password_or_tampered_nonce_is_challenged_again(edge: Edge) -> None:
    await vapi_number(edge)
    request = invite()
    challenge = await edge.decide(request)
    wrong = digest_answer(challenge, SIP_URI, password="not-the-password-0000")
    answer = await edge.decide({**request, "authorization": wrong})
    assert (answer["action"], answer["reason"], answer["stale"]) == (
        "challenge",
        "bad-response",
        False,
    )
    tampered = {**challenge, "nonce": "00000001" + challenge["nonce"][8:]}
    answer = await edge.decide({**request, "authorization": digest_answer(tampered, SIP_URI)})
    assert (answer["action"], answer["reason"]) == ("challenge", "bad-nonce")


async def test_the_sip_uri_matches_case_insensitively_and_without_parameters(
    edge: Edge,
) -> None:
    await vapi_number(edge)
    uri = "sip:SUPPORT@Sip.Example.COM;transport=tls"
    request = invite(toUri=uri)
    challenge = await edge.decide(request)
    answer = await edge.decide({**request, "authorization": digest_answer(challenge, uri)})
    assert answer["action"] == "connect"


async def test_a_number_without_authentication_connects_at_once(edge: Edge) -> None:
    await vapi_number(edge, authentication=None)
    assert (await edge.decide(invite()))["action"] == "connect"


# --- byo trunks, unknown numbers ----------------------------------------------------------


async def test_a_byo_number_is_found_by_credential_id_and_number_without_digest(
    edge: Edge,
) -> None:
    credential = await edge.api(
        "POST", "/credential", {"provider": "byo-sip-trunk", "gateways": [{"ip": "203.0.113.7"}]}
    )
    number = await edge.api(
        "POST",
        "/phone-number",
        {
            "provider": "byo-phone-number",
            "credentialId": credential["id"],
            "number": TRUNK_NUMBER,
            "squadId": "squad-1",
        },
    )
    answer = await edge.decide(invite(credentialId=credential["id"], to="14155550100", toUri=None))
    assert answer["action"] == "reject"  # 14155550100 without + is matched as sent
    answer = await edge.decide(
        invite(
            credentialId=credential["id"], to=None, toUri=f"sip:{TRUNK_NUMBER}@10.0.0.5;user=phone"
        )
    )
    assert (answer["action"], answer["target"], answer["targetId"]) == (
        "connect",
        "squad",
        "squad-1",
    )
    assert answer["phoneNumberId"] == number["id"]


async def test_an_unknown_number_is_rejected_with_404_in_json(
    edge: Edge, logs: list[EventDict]
) -> None:
    await vapi_number(edge)
    answer = await edge.decide(invite(toUri="sip:nobody@sip.example.com"))
    assert (answer["action"], answer["status"], answer["reason"]) == ("reject", 404, "Not Found")
    assert [e["to"] for e in logs if e.get("event") == "webhook.unknown_number"] == [
        "sip:nobody@sip.example.com"
    ]


async def test_a_blocked_number_is_rejected_with_403(edge: Edge) -> None:
    await vapi_number(edge, authentication=None, status="blocked")
    answer = await edge.decide(invite())
    assert (answer["action"], answer["status"], answer["endedReason"]) == (
        "reject",
        403,
        "phone-number-blocked",
    )


async def test_a_get_is_not_a_route_request(edge: Edge) -> None:
    """GET names no number: the unknown-number answer."""
    await vapi_number(edge)
    async with edge.client.get(
        "/sip/route", headers={"Authorization": f"Bearer {EDGE_SECRET}"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["status"] == 404


async def test_a_malformed_request_for_a_known_number_is_a_400(edge: Edge) -> None:
    await vapi_number(edge)
    status, text = await edge.route(invite(method="OPTIONS"))
    assert (status, text) == (400, "Bad Request: unsupported-method")


# --- the edge's secret --------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "not-the-edge-secret"])
async def test_a_request_without_the_edge_secret_is_403(
    edge: Edge, logs: list[EventDict], secret: str | None
) -> None:
    await vapi_number(edge)
    status, _ = await edge.route(invite(), secret=secret)
    assert status == 403
    rejected = [e for e in logs if e.get("event") == "webhook.rejected"]
    assert [e["reason"] for e in rejected] in (["missing-edge-secret"], ["bad-edge-secret"])
    assert routed(logs) == []


async def test_with_no_edge_secret_configured_every_request_is_403(
    aiohttp_client: AiohttpClient, tmp_path: Path, logs: list[EventDict]
) -> None:
    edge = Edge(await aiohttp_client(create_app(settings(tmp_path, sip_edge_secret=None))))
    await vapi_number(edge)
    status, _ = await edge.route(invite(), secret="anything")
    assert status == 403
    assert [e["reason"] for e in logs if e.get("event") == "webhook.rejected"] == [
        "edge-secret-not-configured"
    ]


# --- assistant-request through the edge ---------------------------------------------------


async def test_an_assistant_request_destination_is_a_sip_transfer_with_x_headers(
    edge: Edge, customer: Customer
) -> None:
    customer.reply = {
        "destination": {
            "type": "sip",
            "sipUri": "sip:oncall@pbx.example.com",
            "message": "One moment",
            "callerId": "{{customer.number}}",
            "sipHeaders": {"Queue": "night", "X-Ticket": 42},
        }
    }
    await vapi_number(edge, authentication=None, assistantId=None, server={"url": customer.url})
    request = invite()
    answer = await edge.decide(request)
    assert answer["action"] == "transfer"
    assert answer["message"] == "One moment"
    assert answer["destination"] == {
        "type": "sip",
        "uri": "sip:oncall@pbx.example.com",
        "headers": {"x-Queue": "night", "X-Ticket": "42"},
        "headerLines": "x-Queue: night\r\nX-Ticket: 42\r\n",
        "callerId": CALLER,
    }
    assert (answer["route"], answer["endedReason"]) == (
        "assistant-request",
        "assistant-request-returned-forwarding-phone-number",
    )
    [sent] = customer.received
    call = sent["message"]["call"]
    assert (call["phoneCallTransport"], call["phoneCallProvider"]) == ("sip", "vapi")
    assert call["phoneCallProviderId"] == answer["callId"]
    assert sent["message"]["customer"] == {"number": CALLER}


async def test_only_the_authenticated_invite_is_decided(
    edge: Edge, customer: Customer, logs: list[EventDict]
) -> None:
    """The challenged INVITE decides nothing; the INVITE with credentials and the same
    Call-ID is decided once: one assistant-request in all, sent after authentication."""
    await vapi_number(edge, assistantId=None, server={"url": customer.url})
    request = invite()
    challenge = await edge.decide(request)
    assert challenge["action"] == "challenge"
    assert customer.received == []
    answer = await edge.decide({**request, "authorization": digest_answer(challenge, SIP_URI)})
    assert (answer["action"], answer["targetId"]) == ("connect", "asst-dynamic")
    assert len(customer.received) == 1
    assert [e["replayed"] for e in routed(logs)] == [False]


async def test_one_call_id_sent_to_two_numbers_gets_two_decisions(
    edge: Edge, customer: Customer
) -> None:
    """The Call-ID is the caller's choice: it never carries one number's decision to another."""
    await vapi_number(edge, authentication=None, assistantId=None, server={"url": customer.url})
    other_uri = "sip:sales@sip.example.com"
    await vapi_number(edge, sipUri=other_uri, authentication=None, assistantId="asst-sales")
    customer.reply = {"assistantId": "asst-support"}
    request = invite()
    support = await edge.decide(request)
    sales = await edge.decide({**request, "toUri": other_uri})
    assert (support["targetId"], sales["targetId"]) == ("asst-support", "asst-sales")
    assert support["callId"] != sales["callId"]


# --- status events ------------------------------------------------------------------------


async def test_status_events_update_the_call_record_the_runtime_reads(
    edge: Edge, customer: Customer
) -> None:
    await vapi_number(edge, authentication=None, assistantId=None, server={"url": customer.url})
    request = invite()
    answer = await edge.decide(request)
    status, ack = await edge.route(
        {
            "callId": request["callId"],
            "toUri": SIP_URI,
            "status": "completed",
            "durationSeconds": 61,
            "sipCode": 200,
        },
        path="/sip/status",
    )
    assert (status, ack) == (200, {"ok": True})
    record = await edge.api("GET", f"/call/{quote(answer['callId'], safe='')}")
    assert (record["status"], record["durationSeconds"]) == ("completed", 61)
    status, _ = await edge.route(
        {"callId": request["callId"], "toUri": SIP_URI, "status": "completed"},
        path="/sip/status",
        secret="wrong",
    )
    assert status == 403


# --- runtimes: the edge says whether the runtime took the call -------------------------------


async def sip_runtimes_edge(aiohttp_client: AiohttpClient, tmp_path: Path) -> Edge:
    path = tmp_path / "runtimes.yaml"
    path.write_text(
        json.dumps(
            {
                "runtimes": [
                    {"name": "oai", "kind": "sip", "uri": "sip:agent@sip.example.com"},
                    {"name": "media", "kind": "stream", "url": "wss://media.example.com/s"},
                ],
                "routes": [
                    {
                        "match": {"provider": "sip"},
                        "runtimes": [{"name": "oai"}, {"name": "media", "weight": 0}],
                    }
                ],
            }
        )
    )
    return Edge(await aiohttp_client(create_app(settings(tmp_path, runtimes_file=path))))


async def test_a_runtime_the_edge_could_not_reach_moves_on_then_fails_over(
    aiohttp_client: AiohttpClient, tmp_path: Path, logs: list[EventDict]
) -> None:
    """The answer names the SIP runtime (`runtimeUri`) and where to report (`connectUrl`);
    `refused` there gives the next runtime (a media stream), then the failure branch
    (`fallbackDestination`); the digest is not asked again on these reports."""
    edge = await sip_runtimes_edge(aiohttp_client, tmp_path)
    await vapi_number(edge, fallbackDestination={"type": "sip", "sipUri": "sip:desk@example.com"})
    call = invite()
    challenge = await edge.decide(call)
    assert challenge["action"] == "challenge"
    answer = await edge.decide(call | {"authorization": digest_answer(challenge, SIP_URI)})
    assert (answer["runtime"], answer["runtimeKind"]) == ("oai", "sip")
    assert answer["runtimeUri"] == "sip:agent@sip.example.com" and answer["runtimeUrl"] is None
    assert answer["connectUrl"].startswith("/sip/connect?runtime=oai&kind=sip&next=media")
    nxt = await edge.decide_at(answer["connectUrl"], call | {"result": "refused"})
    assert (nxt["action"], nxt["runtime"], nxt["runtimeKind"]) == ("connect", "media", "stream")
    assert nxt["runtimeUrl"] == "wss://media.example.com/s"
    assert nxt["callId"] == answer["callId"]
    last = await edge.decide_at(nxt["connectUrl"], call | {"result": "refused"})
    assert last["action"] == "transfer"
    assert last["destination"]["uri"] == "sip:desk@example.com"
    assert last["endedReason"] == "runtime-unavailable"
    failovers = [e for e in logs if e.get("event") == "runtime.failover"]
    assert [(e["runtime"], e["to_runtime"]) for e in failovers] == [
        ("oai", "media"),
        ("media", None),
    ]


async def test_a_runtime_that_took_the_call_leaves_nothing_to_do(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    edge = await sip_runtimes_edge(aiohttp_client, tmp_path)
    await vapi_number(edge, authentication=None)
    call = invite()
    answer = await edge.decide(call)
    assert await edge.decide_at(answer["connectUrl"], call | {"result": "taken"}) == {
        "action": "none"
    }
    status, text = await edge.route(call | {"result": "maybe"}, path=answer["connectUrl"])
    assert status == 400 and "bad-result" in text
