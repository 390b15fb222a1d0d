"""Redis goes away mid-service: calls for cached numbers keep routing, inside the budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .conftest import (
    ACCOUNT_SID,
    API_KEY,
    TOKEN,
    Customer,
    Logs,
    MakeRouter,
    Reply,
    call_sid,
    stream_parameters,
    voice_form,
)

BUDGET_SECONDS = 1.5
STATIC_NUMBER = "+14155550100"
SERVER_NUMBER = "+14155550111"


class KillableRedis(Protocol):
    @property
    def url(self) -> str: ...

    def kill(self) -> None: ...


async def test_calls_keep_routing_when_redis_dies(
    make_router: MakeRouter,
    redis_factory: Callable[[], KillableRedis],
    customer: Customer,
    logs: Logs,
) -> None:
    """After a SIGKILL of Redis: a cached static number still gets its Connect; a number
    with a server still gets its assistant-request (uncoordinated) and is connected; no
    500, and every answer inside the budget."""
    redis = redis_factory()
    router = await make_router(redis_url=redis.url, twilio_budget_seconds=BUDGET_SECONDS)
    customer.reply(Reply(json={"assistantId": "asst-live"}))
    await router.create_number(number=STATIC_NUMBER, assistantId="asst-static")
    await router.create_number(number=SERVER_NUMBER, server={"url": customer.url})
    await router.writes_settled(2)  # or a late echo could drop what the warm-up caches
    # Warm the cache the way traffic does.
    for to in (STATIC_NUMBER, SERVER_NUMBER):
        assert (await router.voice(voice_form(To=to, Called=to))).status == 200
    assert len(customer.assistant_requests) == 1

    redis.kill()

    for attempt in range(2):
        static = await router.voice(voice_form(call_sid(), To=STATIC_NUMBER))
        assert static.seconds < BUDGET_SECONDS, attempt
        assert stream_parameters(static.root)["targetId"] == "asst-static"

        dynamic = await router.voice(voice_form(call_sid(), To=SERVER_NUMBER))
        assert dynamic.seconds < BUDGET_SECONDS, attempt
        assert stream_parameters(dynamic.root)["targetId"] == "asst-live"
    assert len(customer.assistant_requests) == 3
    routed = logs.routed()
    assert [e["target"] for e in routed[2:]] == ["asst-static", "asst-live"] * 2
    assert all(e["ended_reason"] is None for e in routed)
    assert logs.named("inbound.records_unavailable")
    assert logs.named("webhook.failed") == []


async def test_a_status_callback_without_redis_is_still_acknowledged(
    make_router: MakeRouter, redis_factory: Callable[[], KillableRedis], logs: Logs
) -> None:
    """Twilio gets its empty `<Response/>` quickly; the lost update is logged."""
    redis = redis_factory()
    router = await make_router(redis_url=redis.url, twilio_budget_seconds=BUDGET_SECONDS)
    await router.create_number(assistantId="asst-1")
    await router.writes_settled(1)
    await router.voice()
    redis.kill()
    answer = await router.status(call_sid(), "completed")
    assert (answer.status, len(answer.root)) == (200, 0)
    assert answer.seconds < BUDGET_SECONDS
    assert logs.named("call.status_not_recorded")


class PausableRedis(KillableRedis, Protocol):
    def pause(self) -> None: ...

    def resume(self) -> None: ...


async def test_a_hung_redis_does_not_reject_cached_numbers(
    make_router: MakeRouter, redis_factory: Callable[[], PausableRedis], logs: Logs
) -> None:
    """Redis stops answering without refusing (SIGSTOP: a frozen host). Once the cache has
    gone stale (as when the subscription is declared lost), a call for a cached number is
    still connected, quickly, from the stale entry: never rejected as unknown."""
    from router.state import NUMBER_CACHE

    redis = redis_factory()
    router = await make_router(redis_url=redis.url, twilio_budget_seconds=BUDGET_SECONDS)
    await router.create_number(number=STATIC_NUMBER, assistantId="asst-static")
    await router.writes_settled(1)
    assert (await router.voice(voice_form(call_sid(), To=STATIC_NUMBER))).status == 200
    redis.pause()
    try:
        router.client.app[NUMBER_CACHE].reset()  # what a lost subscription does
        for attempt in range(3):
            answer = await router.voice(voice_form(call_sid(), To=STATIC_NUMBER))
            assert answer.seconds < 0.6, attempt
            assert stream_parameters(answer.root)["targetId"] == "asst-static"
        assert logs.named("webhook.unknown_number") == []
    finally:
        redis.resume()


async def test_a_transient_assistant_without_its_record_takes_the_failure_branch(
    make_router: MakeRouter, redis_factory: Callable[[], KillableRedis], customer: Customer
) -> None:
    """With Redis gone, a transient `assistant` from the server could not be stored for
    the runtime (which reads it from the call record): rather than connect the caller to
    nothing, the call takes the failure branch (here: fallbackDestination)."""
    from .conftest import dialled

    redis = redis_factory()
    router = await make_router(redis_url=redis.url, twilio_budget_seconds=BUDGET_SECONDS)
    customer.reply(Reply(json={"assistant": {"name": "transient"}}))
    await router.create_number(
        number=SERVER_NUMBER,
        server={"url": customer.url},
        fallbackDestination={"type": "number", "number": "+14155550188", "message": ""},
    )
    await router.writes_settled(1)
    warm = await router.voice(voice_form(call_sid(), To=SERVER_NUMBER, Called=SERVER_NUMBER))
    assert stream_parameters(warm.root)["target"] == "assistant"
    redis.kill()
    answer = await router.voice(voice_form(call_sid(), To=SERVER_NUMBER, Called=SERVER_NUMBER))
    assert answer.seconds < BUDGET_SECONDS
    assert dialled(answer.root).text == "+14155550188"


async def test_a_write_answered_503_while_redis_hung_is_never_applied_later(
    make_router: MakeRouter, redis_factory: Callable[[], PausableRedis], logs: Logs
) -> None:
    """Redis frozen (SIGSTOP) while a number is created, updated and deleted: each answer is
    503 "not applied", and when Redis resumes and runs the queued commands, none of them
    changes anything (they carry a deadline Redis checks); a retry then succeeds."""
    redis = redis_factory()
    router = await make_router(redis_url=redis.url)
    kept = await router.create_number(number=SERVER_NUMBER, assistantId="asst-kept")

    async def api(method: str, path: str, body: Mapping[str, str] | None = None) -> tuple[int, Any]:
        async with router.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response:
            return response.status, await response.json()

    body = {
        "provider": "twilio",
        "number": STATIC_NUMBER,
        "twilioAccountSid": ACCOUNT_SID,
        "twilioAuthToken": TOKEN,
        "assistantId": "asst-new",
    }
    redis.pause()
    try:
        for method, path, payload in (
            ("POST", "/phone-number", body),
            ("PATCH", f"/phone-number/{kept['id']}", {"assistantId": "asst-changed"}),
            ("DELETE", f"/phone-number/{kept['id']}", None),
        ):
            status, answer = await api(method, path, payload)
            assert status == 503, (method, answer)
            assert "not applied" in answer["message"]
    finally:
        redis.resume()
    await asyncio.sleep(0.5)  # Redis runs what was queued while it was frozen

    status, listed = await api("GET", "/phone-number")
    assert status == 200
    assert [(n["number"], n.get("assistantId")) for n in listed] == [(SERVER_NUMBER, "asst-kept")]
    status, created = await api("POST", "/phone-number", body)
    assert status == 201, created


async def test_a_hung_redis_costs_one_lookup_timeout_not_one_per_key(
    make_router: MakeRouter, redis_factory: Callable[[], PausableRedis], logs: Logs
) -> None:
    """A number not in the cache while Redis hangs: its account's key and the number-only
    key numbers stored by older versions claim share one lookup timeout (a third of the
    budget), so the reject leaves well inside the budget and the store is asked once."""
    redis = redis_factory()
    router = await make_router(redis_url=redis.url, twilio_budget_seconds=BUDGET_SECONDS)
    redis.pause()
    try:
        answer = await router.voice(voice_form(call_sid(), To=SERVER_NUMBER))
    finally:
        redis.resume()
    assert answer.status == 200 and b"<Reject/>" in answer.body
    assert answer.seconds < BUDGET_SECONDS / 3 + 0.3
    assert len(logs.named("webhook.lookup_failed")) == 1
