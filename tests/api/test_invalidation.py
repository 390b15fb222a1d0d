"""Number caches stay right: writes through the API reach every worker's cache within a second,
and a worker keeps answering cached lookups while Redis is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import pytest

from router.models.phone_numbers import AnyPhoneNumber
from router.state import NUMBER_CACHE

from .conftest import Api, MakeSettings, StartApi, expect, rejected, twilio_body

ACCOUNT = "AC0123456789abcdef0123456789abcdef"  # twilio_body's
KEY = f"twilio:{ACCOUNT}:+14155550601"
MOVED = f"twilio:{ACCOUNT}:+14155550602"
PROPAGATION_SECONDS = 1.0


class KillableRedis(Protocol):
    """What the session conftest's `redis_factory` starts."""

    @property
    def url(self) -> str: ...

    def kill(self) -> None: ...


async def cached(api: Api, key: str) -> AnyPhoneNumber | None:
    found: AnyPhoneNumber | None = await api.app[NUMBER_CACHE].get(key)
    return found


async def eventually(api: Api, key: str, check: Callable[[AnyPhoneNumber | None], bool]) -> float:
    """Seconds until `check` holds for the cached lookup of `key` (fails after 1 s)."""
    start = time.monotonic()
    while True:
        if check(await cached(api, key)):
            return time.monotonic() - start
        if time.monotonic() - start > PROPAGATION_SECONDS:
            found = await cached(api, key)
            raise AssertionError(f"{key} still cached as {found!r} after {PROPAGATION_SECONDS}s")
        await asyncio.sleep(0.01)


async def test_a_workers_own_writes_reach_its_cache_at_once(api: Api) -> None:
    """On either backend, a PATCH or DELETE is seen by the next lookup in the same worker."""
    created = await api.create_number(twilio_body("+14155550601", name="before"))
    warm = await cached(api, KEY)
    assert warm is not None and warm.name == "before"
    path = f"/phone-number/{created['id']}"
    expect(await api.patch(path, {"name": "after"}), 200)
    patched = await cached(api, KEY)
    assert patched is not None and patched.name == "after"
    expect(await api.patch(path, {"number": "+14155550602"}), 200)
    assert await cached(api, KEY) is None
    moved = await cached(api, MOVED)
    assert moved is not None and moved.id == created["id"]
    expect(await api.delete(path), 200)
    assert await cached(api, MOVED) is None


@pytest.mark.parametrize("backend", ["redis"])
async def test_writes_through_one_worker_reach_anothers_cache_within_a_second(
    start_api: StartApi, make_settings: MakeSettings
) -> None:
    """Worker B's warm cache sees a PATCH, a number change and a DELETE made through A."""
    a = await start_api(make_settings())
    b = await start_api(make_settings())
    created = await a.create_number(twilio_body("+14155550601", name="before"))
    path = f"/phone-number/{created['id']}"

    warm = await cached(b, KEY)
    assert warm is not None and warm.name == "before"
    assert await cached(b, MOVED) is None  # a cached miss, too

    expect(await a.patch(path, {"name": "after"}), 200)
    await eventually(b, KEY, lambda n: n is not None and n.name == "after")

    expect(await a.patch(path, {"number": "+14155550602"}), 200)
    await eventually(b, KEY, lambda n: n is None)
    await eventually(b, MOVED, lambda n: n is not None and n.id == created["id"])

    expect(await a.delete(path), 200)
    await eventually(b, MOVED, lambda n: n is None)


@pytest.mark.parametrize("backend", ["redis"])
async def test_redis_down_cached_lookups_answer_and_writes_fail_fast_with_503(
    start_api: StartApi,
    make_settings: MakeSettings,
    redis_factory: Callable[[], KillableRedis],
) -> None:
    """Kill Redis: the warm lookup still answers; API writes and reads are a quick, clear 503."""
    server = redis_factory()
    api = await start_api(make_settings(redis_url=server.url))
    created = await api.create_number(twilio_body("+14155550601", name="cached"))
    warm = await cached(api, KEY)
    assert warm is not None

    server.kill()

    found = await cached(api, KEY)
    assert found is not None and found.id == created["id"] and found.name == "cached"

    for method, path, body in (
        ("POST", "/phone-number", twilio_body("+14155550603")),
        ("PATCH", f"/phone-number/{created['id']}", {"name": "x"}),
        ("DELETE", f"/phone-number/{created['id']}", None),
        ("GET", "/phone-number", None),
        ("POST", "/credential", {"provider": "twilio", "accountSid": "AC1", "authToken": "t"}),
    ):
        start = time.monotonic()
        reply = await api.call(method, path, body)
        elapsed = time.monotonic() - start
        text = rejected(reply, 503)
        assert "Redis is unavailable" in text
        assert "retry later" in text
        assert elapsed < 3, f"{method} {path} took {elapsed:.2f}s"
    # This worker can still route its cached number: degraded, not out of the pool.
    ready = await api.get("/readyz")
    assert (ready.status, ready.body["status"]) == (200, "degraded")
    assert (await api.get("/healthz")).status == 200

    # Still answering from the cache after the failed calls.
    again = await cached(api, KEY)
    assert again is not None and again.id == created["id"]
