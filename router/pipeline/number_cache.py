"""Each worker's in-process cache of number configurations, kept right by invalidations.

A warm hit is a dict read: no I/O, no await. Misses read the store and are cached, also
when the number is unknown (briefly, so a number created while an invalidation was lost
is still found). When the store says invalidations may have been missed, every entry
turns stale: it is re-read on its next use, and served as it is if the store is down,
so calls for known numbers keep routing through a Redis outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog
from pydantic import ValidationError

from router.manage.secrecy import SecretKeyError
from router.store.interface import (
    KIND_CREDENTIAL,
    Doc,
    Invalidation,
    ListQuery,
    Store,
    StoreUnavailable,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T | None
    doc_id: str | None
    expires_at: float | None  # negative entries only; positive ones live until invalidated
    stale: bool = False


class NumberCache(Generic[T]):
    """Parsed number configurations by lookup key (e.g. `twilio:+14155551234`)."""

    def __init__(
        self,
        store: Store,
        parse: Callable[[Doc], T],
        *,
        negative_ttl_seconds: float = 5.0,
        retry_after_seconds: float = 1.0,
        refresh_timeout_seconds: float = 0.25,
        max_negative_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._parse = parse
        self._negative_ttl = negative_ttl_seconds
        # A stale entry is re-read under this bound: a hung Redis (no reply, no refusal)
        # must not hold a call that the stale entry can answer.
        self._refresh_timeout = refresh_timeout_seconds
        self._max_negatives = max_negative_entries
        self._negatives = 0
        self._retry_after = retry_after_seconds
        self._down_until = 0.0
        self._clock = clock
        self._entries: dict[str, _Entry[T]] = {}
        self._keys_by_id: dict[str, set[str]] = {}
        # Bumped by every invalidation: a lookup that raced one is not cached.
        self._generation = 0
        self._outage_logged = False
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.stale_served = 0
        store.on_invalidation(self.invalidate, self.reset)

    def peek(self, key: str) -> tuple[bool, T | None]:
        """`(True, value)` when a warm entry answers `key` (a hit, counted as `get` counts
        it), else `(False, None)`: then `get` must read the store. No await, no I/O."""
        entry = self._entries.get(key)
        if (
            entry is not None
            and not entry.stale
            and (entry.expires_at is None or entry.expires_at > self._clock())
        ):
            self.hits += 1
            return True, entry.value
        return False, None

    async def get(self, key: str) -> T | None:
        """The parsed configuration claiming `key`, or None for an unknown number."""
        entry = self._entries.get(key)
        if entry is not None and not entry.stale:
            if entry.expires_at is None or entry.expires_at > self._clock():
                self.hits += 1
                return entry.value
            entry.stale = True  # an expired negative is a stale one: re-read, or serve if down
        if entry is not None and self._clock() < self._down_until:
            # The store just failed: answer now rather than wait for another timeout.
            return self._serve_stale(key, entry)
        self.misses += 1
        generation = self._generation
        try:
            if entry is None:
                doc = await self._store.lookup(key)
            else:
                async with asyncio.timeout(self._refresh_timeout):
                    doc = await self._store.lookup(key)
        except (StoreUnavailable, TimeoutError):
            self._down_until = self._clock() + self._retry_after
            if entry is None:
                raise
            return self._serve_stale(key, entry)
        self._down_until = 0.0
        self._outage_logged = False
        value = None if doc is None else self._parse(doc)
        if generation == self._generation:
            self._put(key, value, None if doc is None else str(doc["id"]))
        return value

    async def get_first(self, keys: Sequence[str]) -> T | None:
        """The value the first of `keys` that claims one claims, or None.

        When a later key answers (a number stored under an older form of its key), the
        earlier keys are kept as its entries too, until an invalidation names them or the
        document: a lookup by the newer key is then a hit, not a read of the store each
        time the negative entry for it expires. An invalidation that raced the reads
        leaves them uncached."""
        generation = self._generation
        for index, key in enumerate(keys):
            value = await self.get(key)
            if value is None:
                continue
            entry = self._entries.get(key)
            if generation == self._generation and entry is not None and entry.doc_id:
                for earlier in keys[:index]:
                    self._put(earlier, value, entry.doc_id)
            return value
        return None

    def invalidate(self, invalidation: Invalidation) -> None:
        """Drop the entries for the invalidation's keys and any entry from its document."""
        self._generation += 1
        self.invalidations += 1
        for key in (*invalidation.keys, *self._keys_by_id.pop(invalidation.id, ())):
            self._drop(key)

    def reset(self) -> None:
        """Invalidations may have been missed: every entry is re-read on its next use."""
        self._generation += 1
        for entry in self._entries.values():
            entry.stale = True

    def clear(self) -> None:
        """Forget everything."""
        self._generation += 1
        self._entries.clear()
        self._keys_by_id.clear()
        self._negatives = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def known(self) -> int:
        """How many numbers (not negative entries) the cache could route right now."""
        return len(self._keys_by_id)

    def _serve_stale(self, key: str, entry: _Entry[T]) -> T | None:
        self.stale_served += 1
        if not self._outage_logged:
            self._outage_logged = True
            log.warning("cache.serving_stale", key=key, reason="the store is unavailable")
        return entry.value

    def _put(self, key: str, value: T | None, doc_id: str | None) -> None:
        self._drop(key)
        expires_at = None if doc_id is not None else self._clock() + self._negative_ttl
        if doc_id is None:
            # Unknown numbers come from unauthenticated requests: keep them bounded.
            if self._negatives >= self._max_negatives:
                self._drop_negatives()
            self._negatives += 1
        self._entries[key] = _Entry(value, doc_id, expires_at)
        if doc_id is not None:
            self._keys_by_id.setdefault(doc_id, set()).add(key)

    def _drop_negatives(self) -> None:
        for key in [k for k, e in self._entries.items() if e.doc_id is None]:
            del self._entries[key]
        self._negatives = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry.doc_id is None:
            self._negatives = max(self._negatives - 1, 0)
        if entry is not None and entry.doc_id is not None:
            keys = self._keys_by_id.get(entry.doc_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_id[entry.doc_id]


class CredentialCache(Generic[T]):
    """Each org's credentials, for webhook verification: a warm read is a dict read.

    Dropped per org on a credential invalidation; stale after a reset and served stale
    while the store is down, like `NumberCache`.
    """

    def __init__(
        self,
        store: Store,
        parse: Callable[[Doc], T],
        *,
        timeout_seconds: float = 0.5,
        retry_after_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._parse = parse
        self._timeout = timeout_seconds
        self._retry_after = retry_after_seconds
        self._clock = clock
        self._down_until = 0.0
        self._entries: dict[str, tuple[list[T], bool]] = {}
        self._generation = 0
        store.on_invalidation(self.invalidate, self.reset)

    def peek(self, org_id: str) -> list[T] | None:
        """The org's credentials when a fresh entry holds them (no I/O), else None."""
        entry = self._entries.get(org_id)
        return entry[0] if entry is not None and not entry[1] else None

    async def for_org(self, org_id: str) -> list[T]:
        """The org's credentials (at most 1000, the listing limit).

        Read under a short bound; while the store fails, a stale entry is served (and the
        store is not asked again for `retry_after_seconds`). A credential that cannot be
        read (e.g. a secret under another key) is skipped and logged: it must not take
        the org's other numbers down with it.
        """
        entry = self._entries.get(org_id)
        if entry is not None and not entry[1]:
            return entry[0]
        if entry is not None and self._clock() < self._down_until:
            return entry[0]
        generation = self._generation
        try:
            async with asyncio.timeout(self._timeout):
                page = await self._store.list(KIND_CREDENTIAL, org_id, ListQuery(limit=1000))
        except (StoreUnavailable, TimeoutError) as exc:
            self._down_until = self._clock() + self._retry_after
            if entry is None:
                raise StoreUnavailable(f"credentials unavailable: {type(exc).__name__}") from exc
            log.warning("cache.credentials_stale", org_id=org_id)
            return entry[0]
        self._down_until = 0.0
        values: list[T] = []
        for doc in page.items:
            try:
                values.append(self._parse(doc))
            except (SecretKeyError, ValidationError) as exc:  # skipped, loudly
                log.error(
                    "cache.credential_unreadable",
                    org_id=org_id,
                    credential_id=doc.get("id"),
                    error=type(exc).__name__,
                )
        if generation == self._generation:
            self._entries[org_id] = (values, False)
        return values

    def invalidate(self, invalidation: Invalidation) -> None:
        if invalidation.kind == KIND_CREDENTIAL:
            self._generation += 1
            self._entries.pop(invalidation.org_id, None)

    def reset(self) -> None:
        self._generation += 1
        self._entries = {org: (values, True) for org, (values, _) in self._entries.items()}
