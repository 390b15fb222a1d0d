"""Calls in flight: every dynamic call gets its assistant-request, however many wait at once.

The customer's server answers after a delay; calls arrive together, each on its own
connection (a session with no connection limit of its own), and every answer is read on
the caller's clock.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

import aiohttp

from .conftest import (
    PUBLIC_URL,
    Customer,
    Logs,
    MakeRouter,
    Reply,
    Router,
    sign,
    stream_parameters,
    twiml,
    verbs,
    voice_form,
)

# Long enough that 250 arrivals spread over a loaded CI machine's second still overlap.
SERVER_SECONDS = 2.0


async def calls_at_once(router: Router, count: int) -> list[tuple[bytes, float]]:
    """`count` signed voice webhooks sent together: each answer and its seconds."""
    url = str(router.client.make_url("/twilio/voice"))
    forms = [voice_form() for _ in range(count)]

    async def one(session: aiohttp.ClientSession, form: dict[str, str]) -> tuple[bytes, float]:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/voice", form),
        }
        started = time.perf_counter()
        async with session.post(url, data=urlencode(form), headers=headers) as response:
            assert response.status == 200
            return await response.read(), time.perf_counter() - started

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await asyncio.gather(*(one(session, form) for form in forms))


def routed_to_server(body: bytes) -> bool:
    """The answer connects the call to the assistant the server named."""
    root = twiml(body)
    return verbs(root) == ["Connect"] and stream_parameters(root)["targetId"] == "asst-1"


async def test_every_call_in_flight_gets_its_assistant_request(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """250 calls at once against a server that answers in 2 s, default settings: every call
    reaches the server at once and is routed as it says, inside the budget. (aiohttp's
    default pool held 100: the next 100 waited for a connection, the last 50 twice as long,
    and fell back.)"""
    router = await make_router(twilio_budget_seconds=5.0)
    customer.reply(Reply(json={"assistantId": "asst-1"}, delay=SERVER_SECONDS))
    await router.create_number(server={"url": customer.url})
    answers = await calls_at_once(router, 250)
    assert len(customer.assistant_requests) == 250
    arrived = [r.at for r in customer.assistant_requests]
    # All in flight together: the last one reached the server before the first was answered.
    assert max(arrived) - min(arrived) < SERVER_SECONDS
    assert all(routed_to_server(body) for body, _ in answers)
    assert max(seconds for _, seconds in answers) < 5.0
    assert {e["assistant_request_outcome"] for e in logs.routed()} == {"ok"}


async def test_the_connection_limit_is_a_setting(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """`assistant_request_max_connections` caps the calls that wait on servers at once: with 20,
    the 21st to 40th call queue for a connection, run out of budget and fall back."""
    router = await make_router(twilio_budget_seconds=3.2, assistant_request_max_connections=20)
    customer.reply(Reply(json={"assistantId": "asst-1"}, delay=SERVER_SECONDS))
    await router.create_number(server={"url": customer.url})
    answers = await calls_at_once(router, 40)
    assert sum(routed_to_server(body) for body, _ in answers) == 20
    outcomes = sorted(e["assistant_request_outcome"] for e in logs.routed())
    assert outcomes == ["ok"] * 20 + ["timeout"] * 20


async def test_the_per_host_limit_is_a_setting(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """`assistant_request_max_connections_per_host` caps one server's share the same way."""
    router = await make_router(
        twilio_budget_seconds=3.2, assistant_request_max_connections_per_host=20
    )
    customer.reply(Reply(json={"assistantId": "asst-1"}, delay=SERVER_SECONDS))
    await router.create_number(server={"url": customer.url})
    answers = await calls_at_once(router, 40)
    assert sum(routed_to_server(body) for body, _ in answers) == 20
