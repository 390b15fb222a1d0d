"""The Redis backend: Lua-scripted atomic writes, sorted-set indexes, pub/sub invalidations.

Every write is one script that checks, claims, stores, indexes and PUBLISHes, so an
acknowledged write has always published its invalidation. The writer also delivers the
invalidation to its own handlers before returning, so a worker reads its own writes.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from router.store import keys
from router.store.base import (
    KIND_PHONE_NUMBER,
    Conflict,
    Doc,
    Invalidation,
    InvalidationHandler,
    ListQuery,
    NotFound,
    Page,
    ResetHandler,
    Store,
    StoreUnavailable,
    to_micros,
)

log = structlog.get_logger(__name__)

_POLL_SECONDS = 1.0
# A silent subscription is PINGed after this long and declared lost after twice as long,
# so a half-open TCP connection does not leave stale caches for minutes.
_KEEPALIVE_SECONDS = 5.0
_RESUBSCRIBE_FIRST_DELAY_SECONDS = 0.05


class RedisStore(Store):
    """The shared store on one Redis (redis://, rediss://, unix://)."""

    def __init__(
        self,
        url: str,
        connect_retries: int,
        retry_delay_seconds: float,
        *,
        socket_timeout_seconds: float = 2.0,
        resubscribe_max_delay_seconds: float = 2.0,
        max_connections: int = 100,
    ) -> None:
        self._safe_url = redact_url(url)
        self._connect_retries = connect_retries
        self._retry_delay = retry_delay_seconds
        self._socket_timeout = socket_timeout_seconds
        self._resubscribe_max_delay = resubscribe_max_delay_seconds
        # A burst beyond the pool waits (up to the socket timeout) for a free connection
        # instead of failing at once, as redis-py's default pool would.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout_seconds,
            decode_responses=True,
            socket_timeout=socket_timeout_seconds,
            socket_connect_timeout=socket_timeout_seconds,
            # No silent client-side retries: a call fails fast (503), a write is never
            # sent twice, and a dropped subscription is noticed here, where missed
            # invalidations are handled.
            retry=Retry(NoBackoff(), 0),
            # RESP2: with RESP3 redis-py 8 turns on maintenance notifications, which skips
            # its check for pooled connections the server has closed (first call fails).
            protocol=2,
        )
        self._client = Redis.from_pool(pool)
        self._create = self._client.register_script(keys.CREATE_SCRIPT)
        self._replace = self._client.register_script(keys.REPLACE_SCRIPT)
        self._delete = self._client.register_script(keys.DELETE_SCRIPT)
        self._subscribers: builtins.list[tuple[InvalidationHandler, ResetHandler]] = []
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = False
        self._command_ok = False

    @property
    def client(self) -> Redis:
        """The store's Redis client (decoded responses), for other Redis-backed records."""
        return self._client

    @property
    def healthy(self) -> bool:
        return self._subscribed and self._command_ok

    async def start(self) -> None:
        attempts = self._connect_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                await self._client.ping()
                break
            except (RedisError, OSError) as exc:
                if attempt == attempts:
                    log.error("redis.connect_failed", url=self._safe_url, error=_reason(exc))
                    raise StoreUnavailable(f"Redis is unavailable: {_reason(exc)}") from exc
                log.warning(
                    "redis.connect_retry",
                    url=self._safe_url,
                    attempt=attempt,
                    attempts=attempts,
                    error=_reason(exc),
                    retry_in_seconds=self._retry_delay,
                )
                await asyncio.sleep(self._retry_delay)
        log.info("redis.connected", url=self._safe_url)
        try:
            pubsub = await self._subscribe()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis is unavailable: {_reason(exc)}") from exc
        self._subscribed = self._command_ok = True
        self._listener = asyncio.create_task(self._listen(pubsub), name="redis-invalidations")
        self._listener.add_done_callback(self._listener_done)

    async def close(self) -> None:
        task, self._listener = self._listener, None
        try:
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        finally:
            self._subscribed = False
            await self._client.aclose()

    async def ping(self) -> None:
        with self._calls():
            await self._client.ping()

    async def create(self, kind: str, doc: Doc, unique_key: str | None) -> None:
        with self._calls():
            result = await self._create(
                keys.script_keys(kind, doc["orgId"], doc["id"]), self._args(kind, doc, unique_key)
            )
        if result[0] == "conflict":
            raise await self._conflict(kind, unique_key or "", result[1])
        if result[0] == "exists":
            # Ids are generated by the service; a collision is a bug, never an overwrite.
            raise Conflict(f"id:{doc['id']}", doc["id"], doc["orgId"])
        self._dispatch(Invalidation(kind, doc["id"], doc["orgId"], _keys_of(unique_key)))

    async def replace(self, kind: str, doc: Doc, unique_key: str | None) -> None:
        with self._calls():
            result = await self._replace(
                keys.script_keys(kind, doc["orgId"], doc["id"]), self._args(kind, doc, unique_key)
            )
        if result[0] == "notfound":
            raise NotFound(f"{kind} {doc['id']} not found")
        if result[0] == "conflict":
            raise await self._conflict(kind, unique_key or "", result[1])
        old_keys = _keys_of(result[1] or None)
        new_keys = tuple(k for k in _keys_of(unique_key) if k not in old_keys)
        self._dispatch(Invalidation(kind, doc["id"], doc["orgId"], old_keys + new_keys))

    async def delete(self, kind: str, org_id: str, doc_id: str) -> Doc | None:
        with self._calls():
            result = await self._delete(
                keys.script_keys(kind, org_id, doc_id),
                [keys.INVALIDATION_CHANNEL, kind, org_id, doc_id],
            )
        if result is None:
            return None
        raw, old_key = result
        self._dispatch(Invalidation(kind, doc_id, org_id, _keys_of(old_key or None)))
        removed: Doc | None = json.loads(raw) if raw else None
        return removed

    async def get(self, kind: str, org_id: str, doc_id: str) -> Doc | None:
        with self._calls():
            raw = await self._client.get(keys.doc(kind, doc_id))
        if raw is None:
            return None
        doc: Doc = json.loads(raw)
        return doc if doc.get("orgId") == org_id else None

    async def lookup(self, unique_key: str) -> Doc | None:
        with self._calls():
            owner = await self._client.hget(keys.claims(), unique_key)
            if owner is None:
                return None
            raw = await self._client.get(keys.doc(KIND_PHONE_NUMBER, _text(owner)))
        if raw is None:
            return None
        doc: Doc = json.loads(raw)
        return doc

    async def list(self, kind: str, org_id: str, query: ListQuery) -> Page:
        low, high = query.created_bounds()
        lo: int | str = "-inf" if low is None else low
        hi: int | str = "+inf" if high is None else high
        created = keys.created_index(kind, org_id)
        updated_low, updated_high = query.updated_bounds()
        with self._calls():
            if query.search is None and updated_low is None and updated_high is None:
                # The plain listing: the index windows it, so page 100 costs what page 1 does.
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.zcount(created, lo, hi)
                    if query.descending:
                        pipe.zrevrangebyscore(created, hi, lo, start=query.offset, num=query.limit)
                    else:
                        pipe.zrangebyscore(created, lo, hi, start=query.offset, num=query.limit)
                    total, ids = await pipe.execute()
            else:
                ids = await self._filtered_ids(kind, org_id, query, lo, hi)
                total = len(ids)
                ids = ids[query.offset : query.offset + query.limit]
            raws = await self._client.mget([keys.doc(kind, i) for i in ids]) if ids else []
        # A document deleted between the index read and MGET is simply left out.
        return Page(items=[json.loads(raw) for raw in raws if raw is not None], total=total)

    async def _filtered_ids(
        self, kind: str, org_id: str, query: ListQuery, lo: int | str, hi: int | str
    ) -> builtins.list[str]:
        """Ids in the createdAt range, in order, that pass the search and updatedAt filters."""
        created = keys.created_index(kind, org_id)
        async with self._client.pipeline(transaction=True) as pipe:
            if query.descending:
                pipe.zrevrangebyscore(created, hi, lo)
            else:
                pipe.zrangebyscore(created, lo, hi)
            if query.search is not None:
                pipe.hgetall(keys.search_index(kind, org_id))
            replies = await pipe.execute()
        ids: builtins.list[str] = replies[0]
        if query.search is not None:
            needle, texts = query.search.lower(), replies[1]
            ids = [i for i in ids if needle in texts.get(i, "")]
        updated_low, updated_high = query.updated_bounds()
        if ids and (updated_low is not None or updated_high is not None):
            scores = await self._client.zmscore(keys.updated_index(kind, org_id), ids)
            ids = [
                i
                for i, score in zip(ids, scores, strict=True)
                if score is not None
                and (updated_low is None or score >= updated_low)
                and (updated_high is None or score <= updated_high)
            ]
        return ids

    def on_invalidation(self, handler: InvalidationHandler, reset: ResetHandler) -> None:
        self._subscribers.append((handler, reset))

    @contextmanager
    def _calls(self) -> Iterator[None]:
        """Translate every Redis failure into `StoreUnavailable`; track health."""
        try:
            yield
        except (RedisError, OSError) as exc:
            if self._command_ok:
                log.warning("redis.unavailable", url=self._safe_url, error=_reason(exc))
            self._command_ok = False
            raise StoreUnavailable(f"Redis is unavailable: {_reason(exc)}") from exc
        self._command_ok = True

    def _args(self, kind: str, doc: Doc, unique_key: str | None) -> builtins.list[str | int]:
        return [
            keys.INVALIDATION_CHANNEL,
            kind,
            doc["orgId"],
            doc["id"],
            json.dumps(doc, separators=(",", ":"), ensure_ascii=False),
            to_micros(doc["createdAt"]),
            to_micros(doc["updatedAt"]),
            self.search_text(kind, doc),
            unique_key or "",
        ]

    async def _conflict(self, kind: str, key: str, owner_id: str) -> Conflict:
        # Read after the script: the owner may be gone by now, the id in the message still helps.
        owner = await self._get_any(kind, owner_id)
        return Conflict(key, owner_id, "" if owner is None else str(owner.get("orgId", "")))

    async def _get_any(self, kind: str, doc_id: str) -> Doc | None:
        """A document by id in whatever org holds it (for conflict messages)."""
        with self._calls():
            raw = await self._client.get(keys.doc(kind, doc_id))
        if raw is None:
            return None
        doc: Doc = json.loads(raw)
        return doc

    async def _subscribe(self) -> PubSub:
        """A pub/sub connection whose SUBSCRIBE the server has confirmed."""
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(keys.INVALIDATION_CHANNEL)
            reply = await pubsub.get_message(timeout=self._socket_timeout)
            if reply is None or reply["type"] != "subscribe":
                raise RedisConnectionError("SUBSCRIBE was not confirmed")
        except BaseException:
            await _close(pubsub)
            raise
        return pubsub

    async def _listen(self, pubsub: PubSub | None) -> None:
        """Deliver invalidations; on a drop: reset, resubscribe with backoff, reset again."""
        delay = _RESUBSCRIBE_FIRST_DELAY_SECONDS
        try:
            while True:
                if pubsub is None:
                    try:
                        pubsub = await self._subscribe()
                    except (RedisError, OSError):
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self._resubscribe_max_delay)
                        continue
                    self._subscribed = self._command_ok = True
                    delay = _RESUBSCRIBE_FIRST_DELAY_SECONDS
                    log.info("redis.subscription_restored", url=self._safe_url)
                    # Invalidations published while we were away are lost: re-read everything.
                    self._reset()
                try:
                    await self._pump(pubsub)
                except (RedisError, OSError) as exc:
                    self._subscribed = False
                    log.warning("redis.subscription_lost", url=self._safe_url, error=_reason(exc))
                    await _close(pubsub)
                    pubsub = None
                    self._reset()
        finally:
            self._subscribed = False
            if pubsub is not None:
                await _close(pubsub)

    async def _pump(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_heard = last_ping = loop.time()
        while True:
            reply = await pubsub.get_message(timeout=_POLL_SECONDS)
            now = loop.time()
            if reply is not None:
                last_heard = now
                if reply["type"] == "message":
                    self._deliver(reply["data"])
            elif now - last_heard > 2 * _KEEPALIVE_SECONDS:
                raise RedisConnectionError("no reply to the subscription's keepalive PING")
            elif now - last_heard > _KEEPALIVE_SECONDS and now - last_ping > _KEEPALIVE_SECONDS:
                await pubsub.ping()
                last_ping = now

    def _deliver(self, data: Any) -> None:
        try:
            raw = json.loads(data)
            invalidation = Invalidation(
                kind=str(raw["kind"]),
                id=str(raw["id"]),
                org_id=str(raw["orgId"]),
                keys=tuple(str(key) for key in raw["keys"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("redis.invalidation_malformed", error=str(exc))
            return
        self._dispatch(invalidation)

    def _dispatch(self, invalidation: Invalidation) -> None:
        for handler, _ in self._subscribers:
            try:
                handler(invalidation)
            except Exception:
                # One faulty subscriber must not starve the others or kill the listener.
                log.exception("store.invalidation_handler_failed", id=invalidation.id)

    def _reset(self) -> None:
        for _, reset in self._subscribers:
            try:
                reset()
            except Exception:
                log.exception("store.reset_handler_failed")

    def _listener_done(self, task: asyncio.Task[None]) -> None:
        self._subscribed = False
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("redis.listener_failed", url=self._safe_url, exc_info=exc)


def _text(value: str | bytes) -> str:
    # The client decodes responses; this only narrows redis-py's declared type.
    return value if isinstance(value, str) else value.decode()


async def _close(pubsub: PubSub) -> None:
    with suppress(RedisError, OSError):
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated


def _keys_of(unique_key: str | None) -> tuple[str, ...]:
    return () if unique_key is None else (unique_key,)


def _reason(exc: BaseException) -> str:
    """A short, single-line reason for logs and 503 messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def redact_url(url: str) -> str:
    """The URL with its password (userinfo or `?password=`) replaced by `***`, for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
        )
    # Rebuilt by hand: urlunsplit would turn unix:///path into unix:/path.
    text = f"{parts.scheme}://{netloc}{parts.path}"
    return text + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
