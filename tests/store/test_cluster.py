"""The store on a real three-master Redis Cluster: the URL form, the store contract, pub/sub
across nodes (and off a dead node), and the worker end to end (API, signed Twilio webhook,
invalidation between two workers, call records spread over slots)."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator

from router.app import create_app
from router.settings import Settings
from router.state import NUMBER_CACHE
from router.store import redis_keys as keys
from router.store.interface import (
    KIND_CREDENTIAL,
    KIND_PHONE_NUMBER,
    Conflict,
    Doc,
    Invalidation,
    ListQuery,
    StoreUnavailable,
    to_micros,
)
from router.store.redis_connect import ClusterConnection, open_connection
from router.store.redis_store import RedisStore, redact_url

from .conftest import LocalCluster

PN = KIND_PHONE_NUMBER
API_KEY = "cluster-test-api-key"
TOKEN = "cluster-test-twilio-auth-token-01"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
NUMBER = "+14155550100"
CALLER = "+14155550123"
PUBLIC_URL = "https://router.example.com"
RUNTIME_URL = "wss://runtime.example.com/stream"


def number(doc_id: str, org: str = "org-a", micros: int = 0, **extra: Any) -> Doc:
    at = f"2024-01-01T00:00:00.{micros:06d}+00:00"
    return {
        "id": doc_id,
        "orgId": org,
        "provider": "twilio",
        "number": NUMBER,
        "createdAt": at,
        "updatedAt": at,
        **extra,
    }


async def eventually(condition: Callable[[], bool], within_seconds: float = 5.0) -> None:
    deadline = time.monotonic() + within_seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def heard(received: asyncio.Queue[Invalidation], doc_id: str) -> None:
    """Wait up to a second for the invalidation of `doc_id`. Earlier ones may come twice:
    after a subscription moves, the new node may still relay a message the old one gave."""
    async with asyncio.timeout(1.0):
        while (await received.get()).id != doc_id:
            pass


@pytest.fixture
async def pair(cluster_url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two started stores on the cluster, as two workers would have."""
    stores = [
        RedisStore(
            cluster_url, connect_retries=0, retry_delay_seconds=0, resubscribe_max_delay_seconds=0.2
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


# --- the URL ----------------------------------------------------------------------------------


async def test_a_cluster_url_names_its_seed_nodes_credentials_and_options() -> None:
    """`redis+cluster://` takes several host[:port] seeds (default port 6379, IPv6 in
    brackets), userinfo credentials and `require_full_coverage`."""
    connection = open_connection(
        "redis+cluster://ops:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002/?require_full_coverage=no"
    )
    try:
        assert isinstance(connection, ClusterConnection)
        client = connection.client
        assert [(n.host, n.port) for n in client.startup_nodes] == [
            ("10.0.0.1", 7000),
            ("10.0.0.2", 6379),
            ("::1", 7002),
        ]
        assert client.connection_kwargs["username"] == "ops"
        assert client.connection_kwargs["password"] == "s@cret"
        assert client.connection_kwargs["protocol"] == 2
        assert client.nodes_manager.require_full_coverage is False
    finally:
        await connection.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h:7000/3", "database 0 only"),
        ("redis+cluster://h:7000?sentinel_password=hunter2&bogus=hunter2", "unknown parameters"),
        ("redis+cluster://h:70x0", "bad port"),
        ("redis+cluster:///", "no hosts"),
        ("redis+cluster://h:7000?ssl_cert_reqs=none", "unknown parameters ssl_cert_reqs"),
        ("memcached://h:11211", "unsupported scheme"),
        ("ops:hunter2@h:7000", "must start with a scheme"),
    ],
)
def test_a_malformed_cluster_url_is_refused_without_echoing_values(url: str, message: str) -> None:
    """Bad URLs fail at start-up with a message naming the problem, never a value (which may
    be a password); TLS options need `rediss+cluster://`."""
    with pytest.raises(ValueError, match=message) as caught:
        open_connection(url)
    assert "hunter2" not in str(caught.value)


def test_multi_host_urls_are_redacted() -> None:
    """Passwords of the Cluster and Sentinel forms never reach a log line."""
    assert redact_url("redis+cluster://ops:hunter2@h1:7000,h2:7001/") == (
        "redis+cluster://ops:***@h1:7000,h2:7001/"
    )
    assert redact_url("rediss+sentinel://:hunter2@s1,s2:26380/main/1?sentinel_password=x") == (
        "rediss+sentinel://:***@s1,s2:26380/main/1?sentinel_password=***"
    )


async def test_an_unreachable_cluster_fails_start_up_after_bounded_retries(
    unused_tcp_port: int,
) -> None:
    """No seed answers: each retry is logged with the redacted URL, then StoreUnavailable
    (the cluster client's own exception type is translated too)."""
    url = f"redis+cluster://:hunter2@127.0.0.1:{unused_tcp_port},127.0.0.1:{unused_tcp_port}"
    store = RedisStore(url, connect_retries=1, retry_delay_seconds=0.01)
    try:
        with capture_logs() as logs, pytest.raises(StoreUnavailable, match="Redis is unavailable"):
            await store.start()
    finally:
        await store.close()
    assert [e["event"] for e in logs] == ["redis.connect_retry", "redis.connect_failed"]
    assert logs[0]["url"].startswith("redis+cluster://:***@127.0.0.1:")
    assert "hunter2" not in repr(logs)
    assert not store.healthy


# --- the store contract -------------------------------------------------------------------------


async def test_create_read_replace_delete_on_a_cluster(
    pair: tuple[RedisStore, RedisStore], cluster: LocalCluster
) -> None:
    """The write scripts run on the cluster; every configuration key lands on the one node
    that owns the `{router}` slot, none elsewhere."""
    store, _ = pair
    await store.create(PN, number("n1", name="one"), "twilio:+1")
    await store.create(PN, number("n2", micros=1), None)
    await store.create(KIND_CREDENTIAL, {**number("c1"), "provider": "telnyx"}, None)

    doc = await store.get(PN, "org-a", "n1")
    assert doc is not None and doc["name"] == "one"
    assert await store.get(PN, "org-b", "n1") is None
    found = await store.lookup("twilio:+1")
    assert found is not None and found["id"] == "n1"

    await store.replace(PN, number("n1", name="moved"), "twilio:+2")
    assert await store.lookup("twilio:+1") is None
    moved = await store.lookup("twilio:+2")
    assert moved is not None and moved["name"] == "moved"

    owner = cluster.node_for(keys.CONFIG_TAG)
    sizes = {node.name: int(str(node.ask("DBSIZE"))) for node in cluster.nodes}
    assert sizes.pop(owner.name) > 0
    assert set(sizes.values()) == {0}

    removed = await store.delete(PN, "org-a", "n1")
    assert removed is not None and removed["id"] == "n1"
    assert await store.lookup("twilio:+2") is None
    assert await store.delete(PN, "org-a", "n1") is None


async def test_a_second_claim_of_a_key_is_a_conflict_naming_the_owner(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """The claim check inside the script holds on a cluster: the second create of a key is
    refused with the owner's id and org, and changes nothing."""
    a, b = pair
    await a.create(PN, number("n1", org="org-a"), "twilio:+1")
    with pytest.raises(Conflict) as caught:
        await b.create(PN, number("n2", org="org-b"), "twilio:+1")
    assert (caught.value.owner_id, caught.value.owner_org_id) == ("n1", "org-a")
    assert await a.get(PN, "org-b", "n2") is None
    assert (await a.list(PN, "org-b", ListQuery())).total == 0


async def test_concurrent_creates_of_one_key_from_two_workers_have_exactly_one_winner(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """Forty creates of one key, twenty from each worker at once: one succeeds, the other
    thirty-nine get Conflict naming it, and the claim points at the winner."""
    a, b = pair

    async def create(store: RedisStore, doc_id: str) -> str | Conflict:
        try:
            await store.create(PN, number(doc_id), "twilio:+1")
        except Conflict as conflict:
            return conflict
        return doc_id

    results = await asyncio.gather(
        *(create(store, f"{tag}-{i}") for i in range(20) for tag, store in (("a", a), ("b", b)))
    )
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert {r.owner_id for r in results if isinstance(r, Conflict)} == set(winners)
    owner = await b.lookup("twilio:+1")
    assert owner is not None and owner["id"] == winners[0]
    assert (await a.list(PN, "org-a", ListQuery())).total == 1


async def test_listing_pages_searches_and_filters_on_a_cluster(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """The index windows pages in createdAt order both ways; search and updatedAt filters
    (the MULTI/EXEC path) work on a cluster too."""
    store, _ = pair
    for i in range(25):
        await store.create(PN, number(f"n{i:02d}", micros=i, name=f"line {i:02d}"), None)
    await store.create(PN, number("other-org", org="org-b"), None)

    pages = [await store.list(PN, "org-a", ListQuery(offset=o, limit=10)) for o in (0, 10, 20)]
    assert [p.total for p in pages] == [25, 25, 25]
    ids = [d["id"] for p in pages for d in p.items]
    assert ids == [f"n{i:02d}" for i in reversed(range(25))]

    oldest = await store.list(PN, "org-a", ListQuery(descending=False, limit=3))
    assert [d["id"] for d in oldest.items] == ["n00", "n01", "n02"]

    found = await store.list(PN, "org-a", ListQuery(search="LINE 1", limit=5))
    assert found.total == 10  # line 10 .. line 19
    assert [d["id"] for d in found.items] == ["n19", "n18", "n17", "n16", "n15"]

    since = to_micros(number("probe", micros=20)["updatedAt"])
    recent = await store.list(PN, "org-a", ListQuery(updated_ge=since, limit=100))
    assert [d["id"] for d in recent.items] == ["n24", "n23", "n22", "n21", "n20"]


# --- pub/sub ------------------------------------------------------------------------------------


async def test_a_write_reaches_the_other_worker_within_a_second(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """A's script PUBLISHes on the `{router}` node; B, subscribed on whichever node, gets it."""
    a, b = pair
    received: asyncio.Queue[Invalidation] = asyncio.Queue()
    b.on_invalidation(received.put_nowait, lambda: None)
    await a.create(PN, number("n1"), "twilio:+1")
    invalidation = await asyncio.wait_for(received.get(), 1.0)
    assert (invalidation.id, invalidation.keys) == ("n1", ("twilio:+1",))
    assert a.healthy and b.healthy


async def test_a_dropped_subscription_moves_to_the_next_node_and_hears_from_every_node(
    pair: tuple[RedisStore, RedisStore], cluster: LocalCluster
) -> None:
    """Each time B's subscription is killed, B resets its caches, resubscribes on the next
    node, resets again and still hears A's writes: after two drops it has listened on all
    three masters."""
    a, b = pair
    received: asyncio.Queue[Invalidation] = asyncio.Queue()
    resets: list[float] = []
    b.on_invalidation(received.put_nowait, lambda: resets.append(time.monotonic()))
    visited = [b.subscribed_node]
    with capture_logs() as logs:
        for drop in range(len(cluster.nodes)):
            if drop:
                previous, expected_resets = b.subscribed_node, 2 * drop
                cluster.node_named(previous).ask("CLIENT", "KILL", "TYPE", "pubsub")
                await eventually(lambda: len(resets) == expected_resets and b.healthy)  # noqa: B023  # awaited within this iteration
                assert b.subscribed_node not in (None, previous)
                visited.append(b.subscribed_node)
            await a.create(PN, number(f"n{drop}"), None)
            await heard(received, f"n{drop}")
    assert set(visited) == {node.name for node in cluster.nodes}
    assert len(visited) == len(cluster.nodes)
    lost = {e["node"] for e in logs if e["event"] == "redis.subscription_lost"}
    assert lost >= set(visited[:2])


async def test_a_subscriber_whose_node_dies_moves_to_a_live_node(
    pair: tuple[RedisStore, RedisStore], cluster: LocalCluster
) -> None:
    """SIGKILL of the node B listens on (not the configuration's node): B resets, moves to
    a live node, hears the next write and is healthy; the node then comes back."""
    a, b = pair
    received: asyncio.Queue[Invalidation] = asyncio.Queue()
    resets: list[float] = []
    b.on_invalidation(received.put_nowait, lambda: resets.append(time.monotonic()))
    config_node = cluster.node_for(keys.CONFIG_TAG)
    if b.subscribed_node == config_node.name:
        # Killing that node would stop writes too: move B along first.
        config_node.ask("CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: len(resets) == 2 and b.healthy)
    victim = cluster.node_named(b.subscribed_node)
    assert victim is not config_node
    resets.clear()

    victim.kill()
    try:
        await eventually(lambda: len(resets) == 2 and b.healthy)
        assert b.subscribed_node not in (None, victim.name)
        await a.create(PN, number("n1"), "twilio:+1")
        await heard(received, "n1")
    finally:
        victim.start()
        cluster.wait_healthy()


# --- the worker end to end ---------------------------------------------------------------------


Client = TestClient[web.Request, web.Application]


def settings(redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        api_key=SecretStr(API_KEY),
        public_url=PUBLIC_URL,
        runtime_url=RUNTIME_URL,
        redis_connect_retries=0,
        redis_retry_delay_seconds=0,
        twilio_budget_seconds=3.0,
    )


async def api(client: Client, method: str, path: str, body: Any, expected: int) -> Any:
    async with client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as response:
        data = await response.json()
        assert response.status == expected, data
        return data


async def create_number(client: Client, **fields: Any) -> dict[str, Any]:
    body = {
        "provider": "twilio",
        "number": NUMBER,
        "twilioAccountSid": ACCOUNT_SID,
        "twilioAuthToken": TOKEN,
        **fields,
    }
    created: dict[str, Any] = await api(client, "POST", "/phone-number", body, 201)
    return created


async def twilio(client: Client, path: str, form: dict[str, str]) -> tuple[int, bytes]:
    """A form POST signed as Twilio signs it, over the public URL."""
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + path, form)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }
    async with client.post(path, data=urlencode(form).encode(), headers=headers) as response:
        return response.status, await response.read()


def voice_form(sid: str) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": "ringing",
        "Called": NUMBER,
        "Caller": CALLER,
        "Direction": "inbound",
        "From": CALLER,
        "To": NUMBER,
    }


def stream_parameters(body: bytes) -> dict[str, str]:
    """The `<Parameter>`s of a `<Response><Connect><Stream>` document (asserting its shape)."""
    root = ET.fromstring(body)  # noqa: S314  # the router's own output
    assert [child.tag for child in root] == ["Connect"]
    stream = root[0][0]
    assert (stream.tag, stream.get("url")) == ("Stream", RUNTIME_URL)
    return {str(p.get("name")): str(p.get("value")) for p in stream}


async def test_a_number_created_through_the_api_answers_a_signed_twilio_call(
    cluster_url: str, aiohttp_client: AiohttpClient
) -> None:
    """On a cluster URL the worker starts, stores a number through the API, lists it, and
    answers a signed /twilio/voice with `<Connect><Stream>` to its assistant."""
    client = await aiohttp_client(create_app(settings(cluster_url)))
    created = await create_number(client, assistantId="asst-cluster")
    listed = await api(client, "GET", "/phone-number", None, 200)
    assert [n["id"] for n in listed] == [created["id"]]

    status, body = await twilio(client, "/twilio/voice", voice_form("CA" + "1" * 32))
    assert status == 200, body
    assert "asst-cluster" in stream_parameters(body).values()


async def test_a_change_through_one_worker_reaches_the_other_within_a_second(
    cluster_url: str, aiohttp_client: AiohttpClient
) -> None:
    """Worker B has the number cached; a PATCH through worker A is seen by B's cache
    within a second."""
    a = await aiohttp_client(create_app(settings(cluster_url)))
    b = await aiohttp_client(create_app(settings(cluster_url)))
    created = await create_number(a, name="before")
    cache = b.app[NUMBER_CACHE]
    key = f"twilio:{ACCOUNT_SID}:{NUMBER}"
    cached = await cache.get(key)
    assert cached is not None and cached.name == "before"

    await api(a, "PATCH", f"/phone-number/{created['id']}", {"name": "after"}, 200)
    deadline = time.monotonic() + 1.0
    while (seen := await cache.get(key)) is None or seen.name != "after":
        assert time.monotonic() < deadline, "worker B still routes the old configuration"
        await asyncio.sleep(0.01)


async def test_call_records_spread_over_slots_are_written_and_read_back(
    cluster_url: str,
    cluster: LocalCluster,
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
) -> None:
    """Calls decided by an assistant-request keep their records under per-call hash tags,
    on several nodes; the runtime reads each back at GET /call/{CallSid}, a retry gets the
    same answer without a second assistant-request, and status callbacks update them."""
    asked: list[str] = []

    async def customer(request: web.Request) -> web.Response:
        message = (await request.json())["message"]
        asked.append(message["call"]["phoneCallProviderId"])
        return web.json_response({"assistantId": "asst-from-server"})

    server_app = web.Application()
    server_app.router.add_post("/assistant-request", customer)
    server = await aiohttp_server(server_app)
    client = await aiohttp_client(create_app(settings(cluster_url)))
    await create_number(client, server={"url": str(server.make_url("/assistant-request"))})

    sids = [f"CA{i:032x}" for i in range(1, 7)]
    for sid in sids:
        status, body = await twilio(client, "/twilio/voice", voice_form(sid))
        assert status == 200, body
        assert "asst-from-server" in stream_parameters(body).values()
    assert asked == sids

    for sid in sids:
        async with client.get(
            f"/call/{sid}", headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response:
            assert response.status == 200
            record = await response.json()
        assert record["callId"] == sid
        assert record["decision"] is not None
    assert len({cluster.node_for(keys.call_decision("default", sid)).name for sid in sids}) > 1

    status, again = await twilio(client, "/twilio/voice", voice_form(sids[0]))
    assert (status, asked) == (200, sids)
    assert "asst-from-server" in stream_parameters(again).values()

    status, _ = await twilio(
        client, "/twilio/status", {**voice_form(sids[1]), "CallStatus": "completed"}
    )
    assert status in (200, 204)
    async with client.get(
        f"/call/{sids[1]}", headers={"Authorization": f"Bearer {API_KEY}"}
    ) as response:
        assert (await response.json())["status"] == "completed"


async def test_a_call_id_with_braces_keeps_its_keys_in_one_slot(
    pair: tuple[RedisStore, RedisStore],
) -> None:
    """A SIP Call-ID may hold `{` and `}`: a call's record, decision and lock still share
    a slot (their tag is a digest of the id), so the multi-key reads and scripts work."""
    from router.pipeline.call_records import CallRecord, RedisCallRecords, StatusUpdate

    store, _ = pair
    records = RedisCallRecords(store.client, ttl_seconds=60)
    for call_id in ("}abc@host", "a{b}c", "{x}", "plain"):
        record = CallRecord(
            call_id=call_id,
            provider="sip",
            org_id="org-a",
            phone_number_id="n1",
            router_call_id="r1",
            from_number="sip:alice@example.com",
            to="sip:bob@example.com",
            decision={"outcome": {"kind": "connect"}},
        )
        assert await records.claim("org-a", call_id, ttl_ms=1000)
        await records.put(record)
        completed = StatusUpdate("completed", final=True, sequence=None, duration_seconds=3)
        updated, changed = await records.update_status(record, completed)
        assert changed and updated.decision == record.decision
        got = await records.get("org-a", call_id)
        assert got is not None and (got.status, got.final) == ("completed", True)
        await records.release("org-a", call_id)
