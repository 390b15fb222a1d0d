"""A Vapi-style client works unchanged against a real `router serve` process, on both stores."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import router_env

from .conftest import (
    SECRETS,
    TWILIO_AUTH_TOKEN,
    Reply,
    check_error_shape,
    conformance,
    expect,
    telnyx_credential,
    trunk_credential,
    twilio_body,
    vapi_body,
    vonage_credential,
)

API_KEY = "serve-test-key"
START_SECONDS = 20.0
STOP_SECONDS = 5.0


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Worker:
    """A `python -m router serve` child process and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process, base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        assert process.stdout is not None
        # Drained all along, so a chatty worker never blocks on a full pipe.
        self.output: asyncio.Task[bytes] = asyncio.create_task(process.stdout.read())

    async def stop(self) -> tuple[int, float, str]:
        """SIGTERM; the exit code, how long it took, and the output."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        return code, time.monotonic() - start, (await self.output).decode(errors="replace")


@asynccontextmanager
async def serve(tmp_path: Path, redis_url: str | None) -> AsyncIterator[Worker]:
    port = unused_port()
    env = router_env(tmp_path / "data", API_KEY)
    if redis_url is not None:
        env["ROUTER_REDIS_URL"] = redis_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    worker = Worker(process, f"http://127.0.0.1:{port}")
    try:
        yield worker
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await worker.output


async def wait_healthy(session: aiohttp.ClientSession, worker: Worker) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if worker.process.returncode is not None:
            raise AssertionError(f"router exited early: {(await worker.output).decode()}")
        try:
            async with session.get(f"{worker.base_url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("router did not answer /healthz in time")
        await asyncio.sleep(0.05)


class VapiStyleClient:
    """What a Vapi SDK does: JSON over HTTP with a bearer key, nothing router-specific."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Reply:
        async with self._session.request(
            method,
            self._base + path,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            text = await response.text()
            reply = Reply(response.status, json.loads(text), text, response.headers)
        if reply.status < 300:
            conformance().check(method, path, reply.status, reply.body)
        else:
            check_error_shape(reply)
        return reply


@pytest.mark.parametrize("store", ["embedded", "redis"])
async def test_a_vapi_style_client_against_router_serve(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """Create every provider's number, list, filter, search, page, patch and delete against a
    real process; SIGTERM stops it promptly with exit code 0; its logs hold no secret."""
    redis_url: str | None = request.getfixturevalue("redis_url") if store == "redis" else None
    async with aiohttp.ClientSession() as session, serve(tmp_path, redis_url) as worker:
        await wait_healthy(session, worker)
        vapi = VapiStyleClient(session, worker.base_url)

        telnyx = expect(await vapi.call("POST", "/credential", telnyx_credential()), 201)
        vonage = expect(await vapi.call("POST", "/credential", vonage_credential()), 201)
        trunk = expect(await vapi.call("POST", "/credential", trunk_credential()), 201)
        bodies: list[dict[str, Any]] = [
            twilio_body("+14155550801", name="Twilio line"),
            {"provider": "telnyx", "number": "+14155550802", "credentialId": telnyx["id"]},
            {"provider": "vonage", "number": "+14155550803", "credentialId": vonage["id"]},
            vapi_body("sip:serve@sip.example.com", name="SIP desk"),
            {"provider": "byo-phone-number", "number": "+14155550805", "credentialId": trunk["id"]},
        ]
        created = [expect(await vapi.call("POST", "/phone-number", b), 201) for b in bodies]
        imported = expect(
            await vapi.call(
                "POST",
                "/phone-number/import/twilio",
                {"twilioPhoneNumber": "+14155550806", "twilioAccountSid": "AC1"},
            ),
            201,
        )
        created.append(imported)
        assert created[2]["number"] == "+14155550803"
        assert [n["provider"] for n in created] == [
            "twilio",
            "telnyx",
            "vonage",
            "vapi",
            "byo-phone-number",
            "twilio",
        ]
        newest_first = [n["id"] for n in reversed(created)]

        listed = expect(await vapi.call("GET", "/phone-number"), 200)
        assert [n["id"] for n in listed] == newest_first
        after_third = {"createdAtGt": created[2]["createdAt"]}
        filtered = expect(await vapi.call("GET", "/phone-number", params=after_third), 200)
        assert [n["id"] for n in filtered] == newest_first[:3]
        found = expect(await vapi.call("GET", "/v2/phone-number", params={"search": "desk"}), 200)
        assert [n["id"] for n in found["results"]] == [created[3]["id"]]
        page = expect(
            await vapi.call("GET", "/v2/phone-number", params={"limit": "4", "page": "2"}), 200
        )
        assert [n["id"] for n in page["results"]] == newest_first[4:]
        assert page["metadata"]["totalItems"] == 6
        assert page["metadata"]["totalPages"] == 2

        path = f"/phone-number/{created[0]['id']}"
        patched = expect(await vapi.call("PATCH", path, {"name": "Renamed", "squadId": "s1"}), 200)
        assert patched["name"] == "Renamed"
        assert expect(await vapi.call("GET", path), 200) == patched
        assert expect(await vapi.call("DELETE", path), 200) == patched
        assert (await vapi.call("GET", path)).status == 404
        assert (await vapi.call("POST", "/phone-number", bodies[1])).status == 409
        assert len(expect(await vapi.call("GET", "/phone-number"), 200)) == 5

        code, took, output = await worker.stop()

    assert code == 0, output
    assert took < STOP_SECONDS
    assert "phone_number.created" in output
    for secret in (*SECRETS, TWILIO_AUTH_TOKEN, API_KEY):
        assert secret not in output
