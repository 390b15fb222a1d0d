"""Twilio must hear back inside the budget, whatever the customer's server does."""

from __future__ import annotations

import asyncio

from .conftest import (
    APOLOGY,
    Customer,
    Logs,
    MakeRouter,
    Reply,
    dialled,
    said,
    spoken_then_hung_up,
    voice_form,
)

BUDGET_SECONDS = 1.5
STALLED = Reply(json={"assistantId": "too-late"}, delay=30.0)


async def test_a_server_that_never_answers_gets_the_fallback_inside_the_budget(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """server.timeoutSeconds is 20 but the budget is 1.5 s: the answer arrives before the
    budget runs out, and it is the failure branch (fallbackDestination)."""
    router = await make_router(twilio_budget_seconds=BUDGET_SECONDS)
    customer.reply(STALLED)
    await router.create_number(
        server={"url": customer.url, "timeoutSeconds": 20},
        fallbackDestination={"type": "number", "number": "+14155550142"},
    )
    answer = await router.voice()
    assert answer.seconds < BUDGET_SECONDS
    assert said(answer.root) == ["Transferring the call now"]
    assert dialled(answer.root).text == "+14155550142"
    event = logs.one_routed()
    assert (event["route"], event["ended_reason"]) == ("fallback", "assistant-request-failed")
    assert event["assistant_request_outcome"] == "timeout"
    assert event["latency_ms"] < BUDGET_SECONDS * 1000
    assert len(customer.assistant_requests) == 1


async def test_retries_never_run_past_the_budget(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """A generous backoff plan against a server that stalls: attempts stop at the budget and
    the apology still arrives in time."""
    router = await make_router(twilio_budget_seconds=BUDGET_SECONDS)
    customer.reply(Reply(status=500, delay=0.3))
    plan = {"type": "fixed", "maxRetries": 10, "baseDelaySeconds": 0.1}
    await router.create_number(
        server={"url": customer.url, "timeoutSeconds": 20, "backoffPlan": plan}
    )
    answer = await router.voice()
    assert answer.seconds < BUDGET_SECONDS
    assert spoken_then_hung_up(answer.root) == APOLOGY
    event = logs.one_routed()
    assert event["ended_reason"] == "assistant-request-failed"
    assert 2 <= event["assistant_request_attempts"] == len(customer.assistant_requests) <= 4


async def test_a_server_slower_than_its_own_timeout_is_a_timeout(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """server.timeoutSeconds (1 s) shorter than the budget: the attempt ends at 1 s."""
    router = await make_router(twilio_budget_seconds=BUDGET_SECONDS * 2)
    customer.reply(STALLED)
    await router.create_number(server={"url": customer.url, "timeoutSeconds": 1})
    answer = await router.voice()
    assert 1.0 <= answer.seconds < 1.5
    assert spoken_then_hung_up(answer.root) == APOLOGY
    assert logs.one_routed()["assistant_request_outcome"] == "timeout"


async def test_a_retry_waiting_on_a_stalled_decision_answers_inside_its_budget(
    make_router: MakeRouter, customer: Customer, logs: Logs
) -> None:
    """The same CallSid twice while the server never answers: both answers arrive inside the
    budget, both are the same failure branch, and only one assistant-request was sent."""
    router = await make_router(twilio_budget_seconds=BUDGET_SECONDS)
    customer.reply(STALLED)
    await router.create_number(server={"url": customer.url, "timeoutSeconds": 20})
    form = voice_form()
    first, second = await asyncio.gather(router.voice(form), router.voice(form))
    assert first.seconds < BUDGET_SECONDS
    assert second.seconds < BUDGET_SECONDS
    assert spoken_then_hung_up(first.root) == APOLOGY
    assert second.body == first.body
    assert len(customer.assistant_requests) == 1
    assert [e["replayed"] for e in logs.routed()] == [False, True]
