"""Slow clients and descriptor exhaustion against a real `router serve` on loopback.

A client that trickles its body or its headers gets a bounded time, then the connection
goes; a worker out of file descriptors keeps accepting once they free up, says so in one
log line per interval rather than one per failed accept, and answers `/healthz` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port

from . import API_KEY, Served, logged, serve, serve_env

BODY_TIMEOUT_SECONDS = 1.0


async def trickle_body(port: int, path: str, headers: dict[str, str]) -> tuple[bytes, float, bool]:
    """POST `path` announcing 100 bytes of body and sending one every 0.4 s: the answer
    (status line first), the seconds it took, and whether the server closed afterwards."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    start = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100\r\n"
    writer.write(f"{start}{head}\r\n".encode())
    started = time.monotonic()

    async def feed() -> None:
        for _ in range(100):
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.4)

    feeding = asyncio.create_task(feed())
    try:
        status = await asyncio.wait_for(reader.readline(), 10)
        took = time.monotonic() - started
        try:
            # Whatever the answer's body, the server closes the connection after it.
            status += await asyncio.wait_for(reader.read(), 5)
            closed = True
        except TimeoutError:
            closed = False
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await feeding
        writer.close()
    return status, took, closed


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (
            "/twilio/voice",
            {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
        ),
        (
            "/phone-number",
            {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
        ),
    ],
    ids=["webhook", "api"],
)
async def test_a_body_sent_byte_by_byte_gets_408_within_the_body_timeout(
    tmp_path: Path, path: str, headers: dict[str, str]
) -> None:
    """A body trickled one byte every 0.4 s, to a webhook or to the API: 408 once
    ROUTER_REQUEST_BODY_TIMEOUT_SECONDS (1 s here) has passed, the connection closed,
    and one `request.body_timeout` line."""
    timeout = str(BODY_TIMEOUT_SECONDS)
    async with (
        serve(tmp_path, ROUTER_REQUEST_BODY_TIMEOUT_SECONDS=timeout) as router,
        aiohttp.ClientSession() as http,
    ):
        await router.wait_healthy(http)
        status, took, closed = await trickle_body(router.port, path, headers)
        assert status.startswith(b"HTTP/1.1 408 "), status
        assert b"\r\nConnection: close\r\n" in status
        assert b'"statusCode":408' in status
        assert b"the body did not arrive within 1 s" in status
        assert BODY_TIMEOUT_SECONDS <= took < BODY_TIMEOUT_SECONDS + 1.5, took
        assert closed
        await asyncio.sleep(0.3)  # the line is written when the loop turn ends
        lines = logged(router.output(), "request.body_timeout")
        assert len(lines) == 1, router.output()
        assert lines[0]["path"] == path
        assert lines[0]["timeout_seconds"] == BODY_TIMEOUT_SECONDS


async def test_a_webhook_body_is_bounded_by_half_the_providers_budget(tmp_path: Path) -> None:
    """A body timeout longer than the provider's budget does not apply to its webhooks:
    a Twilio body (budget 2 s here) gets 1 s, so the call still has time to be decided."""
    async with (
        serve(
            tmp_path,
            ROUTER_REQUEST_BODY_TIMEOUT_SECONDS="30",
            ROUTER_TWILIO_BUDGET_SECONDS="2",
        ) as router,
        aiohttp.ClientSession() as http,
    ):
        await router.wait_healthy(http)
        status, took, _ = await trickle_body(
            router.port, "/twilio/voice", {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status.startswith(b"HTTP/1.1 408 "), status
        assert 1.0 <= took < 2.5, took


async def test_headers_sent_byte_by_byte_are_cut_off_at_the_keepalive_timeout(
    tmp_path: Path,
) -> None:
    """A request whose headers never end: the connection is closed once
    ROUTER_KEEPALIVE_TIMEOUT_SECONDS (2 s here) has passed since it opened, however
    steadily the bytes come."""
    async with (
        serve(tmp_path, ROUTER_KEEPALIVE_TIMEOUT_SECONDS="2") as router,
        aiohttp.ClientSession() as http,
    ):
        await router.wait_healthy(http)
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        started = time.monotonic()
        writer.write(b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        closed_after = None
        try:
            for _ in range(40):
                await asyncio.sleep(0.25)
                try:
                    writer.write(b"a")
                    await writer.drain()
                    if await asyncio.wait_for(reader.read(1), 0.01) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    continue
                except ConnectionError:
                    closed_after = time.monotonic() - started
                    break
        finally:
            writer.close()
        assert closed_after is not None, "slow headers were kept for 10 s"
        assert 2.0 <= closed_after < 3.5, closed_after


# Starts `router serve` with both of its open-files limits at 64: the worker's own raise
# (router/ops/limits.py) goes no higher than the hard limit. `asyncio` runs it on asyncio's
# own event loop (a platform without uvloop), whose accept fails loudly.
UNDER_64_DESCRIPTORS = """
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
if sys.argv[1] == "asyncio":
    sys.modules["uvloop"] = None  # import uvloop fails: router runs asyncio's loop
sys.argv = ["router", "serve", "--host", "127.0.0.1", "--port", sys.argv[2]]
runpy.run_module("router", run_name="__main__")
"""


@asynccontextmanager
async def serve_under_64(tmp_path: Path, loop: str) -> AsyncIterator[Served]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", UNDER_64_DESCRIPTORS, loop, str(port)),
            cwd=tmp_path,
            env=serve_env(tmp_path, port),
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Served(process, port, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)


def accept_failures(output: str) -> list[str]:
    """The log lines about failed accepts, whoever wrote them."""
    words = ("out of system resource", "Too many open files", "server.out_of_descriptors")
    return [line for line in output.splitlines() if any(word in line for word in words)]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_out_of_descriptors_the_worker_logs_once_and_recovers(
    tmp_path: Path, loop: str
) -> None:
    """150 idle connections to a worker allowed 64 descriptors, held for 3 s: at most one
    line about it (asyncio's loop alone would write one per failed accept, thousands a
    second); once they close, `/healthz` answers again within 2 s."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    async with serve_under_64(tmp_path, loop) as router, aiohttp.ClientSession() as http:
        await router.wait_healthy(http)
        held = []
        try:
            for _ in range(150):
                held.append(socket.create_connection(("127.0.0.1", router.port)))
            await asyncio.sleep(3)
        finally:
            for sock in held:
                sock.close()
        started = time.monotonic()
        async with aiohttp.ClientSession() as fresh:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    timeout = aiohttp.ClientTimeout(total=0.5)
                    async with fresh.get(f"{router.url}/healthz", timeout=timeout) as answer:
                        if answer.status == 200:
                            break
                assert time.monotonic() - started < 2, router.output()
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        failures = accept_failures(router.output())
        assert len(failures) <= 1, f"{len(failures)} lines, the first: {failures[:1]}"
        if loop == "asyncio":
            (line,) = logged(router.output(), "server.out_of_descriptors")
            assert line["errno"] == "EMFILE"
            assert line["open_files_limit"] == 64
