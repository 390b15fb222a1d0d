"""Static routes end to end: numbers configured through the API, Twilio calling the voice URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest

from .conftest import (
    ACCOUNT_SID,
    CALLER,
    NUMBER,
    PUBLIC_URL,
    RUNTIME_URL,
    Customer,
    Logs,
    Router,
    call_sid,
    dialled,
    said,
    sign,
    spoken_then_hung_up,
    stream_parameters,
    twiml,
    verbs,
    voice_form,
)


@pytest.mark.parametrize(
    ("field", "target"),
    [("assistantId", "assistant"), ("squadId", "squad"), ("workflowId", "workflow")],
)
async def test_a_static_target_connects_a_stream_to_the_runtime(
    router: Router, logs: Logs, field: str, target: str
) -> None:
    """assistantId / squadId / workflowId → `<Connect><Stream url=runtime>` whose parameters
    carry the CallSid, the kind of target and its id."""
    number = await router.create_number(**{field: f"{target}-7"})
    sid = call_sid()
    answer = await router.voice(voice_form(sid))
    assert stream_parameters(answer.root) == {
        "callId": sid,
        "target": target,
        "targetId": f"{target}-7",
        "phoneNumberId": number["id"],
    }
    event = logs.one_routed()
    assert (event["route"], event["target"], event["ended_reason"]) == (target, f"{target}-7", None)
    assert event["assistant_request_attempts"] == 0


async def test_a_static_target_wins_over_the_server_and_sends_no_assistant_request(
    router: Router, customer: Customer
) -> None:
    """A number with both an assistantId and a server connects without asking the server."""
    await router.create_number(assistantId="asst-static", server={"url": customer.url})
    answer = await router.voice()
    assert stream_parameters(answer.root)["targetId"] == "asst-static"
    assert customer.received == []


RINGING_SAY_HOOK = {
    "on": "call.ringing",
    "filters": [{"type": "startsWith", "key": "number", "startsWith": ["1415"]}],
    "do": [{"type": "say", "exact": "We are closed for the holidays."}],
}


async def test_a_ringing_say_hook_speaks_to_matching_callers_and_hangs_up(
    router: Router, logs: Logs
) -> None:
    """A `say` hook filtered on the caller's prefix speaks its text and hangs up."""
    await router.create_number(assistantId="asst-1", hooks=[RINGING_SAY_HOOK])
    answer = await router.voice(voice_form(From=CALLER))
    assert spoken_then_hung_up(answer.root) == "We are closed for the holidays."
    event = logs.one_routed()
    assert (event["route"], event["ended_reason"]) == ("hook", "call.ringing.hook-executed-say")


async def test_a_ringing_hook_lets_other_callers_through(router: Router, logs: Logs) -> None:
    """A caller outside the hook's prefixes goes on to the number's assistant."""
    await router.create_number(assistantId="asst-1", hooks=[RINGING_SAY_HOOK])
    answer = await router.voice(voice_form(From="+442071838750"))
    assert stream_parameters(answer.root)["targetId"] == "asst-1"
    assert logs.one_routed()["trace"] == ["hooks.ringing:unmatched[0]", "assistantId"]


async def test_a_ringing_transfer_hook_dials_its_destination(router: Router, logs: Logs) -> None:
    """A `transfer` hook speaks the destination's message and dials it, with the extension
    sent after answer and the caller's number as caller id."""
    hook = {
        "on": "call.ringing",
        "do": [
            {
                "type": "transfer",
                "destination": {
                    "type": "number",
                    "number": "+14155550199",
                    "message": "Connecting you to the front desk",
                    "extension": "42",
                    "callerId": "{{customer.number}}",
                },
            }
        ],
    }
    await router.create_number(assistantId="asst-1", hooks=[hook])
    answer = await router.voice()
    root = answer.root
    assert said(root) == ["Connecting you to the front desk"]
    noun = dialled(root)
    assert (noun.tag, noun.text, noun.get("sendDigits")) == ("Number", "+14155550199", "ww42")
    assert root[-1].get("callerId") == CALLER
    event = logs.one_routed()
    assert (event["route"], event["target"], event["ended_reason"]) == (
        "hook",
        "+14155550199",
        "call.ringing.hook-executed-transfer",
    )


async def test_a_blocked_number_rejects_the_call(router: Router, logs: Logs) -> None:
    """A number PATCHed to `status: blocked` is answered with `<Reject/>` alone."""
    number = await router.create_number(assistantId="asst-1")
    assert stream_parameters((await router.voice()).root)["targetId"] == "asst-1"
    await router.patch_number(number["id"], status="blocked")
    answer = await router.voice()
    assert verbs(answer.root) == ["Reject"]
    event = logs.routed()[-1]
    assert (event["route"], event["ended_reason"]) == ("reject", "phone-number-blocked")


async def test_an_unknown_number_is_rejected_unanswered(router: Router, logs: Logs) -> None:
    """A call to a number nobody configured gets `<Reject/>`, a `webhook.unknown_number`
    event, and no `call.routed`."""
    await router.create_number(assistantId="asst-1")
    answer = await router.voice(voice_form(To="+14155550999", Called="+14155550999"))
    assert verbs(answer.root) == ["Reject"]
    [event] = logs.named("webhook.unknown_number")
    assert (event["provider"], event["path"], event["to"]) == (
        "twilio",
        "/twilio/voice",
        f"twilio:{ACCOUNT_SID}:+14155550999",
    )
    assert logs.routed() == []


async def test_a_get_voice_url_signed_over_its_query_is_routed(router: Router, logs: Logs) -> None:
    """Twilio's GET method: the fields travel in the query and the whole URL is signed."""
    await router.create_number(assistantId="asst-get")
    sid = call_sid()
    answer = await router.get(voice_form(sid))
    params = stream_parameters(answer.root)
    assert (params["callId"], params["targetId"]) == (sid, "asst-get")
    assert logs.one_routed()["to"] == NUMBER


async def test_the_stream_url_is_the_configured_runtime(router: Router) -> None:
    """The Stream points at ROUTER_RUNTIME_URL exactly."""
    await router.create_number(assistantId="asst-1")
    stream = (await router.voice()).root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == RUNTIME_URL


async def test_an_oversized_webhook_body_is_refused_before_it_is_parsed(
    router: Router, logs: Logs
) -> None:
    """Provider webhooks are a few KiB: a 200 KiB form is refused (413) unparsed and
    unrouted, so such requests cannot stall the loop for real calls."""
    await router.create_number(assistantId="asst-1")
    body = "To=%2B14155550100&" + "x=" + "a" * 200_000
    async with router.client.post(
        "/twilio/voice",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        assert response.status == 413
    assert logs.routed() == []


async def test_a_body_that_arrives_in_pieces_is_read_whole_and_routed(
    router: Router, logs: Logs
) -> None:
    """A form sent chunked, its second half after a pause (the body is not all there when
    the handler starts), is read to its end, verified and routed like any other."""
    await router.create_number(assistantId="asst-1")
    fields = voice_form()
    body = urlencode(fields).encode()
    half = len(body) // 2

    async def pieces() -> AsyncIterator[bytes]:
        yield body[:half]
        await asyncio.sleep(0.05)
        yield body[half:]

    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(PUBLIC_URL + "/twilio/voice", fields),
    }
    async with router.client.post("/twilio/voice", data=pieces(), headers=headers) as response:
        assert response.status == 200
        assert stream_parameters(twiml(await response.read()))["targetId"] == "asst-1"
    assert len(logs.routed()) == 1


async def test_a_changed_target_is_followed_on_the_next_call(router: Router) -> None:
    """A route's decision is made once per version of the number: after a PATCH, the next
    call connects to the new target, on the same worker."""
    number = await router.create_number(assistantId="asst-1")
    first = await router.voice(voice_form(call_sid()))
    assert stream_parameters(first.root)["targetId"] == "asst-1"
    await router.patch_number(number["id"], assistantId="asst-2")
    await router.writes_settled(2)
    second = await router.voice(voice_form(call_sid()))
    assert stream_parameters(second.root)["targetId"] == "asst-2"
