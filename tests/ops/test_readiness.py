"""`/readyz` and `/healthz` as a load balancer sees them, with Redis really killed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from router.app import create_app
from router.settings import Settings
from tests.conftest import RedisServer

from . import API_KEY, RUNTIME_URL, signed, stream_parameters, twilio_number, voice_form

PUBLIC_URL = "https://router.example.com"
Client = TestClient[web.Request, web.Application]


async def start(aiohttp_client: AiohttpClient, tmp_path: Path, redis_url: str | None) -> Client:
    settings = Settings(
        api_key=API_KEY,
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        public_url=PUBLIC_URL,
        runtime_url=RUNTIME_URL,
        redis_connect_retries=0,
        redis_retry_delay_seconds=0,
    )
    return await aiohttp_client(create_app(settings))


async def get(client: Client, path: str) -> tuple[int, Any]:
    async with client.get(path) as response:
        return response.status, await response.json()


async def create_number(client: Client) -> None:
    async with client.post(
        "/phone-number",
        json=twilio_number(assistantId="asst-1"),
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert response.status == 201


async def routed_call(client: Client) -> str:
    """A signed voice webhook for the number; the assistant it was connected to."""
    fields = voice_form()
    headers = signed(f"{PUBLIC_URL}/twilio/voice", fields)
    async with client.post("/twilio/voice", data=urlencode(fields), headers=headers) as response:
        assert response.status == 200
        return stream_parameters(await response.read())["targetId"]


async def test_the_embedded_store_is_ready(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """No Redis: the embedded store answers its ping, so the worker is ready."""
    client = await start(aiohttp_client, tmp_path, None)
    assert await get(client, "/readyz") == (200, {"status": "ready", "store": "ok"})
    assert await get(client, "/healthz") == (200, {"status": "ok"})


async def test_redis_down_with_a_warm_cache_is_degraded_and_still_routes(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_factory: Callable[[], RedisServer]
) -> None:
    """Redis killed after a call warmed the cache: 200 `degraded` (the load balancer keeps
    the worker, whose cached numbers still route); `/healthz` stays 200."""
    server = redis_factory()
    client = await start(aiohttp_client, tmp_path, server.url)
    await create_number(client)
    assert await routed_call(client) == "asst-1"
    assert (await get(client, "/readyz"))[0] == 200

    server.kill()
    status, body = await get(client, "/readyz")
    assert status == 200
    assert body["status"] == "degraded" and body["cachedNumbers"] == 1
    # Unauthenticated: no address, port or driver error of the store in the answer.
    assert body["store"] == "unavailable"
    assert str(server.port) not in json.dumps(body)
    assert await get(client, "/healthz") == (200, {"status": "ok"})
    assert await routed_call(client) == "asst-1"


async def test_redis_down_with_an_empty_cache_is_unavailable(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_factory: Callable[[], RedisServer]
) -> None:
    """Redis killed before any call: nothing could be routed, so 503 `unavailable`;
    `/healthz` stays 200 (a restart would not bring Redis back)."""
    server = redis_factory()
    client = await start(aiohttp_client, tmp_path, server.url)
    await create_number(client)  # stored, but never looked up by this worker

    server.kill()
    status, body = await get(client, "/readyz")
    assert status == 503
    assert body == {"status": "unavailable", "store": "unavailable"}
    assert await get(client, "/healthz") == (200, {"status": "ok"})
