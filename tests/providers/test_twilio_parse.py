"""Reading Twilio webhooks: the request snapshot, the inbound call, status callbacks."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from router.providers import PROVIDERS, Provider
from router.providers.plugin import MalformedWebhook, WebhookRequest
from router.providers.twilio import TwilioProvider
from router.settings import Settings

from .conftest import (
    ACCOUNT_SID,
    CALL_SID,
    CALLER,
    NUMBER,
    VOICE_URL,
    get,
    post,
    post_json,
    voice_form,
)


def test_registry_holds_the_twilio_provider() -> None:
    """Providers are found by the name used in paths, logs and metrics."""
    provider: Provider = PROVIDERS["twilio"]
    assert isinstance(provider, TwilioProvider)
    assert provider.name == "twilio"
    assert provider.number_provider == "twilio"


def test_budget_comes_from_settings(provider: TwilioProvider) -> None:
    assert provider.budget_seconds(Settings(twilio_budget_seconds=3.5)) == 3.5


# --- the request snapshot -------------------------------------------------------------------


def test_snapshot_of_a_form_post_keeps_blank_and_repeated_fields() -> None:
    """Form fields are parsed from the raw body with blanks kept: Twilio signs them too."""
    body = urlencode([("To", NUMBER), ("ForwardedFrom", ""), ("Digits", "1"), ("Digits", "2")])
    req = WebhookRequest.create(
        method="post",
        url=VOICE_URL + "?x=1",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=body.encode(),
        received_at=1.5,
        wall_time=2.5,
    )
    assert req.method == "POST"
    assert req.path == "/twilio/voice"
    assert list(req.query.items()) == [("x", "1")]
    assert list(req.params.items()) == [
        ("To", NUMBER),
        ("ForwardedFrom", ""),
        ("Digits", "1"),
        ("Digits", "2"),
    ]
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_snapshot_of_a_get_takes_params_from_the_query() -> None:
    req = get({"To": NUMBER, "CallSid": CALL_SID})
    assert req.params["To"] == NUMBER
    assert req.params["CallSid"] == CALL_SID


def test_snapshot_of_a_json_post_has_no_form_params() -> None:
    assert not post_json({"CallSid": CALL_SID}).params


# --- the inbound call -----------------------------------------------------------------------


def test_realistic_voice_webhook_parses_to_an_inbound_call(provider: TwilioProvider) -> None:
    req = post(voice_form())
    call = provider.parse(req)
    assert call.provider == "twilio"
    assert call.provider_call_id == CALL_SID
    assert call.from_number == CALLER
    assert call.to_number == NUMBER
    assert call.account_id == ACCOUNT_SID
    assert call.sip_uri is None
    assert call.received_at == 100.0
    assert call.created_at == datetime.fromtimestamp(1_700_000_000.0, UTC)
    assert dict(call.params) == voice_form()
    assert call.transport == "pstn"
    assert provider.lookup_key(req) == f"twilio:{ACCOUNT_SID}:{NUMBER}"
    assert provider.call_id(req) == CALL_SID


def test_get_voice_webhook_parses_like_a_post(provider: TwilioProvider) -> None:
    call = provider.parse(get(voice_form()))
    assert (call.provider_call_id, call.from_number, call.to_number) == (CALL_SID, CALLER, NUMBER)


def test_json_body_fields_are_read(provider: TwilioProvider) -> None:
    req = post_json({"CallSid": CALL_SID, "To": NUMBER, "From": CALLER, "Answered": True})
    call = provider.parse(req)
    assert (call.provider_call_id, call.to_number, call.params["Answered"]) == (
        CALL_SID,
        NUMBER,
        "true",
    )


@pytest.mark.parametrize(
    ("sent", "parsed"),
    [
        ("anonymous", "anonymous"),
        ("", "anonymous"),
        ("unknown", "unknown"),
        ("+266696687", "+266696687"),
    ],
)
def test_withheld_caller_is_kept_or_called_anonymous(
    provider: TwilioProvider, sent: str, parsed: str
) -> None:
    assert provider.parse(post(voice_form(From=sent))).from_number == parsed


@pytest.mark.parametrize(
    ("verstat", "level"),
    [
        ("TN-Validation-Passed-A", "A"),
        ("TN-Validation-Passed-B", "B"),
        ("TN-Validation-Passed-C", "C"),
        ("tn-validation-passed-b ", "B"),  # case and spaces do not matter
        ("TN-Validation-Failed-A", "failed"),
        ("TN-Validation-Failed-C", "failed"),
        ("TN-Validation-Failed", "failed"),
        ("No-TN-Validation", "none"),
        ("", "none"),
        ("TN-Validation-Passed-D", "none"),  # a value router does not know
        ("Spam-Likely", "none"),
    ],
)
def test_stir_verstat_is_the_calls_attestation(
    provider: TwilioProvider, verstat: str, level: str
) -> None:
    """`StirVerstat` maps to A, B, C, failed or none; anything unknown is `none`."""
    assert provider.parse(post(voice_form(StirVerstat=verstat))).attestation == level


def test_a_call_without_stir_verstat_has_no_attestation(provider: TwilioProvider) -> None:
    """No `StirVerstat` (an unsigned carrier, a SIP call): `none`."""
    fields = {k: v for k, v in voice_form().items() if k != "StirVerstat"}
    assert provider.parse(post(fields)).attestation == "none"
    assert provider.parse(post(voice_form())).attestation == "A"  # the realistic webhook


def test_called_number_is_normalised_to_e164(provider: TwilioProvider) -> None:
    req = post(voice_form(To="14155550100"))
    assert provider.parse(req).to_number == NUMBER
    assert provider.lookup_key(req) == f"twilio:{ACCOUNT_SID}:{NUMBER}"


@pytest.mark.parametrize(
    "to", ["client:alice", "sip:+14155550100@acme.sip.twilio.com", "", "not-a-number"]
)
def test_non_pstn_called_forms_have_no_lookup_key(provider: TwilioProvider, to: str) -> None:
    """`client:` and SIP `To` forms are not phone numbers: nothing to look up."""
    req = post(voice_form(To=to))
    assert provider.lookup_key(req) is None
    call = provider.parse(req)
    assert call.to_number is None
    assert call.sip_uri == (to if to.startswith("sip:") else None)


def test_missing_call_sid_is_malformed(provider: TwilioProvider) -> None:
    req = post({k: v for k, v in voice_form().items() if k != "CallSid"})
    assert provider.call_id(req) is None
    with pytest.raises(MalformedWebhook, match=r"^missing-call-sid$"):
        provider.parse(req)


def test_unreadable_json_is_malformed_but_lookup_does_not_raise(provider: TwilioProvider) -> None:
    req = post_json({}, body=b"{not json")
    assert provider.lookup_key(req) is None
    assert provider.call_id(req) is None
    with pytest.raises(MalformedWebhook, match=r"^bad-json$"):
        provider.parse(req)


# --- status callbacks -----------------------------------------------------------------------


def status_form(**fields: str) -> dict[str, str]:
    return voice_form(CallbackSource="call-progress-events", **fields)


def test_completed_status_is_final_with_duration_sequence_and_time(
    provider: TwilioProvider,
) -> None:
    req = post(
        status_form(
            CallStatus="completed",
            CallDuration="42",
            SequenceNumber="3",
            Timestamp="Tue, 14 Nov 2023 22:13:20 +0000",
        )
    )
    event = provider.parse_status(req)
    assert event.provider == "twilio"
    assert event.provider_call_id == CALL_SID
    assert (event.status, event.is_final) == ("completed", True)
    assert (event.duration_seconds, event.sequence) == (42, 3)
    assert event.timestamp == 1_700_000_000.0
    assert event.params["CallbackSource"] == "call-progress-events"


@pytest.mark.parametrize(
    ("sent", "status", "final"),
    [
        ("queued", "ringing", False),
        ("initiated", "ringing", False),
        ("ringing", "ringing", False),
        ("in-progress", "in-progress", False),
        ("busy", "busy", True),
        ("failed", "failed", True),
        ("no-answer", "no-answer", True),
        ("canceled", "canceled", True),
    ],
)
def test_statuses_are_normalised(
    provider: TwilioProvider, sent: str, status: str, final: bool
) -> None:
    event = provider.parse_status(post(status_form(CallStatus=sent)))
    assert (event.status, event.is_final, event.duration_seconds, event.sequence) == (
        status,
        final,
        None,
        None,
    )


def test_status_without_readable_timestamp_uses_arrival_time(provider: TwilioProvider) -> None:
    event = provider.parse_status(post(status_form(CallStatus="completed", Timestamp="yesterday")))
    assert event.timestamp == 1_700_000_000.0


def test_unknown_status_is_malformed(provider: TwilioProvider) -> None:
    with pytest.raises(MalformedWebhook, match=r"^unknown-call-status$"):
        provider.parse_status(post(status_form(CallStatus="teleported")))


def test_status_is_acknowledged_with_an_empty_response(provider: TwilioProvider) -> None:
    """200 with an empty <Response/> as text/xml: Twilio logs no warning for it."""
    ack = provider.ack_status()
    assert (ack.status, ack.content_type) == (200, "text/xml; charset=utf-8")
    assert ack.body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
