"""The assistant-request client against a real local aiohttp app playing the customer."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import socket
import time
from typing import Any

import pytest
from aiohttp import web

from router.models.common import Server
from router.pipeline import decision as d
from router.pipeline.assistant_request import AssistantRequestClient
from router.pipeline.decide import AssistantRequestResult, decide
from router.pipeline.decision import Connect, Say, Transfer

from .helpers import (
    CALLER,
    LOOPBACK,
    SIP_PASSWORD,
    TWILIO_AUTH_TOKEN,
    Customer,
    make_call,
    make_number,
    respond,
)


def server(url: str, **fields: Any) -> Server:
    return Server.model_validate({"url": url, **fields})


def backoff(
    kind: str, retries: int, delay: float, excluded: list[int] | None = None
) -> dict[str, Any]:
    plan: dict[str, Any] = {"type": kind, "maxRetries": retries, "baseDelaySeconds": delay}
    if excluded is not None:
        plan["excludedStatusCodes"] = excluded
    return plan


def deadline_in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def ask(
    client: AssistantRequestClient, srv: Server, *, within: float = 5.0, **kwargs: Any
) -> AssistantRequestResult:
    return await client(srv, make_number(), make_call(), deadline=deadline_in(within), **kwargs)


def gaps(customer: Customer) -> list[float]:
    times = [r.at for r in customer.received]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def stall(customer: Customer) -> Any:
    """A handler that answers only at teardown: slower than any timeout in these tests."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await customer.release.wait()
        return web.json_response({"assistantId": "late"})

    return handler


async def test_a_2xx_json_object_is_ok_in_one_attempt(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """A 200 with a JSON object is the result's body, with attempts, status and latency."""
    customer.reply(respond(json={"assistantId": "a1"}))
    result = await ask(client, server(customer.url))
    assert result.status == "ok"
    assert result.body == {"assistantId": "a1"}
    assert (result.attempts, result.http_status) == (1, 200)
    assert 0 < result.latency_ms < 5000


async def test_message_carries_the_call_and_no_secret(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """The body is Vapi's assistant-request with a Call object; the number's auth token,
    API secret and server headers are left out of `phoneNumber`."""
    customer.reply(respond(json={}))
    number = make_number(
        twilioApiKey="SK1",
        twilioApiSecret="api-secret-that-must-not-leak",
        server={"url": customer.url, "headers": {"Authorization": "Bearer receiver-token"}},
    )
    call = make_call()
    assert number.server is not None
    await client(number.server, number, call, deadline=deadline_in(5))

    raw = customer.received[0].body
    for secret in (TWILIO_AUTH_TOKEN, "api-secret-that-must-not-leak"):
        assert secret.encode() not in raw
    message = json.loads(raw)["message"]
    assert message["type"] == "assistant-request"
    assert abs(message["timestamp"] - time.time() * 1000) < 10_000
    assert message["customer"] == {"number": CALLER}
    assert message["call"] == {
        "id": call.id,
        "orgId": "org-1",
        "type": "inboundPhoneCall",
        "phoneCallProvider": "twilio",
        "phoneCallProviderId": "CA123",
        "phoneCallTransport": "pstn",
        "status": "ringing",
        "phoneNumberId": "pn-1",
        "customer": {"number": CALLER},
        "createdAt": message["call"]["createdAt"],
        "updatedAt": message["call"]["createdAt"],
    }
    assert message["call"]["createdAt"].endswith("Z")
    phone_number = message["phoneNumber"]
    assert phone_number["id"] == "pn-1"
    assert phone_number["number"] == "+14155550100"
    assert phone_number["twilioApiKey"] == "SK1"
    assert "twilioAuthToken" not in phone_number
    assert "twilioApiSecret" not in phone_number
    assert phone_number["server"] == {"url": customer.url}


async def test_sip_number_message_drops_the_digest_password(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """A vapi (SIP) number keeps its username but not its password; the call is `sip`."""
    customer.reply(respond(json={}))
    number = make_number(provider="vapi")
    call = make_call(provider="sip", to_number=None, sip_uri="sip:support@example.com")
    await client(server(customer.url), number, call, deadline=deadline_in(5), org_id="org-9")

    raw = customer.received[0].body
    assert SIP_PASSWORD.encode() not in raw
    message = json.loads(raw)["message"]
    assert message["phoneNumber"]["authentication"] == {"username": "u" * 20}
    assert message["call"]["phoneCallProvider"] == "vapi"
    assert message["call"]["phoneCallTransport"] == "sip"
    assert message["call"]["orgId"] == "org-9"


async def test_configured_headers_are_sent_and_cannot_replace_content_type(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """`server.headers` go out as strings (booleans as JSON spells them); Content-Type is
    always application/json, and no signature headers are sent without a secret."""
    customer.reply(respond(json={}))
    headers = {
        "Authorization": "Bearer t",
        "X-Flag": True,
        "X-Count": 3,
        "content-type": "text/plain",
    }
    await ask(client, server(customer.url, headers=headers))

    sent = customer.received[0].headers
    assert sent["Authorization"] == "Bearer t"
    assert sent["X-Flag"] == "true"
    assert sent["X-Count"] == "3"
    assert sent["Content-Type"] == "application/json"
    assert "X-Router-Signature" not in sent
    assert "X-Router-Timestamp" not in sent


async def test_signature_verifies_at_the_receiver(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """With a secret, the receiver recomputes HMAC-SHA256(secret, "<timestamp>.<body>")
    over the raw body and finds `X-Router-Signature: v1=<hex>`."""
    customer.reply(respond(json={}))
    await ask(client, server(customer.url), secret="whsec-test")

    got = customer.received[0]
    timestamp = got.headers["X-Router-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(b"whsec-test", timestamp.encode() + b"." + got.body, hashlib.sha256)
    assert hmac.compare_digest(got.headers["X-Router-Signature"], "v1=" + expected.hexdigest())


async def test_a_slow_server_times_out_before_the_deadline(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """An attempt's timeout is capped by the deadline: with timeoutSeconds 20 and 0.3 s
    left, the client gives up in time, and does not retry into the deadline."""
    customer.reply(stall(customer))
    srv = server(customer.url, timeoutSeconds=20, backoffPlan=backoff("fixed", 3, 0.05))
    deadline = deadline_in(0.3)
    result = await client(srv, make_number(), make_call(), deadline=deadline)
    assert asyncio.get_running_loop().time() < deadline
    assert (result.status, result.reason, result.attempts) == ("failed", "timeout", 1)
    assert result.http_status is None


async def test_timeout_seconds_bounds_each_attempt(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """With time to spare, each attempt waits timeoutSeconds (1 s), then the retry runs."""
    customer.reply(stall(customer), respond(json={"assistantId": "a1"}))
    srv = server(customer.url, timeoutSeconds=1, backoffPlan=backoff("fixed", 1, 0.05))
    result = await ask(client, srv, within=5)
    assert (result.status, result.attempts) == ("ok", 2)
    assert 1.0 <= gaps(customer)[0] < 2.5


async def test_no_attempt_starts_after_the_deadline(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """A deadline already past sends nothing and reports a timeout."""
    result = await client(server(customer.url), make_number(), make_call(), deadline=deadline_in(0))
    assert (result.status, result.reason, result.attempts) == ("failed", "timeout", 0)
    assert customer.received == []


async def test_no_sleep_runs_past_the_deadline(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """A backoff delay that would end past the deadline is not slept: the client returns."""
    customer.reply(respond(500))
    srv = server(customer.url, backoffPlan=backoff("fixed", 3, 2.0))
    started = asyncio.get_running_loop().time()
    result = await ask(client, srv, within=1.0)
    assert asyncio.get_running_loop().time() - started < 0.5
    assert (result.reason, result.attempts, result.http_status) == ("http-500", 1, 500)


async def test_fixed_backoff_retries_after_the_same_delay(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """500, 500, 500, then 200: four attempts, each retry after baseDelaySeconds."""
    customer.reply(respond(500), respond(500), respond(500), respond(json={"squadId": "s1"}))
    srv = server(customer.url, backoffPlan=backoff("fixed", 3, 0.1))
    result = await ask(client, srv)
    assert (result.status, result.attempts, result.http_status) == ("ok", 4, 200)
    assert all(gap >= 0.1 for gap in gaps(customer))
    assert gaps(customer)[2] < 0.3  # exponential would have waited 0.4 s


async def test_exponential_backoff_doubles_the_delay(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """Exponential backoff waits base, 2·base, 4·base between attempts."""
    customer.reply(respond(503), respond(503), respond(503), respond(json={}))
    srv = server(customer.url, backoffPlan=backoff("exponential", 3, 0.05))
    result = await ask(client, srv)
    assert (result.status, result.attempts) == ("ok", 4)
    first, second, third = gaps(customer)
    assert first >= 0.05
    assert second >= 0.1
    assert third >= 0.2  # fixed would have waited 0.05 s


async def test_retries_are_bounded_by_max_retries(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """A server that keeps failing gets 1 + maxRetries attempts; the last status is kept."""
    customer.reply(respond(502))
    srv = server(customer.url, backoffPlan=backoff("fixed", 2, 0.01))
    result = await ask(client, srv)
    assert (result.status, result.reason, result.attempts, result.http_status) == (
        "failed",
        "http-502",
        3,
        502,
    )


async def test_an_excluded_status_is_not_retried(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """A status listed in excludedStatusCodes ends the exchange at once."""
    customer.reply(respond(401), respond(json={}))
    srv = server(customer.url, backoffPlan=backoff("fixed", 3, 0.01, excluded=[401, 403]))
    result = await ask(client, srv)
    assert (result.reason, result.attempts) == ("http-401", 1)


async def test_without_a_backoff_plan_there_is_no_retry(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """Vapi's default: no backoffPlan, no retry."""
    customer.reply(respond(500), respond(json={}))
    result = await ask(client, server(customer.url))
    assert (result.reason, result.attempts) == ("http-500", 1)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>oops</html>", "non-json"),
        (b"", "non-json"),
        (b'{"assistantId": NaN}', "non-json"),
        (b"[" * 100_000, "non-json"),
        (b'["assistantId"]', "not-object"),
        (b"null", "not-object"),
        (b'"a1"', "not-object"),
    ],
    ids=["html", "empty", "NaN", "deeply-nested", "array", "null", "string"],
)
async def test_an_unusable_2xx_body_fails_without_retry(
    client: AssistantRequestClient, customer: Customer, body: bytes, reason: str
) -> None:
    """A 2xx is final: a body that is not a JSON object fails at once, retries or not."""
    customer.reply(respond(200, body=body), respond(json={"assistantId": "a1"}))
    srv = server(customer.url, backoffPlan=backoff("fixed", 3, 0.01))
    result = await ask(client, srv)
    assert (result.status, result.reason, result.attempts, result.http_status) == (
        "failed",
        reason,
        1,
        200,
    )


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_body_fails(customer: Customer, chunked: bool) -> None:
    """A body over the cap fails (`too-large`), whether announced or streamed."""

    async def big(request: web.Request) -> web.StreamResponse:
        payload = json.dumps({"assistant": {"pad": "x" * 5000}}).encode()
        if not chunked:
            return web.Response(body=payload, content_type="application/json")
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(payload), 1000):
            await response.write(payload[start : start + 1000])
        await response.write_eof()
        return response

    customer.reply(big)
    async with AssistantRequestClient(addresses=LOOPBACK, max_body_bytes=4096) as small:
        result = await ask(small, server(customer.url))
    assert (result.status, result.reason, result.http_status) == ("failed", "too-large", 200)


async def test_a_refused_connection_is_a_transport_failure(client: AssistantRequestClient) -> None:
    """Nothing listening on the port: `transport`, retried per the plan."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = server(f"http://127.0.0.1:{port}/hook", backoffPlan=backoff("fixed", 1, 0.01))
    result = await ask(client, srv)
    assert (result.status, result.reason, result.attempts, result.http_status) == (
        "failed",
        "transport",
        2,
        None,
    )


async def test_redirects_are_not_followed(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """A 3xx is a non-2xx answer: the signed body is not replayed to another URL."""

    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(customer.url.replace("/hook", "/elsewhere"))

    customer.reply(moved)
    result = await ask(client, server(customer.url), secret="s")
    assert (result.reason, result.attempts) == ("http-302", 1)
    assert len(customer.received) == 1


async def test_one_session_reuses_its_connection(
    client: AssistantRequestClient, customer: Customer
) -> None:
    """Requests share the client's long-lived session: the second rides the first's
    keep-alive connection."""
    customer.reply(respond(json={}))
    await ask(client, server(customer.url))
    await ask(client, server(customer.url))
    first, second = customer.received
    assert first.peer_port == second.peer_port


async def test_a_client_that_is_not_started_refuses_to_send() -> None:
    """Calling before `start()` is a programming error, said plainly."""
    with pytest.raises(RuntimeError, match="not started"):
        await ask(AssistantRequestClient(), server("http://127.0.0.1:9/hook"))


APOLOGY = "Sorry."
FALLBACK = {"type": "number", "number": "+14155550188"}


@pytest.mark.parametrize(
    ("reply", "outcome", "route", "ended"),
    [
        (
            respond(json={"assistantId": "a1"}),
            Connect("assistant", "a1"),
            "assistant-request",
            None,
        ),
        (
            respond(json={"assistant": {"name": "t"}}),
            Connect("assistant", None, {"assistant": {"name": "t"}}),
            "assistant-request",
            None,
        ),
        (respond(json={"squadId": "s1"}), Connect("squad", "s1"), "assistant-request", None),
        (
            respond(json={"workflow": {"nodes": []}}),
            Connect("workflow", None, {"workflow": {"nodes": []}}),
            "assistant-request",
            None,
        ),
        (
            respond(json={"destination": {"type": "sip", "sipUri": "sip:a@b.c", "message": ""}}),
            Transfer(
                d.parse_destination({"type": "sip", "sipUri": "sip:a@b.c", "message": ""}), ""
            ),
            "assistant-request",
            d.FORWARDING,
        ),
        (respond(json={"error": "Not today."}), Say("Not today."), "say", d.RETURNED_ERROR),
        (respond(json={"error": 5}), Say(""), "say", d.UNSPEAKABLE_ERROR),
        (
            respond(json={"assistantId": 5}),
            Transfer.to(d.parse_destination(FALLBACK)),
            "fallback",
            d.INVALID_ASSISTANT,
        ),
        (
            respond(json={}),
            Transfer.to(d.parse_destination(FALLBACK)),
            "fallback",
            d.NO_ASSISTANT,
        ),
        (respond(500), Transfer.to(d.parse_destination(FALLBACK)), "fallback", d.FAILED),
    ],
    ids=[
        "assistantId",
        "assistant",
        "squadId",
        "workflow",
        "destination",
        "error",
        "unspeakable",
        "invalid",
        "empty",
        "http-500",
    ],
)
async def test_response_shapes_end_to_end_through_decide(
    client: AssistantRequestClient,
    customer: Customer,
    reply: Any,
    outcome: Any,
    route: str,
    ended: str | None,
) -> None:
    """The server's answer, sent over HTTP, becomes the SPEC §5 decision."""
    customer.reply(reply)
    number = make_number(server={"url": customer.url}, fallbackDestination=FALLBACK)
    decision = await decide(
        number,
        make_call(),
        org_server=None,
        assistant_request=client.bind(deadline=deadline_in(5), secret="s"),
        apology=APOLOGY,
    )
    assert (decision.outcome, decision.route, decision.ended_reason) == (outcome, route, ended)
    assert decision.assistant_request is not None
    assert decision.assistant_request.attempts == 1
    assert "X-Router-Signature" in customer.received[0].headers
