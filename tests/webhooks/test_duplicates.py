"""Provider retries: the same CallSid, on any worker, gets the same decision and never a
second assistant-request."""

from __future__ import annotations

import asyncio
import json

import pytest

from .conftest import (
    Customer,
    Logs,
    MakeRouter,
    Reply,
    Router,
    call_sid,
    stream_parameters,
    voice_form,
)

SLOW = Reply(json={"assistantId": "asst-slow"}, delay=0.5)


@pytest.fixture(params=["embedded", "redis"])
async def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings overrides of each store backend."""
    if request.param == "embedded":
        return {}
    return {"redis_url": request.getfixturevalue("redis_url")}


async def test_a_retry_with_the_same_call_sid_replays_the_decision(
    make_router: MakeRouter, backend: dict[str, str], customer: Customer, logs: Logs
) -> None:
    """A retry with the same CallSid gets the same TwiML and sends no second assistant-request;
    its `call.routed` says it was replayed and served from the cache."""
    router = await make_router(**backend)
    customer.reply(Reply(json={"assistantId": "asst-1"}), Reply(json={"assistantId": "other"}))
    await router.create_number(server={"url": customer.url})
    # The create's own invalidation first: arriving after the first call, it would drop
    # the entry that call cached (the second call a miss, not a hit).
    await router.writes_settled(1)
    form = voice_form()
    first = await router.voice(form)
    second = await router.voice(form)
    assert stream_parameters(first.root)["targetId"] == "asst-1"
    assert second.body == first.body
    assert len(customer.assistant_requests) == 1
    one, two = logs.routed()
    assert (one["replayed"], two["replayed"]) == (False, True)
    assert (one["cache_hit"], two["cache_hit"]) == (False, True)
    assert one["call_id"] == two["call_id"] == form["CallSid"]
    # Another CallSid is another call.
    await router.voice()
    assert len(customer.assistant_requests) == 2


async def test_a_failed_decision_is_replayed_too(router: Router, customer: Customer) -> None:
    """A retry after the failure branch gets the same failure answer, not a second try."""
    customer.reply(Reply(status=500), Reply(json={"assistantId": "asst-1"}))
    await router.create_number(server={"url": customer.url})
    form = voice_form()
    first = await router.voice(form)
    second = await router.voice(form)
    assert second.body == first.body
    assert len(customer.assistant_requests) == 1


async def test_a_concurrent_retry_waits_for_the_first_decision(
    make_router: MakeRouter, backend: dict[str, str], customer: Customer, logs: Logs
) -> None:
    """Twice the same CallSid at once while the server takes 0.5 s: identical TwiML, one
    assistant-request, and the second `call.routed` has `replayed: true`."""
    router = await make_router(**backend)
    customer.reply(SLOW)
    await router.create_number(server={"url": customer.url})
    form = voice_form()
    first, second = await asyncio.gather(router.voice(form), router.voice(form))
    assert stream_parameters(first.root)["targetId"] == "asst-slow"
    assert second.body == first.body
    assert len(customer.assistant_requests) == 1
    one, two = logs.routed()
    assert (one["replayed"], two["replayed"]) == (False, True)
    assert one["assistant_request_attempts"] == two["assistant_request_attempts"] == 1


async def test_two_workers_on_one_redis_send_one_assistant_request(
    make_router: MakeRouter, redis_url: str, customer: Customer, logs: Logs
) -> None:
    """The same CallSid at two workers sharing Redis, at once: one assistant-request in all,
    the same TwiML from both, and a retry at either worker afterwards replays it."""
    worker_a = await make_router(redis_url=redis_url)
    worker_b = await make_router(redis_url=redis_url)
    customer.reply(SLOW)
    await worker_a.create_number(server={"url": customer.url})
    form = voice_form()
    first, second = await asyncio.gather(worker_a.voice(form), worker_b.voice(form))
    assert stream_parameters(first.root)["targetId"] == "asst-slow"
    assert second.body == first.body
    assert len(customer.assistant_requests) == 1
    assert sorted(e["replayed"] for e in logs.routed()) == [False, True]
    for worker in (worker_a, worker_b):
        assert (await worker.voice(form)).body == first.body
    assert len(customer.assistant_requests) == 1


async def test_a_transient_assistant_decided_on_one_worker_is_readable_on_another(
    make_router: MakeRouter, redis_url: str, customer: Customer
) -> None:
    """The runtime may read the call record from any worker."""
    worker_a = await make_router(redis_url=redis_url)
    worker_b = await make_router(redis_url=redis_url)
    customer.reply(Reply(json={"assistant": {"name": "Transient"}}))
    await worker_a.create_number(server={"url": customer.url})
    sid = call_sid()
    await worker_a.voice(voice_form(sid))
    status, record = await worker_b.call_record(sid)
    assert status == 200
    assert record["decision"]["outcome"]["config"] == {"assistant": {"name": "Transient"}}


async def test_static_decisions_are_identical_on_every_retry(
    router: Router, customer: Customer
) -> None:
    """Static routes are recomputed, with no I/O, to the same TwiML."""
    await router.create_number(squadId="squad-1")
    form = voice_form()
    answers = [await router.voice(form) for _ in range(3)]
    assert len({a.body for a in answers}) == 1
    assert customer.received == []


async def test_a_call_id_never_replays_another_numbers_decision(
    make_router: MakeRouter, customer: Customer, backend: dict[str, str], logs: Logs
) -> None:
    """Every org signs its own webhooks, so an org could send another org's CallSid for its
    own number: that number is decided afresh, and the other org's decision is neither
    replayed nor overwritten."""
    from .conftest import OTHER_ACCOUNT_SID, OTHER_KEY, OTHER_TOKEN

    router = await make_router(**backend)
    customer.reply(
        Reply(json={"assistantId": "asst-of-default"}),
        Reply(json={"assistantId": "asst-of-other"}),
    )
    await router.create_number(server={"url": customer.url})
    other_number = "+14155550177"
    await router.create_number(
        key=OTHER_KEY,
        number=other_number,
        twilioAccountSid=OTHER_ACCOUNT_SID,
        twilioAuthToken=OTHER_TOKEN,
        server={"url": customer.url},
    )
    sid = call_sid()
    first = await router.voice(voice_form(sid))
    assert stream_parameters(first.root)["targetId"] == "asst-of-default"
    forged = voice_form(sid, To=other_number, Called=other_number, AccountSid=OTHER_ACCOUNT_SID)
    theirs = await router.post(forged, token=OTHER_TOKEN)
    assert stream_parameters(theirs.root)["targetId"] == "asst-of-other"  # decided afresh
    # Records are the org's: theirs is a record of its own, ours was never in its way.
    assert not logs.named("inbound.call_id_of_another_number")
    _, their_record = await router.call_record(sid, key=OTHER_KEY)
    assert "asst-of-other" in json.dumps(their_record["decision"]["outcome"])
    again = await router.voice(voice_form(sid))  # the first number still replays its own
    assert stream_parameters(again.root)["targetId"] == "asst-of-default"
