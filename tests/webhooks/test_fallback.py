"""`/twilio/fallback`: Twilio calls it when the voice URL failed; the router goes straight
to the failure branch and never asks the server again."""

from __future__ import annotations

from .conftest import (
    APOLOGY,
    Customer,
    Logs,
    Router,
    dialled,
    said,
    spoken_then_hung_up,
    voice_form,
)


async def test_the_fallback_url_transfers_to_the_fallback_destination(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """A number with a server and a fallbackDestination: Dial, and no assistant-request."""
    await router.create_number(
        server={"url": customer.url},
        fallbackDestination={"type": "sip", "sipUri": "sip:desk@pbx.example.com"},
    )
    answer = await router.post(voice_form(), path="/twilio/fallback")
    assert said(answer.root) == ["Transferring the call now"]
    noun = dialled(answer.root)
    assert (noun.tag, noun.text) == ("Sip", "sip:desk@pbx.example.com")
    assert customer.received == []
    event = logs.one_routed()
    assert (event["endpoint"], event["route"], event["ended_reason"]) == (
        "fallback",
        "fallback",
        "assistant-request-failed",
    )
    assert event["trace"][0] == "fallback-url"
    assert event["assistant_request_attempts"] == 0


async def test_the_fallback_url_without_a_destination_apologises(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """No fallbackDestination: the configured apology, then hang up."""
    await router.create_number(server={"url": customer.url})
    answer = await router.post(voice_form(), path="/twilio/fallback")
    assert spoken_then_hung_up(answer.root) == APOLOGY
    assert customer.received == []
    assert logs.one_routed()["route"] == "say"


async def test_the_fallback_url_runs_a_matching_ending_hook(
    router: Router, customer: Customer
) -> None:
    """The failure branch in full: an ending hook for `assistant-request-failed` runs."""
    hook = {
        "on": "call.ending",
        "filters": [
            {"type": "oneOf", "key": "call.endedReason", "oneOf": ["assistant-request-failed"]}
        ],
        "do": {"type": "say", "exact": "Please call again in a minute."},
    }
    await router.create_number(server={"url": customer.url}, hooks=[hook])
    answer = await router.post(voice_form(), path="/twilio/fallback")
    assert spoken_then_hung_up(answer.root) == "Please call again in a minute."
    assert customer.received == []


async def test_the_fallback_url_is_verified_like_the_voice_url(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """An unsigned request to the fallback URL is a 403."""
    await router.create_number(server={"url": customer.url})
    answer = await router.post(voice_form(), path="/twilio/fallback", signed=False)
    assert answer.status == 403
    assert [e["path"] for e in logs.named("webhook.rejected")] == ["/twilio/fallback"]
    assert logs.routed() == []
