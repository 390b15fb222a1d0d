"""The per-worker number cache over the real embedded store (thin subclasses count calls)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from router.pipeline.number_cache import NumberCache
from router.store.embedded import EmbeddedStore
from router.store.interface import (
    KIND_PHONE_NUMBER,
    Doc,
    Invalidation,
    InvalidationHandler,
    ResetHandler,
    StoreUnavailable,
)

PN = KIND_PHONE_NUMBER
KEY = "twilio:+14155550100"


class CountingStore(EmbeddedStore):
    """The real embedded store, counting lookups; it can be made to fail them."""

    lookups = 0
    failing = False

    async def lookup(self, unique_key: str) -> Doc | None:
        self.lookups += 1
        if self.failing:
            raise StoreUnavailable("Redis is unavailable: test outage")
        return await super().lookup(unique_key)


class DeafStore(CountingStore):
    """Never tells its subscribers anything: every invalidation is 'lost'."""

    def on_invalidation(self, handler: InvalidationHandler, reset: ResetHandler) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def number(doc_id: str = "n1", **extra: Any) -> Doc:
    return {
        "id": doc_id,
        "orgId": "org-a",
        "provider": "twilio",
        "number": "+14155550100",
        "createdAt": "2024-01-01T00:00:00+00:00",
        "updatedAt": "2024-01-01T00:00:00+00:00",
        **extra,
    }


def name_of(doc: Doc) -> str:
    return str(doc.get("name"))


@pytest.fixture
async def counting(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore(tmp_path / "data")
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def deaf(tmp_path: Path) -> AsyncIterator[DeafStore]:
    store = DeafStore(tmp_path / "data")
    await store.start()
    yield store
    await store.close()


async def test_a_warm_hit_touches_no_store_and_never_suspends(counting: CountingStore) -> None:
    """The second get of a key is served from memory: no lookup, and the coroutine finishes
    on its first step (no await on the hit path)."""
    await counting.create(PN, number(name="desk"), KEY)
    cache: NumberCache[str] = NumberCache(counting, parse=name_of)
    assert await cache.get(KEY) == "desk"

    coroutine = cache.get(KEY)
    with pytest.raises(StopIteration) as finished:
        coroutine.send(None)
    assert finished.value.value == "desk"
    assert counting.lookups == 1
    assert (cache.hits, cache.misses) == (1, 1)


async def test_a_write_invalidates_by_key_and_by_document_id(counting: CountingStore) -> None:
    """Replacing a number drops its cached entry; moving it to a new key also drops the old."""
    await counting.create(PN, number(name="v1"), KEY)
    cache: NumberCache[str] = NumberCache(counting, parse=name_of)
    assert await cache.get(KEY) == "v1"

    await counting.replace(PN, number(name="v2"), KEY)
    assert await cache.get(KEY) == "v2"
    await counting.replace(PN, number(name="v3"), "twilio:+2")
    assert await cache.get(KEY) is None
    assert await cache.get("twilio:+2") == "v3"
    assert cache.invalidations == 2


async def test_an_invalidation_naming_only_the_id_drops_every_key_of_that_document(
    counting: CountingStore,
) -> None:
    """Entries are also tracked by document id, whatever keys the message lists."""
    await counting.create(PN, number(name="v1"), KEY)
    cache: NumberCache[str] = NumberCache(counting, parse=name_of)
    await cache.get(KEY)
    cache.invalidate(Invalidation(PN, "n1", "org-a"))
    assert len(cache) == 0


async def test_unknown_numbers_are_cached_briefly(deaf: DeafStore) -> None:
    """A miss is cached as None, then re-read after the negative TTL, so a number created
    while its invalidation was lost is still found."""
    clock = Clock()
    cache: NumberCache[str] = NumberCache(deaf, parse=name_of, negative_ttl_seconds=5, clock=clock)
    assert await cache.get(KEY) is None
    await deaf.create(PN, number(name="new"), KEY)  # the cache is not told

    clock.now += 4.9
    assert await cache.get(KEY) is None
    assert deaf.lookups == 1
    clock.now += 0.2
    assert await cache.get(KEY) == "new"
    assert deaf.lookups == 2


async def test_found_numbers_have_no_ttl(deaf: DeafStore) -> None:
    """Positive entries stay until invalidated, however much time passes."""
    clock = Clock()
    await deaf.create(PN, number(name="desk"), KEY)
    cache: NumberCache[str] = NumberCache(deaf, parse=name_of, clock=clock)
    await cache.get(KEY)
    clock.now += 86_400
    assert await cache.get(KEY) == "desk"
    assert deaf.lookups == 1


async def test_reset_makes_entries_stale_and_the_next_get_rereads(deaf: DeafStore) -> None:
    """After reset (invalidations may be lost) a cached number is read again from the store."""
    await deaf.create(PN, number(name="v1"), KEY)
    cache: NumberCache[str] = NumberCache(deaf, parse=name_of)
    assert await cache.get(KEY) == "v1"
    await deaf.replace(PN, number(name="v2"), KEY)  # invalidation lost
    assert await cache.get(KEY) == "v1"

    cache.reset()

    assert await cache.get(KEY) == "v2"
    assert await cache.get(KEY) == "v2"
    assert deaf.lookups == 2


async def test_stale_entries_are_served_while_the_store_is_down(counting: CountingStore) -> None:
    """Stale entries answer when the store raises StoreUnavailable (logged once per outage);
    the store is not asked again for a second; a never-cached key still raises."""
    clock = Clock()
    await counting.create(PN, number(name="desk"), KEY)
    cache: NumberCache[str] = NumberCache(counting, parse=name_of, clock=clock)
    assert await cache.get(KEY) == "desk"
    cache.reset()
    counting.failing = True

    with capture_logs() as logs:
        assert await cache.get(KEY) == "desk"
        assert await cache.get(KEY) == "desk"
        with pytest.raises(StoreUnavailable):
            await cache.get("twilio:+19999999999")
    assert cache.stale_served == 2
    assert counting.lookups == 3  # warm-up, first stale read, the uncached key
    assert [e["event"] for e in logs] == ["cache.serving_stale"]

    clock.now += 1.5
    counting.failing = False
    assert await cache.get(KEY) == "desk"
    assert counting.lookups == 4
    assert await cache.get(KEY) == "desk"
    assert counting.lookups == 4  # fresh again


async def test_a_lookup_racing_an_invalidation_is_not_cached(counting: CountingStore) -> None:
    """A value read before an invalidation that arrived mid-lookup is returned, not kept."""
    await counting.create(PN, number(name="v1"), KEY)
    cache: NumberCache[str] = NumberCache(counting, parse=name_of)
    release = asyncio.Event()
    original = counting.lookup

    async def slow_lookup(unique_key: str) -> Doc | None:
        doc = await original(unique_key)
        await release.wait()
        return doc

    counting.lookup = slow_lookup  # type: ignore[method-assign]
    pending = asyncio.create_task(cache.get(KEY))
    await asyncio.sleep(0)
    cache.invalidate(Invalidation(PN, "n1", "org-a", (KEY,)))
    release.set()
    assert await pending == "v1"
    assert len(cache) == 0


async def test_clear_forgets_everything(counting: CountingStore) -> None:
    """clear() empties the cache; the next get reads the store."""
    await counting.create(PN, number(name="desk"), KEY)
    cache: NumberCache[str] = NumberCache(counting, parse=name_of)
    await cache.get(KEY)
    cache.clear()
    assert len(cache) == 0
    await cache.get(KEY)
    assert counting.lookups == 2


ACCOUNT_KEY = "twilio:AC1:+14155550100"


async def test_a_number_found_under_its_older_key_is_a_hit_by_the_newer_one(
    counting: CountingStore,
) -> None:
    """A number stored under the number-only key, looked up by its account key first: once
    found, the account key answers from memory, long after a negative entry would have
    expired, until an invalidation names the document."""
    clock = Clock()
    await counting.create(PN, number(name="old-style"), KEY)
    cache: NumberCache[str] = NumberCache(
        counting, parse=name_of, negative_ttl_seconds=5, clock=clock
    )
    assert await cache.get_first([ACCOUNT_KEY, KEY]) == "old-style"
    assert counting.lookups == 2  # the account key (absent), then the older key

    clock.now += 3600
    assert cache.peek(ACCOUNT_KEY) == (True, "old-style")
    assert await cache.get_first([ACCOUNT_KEY, KEY]) == "old-style"
    assert counting.lookups == 2

    # The number moves to its account key (its next update): both entries go.
    await counting.replace(PN, number(name="moved"), ACCOUNT_KEY)
    assert cache.peek(ACCOUNT_KEY) == (False, None)
    assert await cache.get_first([ACCOUNT_KEY, KEY]) == "moved"


async def test_a_newer_key_created_later_is_found_first(counting: CountingStore) -> None:
    """Another document created under the account key (its invalidation names the key)
    replaces what the older key answered for it."""
    await counting.create(PN, number(name="old-style"), KEY)
    cache: NumberCache[str] = NumberCache(counting, parse=name_of)
    assert await cache.get_first([ACCOUNT_KEY, KEY]) == "old-style"
    await counting.create(PN, number("n2", name="account"), ACCOUNT_KEY)
    assert await cache.get_first([ACCOUNT_KEY, KEY]) == "account"


async def test_none_of_the_keys_is_none_and_cached_briefly(counting: CountingStore) -> None:
    cache: NumberCache[str] = NumberCache(counting, parse=name_of)
    assert await cache.get_first([ACCOUNT_KEY, KEY]) is None
    assert await cache.get_first([ACCOUNT_KEY, KEY]) is None
    assert counting.lookups == 2
