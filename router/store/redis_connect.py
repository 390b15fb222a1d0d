"""`ROUTER_REDIS_URL` to redis-py clients: one Redis, Redis Sentinel or Redis Cluster.

URL forms (docs/redis.md has the long version):

- `redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS),
  `unix://[[user]:password@]/path/to/redis.sock[?db=N]`: one Redis, as redis-py parses them.
- `redis+sentinel://[[user]:password@]host1[:26379],host2[:26379]/service[/db][?...]`,
  `rediss+sentinel://...`: the master of `service`, found through the listed Sentinels.
  The userinfo authenticates to Redis; `sentinel_username` / `sentinel_password` in the
  query authenticate to the Sentinels.
- `redis+cluster://[[user]:password@]host1[:6379],host2[:6379][/][?...]`,
  `rediss+cluster://...`: a Redis Cluster; the hosts are seed nodes (one is enough, more
  survive a seed being down). `require_full_coverage=false` lets the client start while
  some slots have no master (the servers must allow it too).

Query parameters of the Sentinel and Cluster forms: TLS (`ssl_cert_reqs`, `ssl_ca_certs`,
`ssl_certfile`, `ssl_keyfile`, `ssl_check_hostname`) and the ones named above; any other
is refused, so a typo never silently drops a setting.

Every client is configured alike: decoded responses, RESP2, short socket timeouts and no
client-side retries (see `_client_kwargs`).
"""

from __future__ import annotations

import abc
import random
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from router.store import redis_keys as keys

RedisClient = Redis | RedisCluster
"""The command client of any deployment; both run the store's scripts and commands."""

# What a Redis call raises when Redis is unreachable or refuses. The cluster client raises
# RedisClusterException (not a RedisError) when no seed node answers its slot-map query.
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)

STANDALONE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

SENTINEL_DEFAULT_PORT = 26379
REDIS_DEFAULT_PORT = 6379

_TLS_OPTIONS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)
_FALSE = ("0", "false", "no", "off")


class RedisConnection(abc.ABC):
    """One deployment: the client commands go through, and where subscriptions go."""

    client: RedisClient

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise unless the Redis that holds the configuration answers now."""

    @abc.abstractmethod
    async def pubsub(self) -> PubSub:
        """A fresh, not yet subscribed pub/sub object; each call may pick another node."""

    async def subscription_current(self, pubsub: PubSub) -> bool:
        """Whether `pubsub` is still where invalidations arrive (asked about once a second)."""
        return True

    async def aclose(self) -> None:
        """Close every connection this object opened."""
        await self.client.aclose()


class StandaloneConnection(RedisConnection):
    """One Redis (redis://, rediss://, unix://)."""

    def __init__(self, url: str, socket_timeout_seconds: float, max_connections: int) -> None:
        # A burst beyond the pool waits (up to the socket timeout) for a free connection
        # instead of failing at once, as redis-py's default pool would.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout_seconds,
            **_client_kwargs(socket_timeout_seconds),
        )
        self.client: Redis = Redis.from_pool(pool)

    async def ping(self) -> None:
        await self.client.ping()

    async def pubsub(self) -> PubSub:
        return self.client.pubsub()


class SentinelConnection(RedisConnection):
    """The master of a Sentinel-monitored service. Each new connection asks the Sentinels
    where the master is, so after a failover the next connection (commands and the
    re-established subscription alike) goes to the new master.

    A demoted master that is still up keeps accepting writes until Sentinel reconfigures
    it, seconds later, and those writes are then lost. So the store asks once a second
    whether the subscription is still on the master; when the Sentinels name another one,
    every pooled connection is dropped and the subscription moves (`reset` handlers run).
    """

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        service: str,
        *,
        db: int,
        redis_auth: dict[str, Any],
        sentinel_auth: dict[str, Any],
        tls: dict[str, Any],
        socket_timeout_seconds: float,
        max_connections: int,
    ) -> None:
        common = _client_kwargs(socket_timeout_seconds)
        # Sentinels answer plain replies: redis-py parses them undecoded.
        sentinel_kwargs = {**common, **sentinel_auth, **tls, "decode_responses": False}
        self._sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # unannotated before redis-py 8.2
            sentinels, sentinel_kwargs=sentinel_kwargs
        )
        self.service = service
        # What `Sentinel.master_for` builds, with a pool that waits for a free connection.
        self._pool = _BlockingSentinelPool(  # type: ignore[no-untyped-call]  # redis-py: unannotated
            service,
            self._sentinel,
            is_master=True,
            db=db,
            max_connections=max_connections,
            timeout=socket_timeout_seconds,
            **common,
            **redis_auth,
            **tls,
        )
        self.client: Redis = Redis.from_pool(self._pool)

    async def ping(self) -> None:
        await self.client.ping()

    async def pubsub(self) -> PubSub:
        return self.client.pubsub()

    async def subscription_current(self, pubsub: PubSub) -> bool:
        connection = pubsub.connection
        if connection is None:
            return True
        try:
            # Also re-points the pool: idle connections to a former master are closed.
            host, port = await self._pool.get_master_address()
        except REDIS_FAILURES:
            return True  # the Sentinels cannot tell right now: keep what works
        if (str(host), int(port)) == (connection.host, connection.port):
            return True
        # Connections in use too: a write must not land on a master that was replaced.
        await self._pool.disconnect(inuse_connections=True)
        return False

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        finally:
            await self._sentinel.aclose()


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master lookup with the blocking pool's wait for a free connection."""


class ClusterConnection(RedisConnection):
    """A Redis Cluster. Commands follow the slot map; the subscription is a plain
    connection to any one node, since a classic PUBLISH reaches every node of the cluster.
    """

    def __init__(
        self,
        seeds: list[tuple[str, int]],
        *,
        redis_auth: dict[str, Any],
        tls: dict[str, Any],
        require_full_coverage: bool,
        socket_timeout_seconds: float,
        max_connections: int,
    ) -> None:
        common = _client_kwargs(socket_timeout_seconds)
        # The cluster client takes `ssl=True` plus options; per node it makes SSL connections.
        self.client: RedisCluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in seeds],
            require_full_coverage=require_full_coverage,
            # Per node; a burst beyond it fails at once (redis-py has no blocking cluster pool).
            max_connections=max_connections,
            **common,
            **redis_auth,
            **tls,
        )
        self._node_kwargs = {**common, **redis_auth, **tls}
        self._node_clients: dict[str, Redis] = {}
        # Workers start on different nodes, so no one node carries every subscriber.
        self._turn = random.randrange(1 << 16)

    async def ping(self) -> None:
        # The node holding the configuration slot: the one every API write needs.
        await self.client.initialize()
        node = self.client.get_node_from_key(keys.CONFIG_TAG)
        await self.client.ping(target_nodes=node)

    async def pubsub(self) -> PubSub:
        """Pub/sub on the next node in turn: a dead node is skipped on the next attempt."""
        await self.client.initialize()
        nodes = sorted(self.client.get_nodes(), key=lambda n: n.name)
        node = nodes[self._turn % len(nodes)]
        self._turn += 1
        client = self._node_clients.get(node.name)
        if client is None:
            client = Redis(
                host=node.host, port=int(node.port), max_connections=2, **self._node_kwargs
            )
            self._node_clients[node.name] = client
        return client.pubsub()

    async def aclose(self) -> None:
        try:
            for client in self._node_clients.values():
                await client.aclose()
        finally:
            self._node_clients.clear()
            await self.client.aclose()


def open_connection(
    url: str, *, socket_timeout_seconds: float = 2.0, max_connections: int = 100
) -> RedisConnection:
    """The deployment a `ROUTER_REDIS_URL` names (no I/O yet); `ValueError` if malformed."""
    scheme, has_scheme, _ = url.partition("://")
    scheme = scheme.lower()
    if not has_scheme:
        # Not echoed: without a scheme the text may be `user:password@host`.
        raise ValueError("ROUTER_REDIS_URL must start with a scheme, e.g. redis://")
    if scheme in STANDALONE_SCHEMES:
        return StandaloneConnection(url, socket_timeout_seconds, max_connections)
    if scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise ValueError(
            f"ROUTER_REDIS_URL: unsupported scheme {scheme!r}; use one of "
            + ", ".join(f"{s}://" for s in STANDALONE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES)
        )
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    redis_auth = _auth(userinfo)
    tls = _tls(options) if scheme.startswith("rediss+") else {}
    if scheme in SENTINEL_SCHEMES:
        service, db = _service_and_db(parts.path)
        sentinel_auth = {
            name: value
            for name, value in (
                ("username", options.pop("sentinel_username", None)),
                ("password", options.pop("sentinel_password", None)),
            )
            if value
        }
        _refuse_unknown(options)
        return SentinelConnection(
            _hosts(hostlist, SENTINEL_DEFAULT_PORT),
            service,
            db=db,
            redis_auth=redis_auth,
            sentinel_auth=sentinel_auth,
            tls=tls,
            socket_timeout_seconds=socket_timeout_seconds,
            max_connections=max_connections,
        )
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("ROUTER_REDIS_URL: Redis Cluster has database 0 only")
    full_coverage = options.pop("require_full_coverage", "true").lower() not in _FALSE
    _refuse_unknown(options)
    return ClusterConnection(
        _hosts(hostlist, REDIS_DEFAULT_PORT),
        redis_auth=redis_auth,
        tls=tls,
        require_full_coverage=full_coverage,
        socket_timeout_seconds=socket_timeout_seconds,
        max_connections=max_connections,
    )


def _client_kwargs(socket_timeout_seconds: float) -> dict[str, Any]:
    """What every client and pool of the store shares."""
    return {
        "decode_responses": True,
        "socket_timeout": socket_timeout_seconds,
        "socket_connect_timeout": socket_timeout_seconds,
        # No silent client-side retries: a call fails fast (503), a write is never sent
        # twice, and a dropped subscription is noticed by the store, where missed
        # invalidations are handled.
        "retry": Retry(NoBackoff(), 0),
        # RESP2: with RESP3 redis-py 8 turns on maintenance notifications, which skips its
        # check for pooled connections the server has closed (first call fails).
        "protocol": 2,
    }


def _hosts(hostlist: str, default_port: int) -> list[tuple[str, int]]:
    """`h1:p1,h2,[::1]:p3` as (host, port) pairs."""
    hosts: list[tuple[str, int]] = []
    for item in (part.strip() for part in hostlist.split(",")):
        if not item:
            continue
        if item.startswith("["):  # IPv6 literal
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"ROUTER_REDIS_URL: bad port in {item!r}") from None
        if not host or not 0 < port < 65536:
            raise ValueError(f"ROUTER_REDIS_URL: bad host in {item!r}")
        hosts.append((host, port))
    if not hosts:
        raise ValueError("ROUTER_REDIS_URL: no hosts given")
    return hosts


def _auth(userinfo: str) -> dict[str, Any]:
    username, has_password, password = userinfo.partition(":")
    auth: dict[str, Any] = {}
    if username:
        auth["username"] = unquote(username)
    if has_password and password:
        auth["password"] = unquote(password)
    return auth


def _service_and_db(path: str) -> tuple[str, int]:
    segments = [unquote(s) for s in path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ValueError("ROUTER_REDIS_URL: a Sentinel URL names /<service>[/<db>]")
    try:
        db = int(segments[1]) if len(segments) == 2 else 0
    except ValueError:
        raise ValueError("ROUTER_REDIS_URL: the database must be a number") from None
    return segments[0], db


def _tls(options: dict[str, str]) -> dict[str, Any]:
    tls: dict[str, Any] = {"ssl": True}
    for name in _TLS_OPTIONS:
        value = options.pop(name, None)
        if value is None:
            continue
        tls[name] = value.lower() not in _FALSE if name == "ssl_check_hostname" else value
    return tls


def _refuse_unknown(options: dict[str, str]) -> None:
    if options:
        # Names only: a value may be a secret.
        raise ValueError(f"ROUTER_REDIS_URL: unknown parameters {', '.join(sorted(options))}")
