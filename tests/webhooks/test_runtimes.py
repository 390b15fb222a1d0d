"""Runtimes on Twilio, end to end: the runtime chosen for each call, the callbacks that
say whether it took the call (signed like every webhook, sent in the order Twilio sends
them, and again), failover to the next runtime and then to the failure branch, weights,
sticky callers and health shared by two workers on one Redis."""

from __future__ import annotations

import collections
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from router.pipeline.inbound import NOTE_SECONDS
from router.runtimes.health import MemoryRuntimeHealth, probe_forever
from router.state import INBOUND

from .conftest import (
    NUMBER,
    PUBLIC_URL,
    RUNTIME_URL,
    Answer,
    Logs,
    MakeRouter,
    Router,
    call_sid,
    dialled,
    said,
    verbs,
    voice_form,
)

A_URL = "wss://a.example.com/stream"
B_URL = "wss://b.example.com/stream"
OAI_URI = "sip:proj_x@sip.api.openai.com;transport=tls"
RELAY_URL = "wss://relay.example.com/ws"
FALLBACK = "+14155550142"


def runtimes_file(tmp_path: Path, routes: list[dict[str, Any]]) -> Path:
    path = tmp_path / "runtimes.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "runtimes": [
                    {"name": "a", "kind": "stream", "url": A_URL},
                    {"name": "b", "kind": "stream", "url": B_URL},
                    {"name": "oai", "kind": "sip", "uri": OAI_URI},
                    {"name": "relay", "kind": "conversation-relay", "url": RELAY_URL},
                ],
                "routes": routes,
            }
        )
    )
    return path


# A runtime of weight 0 takes no new calls: only those another runtime did not take.
STANDBY_A = {"name": "a", "weight": 0}
AB_ROUTE = {"match": {"assistantId": "asst-ab"}, "runtimes": [{"name": "a"}, {"name": "b"}]}


async def router_with(
    make_router: MakeRouter, tmp_path: Path, routes: list[dict[str, Any]], **settings: Any
) -> Router:
    return await make_router(runtimes_file=runtimes_file(tmp_path, routes), **settings)


async def number_for(router: Router, assistant: str, **fields: Any) -> dict[str, Any]:
    return await router.create_number(assistantId=assistant, **fields)


def connect_of(root: ET.Element) -> ET.Element:
    assert verbs(root) == ["Connect"], ET.tostring(root)
    return root[0]


def stream_of(root: ET.Element) -> ET.Element:
    connect = connect_of(root)
    assert [child.tag for child in connect] == ["Stream"]
    return connect[0]


def local(url: str) -> str:
    """A callback URL router wrote, as a path and query on the test server."""
    assert url.startswith(PUBLIC_URL), url
    return url.removeprefix(PUBLIC_URL)


def runtime_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["runtime"][0]


async def action(router: Router, url: str, sid: str, **fields: str) -> Answer:
    """The `action` request of `<Connect>` / `<Dial>`, as Twilio sends it, signed."""
    form = voice_form(sid, CallStatus="in-progress") | fields
    return await router.post(form, path=local(url))


async def stream_status(router: Router, url: str, sid: str, event: str) -> Answer:
    """A `<Stream>` status callback: no From or To, as Twilio sends it."""
    form = {
        "AccountSid": voice_form()["AccountSid"],
        "CallSid": sid,
        "StreamSid": "MZ" + "0" * 32,
        "StreamName": "router",
        "StreamEvent": event,
        "Timestamp": "2026-12-07T10:00:00.000Z",
    }
    if event == "stream-error":
        form["StreamError"] = "Stream - WebSocket - Connection Refused"
    return await router.post(form, path=local(url))


def failovers(logs: Logs) -> list[tuple[str, str | None]]:
    return [(e["runtime"], e["to_runtime"]) for e in logs.named("runtime.failover")]


# --- what the call gets first ---------------------------------------------------------------


async def test_the_default_runtime_gets_callbacks_that_name_it(router: Router, logs: Logs) -> None:
    """Without a runtimes file every call goes to ROUTER_RUNTIME_URL, as `default`, with
    the `<Connect>` action and the stream's status callback pointing at router."""
    await number_for(router, "asst-1")
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    connect = connect_of(root)
    stream = stream_of(root)
    assert stream.get("url") == RUNTIME_URL
    assert connect.get("action", "").startswith(f"{PUBLIC_URL}/twilio/connect?")
    assert connect.get("method") == "POST"
    assert stream.get("statusCallback", "").startswith(f"{PUBLIC_URL}/twilio/stream?")
    query = parse_qs(urlsplit(connect.get("action", "")).query)
    assert query == {"runtime": ["default"], "to": [NUMBER]}
    assert logs.one_routed()["runtime"] == "default"


async def test_a_stream_that_starts_and_ends_normally_hangs_up(
    make_router: MakeRouter, tmp_path: Path, logs: Logs
) -> None:
    """stream-started, stream-stopped, then the action: `<Hangup/>`, no fallback, the
    runtime counted healthy."""
    router = await router_with(make_router, tmp_path, [AB_ROUTE])
    await number_for(router, "asst-ab", fallbackDestination={"type": "number", "number": FALLBACK})
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    stream = stream_of(root)
    status_url = stream.get("statusCallback", "")
    assert (await stream_status(router, status_url, sid, "stream-started")).status == 200
    assert (await stream_status(router, status_url, sid, "stream-stopped")).status == 200
    after = (await action(router, connect_of(root).get("action", ""), sid)).root
    assert verbs(after) == ["Hangup"]
    assert failovers(logs) == []
    assert logs.named("runtime.unhealthy") == []


@pytest.mark.parametrize("order", ["error-then-action", "action-first"])
async def test_a_stream_that_never_starts_moves_to_the_next_runtime_then_the_fallback(
    make_router: MakeRouter, tmp_path: Path, logs: Logs, order: str
) -> None:
    """The first runtime's stream errors before it starts: the action connects the next
    runtime of the route, with its own callbacks; when that one fails too, the failure
    branch transfers to `fallbackDestination` with `runtime-unavailable`. The action may
    come before the stream's error callback: the same."""
    router = await router_with(make_router, tmp_path, [AB_ROUTE])
    await number_for(router, "asst-ab", fallbackDestination={"type": "number", "number": FALLBACK})
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    tried = []
    for _ in range(2):
        stream = stream_of(root)
        tried.append(str(stream.get("url")))
        status_url = stream.get("statusCallback", "")
        action_url = connect_of(root).get("action", "")
        assert runtime_of(status_url) == runtime_of(action_url)
        if order == "error-then-action":
            await stream_status(router, status_url, sid, "stream-error")
            root = (await action(router, action_url, sid)).root
        else:
            root = (await action(router, action_url, sid)).root
            await stream_status(router, status_url, sid, "stream-error")
    assert sorted(tried) == [A_URL, B_URL]
    number = dialled(root)
    assert number.tag == "Number" and number.text == FALLBACK
    assert {f[0] for f in failovers(logs)} == {"a", "b"}
    assert failovers(logs)[-1][1] is None
    [last] = [e for e in logs.named("runtime.failover") if e["to_runtime"] is None]
    assert last["ended_reason"] == "runtime-unavailable"
    assert last["route"] == "fallback"


async def test_without_a_fallback_the_caller_hears_the_apology(router: Router, logs: Logs) -> None:
    """The default runtime fails and nothing else is configured: the apology, then hang up
    (never silence)."""
    await number_for(router, "asst-1")
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    after = (await action(router, connect_of(root).get("action", ""), sid)).root
    assert said(after) and verbs(after) == ["Say", "Hangup"]
    assert failovers(logs) == [("default", None)]


async def test_runtime_unavailable_is_an_ending_hook_filter(router: Router, logs: Logs) -> None:
    """A `call.ending` hook filtered on `runtime-unavailable` runs when no runtime took
    the call."""
    hooks = [
        {
            "on": "call.ending",
            "filters": [
                {"type": "oneOf", "key": "call.endedReason", "oneOf": ["runtime-unavailable"]}
            ],
            "do": {"type": "say", "exact": "Our agents are busy, please call back."},
        }
    ]
    await number_for(router, "asst-1", hooks=hooks)
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    after = (await action(router, connect_of(root).get("action", ""), sid)).root
    assert said(after) == ["Our agents are busy, please call back."]


async def test_a_repeated_action_is_one_failure(
    make_router: MakeRouter, tmp_path: Path, logs: Logs
) -> None:
    """Twilio may send the same action twice: the same answer, one failure counted."""
    router = await router_with(make_router, tmp_path, [AB_ROUTE])
    await number_for(router, "asst-ab")
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    url = connect_of(root).get("action", "")
    first = await action(router, url, sid)
    second = await action(router, url, sid)
    assert stream_of(first.root).get("url") == stream_of(second.root).get("url")
    assert len(logs.named("runtime.failover")) == 1  # the same answer, logged once
    states = router_health(router)
    assert states[runtime_of(url)].failures == 1


def router_health(router: Router) -> Any:
    return router.client.app[INBOUND].health.states()


async def test_a_caller_who_hung_up_is_not_a_runtime_failure(router: Router, logs: Logs) -> None:
    await number_for(router, "asst-1")
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    after = await action(router, connect_of(root).get("action", ""), sid, CallStatus="completed")
    assert verbs(after.root) == ["Hangup"]
    assert failovers(logs) == []
    assert router_health(router) == {}


# --- SIP and ConversationRelay runtimes -----------------------------------------------------


async def test_a_sip_runtime_is_dialled_with_the_ids_as_x_headers(
    make_router: MakeRouter, tmp_path: Path
) -> None:
    route = {
        "match": {"assistantId": "asst-oai", "provider": "twilio"},
        "runtimes": [{"name": "oai"}, STANDBY_A],
    }
    router = await router_with(make_router, tmp_path, [route])
    created = await number_for(router, "asst-oai")
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    assert verbs(root) == ["Dial"]
    dial = root[0]
    assert dial.get("action", "").startswith(f"{PUBLIC_URL}/twilio/connect?runtime=oai")
    assert dial.get("timeout") == "15"
    [sip] = list(dial)
    uri, _, headers = (sip.text or "").partition("?")
    assert uri == OAI_URI
    sent = {k: v[0] for k, v in parse_qs(headers).items()}
    assert sent["x-router-call-id"] == sid
    assert sent["x-router-target"] == "assistant"
    assert sent["x-router-target-id"] == "asst-oai"
    assert sent["x-router-phone-number-id"] == created["id"]


@pytest.mark.parametrize(
    ("status", "next_verb"),
    [
        ("completed", "Hangup"),
        ("answered", "Hangup"),
        ("busy", "Connect"),
        ("no-answer", "Connect"),
        ("failed", "Connect"),
    ],
)
async def test_the_sip_legs_outcome_decides(
    make_router: MakeRouter, tmp_path: Path, status: str, next_verb: str
) -> None:
    """`DialCallStatus` completed or answered: the conversation took place, hang up; busy,
    no-answer or failed: the next runtime (here a stream)."""
    route = {
        "match": {"assistantId": "asst-oai", "provider": "twilio"},
        "runtimes": [{"name": "oai"}, STANDBY_A],
    }
    router = await router_with(make_router, tmp_path, [route])
    await number_for(router, "asst-oai")
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    after = (await action(router, root[0].get("action", ""), sid, DialCallStatus=status)).root
    assert verbs(after) == [next_verb]
    if next_verb == "Connect":
        assert stream_of(after).get("url") == A_URL


async def test_conversation_relay_fails_over_on_an_error_before_it_ran(
    make_router: MakeRouter, tmp_path: Path
) -> None:
    route = {
        "match": {"assistantId": "asst-relay", "provider": "twilio"},
        "runtimes": [{"name": "relay"}, STANDBY_A],
    }
    router = await router_with(make_router, tmp_path, [route])
    await number_for(router, "asst-relay")
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    connect = connect_of(root)
    [relay] = list(connect)
    assert relay.tag == "ConversationRelay" and relay.get("url") == RELAY_URL
    params = {p.get("name"): p.get("value") for p in relay}
    assert params["callId"] == sid and params["targetId"] == "asst-relay"
    url = connect.get("action", "")
    ended = await action(router, url, sid, SessionStatus="ended", SessionDuration="42")
    assert verbs(ended.root) == ["Hangup"]
    failed = await action(router, url, call_sid(), ErrorCode="64105", SessionDuration="0")
    assert stream_of(failed.root).get("url") == A_URL


# --- choosing ---------------------------------------------------------------------------------


async def test_weights_split_the_calls(make_router: MakeRouter, tmp_path: Path) -> None:
    """80/20 over 1,000 calls: inside a tolerance far wider than chance (sd 12.6 calls)."""
    route = {
        "match": {"assistantId": "asst-ab"},
        "runtimes": [{"name": "a", "weight": 80}, {"name": "b", "weight": 20}],
    }
    router = await router_with(make_router, tmp_path, [route])
    await number_for(router, "asst-ab")
    counts: collections.Counter[str] = collections.Counter()
    for index in range(1000):
        form = voice_form(From=f"+1415555{index:04d}")
        counts[str(stream_of((await router.voice(form)).root).get("url"))] += 1
    assert 740 <= counts[A_URL] <= 860, counts
    assert counts[A_URL] + counts[B_URL] == 1000


async def test_a_sticky_caller_keeps_its_runtime(make_router: MakeRouter, tmp_path: Path) -> None:
    """`sticky: caller`: each caller's calls all go to one runtime, and callers spread."""
    route = {**AB_ROUTE, "sticky": "caller"}
    router = await router_with(make_router, tmp_path, [route])
    await number_for(router, "asst-ab")
    chosen: dict[str, set[str]] = collections.defaultdict(set)
    for caller in (f"+1415555{n:04d}" for n in range(40)):
        for _ in range(5):
            root = (await router.voice(voice_form(From=caller))).root
            chosen[caller].add(str(stream_of(root).get("url")))
    assert all(len(urls) == 1 for urls in chosen.values())
    assert {next(iter(urls)) for urls in chosen.values()} == {A_URL, B_URL}


async def test_a_route_matches_on_org_and_glob(make_router: MakeRouter, tmp_path: Path) -> None:
    routes = [
        {"match": {"assistantId": "asst-b*", "orgId": "default"}, "runtimes": [{"name": "b"}]},
        {"match": {"orgId": "default"}, "runtimes": [{"name": "a"}]},
    ]
    router = await router_with(make_router, tmp_path, routes)
    await number_for(router, "asst-blue")
    root = (await router.voice()).root
    assert stream_of(root).get("url") == B_URL


# --- health -------------------------------------------------------------------------------


async def test_a_runtime_one_worker_saw_fail_is_skipped_by_another(
    make_router: MakeRouter, tmp_path: Path, redis_url: str, logs: Logs
) -> None:
    """Three calls in a row not taken by `a` on worker 1 mark it down in Redis; worker 2
    sends its new calls to `b`, and says so once (`runtime.unhealthy`)."""
    route = {
        "match": {"assistantId": "asst-ab"},
        "runtimes": [{"name": "a", "weight": 1000}, {"name": "b", "weight": 1}],
    }
    path = runtimes_file(tmp_path, [route])
    one = await make_router(runtimes_file=path, redis_url=redis_url)
    two = await make_router(runtimes_file=path, redis_url=redis_url)
    await number_for(one, "asst-ab")
    failed = 0
    while failed < 3:
        sid = call_sid()
        root = (await one.voice(voice_form(sid))).root
        url = connect_of(root).get("action", "")
        if runtime_of(url) == "a":
            await action(one, url, sid)
            failed += 1
    await two.client.app[INBOUND].health.refresh()
    assert not two.client.app[INBOUND].health.healthy("a")
    urls = {str(stream_of((await two.voice()).root).get("url")) for _ in range(20)}
    assert urls == {B_URL}
    assert [e["runtime"] for e in logs.named("runtime.unhealthy")] == ["a", "a"]


async def test_a_probe_marks_a_runtime_down(aiohttp_server: AiohttpServer) -> None:
    """A `healthUrl` that fails marks the runtime down after three probes; a 2xx then does
    not bring it back (a runtime that answers probes while it refuses calls would flap):
    its trial call does. (The probe loop's pause is the test's, `sleep`.)"""
    answers = [503, 503, 503, 200]
    seen = 0

    async def health(_: web.Request) -> web.Response:
        nonlocal seen
        seen += 1
        return web.Response(status=answers[min(seen, len(answers)) - 1])

    app = web.Application()
    app.router.add_get("/health", health)
    server = await aiohttp_server(app)
    health_state = MemoryRuntimeHealth()
    states: list[bool] = []

    async def pace(_: float) -> None:
        states.append(health_state.healthy("a"))
        if len(states) >= 4:
            raise StopAsyncIteration

    with pytest.raises(StopAsyncIteration):
        await probe_forever(
            health_state, {"a": str(server.make_url("/health"))}, interval=0, sleep=pace
        )
    assert states == [True, True, False, False]  # a passing probe does not mark it up


# --- faults ---------------------------------------------------------------------------------


async def test_a_frozen_redis_delays_a_runtime_callback_by_at_most_its_bound(
    make_router: MakeRouter, tmp_path: Path, redis_factory: Callable[[], Any], logs: Logs
) -> None:
    """Redis stops answering (SIGSTOP) between the call and its stream's callbacks: the
    stream's error is answered within the notes' bound, and the action, told by this
    worker's own note of that error, connects the next runtime, far inside Twilio's 15 s."""
    redis = redis_factory()
    router = await router_with(make_router, tmp_path, [AB_ROUTE], redis_url=redis.url)
    await number_for(router, "asst-ab")
    await router.writes_settled(1)  # or the write's late echo could drop the cached number
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    status_url = stream_of(root).get("statusCallback", "")
    action_url = connect_of(root).get("action", "")
    redis.pause()
    try:
        status = await stream_status(router, status_url, sid, "stream-error")
        assert status.status == 200 and status.seconds < 3
        answer = await action(router, action_url, sid)
        assert answer.seconds < 3 * NOTE_SECONDS + 1
        assert stream_of(answer.root).get("url") in (A_URL, B_URL)
    finally:
        redis.resume()
    assert len(failovers(logs)) == 1


async def test_a_stream_that_breaks_off_after_it_started_moves_the_caller_on(
    make_router: MakeRouter, tmp_path: Path, logs: Logs
) -> None:
    """stream-started, then stream-error (the runtime died mid-conversation), then the
    action: the next runtime, not a hang-up."""
    router = await router_with(make_router, tmp_path, [AB_ROUTE])
    await number_for(router, "asst-ab")
    sid = call_sid()
    root = (await router.voice(voice_form(sid))).root
    status_url = stream_of(root).get("statusCallback", "")
    await stream_status(router, status_url, sid, "stream-started")
    await stream_status(router, status_url, sid, "stream-error")
    after = (await action(router, connect_of(root).get("action", ""), sid)).root
    assert stream_of(after).get("url") != stream_of(root).get("url")
    assert len(failovers(logs)) == 1


async def test_a_runtime_removed_mid_call_is_read_by_the_kind_its_url_names(
    make_router: MakeRouter, tmp_path: Path
) -> None:
    """A `<Dial>` action of a SIP runtime that a restart took out of the file is still read
    as a SIP leg's (`kind=sip` in its URL): completed is a conversation, hang up."""
    route = {
        "match": {"assistantId": "asst-oai", "provider": "twilio"},
        "runtimes": [{"name": "oai"}],
    }
    router = await router_with(make_router, tmp_path, [route])
    await number_for(router, "asst-oai")
    sid = call_sid()
    url = (await router.voice(voice_form(sid))).root[0].get("action", "")
    assert "kind=sip" in url
    (tmp_path / "later").mkdir()
    later = await router_with(make_router, tmp_path / "later", [AB_ROUTE])
    await number_for(later, "asst-oai")
    after = await action(later, url, sid, DialCallStatus="completed")
    assert verbs(after.root) == ["Hangup"]
