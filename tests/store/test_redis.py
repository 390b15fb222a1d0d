"""The Redis backend: start-up retries, pub/sub between instances, races across processes,
and behaviour while Redis is down."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
from structlog.testing import capture_logs

from router.pipeline.number_cache import NumberCache
from router.store import redis_keys as keys
from router.store.interface import KIND_PHONE_NUMBER, Doc, Invalidation, ListQuery, StoreUnavailable
from router.store.redis_store import RedisStore, redact_url

PN = KIND_PHONE_NUMBER
REPO = Path(__file__).resolve().parents[2]


class KillableRedis(Protocol):
    """What `redis_factory` (tests/conftest.py) hands out."""

    url: str

    def kill(self) -> None: ...

    def start(self) -> None: ...


def number(doc_id: str, org: str = "org-a", **extra: Any) -> Doc:
    return {
        "id": doc_id,
        "orgId": org,
        "provider": "twilio",
        "number": "+14155550100",
        "createdAt": "2024-01-01T00:00:00+00:00",
        "updatedAt": "2024-01-01T00:00:00+00:00",
        **extra,
    }


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one Redis, as two workers would have."""
    a = RedisStore(redis_url, connect_retries=0, retry_delay_seconds=0)
    b = RedisStore(redis_url, connect_retries=0, retry_delay_seconds=0)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def eventually(condition: Callable[[], bool], within_seconds: float = 5.0) -> None:
    deadline = time.monotonic() + within_seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_redacted_url_hides_passwords() -> None:
    """Passwords in the userinfo or the query never reach a log line."""
    assert redact_url("redis://user:hunter2@h:6379/0") == "redis://user:***@h:6379/0"
    assert redact_url("rediss://:hunter2@h") == "rediss://:***@h"
    assert redact_url("unix:///run/r.sock?password=hunter2&db=1") == (
        "unix:///run/r.sock?password=***&db=1"
    )
    assert redact_url("redis://localhost:6379/0") == "redis://localhost:6379/0"


async def test_start_retries_a_bounded_number_of_times_and_logs_without_password(
    unused_tcp_port: int,
) -> None:
    """With Redis absent, start logs each retry (redacted URL) and then raises StoreUnavailable."""
    url = f"redis://:hunter2@127.0.0.1:{unused_tcp_port}/0"
    store = RedisStore(url, connect_retries=2, retry_delay_seconds=0.01)
    try:
        with capture_logs() as logs, pytest.raises(StoreUnavailable, match="Redis is unavailable"):
            await store.start()
    finally:
        await store.close()
    retries = [e for e in logs if e["event"] == "redis.connect_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert retries[0]["url"].startswith("redis://:***@127.0.0.1:")
    assert "hunter2" not in repr(logs)
    assert not store.healthy


async def test_start_logs_connected_and_exposes_a_working_client(redis_url: str) -> None:
    """A started store is healthy, logs redis.connected and shares its client."""
    store = RedisStore(redis_url, connect_retries=0, retry_delay_seconds=0)
    with capture_logs() as logs:
        await store.start()
    try:
        assert [e["event"] for e in logs] == ["redis.connected"]
        assert store.healthy
        await store.client.set("probe", "1")
        assert await store.client.get("probe") == "1"
    finally:
        await store.close()
    assert not store.healthy


async def test_a_write_on_one_instance_reaches_the_other_within_a_second(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """Create, replace and delete via A are delivered to B's handlers, old and new keys named."""
    a, b = pair
    received: asyncio.Queue[Invalidation] = asyncio.Queue()
    b.on_invalidation(received.put_nowait, lambda: None)

    await a.create(PN, number("n1"), "twilio:+1")
    assert await asyncio.wait_for(received.get(), 1.0) == Invalidation(
        PN, "n1", "org-a", ("twilio:+1",)
    )
    await a.replace(PN, number("n1"), "twilio:+2")
    assert await asyncio.wait_for(received.get(), 1.0) == Invalidation(
        PN, "n1", "org-a", ("twilio:+1", "twilio:+2")
    )
    await a.delete(PN, "org-a", "n1")
    assert await asyncio.wait_for(received.get(), 1.0) == Invalidation(
        PN, "n1", "org-a", ("twilio:+2",)
    )


async def test_a_malformed_invalidation_is_logged_and_the_listener_keeps_going(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """Garbage on the channel is logged; later invalidations still arrive."""
    a, b = pair
    received: asyncio.Queue[Invalidation] = asyncio.Queue()
    b.on_invalidation(received.put_nowait, lambda: None)
    with capture_logs() as logs:
        await a.client.publish(keys.INVALIDATION_CHANNEL, "{not json")
        await a.create(PN, number("n1"), None)
        assert (await asyncio.wait_for(received.get(), 1.0)).id == "n1"
    assert "redis.invalidation_malformed" in [e["event"] for e in logs]
    assert b.healthy


async def test_a_failing_handler_does_not_stop_the_others(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """One subscriber raising is logged; the next subscriber still gets the invalidation."""
    a, b = pair

    def broken(_: Invalidation) -> None:
        raise RuntimeError("subscriber bug")

    received: asyncio.Queue[Invalidation] = asyncio.Queue()
    b.on_invalidation(broken, lambda: None)
    b.on_invalidation(received.put_nowait, lambda: None)
    with capture_logs() as logs:
        await a.create(PN, number("n1"), None)
        assert (await asyncio.wait_for(received.get(), 1.0)).id == "n1"
    assert "store.invalidation_handler_failed" in [e["event"] for e in logs]


async def test_cache_entry_is_dropped_when_another_instance_changes_the_number(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """A worker's cached number is re-read after another worker replaces it."""
    a, b = pair
    cache: NumberCache[str] = NumberCache(b, parse=lambda doc: str(doc["name"]))
    await a.create(PN, number("n1", name="old"), "twilio:+1")
    assert await cache.get("twilio:+1") == "old"

    await a.replace(PN, number("n1", name="new"), "twilio:+1")
    await eventually(lambda: cache.invalidations >= 1, within_seconds=1.0)

    assert await cache.get("twilio:+1") == "new"


async def test_conflict_names_an_owner_in_another_org(redis_url: str) -> None:
    """The Conflict carries the owner's id and org even across orgs."""
    store = RedisStore(redis_url, connect_retries=0, retry_delay_seconds=0)
    await store.start()
    try:
        await store.create(PN, number("n1", org="org-a"), "twilio:+1")
        with pytest.raises(Exception, match="already claimed by n1") as caught:
            await store.create(PN, number("n2", org="org-b"), "twilio:+1")
        assert getattr(caught.value, "owner_org_id", None) == "org-a"
    finally:
        await store.close()


RACE = """
import asyncio, json, sys
from router.store.interface import Conflict
from router.store.redis_store import RedisStore

async def main(url, tag):
    store = RedisStore(url, connect_retries=0, retry_delay_seconds=0)
    await store.start()
    # Both processes start creating at the same moment.
    await store.client.incr("test:ready")
    while int(await store.client.get("test:ready")) < 2:
        await asyncio.sleep(0.001)

    async def claim(i):
        doc = {"id": f"{tag}-{i}", "orgId": "org-a", "provider": "twilio",
               "number": f"+1415555{i:04d}", "createdAt": "2024-01-01T00:00:00+00:00",
               "updatedAt": "2024-01-01T00:00:00+00:00"}
        try:
            await store.create("phone-number", doc, f"twilio:+1415555{i:04d}")
        except Conflict:
            return None
        return i

    won = [i for i in await asyncio.gather(*(claim(i) for i in range(50))) if i is not None]
    await store.close()
    print("WON", json.dumps(won))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_two_processes_racing_for_fifty_keys_claim_each_exactly_once(redis_url: str) -> None:
    """Two OS processes create the same 50 keys at once: every key has one owner, no doubles."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", RACE, redis_url, tag, stdout=asyncio.subprocess.PIPE, env=env
        )
        for tag in ("p1", "p2")
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 30) for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    won = {}
    for tag, (out, _) in zip(("p1", "p2"), outputs, strict=True):
        line = next(x for x in out.decode().splitlines() if x.startswith("WON "))
        won[tag] = set(json.loads(line[4:]))

    assert won["p1"] & won["p2"] == set()
    assert won["p1"] | won["p2"] == set(range(50))
    store = RedisStore(redis_url, connect_retries=0, retry_delay_seconds=0)
    await store.start()
    try:
        for i in range(50):
            owner = "p1" if i in won["p1"] else "p2"
            doc = await store.lookup(f"twilio:+1415555{i:04d}")
            assert doc is not None
            assert doc["id"] == f"{owner}-{i}"
        assert await store.client.zcard(keys.created_index(PN, "org-a")) == 50
        assert await store.client.hlen(keys.claims()) == 50
    finally:
        await store.close()


async def test_while_redis_is_down_cached_numbers_route_writes_fail_fast_and_it_recovers(
    redis_factory: Callable[[], KillableRedis],
) -> None:
    """Kill Redis: cached get still answers, create raises StoreUnavailable in < 3 s; restart
    on the same port: the subscription comes back and reset is called again."""
    server = redis_factory()
    store = RedisStore(
        server.url, connect_retries=0, retry_delay_seconds=0, resubscribe_max_delay_seconds=0.2
    )
    await store.start()
    resets: list[float] = []
    store.on_invalidation(lambda _: None, lambda: resets.append(time.monotonic()))
    cache: NumberCache[str] = NumberCache(store, parse=lambda doc: str(doc["id"]))
    try:
        await store.create(PN, number("n1"), "twilio:+1")
        # The write's own pub/sub echo comes after the local invalidation; let it pass.
        await eventually(lambda: cache.invalidations == 2)
        assert await cache.get("twilio:+1") == "n1"

        with capture_logs() as logs:
            server.kill()
            await eventually(lambda: len(resets) == 1)
            assert not store.healthy

            assert await cache.get("twilio:+1") == "n1"
            assert cache.stale_served == 1
            with pytest.raises(StoreUnavailable, match="Redis is unavailable") as caught:
                await cache.get("twilio:+9")  # never cached: nothing to serve
            assert "Traceback" not in caught.value.detail

            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="Redis is unavailable"):
                await store.create(PN, number("n2"), "twilio:+2")
            assert time.monotonic() - started < 3.0
            with pytest.raises(StoreUnavailable):
                await store.ping()

            server.start()
            await eventually(lambda: len(resets) == 2 and store.healthy)
        events = [e["event"] for e in logs]
        assert "redis.subscription_lost" in events
        assert "redis.subscription_restored" in events
        assert events.count("cache.serving_stale") == 1

        # Back to normal: writes work, the stale entry is re-read from Redis (empty now).
        await store.create(PN, number("n2"), "twilio:+2")
        assert await cache.get("twilio:+2") == "n2"
        assert await cache.get("twilio:+1") is None
    finally:
        await store.close()


async def test_a_deep_page_reads_only_its_window_through_the_index(redis_url: str) -> None:
    """Page 100 of 10,000 costs what page 1 does: one script that counts and takes the page
    by rank (no `LIMIT offset`, which walks every skipped entry), one MGET of 100
    documents; no scan of the org's documents."""
    store = RedisStore(redis_url, connect_retries=0, retry_delay_seconds=0)
    await store.start()
    try:
        for batch in range(100):
            await asyncio.gather(
                *(
                    store.create(PN, number(f"n{i:05d}", createdAt=_at(i)), None)
                    for i in range(batch * 100, batch * 100 + 100)
                )
            )
        await store.list(PN, "org-a", ListQuery(limit=1))  # loads the script once
        for offset in (0, 9_900):
            await store.client.config_resetstat()
            page = await store.list(PN, "org-a", ListQuery(offset=offset, limit=100))
            stats = await store.client.info("commandstats")
            calls = {name[len("cmdstat_") :]: v["calls"] for name, v in stats.items()}
            assert page.total == 10_000
            assert [d["id"] for d in page.items][:1] == [f"n{9_999 - offset:05d}"]
            assert len(page.items) == 100
            calls.pop("config|resetstat", None)  # the probe itself
            assert calls == {"evalsha": 1, "zcount": 1, "zrevrange": 1, "mget": 1}
    finally:
        await store.close()


def _at(micros: int) -> str:
    return f"2024-01-01T00:00:00.{micros:06d}+00:00"
