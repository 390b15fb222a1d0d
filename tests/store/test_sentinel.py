"""The store through Redis Sentinel: the URL form, the store and invalidations through a
real Sentinel, and a failover (writes resume on the new master, subscriptions follow it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from router.store import redis_keys as keys
from router.store.interface import (
    KIND_PHONE_NUMBER,
    Conflict,
    Doc,
    Invalidation,
    ListQuery,
    StoreUnavailable,
)
from router.store.redis_connect import SentinelConnection, open_connection
from router.store.redis_store import RedisStore

from .conftest import LocalSentinel

PN = KIND_PHONE_NUMBER


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


async def eventually(condition: Callable[[], bool], within_seconds: float = 5.0) -> None:
    deadline = time.monotonic() + within_seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def pair(sentinel_url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two started stores through the Sentinel, as two workers would have."""
    stores = [
        RedisStore(
            sentinel_url,
            connect_retries=0,
            retry_delay_seconds=0,
            resubscribe_max_delay_seconds=0.2,
        )
        for _ in range(2)
    ]
    try:
        for store in stores:
            await store.start()
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.close()


async def test_a_sentinel_url_names_sentinels_service_database_and_credentials() -> None:
    """`redis+sentinel://` lists Sentinels (default port 26379), then /service/db; the
    userinfo is Redis's credentials, `sentinel_password` the Sentinels'."""
    connection = open_connection(
        "redis+sentinel://:redis-pw@10.0.0.1,10.0.0.2:26380/main/2?sentinel_password=sentinel-pw"
    )
    try:
        assert isinstance(connection, SentinelConnection)
        assert connection.service == "main"
        pool_kwargs = connection.client.connection_pool.connection_kwargs
        assert (pool_kwargs["db"], pool_kwargs["password"]) == (2, "redis-pw")
        sentinels = connection._sentinel.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
        assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {
            "sentinel-pw"
        }
    finally:
        await connection.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h:26379", "/<service>"),
        ("redis+sentinel://h:26379/main/x", "database must be a number"),
        ("redis+sentinel://h/main?password=hunter2", "unknown parameters password"),
    ],
)
def test_a_malformed_sentinel_url_is_refused(url: str, message: str) -> None:
    """A Sentinel URL without a service, with a bad database or an unknown option fails at
    start-up, naming the problem and no value."""
    with pytest.raises(ValueError, match=message) as caught:
        open_connection(url)
    assert "hunter2" not in str(caught.value)


async def test_no_answering_sentinel_fails_start_up(unused_tcp_port: int) -> None:
    """With no Sentinel to name a master, start-up retries, then raises StoreUnavailable."""
    store = RedisStore(
        f"redis+sentinel://127.0.0.1:{unused_tcp_port}/main",
        connect_retries=1,
        retry_delay_seconds=0,
    )
    try:
        with capture_logs() as logs, pytest.raises(StoreUnavailable, match="No master found"):
            await store.start()
    finally:
        await store.close()
    assert [e["event"] for e in logs] == ["redis.connect_retry", "redis.connect_failed"]
    assert logs[-1]["error"] == (
        "No master found for 'main' (no Sentinel answered, or none names a live master)"
    )


async def test_the_store_works_through_the_sentinel(
    pair: tuple[RedisStore, RedisStore], sentinel: LocalSentinel
) -> None:
    """Create, conflict, list, replace and delete go to the master the Sentinel names."""
    store, _ = pair
    await store.create(PN, number("n1"), "twilio:+1")
    with pytest.raises(Conflict):
        await store.create(PN, number("n2"), "twilio:+1")
    assert (await store.list(PN, "org-a", ListQuery())).total == 1
    await store.replace(PN, number("n1", name="renamed"), "twilio:+2")
    found = await store.lookup("twilio:+2")
    assert found is not None and found["name"] == "renamed"
    with sentinel.current_master().client() as master:
        assert master.hget(keys.claims(), "twilio:+2") == "n1"
    assert await store.delete(PN, "org-a", "n1") is not None
    assert await store.lookup("twilio:+2") is None
    assert store.subscribed_node == sentinel.current_master().name


async def test_a_write_through_one_store_reaches_the_other(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """Invalidations travel between two stores on the Sentinel-managed master."""
    a, b = pair
    received: asyncio.Queue[Invalidation] = asyncio.Queue()
    b.on_invalidation(received.put_nowait, lambda: None)
    await a.create(PN, number("n1"), "twilio:+1")
    invalidation = await asyncio.wait_for(received.get(), 1.0)
    assert (invalidation.id, invalidation.keys) == ("n1", ("twilio:+1",))


async def test_the_sentinel_url_password_is_redacted_in_logs(sentinel: LocalSentinel) -> None:
    """The URL in the store's log lines hides both the Redis and the Sentinel password."""
    url = sentinel.url.replace("://", "://:hunter2@") + "?sentinel_password=hunter3"
    store = RedisStore(url, connect_retries=0, retry_delay_seconds=0)
    try:
        with capture_logs() as logs, pytest.raises(StoreUnavailable):
            # The test Redis has no password: AUTH fails, which is logged.
            await store.start()
    finally:
        await store.close()
    assert logs
    assert "hunter2" not in repr(logs) and "hunter3" not in repr(logs)
    assert any("***" in str(e.get("url")) for e in logs)


async def test_after_a_failover_writes_resume_on_the_new_master_and_subscriptions_follow(
    pair: tuple[RedisStore, RedisStore], sentinel: LocalSentinel
) -> None:
    """SENTINEL FAILOVER with the old master still up: within about a second both stores
    drop their pooled connections and subscriptions, reset their caches, resubscribe on the
    new master; writes land there and reach the other store."""
    a, b = pair
    await a.create(PN, number("n1"), "twilio:+1")
    received: asyncio.Queue[Invalidation] = asyncio.Queue()
    resets: list[float] = []
    b.on_invalidation(received.put_nowait, lambda: resets.append(time.monotonic()))
    old = sentinel.current_master()
    assert a.subscribed_node == b.subscribed_node == old.name
    # Replication is asynchronous: make sure n1 reached the replica before it is promoted.
    assert old.ask("WAIT", "1", "2000") == 1

    with capture_logs() as logs:
        new = await asyncio.to_thread(sentinel.failover)
        await eventually(
            lambda: a.subscribed_node == b.subscribed_node == new.name and len(resets) >= 2
        )
    assert {e["node"] for e in logs if e["event"] == "redis.subscription_restored"} == {new.name}

    # A pooled connection may still fail once while the old master is being demoted.
    for attempt in range(20):
        try:
            await a.create(PN, number("n2"), "twilio:+2")
            break
        except StoreUnavailable:
            assert attempt < 19
            await asyncio.sleep(0.1)
    with new.client() as master:
        assert master.hget(keys.claims(), "twilio:+2") == "n2"
        assert master.hget(keys.claims(), "twilio:+1") == "n1"
    async with asyncio.timeout(1.0):
        while (await received.get()).id != "n2":
            pass
    assert a.healthy and b.healthy
