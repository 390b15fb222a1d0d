"""Graceful shutdown of a real `router serve` process: SIGTERM finishes in-flight webhooks."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from . import TOKEN, logged, serve, stream_parameters, twilio_number

# Long enough that a busy machine's stall cannot let the call finish before the refusal
# is seen: `refused_soon` takes at most its window and one probe.
CUSTOMER_DELAY_SECONDS = 3.0
# One probe's whole time: a connection the kernel queued on a socket that is still open
# (no worker accepts it any more) is unanswered, not refused; the next probe tells.
PROBE_SECONDS = 0.25


@dataclass
class SlowCustomer:
    """The customer's server: answers an assistant-request after `CUSTOMER_DELAY_SECONDS`."""

    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrived.set()
        await asyncio.sleep(CUSTOMER_DELAY_SECONDS)
        return web.json_response({"assistantId": "asst-slow"})


@pytest.fixture
async def slow_customer(aiohttp_server: AiohttpServer) -> SlowCustomer:
    customer = SlowCustomer()
    app = web.Application()
    app.router.add_post("/assistant-request", customer.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    customer.url = str(server.make_url("/assistant-request"))
    return customer


async def refused_soon(url: str, within: float) -> bool:
    """Whether new connections to `url` are refused within `within` seconds. A connection
    that raced the listening socket's close (accepted by the kernel an instant before) is
    reset or closed unanswered: not served either, and not held, so it counts too."""
    deadline = time.monotonic() + within
    probe = aiohttp.ClientTimeout(total=PROBE_SECONDS)
    while time.monotonic() < deadline:
        try:
            # A new session: a new connection, never a pooled one.
            async with (
                aiohttp.ClientSession(timeout=probe) as fresh,
                fresh.get(f"{url}/healthz"),
            ):
                pass
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            return True  # refused (ClientConnectorError is an OSError too), reset or dropped
        except TimeoutError:
            pass  # queued on a socket still listening: not refused yet
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize(("store", "workers"), [("embedded", "1"), ("redis", "1"), ("redis", "2")])
async def test_sigterm_lets_the_in_flight_webhook_finish_then_exits_0(
    tmp_path: Path,
    slow_customer: SlowCustomer,
    store: str,
    workers: str,
    request: pytest.FixtureRequest,
) -> None:
    """SIGTERM while a call waits on its assistant-request: the port closes at once (new
    connections are refused, with `--workers` too), the call still gets the server's
    TwiML, and the process exits 0 soon after."""
    env = {"ROUTER_REDIS_URL": request.getfixturevalue("redis_url")} if store == "redis" else {}
    async with (
        serve(tmp_path, "--workers", workers, **env) as router,
        aiohttp.ClientSession() as http,
    ):
        await router.wait_healthy(http)
        await router.api(
            http, "POST", "/phone-number", twilio_number(server={"url": slow_customer.url})
        )
        call = asyncio.create_task(router.voice(http))
        await asyncio.wait_for(slow_customer.arrived.wait(), 5)

        router.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert await refused_soon(router.url, within=0.5)
        assert not call.done()  # the customer has not even answered yet

        status, body = await asyncio.wait_for(call, 10)
        assert status == 200, body
        assert stream_parameters(body)["targetId"] == "asst-slow"
        assert await router.wait_exit(5) == 0
        assert time.monotonic() - stopped_at < CUSTOMER_DELAY_SECONDS + 3.5
    output = router.output()
    assert logged(output, "call.routed")
    assert TOKEN not in output
