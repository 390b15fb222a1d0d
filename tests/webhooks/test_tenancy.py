"""Call records and decision locks belong to one org: another org's signed webhooks,
naming a CallSid of ours, can neither read, change nor hold up our call."""

from __future__ import annotations

import asyncio
import time

from pytest_aiohttp import AiohttpServer

from .conftest import (
    CALLER,
    OTHER_ACCOUNT_SID,
    OTHER_KEY,
    OTHER_TOKEN,
    Customer,
    MakeRouter,
    Reply,
    Router,
    call_sid,
    start_customer,
    status_form,
    stream_parameters,
    voice_form,
)

THEIR_NUMBER = "+14155550177"
THEIR_CALLER = "+15550009999"


async def their_number(router: Router, server_url: str) -> None:
    await router.create_number(
        key=OTHER_KEY,
        number=THEIR_NUMBER,
        twilioAccountSid=OTHER_ACCOUNT_SID,
        twilioAuthToken=OTHER_TOKEN,
        server={"url": server_url},
    )


def theirs(form: dict[str, str]) -> dict[str, str]:
    return form | {"To": THEIR_NUMBER, "AccountSid": OTHER_ACCOUNT_SID, "From": THEIR_CALLER}


async def test_another_orgs_status_callback_never_touches_our_record(
    router_on: Router, customer: Customer, aiohttp_server: AiohttpServer
) -> None:
    """Their status callback, signed with their token for their number, naming our
    CallSid: our record keeps its status, their server never hears our caller's number,
    and our own later events still apply."""
    router = router_on
    their_server = await start_customer(aiohttp_server)
    await router.create_number(server={"url": customer.url})
    await their_number(router, their_server.url)
    sid = call_sid()
    assert stream_parameters((await router.voice(voice_form(sid))).root)["callId"] == sid

    answer = await router.post(
        theirs(status_form(sid, "completed", CallDuration="3")),
        path="/twilio/status",
        token=OTHER_TOKEN,
    )
    assert answer.status == 200
    [their_update] = await their_server.wait_for_status_updates(1)
    assert their_update.message["customer"]["number"] == THEIR_CALLER
    assert CALLER not in their_update.body.decode()

    _, ours = await router.call_record(sid)
    assert (ours["status"], ours["final"], ours["from"]) == ("ringing", False, CALLER)
    _, their_record = await router.call_record(sid, key=OTHER_KEY)
    assert (their_record["status"], their_record["decision"]) == ("completed", None)

    assert (await router.status(sid, "completed", CallDuration="42")).status == 200
    _, ours = await router.call_record(sid)
    assert (ours["status"], ours["final"], ours["durationSeconds"]) == ("completed", True, 42)
    assert ours["decision"] is not None
    updates = await customer.wait_for_status_updates(1)
    assert [u.message["status"] for u in updates] == ["ended"]


async def test_another_orgs_slow_decision_never_holds_up_our_call(
    make_router: MakeRouter,
    redis_url: str,
    customer: Customer,
    aiohttp_server: AiohttpServer,
) -> None:
    """Two workers on one Redis: their webhook naming our CallSid holds their decision lock
    for seconds (their server is slow); our call on the other worker is decided at once."""
    ours = await make_router(redis_url=redis_url)
    other_worker = await make_router(redis_url=redis_url)
    their_server = await start_customer(aiohttp_server)
    their_server.reply(Reply(json={"assistantId": "asst-theirs"}, delay=2.5))
    await ours.create_number(server={"url": customer.url})
    await their_number(ours, their_server.url)
    sid = call_sid()

    held = asyncio.create_task(other_worker.post(theirs(voice_form(sid)), token=OTHER_TOKEN))
    async with asyncio.timeout(2):
        while not their_server.assistant_requests:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.01)
    started = time.perf_counter()
    answer = await ours.voice(voice_form(sid))
    assert time.perf_counter() - started < 1.0
    assert stream_parameters(answer.root)["targetId"] == "asst-1"
    their_server.release.set()
    assert stream_parameters((await held).root)["targetId"] == "asst-theirs"
