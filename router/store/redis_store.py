"""The Redis backend: Lua-scripted atomic writes, sorted-set indexes, pub/sub invalidations.

Every write is one script that checks, claims, stores, indexes and PUBLISHes, so an
acknowledged write has always published its invalidation. The writer also delivers the
invalidation to its own handlers before returning, so a worker reads its own writes.

One Redis, Sentinel and Cluster are all reached through `ROUTER_REDIS_URL` (the forms are
in `router.store.redis_connect` and docs/redis.md). On a Cluster every configuration key carries
the `{router}` hash tag, so each script runs on one slot; the subscription is a plain
connection to one node (a classic PUBLISH reaches every node) and moves to another node
when it drops. With Sentinel the subscription follows the master after a failover. In
every case a dropped subscription calls the `reset` handlers, before and after it is back.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import structlog
from redis.asyncio.client import PubSub
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import ConnectionError as RedisConnectionError

from router.store import redis_keys as keys
from router.store.interface import (
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
from router.store.redis_connect import REDIS_FAILURES, RedisClient, open_connection

log = structlog.get_logger(__name__)

_POLL_SECONDS = 1.0
# A silent subscription is PINGed after this long and declared lost after twice as long,
# so a half-open TCP connection does not leave stale caches for minutes.
_KEEPALIVE_SECONDS = 5.0
_RESUBSCRIBE_FIRST_DELAY_SECONDS = 0.05
# How often the subscription asks whether it is still where invalidations arrive (with
# Sentinel: on the current master). A no-op for one Redis and for a Cluster.
_TOPOLOGY_CHECK_SECONDS = 1.0


class RedisStore(Store):
    """The shared store on Redis: one server, a Sentinel-managed master, or a Cluster."""

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
        # Short timeouts, no client-side retries, RESP2: see `redis_connect._client_kwargs`.
        self._connection = open_connection(
            url, socket_timeout_seconds=socket_timeout_seconds, max_connections=max_connections
        )
        self._client = self._connection.client
        self._create = self._client.register_script(keys.CREATE_SCRIPT)
        self._replace = self._client.register_script(keys.REPLACE_SCRIPT)
        self._delete = self._client.register_script(keys.DELETE_SCRIPT)
        self._list_page = self._client.register_script(keys.LIST_SCRIPT)
        self._subscribers: builtins.list[tuple[InvalidationHandler, ResetHandler]] = []
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = False
        self._subscribed_node: str | None = None
        self._command_ok = False

    @property
    def client(self) -> RedisClient:
        """The store's Redis client (decoded responses), for other Redis-backed records.

        On a Cluster it routes by key slot: keys of one command must share a hash tag."""
        return self._client

    @property
    def healthy(self) -> bool:
        return self._subscribed and self._command_ok

    @property
    def subscribed_node(self) -> str | None:
        """`host:port` of the server the invalidation subscription is on, None while down."""
        return self._subscribed_node if self._subscribed else None

    async def start(self) -> None:
        attempts = self._connect_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                await self._connection.ping()
                break
            except REDIS_FAILURES as exc:
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
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"Redis is unavailable: {_reason(exc)}") from exc
        self._subscribed = self._command_ok = True
        self._subscribed_node = _where(pubsub)
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
            await self._connection.aclose()

    async def ping(self) -> None:
        with self._calls():
            await self._connection.ping()

    async def create(self, kind: str, doc: Doc, unique_key: str | None) -> None:
        with self._calls():
            result = await self._create(
                keys.script_keys(kind, doc["orgId"], doc["id"]), self._args(kind, doc, unique_key)
            )
        if result[0] == "late":
            raise self._late()
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
        if result[0] == "late":
            raise self._late()
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
                [keys.INVALIDATION_CHANNEL, kind, org_id, doc_id, self._deadline_ms()],
            )
        if result is None:
            return None
        if result[0] == "late":
            raise self._late()
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
                # The plain listing: windowed by rank in the index (keys.LIST_SCRIPT).
                total, ids = await self._list_page(
                    keys=[created],
                    args=[
                        str(lo),
                        str(hi),
                        query.offset,
                        query.limit,
                        "1" if query.descending else "0",
                    ],
                )
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
                # Not `pipe.hgetall`: redis-py 8's cluster transaction hands HGETALL's reply
                # callback a `keys` argument it does not take (TypeError); a raw command
                # carries no such argument and is parsed alike on both clients.
                pipe.execute_command("HGETALL", keys.search_index(kind, org_id))
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
        except REDIS_FAILURES as exc:
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
            self._deadline_ms(),
        ]

    def _deadline_ms(self) -> int:
        """When a write sent now must no longer be applied: before this client stops
        waiting for its answer (`keys.WRITE_DEADLINE_MARGIN_SECONDS`)."""
        margin = min(keys.WRITE_DEADLINE_MARGIN_SECONDS, self._socket_timeout / 2)
        return int((time.time() + self._socket_timeout - margin) * 1000)

    def _late(self) -> StoreUnavailable:
        log.warning("redis.write_late", url=self._safe_url)
        return StoreUnavailable("Redis is unavailable: it ran the write after its deadline")

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
        pubsub = await self._connection.pubsub()
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
                    except REDIS_FAILURES:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self._resubscribe_max_delay)
                        continue
                    self._subscribed_node = _where(pubsub)
                    self._subscribed = self._command_ok = True
                    delay = _RESUBSCRIBE_FIRST_DELAY_SECONDS
                    log.info("redis.subscription_restored", url=self._safe_url, node=_where(pubsub))
                    # Invalidations published while we were away are lost: re-read everything.
                    self._reset()
                try:
                    await self._pump(pubsub)
                except REDIS_FAILURES as exc:
                    self._subscribed = False
                    log.warning(
                        "redis.subscription_lost",
                        url=self._safe_url,
                        node=_where(pubsub),
                        error=_reason(exc),
                    )
                    await _close(pubsub)
                    pubsub = None
                    self._reset()
        finally:
            self._subscribed = False
            if pubsub is not None:
                await _close(pubsub)

    async def _pump(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_heard = last_ping = last_check = loop.time()
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
            if now - last_check > _TOPOLOGY_CHECK_SECONDS:
                last_check = now
                if not await self._connection.subscription_current(pubsub):
                    raise RedisConnectionError("the subscription's server is no longer the master")

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
    with suppress(*REDIS_FAILURES):
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # unannotated before redis-py 8.2


def _where(pubsub: PubSub) -> str | None:
    """`host:port` (or socket path) of the subscription's connection, for logs."""
    connection = pubsub.connection
    if connection is None:
        return None
    host, port = getattr(connection, "host", None), getattr(connection, "port", None)
    return f"{host}:{port}" if host else getattr(connection, "path", None)


def _keys_of(unique_key: str | None) -> tuple[str, ...]:
    return () if unique_key is None else (unique_key,)


def _reason(exc: BaseException) -> str:
    """A short, single-line reason for logs and 503 messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MasterNotFoundError):
        # redis-py appends the repr of every Sentinel client: long, and no help to a reader.
        text = text.split(" : ", 1)[0] + " (no Sentinel answered, or none names a live master)"
    return text[:200]


def redact_url(url: str) -> str:
    """The URL with its passwords (userinfo, `?password=`, `?sentinel_password=`) replaced by
    `***`, for logs. Works on the multi-host Sentinel and Cluster forms too."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if "password" in k.lower() else v) for k, v in pairs], safe="*"
        )
    # Rebuilt by hand: urlunsplit would turn unix:///path into unix:/path.
    text = f"{parts.scheme}://{netloc}{parts.path}"
    return text + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
