"""Concurrency caps (SPEC §12) over real HTTP: a number's and an org's `maxConcurrentCalls`
held across two workers on one Redis and on the embedded store, slots given back by the
provider's final status, a retried webhook taking no second slot, and slots that expire
on their own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from router.pipeline.admission import MemoryAdmission, RedisAdmission
from router.settings import OrgConfig
from router.state import METRICS
from router.store.redis_connect import open_connection

from .conftest import (
    API_KEY,
    APOLOGY,
    OTHER_KEY,
    OTHER_ORG,
    Customer,
    Logs,
    MakeRouter,
    Router,
    call_sid,
    dialled,
    spoken_then_hung_up,
    stream_parameters,
    voice_form,
)

OVERFLOW = "+14155550177"


def overflowed(root: Any) -> bool:
    noun = dialled(root)
    return noun.tag == "Number" and noun.text == OVERFLOW


async def capped_number(router: Router, cap: int, **fields: Any) -> dict[str, Any]:
    return await router.create_number(
        assistantId="asst-1",
        maxConcurrentCalls=cap,
        overflowDestination={"type": "number", "number": OVERFLOW},
        **fields,
    )


def slots_in_use(router: Router, scope: str, ident: str) -> float:
    """The gauge's value, read through the registry as a scrape reads it."""
    registry = router.client.app[METRICS].registry
    value = registry.get_sample_value("router_admission_slots", {"scope": scope, "id": ident})
    return float(value or 0)


@pytest.fixture(params=["embedded", "redis"])
async def workers(request: pytest.FixtureRequest, make_router: MakeRouter) -> list[Router]:
    """Two workers on one Redis, or one worker on the embedded store (twice in the list)."""
    if request.param == "embedded":
        one = await make_router()
        return [one, one]
    url = request.getfixturevalue("redis_url")
    return [await make_router(redis_url=url), await make_router(redis_url=url)]


async def test_the_cap_holds_across_workers_and_a_final_status_frees_a_slot(
    workers: list[Router], logs: Logs
) -> None:
    """Cap 2: two calls (one per worker) are connected, the third overflows on either
    worker; a `completed` status for the first gives its slot back to the next call."""
    one, two = workers
    number = await capped_number(one, 2)
    await one.writes_settled(1)
    first, second = call_sid(), call_sid()
    assert stream_parameters((await one.voice(voice_form(first))).root)["callId"] == first
    assert stream_parameters((await two.voice(voice_form(second))).root)["callId"] == second
    for router in (one, two):
        assert overflowed((await router.voice(voice_form(call_sid()))).root)
    routed = [e for e in logs.routed() if e["route"] == "overflow"]
    assert len(routed) == 2
    assert {e["ended_reason"] for e in routed} == {"max-concurrent-calls-reached"}
    assert [e["scope"] for e in logs.named("call.overflow")] == ["number", "number"]

    assert (await two.status(first, "completed", CallDuration="30")).status == 200
    third = call_sid()
    assert stream_parameters((await one.voice(voice_form(third))).root)["callId"] == third
    assert slots_in_use(one, "number", number["id"]) == 2


async def test_a_retried_webhook_takes_no_second_slot(workers: list[Router]) -> None:
    """The same CallSid again (a provider retry, on either worker) keeps its one slot."""
    one, two = workers
    await capped_number(one, 2)
    await one.writes_settled(1)
    sid = call_sid()
    for router in (one, two, one):
        assert stream_parameters((await router.voice(voice_form(sid))).root)["callId"] == sid
    other = call_sid()
    assert stream_parameters((await two.voice(voice_form(other))).root)["callId"] == other
    assert overflowed((await one.voice(voice_form(call_sid()))).root)


async def test_without_an_overflow_destination_the_caller_hears_the_apology(
    router: Router,
) -> None:
    await router.create_number(assistantId="asst-1", maxConcurrentCalls=1)
    await router.voice(voice_form(call_sid()))
    assert spoken_then_hung_up((await router.voice(voice_form(call_sid()))).root) == APOLOGY


async def test_an_org_cap_counts_every_number_of_the_org(
    make_router: MakeRouter, logs: Logs
) -> None:
    """The org `other` takes one call at once across its two numbers; `default` is not
    counted with it."""
    router = await make_router(
        orgs=[OrgConfig(id=OTHER_ORG, apiKeys=[SecretStr(OTHER_KEY)], maxConcurrentCalls=1)]
    )
    await router.create_number(
        key=OTHER_KEY,
        number="+14155550101",
        assistantId="asst-a",
        overflowDestination={"type": "number", "number": OVERFLOW},
    )
    await router.create_number(key=OTHER_KEY, number="+14155550102", assistantId="asst-b")
    await router.create_number(key=API_KEY, number="+14155550103", assistantId="asst-c")
    to = {n: {"To": n, "Called": n} for n in ("+14155550101", "+14155550102", "+14155550103")}
    assert (await router.voice(voice_form(**to["+14155550101"]))).root[0].tag == "Connect"
    answer = (await router.voice(voice_form(**to["+14155550102"]))).root
    assert spoken_then_hung_up(answer) == APOLOGY  # its own number has no overflow
    [overflow] = logs.named("call.overflow")
    assert (overflow["scope"], overflow["max_concurrent_calls"]) == ("org", 1)
    assert (await router.voice(voice_form(**to["+14155550103"]))).root[0].tag == "Connect"


async def test_an_uncapped_number_takes_no_slot(router: Router) -> None:
    await router.create_number(assistantId="asst-1")
    for _ in range(5):
        assert (await router.voice(voice_form(call_sid()))).root[0].tag == "Connect"
    registry = router.client.app[METRICS].registry
    assert registry.get_sample_value("router_admission_overflows_total", {"scope": "number"}) in (
        None,
        0.0,
    )
    [family] = [m for m in registry.collect() if m.name == "router_admission_slots"]
    assert family.samples == []


# --- slots expire on their own ----------------------------------------------------------------


async def test_a_slot_whose_end_never_comes_expires_in_memory() -> None:
    now = 0.0
    admission = MemoryAdmission(60, clock=lambda: now)
    admit = {"number_cap": 1, "org_cap": None}
    assert (await admission.admit("o", "n", "CA1", **admit)).verdict == "admitted"
    assert (await admission.admit("o", "n", "CA2", **admit)).verdict == "number-full"
    now = 61.0
    assert (await admission.admit("o", "n", "CA2", **admit)).verdict == "admitted"


async def test_a_slot_whose_end_never_comes_expires_in_redis(redis_url: str) -> None:
    connection = open_connection(redis_url)
    try:
        admission = RedisAdmission(connection.client, slot_seconds=1)
        admit = {"number_cap": 1, "org_cap": 5}
        org = f"org-expiry-{call_sid()}"
        assert (await admission.admit(org, "n", "CA1", **admit)).verdict == "admitted"
        full = await admission.admit(org, "n", "CA2", **admit)
        assert (full.verdict, full.number_in_use, full.org_in_use) == ("number-full", 1, 1)
        await asyncio.sleep(1.2)
        assert (await admission.admit(org, "n", "CA2", **admit)).verdict == "admitted"
    finally:
        await connection.aclose()


async def test_an_overflow_after_an_assistant_request_still_reports_it(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """The server was asked, then the cap turned the call away: `call.routed` says both."""
    await router.create_number(server={"url": customer.url}, maxConcurrentCalls=1)
    await router.voice(voice_form(call_sid()))
    assert spoken_then_hung_up((await router.voice(voice_form(call_sid()))).root) == APOLOGY
    last = logs.routed()[-1]
    assert (last["route"], last["assistant_request_outcome"]) == ("overflow", "ok")


async def test_a_slot_whose_end_never_comes_expires_across_workers(
    make_router: MakeRouter, redis_url: str
) -> None:
    """Two workers on one Redis, slots of 1 s: a call whose final status never comes holds
    the only slot, the next call overflows on the other worker, and once the slot expired
    a call is connected again."""
    one = await make_router(redis_url=redis_url, admission_slot_seconds=1)
    two = await make_router(redis_url=redis_url, admission_slot_seconds=1)
    await capped_number(one, 1)
    await one.writes_settled(1)
    assert stream_parameters((await one.voice(voice_form(call_sid()))).root)
    assert overflowed((await two.voice(voice_form(call_sid()))).root)
    await asyncio.sleep(1.2)
    later = call_sid()
    assert stream_parameters((await two.voice(voice_form(later))).root)["callId"] == later
