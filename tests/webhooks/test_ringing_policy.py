"""Router's pre-answer policy end to end (SPEC §12): numbers configured through the API with
attestation, caller-list and schedule filters, Twilio calling the voice URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .conftest import (
    CALLER,
    PUBLIC_URL,
    Customer,
    Logs,
    Router,
    call_sid,
    sign,
    stream_parameters,
    twiml,
    verbs,
    voice_form,
)

REJECT_UNVERIFIED = {
    "on": "call.ringing",
    "filters": [{"type": "oneOf", "key": "attestation", "oneOf": ["C", "failed", "none"]}],
    "do": [{"type": "reject"}],
}


def rejected(body: bytes) -> bool:
    """Whether the TwiML is `<Reject/>` as the first and only verb."""
    return verbs(twiml(body)) == ["Reject"]


async def test_a_reject_hook_declines_an_unverified_caller_with_twiml_reject(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """`StirVerstat: TN-Validation-Failed-B` → `<Reject/>`, route `hook`, the reject reason,
    the filter in the trace; the customer's server is never asked."""
    await router.create_number(hooks=[REJECT_UNVERIFIED], server={"url": customer.url})
    sid = call_sid()
    answer = await router.voice(voice_form(sid, StirVerstat="TN-Validation-Failed-B"))
    assert answer.status == 200
    assert rejected(answer.body)
    event = logs.one_routed()
    assert (event["route"], event["ended_reason"], event["target"]) == (
        "hook",
        "call.ringing.hook-executed-reject",
        None,
    )
    assert event["trace"] == [
        "hooks.ringing:filter[0.0]:oneOf:attestation=failed:matched",
        "hooks.ringing:matched[0]",
        "reject",
    ]
    assert event["call_id"] == sid
    assert customer.assistant_requests == []


async def test_a_verified_caller_passes_the_reject_hook_and_reaches_the_assistant(
    router: Router, logs: Logs
) -> None:
    """`TN-Validation-Passed-A` is not in the hook's list: the number's assistant answers."""
    await router.create_number(hooks=[REJECT_UNVERIFIED], assistantId="asst-1")
    answer = await router.voice(voice_form(StirVerstat="TN-Validation-Passed-A"))
    assert stream_parameters(answer.root)["targetId"] == "asst-1"
    event = logs.one_routed()
    assert event["trace"][0] == "hooks.ringing:filter[0.0]:oneOf:attestation=A:unmatched"


async def test_a_call_without_stir_verstat_is_none_and_rejected(router: Router) -> None:
    """No `StirVerstat` at all is `none`, which this hook rejects."""
    await router.create_number(hooks=[REJECT_UNVERIFIED], assistantId="asst-1")
    answer = await router.voice(voice_form())
    assert rejected(answer.body)


async def test_stir_verstat_is_signed_like_every_other_field(router: Router, logs: Logs) -> None:
    """A `StirVerstat` changed after Twilio signed the request fails verification: the
    answer is the unknown number's reject, and the call is never routed."""
    await router.create_number(hooks=[REJECT_UNVERIFIED], assistantId="asst-1")
    signed = voice_form(StirVerstat="TN-Validation-Failed-A")
    forged = signed | {"StirVerstat": "TN-Validation-Passed-A"}
    answer = await router.post(forged, signature=sign(PUBLIC_URL + "/twilio/voice", signed))
    assert rejected(answer.body)
    assert logs.routed() == []
    assert [e["reason"] for e in logs.named("webhook.rejected")] == ["bad-signature"]


EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def always_excepted() -> dict[str, Any]:
    """A schedule that is closed now, whatever the time: yesterday, today and tomorrow
    (UTC) are excepted dates."""
    today = datetime.now(UTC).date()
    days = [str(today + timedelta(days=delta)) for delta in (-1, 0, 1)]
    return {
        "type": "schedule",
        "timeZone": "UTC",
        "weekly": [
            {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "from": "00:00",
                "to": "24:00",
            }
        ],
        "exceptDates": days,
        "match": "outside",
    }


async def test_a_schedule_and_a_caller_list_decide_on_the_calls_arrival_time(
    router: Router, logs: Logs
) -> None:
    """Outside the schedule, a listed caller hears the hook; an unlisted one reaches the
    assistant. The schedule is read at the webhook's arrival."""
    closed = {
        "on": "call.ringing",
        "filters": [
            {"type": "oneOf", "key": "number", "oneOf": [CALLER]},
            always_excepted(),
        ],
        "do": [{"type": "say", "exact": "We are closed today."}],
    }
    await router.create_number(hooks=[closed], assistantId="asst-1")
    answer = await router.voice(voice_form(From=CALLER))
    assert verbs(answer.root) == ["Say", "Hangup"]
    first = logs.one_routed()
    assert first["ended_reason"] == "call.ringing.hook-executed-say"
    assert first["trace"][0] == "hooks.ringing:filter[0.0]:oneOf:number:matched"
    assert first["trace"][1].startswith("hooks.ringing:filter[0.1]:schedule:excepted@")
    assert first["trace"][1].endswith("+00:00:matched")

    answer = await router.voice(voice_form(From="+14155550999"))
    assert stream_parameters(answer.root)["targetId"] == "asst-1"
