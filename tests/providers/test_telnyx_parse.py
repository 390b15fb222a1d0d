"""Telnyx TeXML requests read into InboundCall and StatusEvent; registration and budget."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.providers import PROVIDERS, Provider
from router.providers.plugin import MalformedWebhook, WebhookRequest
from router.providers.telnyx import TelnyxProvider
from router.settings import Settings

from .telnyx_support import (
    ACCOUNT_SID,
    CALL_SID,
    CALLER,
    CONNECTION_ID,
    NOW,
    NUMBER,
    get,
    parse_texml,
    post,
    status_form,
    voice_form,
)

provider: Provider = PROVIDERS["telnyx"]


def test_telnyx_is_registered_with_the_standard_endpoints() -> None:
    """Served at /telnyx/voice, /telnyx/fallback and /telnyx/status, and the runtime
    callbacks /telnyx/connect and /telnyx/stream."""
    assert isinstance(provider, TelnyxProvider)
    assert (provider.name, provider.number_provider) == ("telnyx", "telnyx")
    assert dict(provider.endpoints) == {
        "voice": "voice",
        "fallback": "fallback",
        "status": "status",
        "connect": "connect",
        "stream": "stream",
    }


def test_the_budget_is_telnyx_budget_seconds(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, telnyx_budget_seconds=2.5, twilio_budget_seconds=9)
    assert provider.budget_seconds(settings) == 2.5


# --- lookup key and call id ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "key"),
    [
        (NUMBER, f"telnyx:{ACCOUNT_SID}:{NUMBER}"),
        (NUMBER.removeprefix("+"), f"telnyx:{ACCOUNT_SID}:{NUMBER}"),
        (" +14155550100 ", f"telnyx:{ACCOUNT_SID}:{NUMBER}"),
        ("sip:agent@example.sip.telnyx.com", None),
        ("", None),
    ],
)
def test_lookup_key_is_telnyx_the_account_and_the_e164_to(to: str, key: str | None) -> None:
    """`telnyx:<AccountSid>:+E164`: numbers on a credential naming the account are keyed so
    (the pipeline falls back to `telnyx:+E164` for the others)."""
    assert provider.lookup_key(post(voice_form(To=to))) == key


def test_without_an_account_sid_the_key_is_the_number_only() -> None:
    assert provider.lookup_key(post(voice_form(AccountSid=""))) == f"telnyx:{NUMBER}"


def test_lookup_key_and_call_id_are_read_from_a_get_query() -> None:
    req = get(voice_form())
    assert provider.lookup_key(req) == f"telnyx:{ACCOUNT_SID}:{NUMBER}"
    assert provider.call_id(req) == CALL_SID


def test_the_call_id_is_the_call_control_id_colon_and_all() -> None:
    assert provider.call_id(post(voice_form())) == CALL_SID
    assert provider.call_id(post(voice_form(CallSid=""))) is None


def test_a_json_body_has_no_fields() -> None:
    """TeXML sends forms; a JSON POST has no `To`, so it is treated as an unknown number."""
    req = WebhookRequest.create(
        method="POST",
        url="https://router.example.com/telnyx/voice",
        headers={"Content-Type": "application/json"},
        body=b'{"To": "+14155550100", "CallSid": "v3:x"}',
        received_at=0.0,
        wall_time=NOW,
    )
    assert provider.lookup_key(req) is None
    with pytest.raises(MalformedWebhook, match="missing-call-sid"):
        provider.parse(req)


# --- parse -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_parse_reads_the_ringing_call(method: str) -> None:
    """CallSid (v3 call control id), From, E.164 To, ConnectionId as the account, raw fields."""
    req = post(voice_form()) if method == "POST" else get(voice_form())
    call = provider.parse(req)
    assert call.provider == "telnyx"
    assert call.provider_call_id == CALL_SID
    assert call.from_number == CALLER
    assert call.to_number == NUMBER
    assert call.sip_uri is None
    assert call.account_id == CONNECTION_ID
    assert call.params["AccountSid"] == ACCOUNT_SID
    assert call.params["CallerId"] == "John Doe"
    assert call.received_at == 100.0
    assert call.created_at == datetime.fromtimestamp(NOW, UTC)
    assert call.transport == "pstn"


def test_parse_falls_back_to_account_sid_without_a_connection_id() -> None:
    fields = {k: v for k, v in voice_form().items() if k != "ConnectionId"}
    assert provider.parse(post(fields)).account_id == ACCOUNT_SID


def test_a_withheld_caller_is_anonymous() -> None:
    assert provider.parse(post(voice_form(From=""))).from_number == "anonymous"


@pytest.mark.parametrize(
    ("attestation", "validated", "level"),
    [
        ("A", "true", "A"),
        ("B", "true", "B"),
        ("C", "True", "C"),
        ("b", "true", "B"),
        ("A", "false", "failed"),  # a level that did not verify
        ("C", "false", "failed"),
        ("A", None, "none"),  # a level nobody says was verified
        (None, "true", "none"),
        (None, "false", "none"),
        ("", "", "none"),
        ("D", "true", "none"),  # a value router does not know
        ("A", "maybe", "none"),
    ],
)
def test_shaken_stir_fields_are_the_calls_attestation(
    attestation: str | None, validated: str | None, level: str
) -> None:
    """`ShakenStirAttestation` when `ShakenStirValidated` is true; `failed` when false;
    otherwise `none`."""
    fields = voice_form()
    for name, value in (("ShakenStirAttestation", attestation), ("ShakenStirValidated", validated)):
        fields.pop(name, None)
        if value is not None:
            fields[name] = value
    assert provider.parse(post(fields)).attestation == level


def test_a_sip_to_is_kept_as_the_sip_uri() -> None:
    call = provider.parse(post(voice_form(To="sip:support@acme.sip.telnyx.com")))
    assert (call.to_number, call.sip_uri) == (None, "sip:support@acme.sip.telnyx.com")


def test_a_request_without_call_sid_is_malformed() -> None:
    with pytest.raises(MalformedWebhook, match="missing-call-sid"):
        provider.parse(post(voice_form(CallSid="  ")))


def test_repeated_fields_keep_their_first_value() -> None:
    call = provider.parse(post([*voice_form().items(), ("CallerId", "Second")]))
    assert call.params["CallerId"] == "John Doe"


# --- status callbacks ------------------------------------------------------------------------


def test_a_completed_callback_is_final_with_duration_sequence_and_time() -> None:
    event = provider.parse_status(
        post(status_form("completed", CallDuration="45", SequenceNumber="3"))
    )
    assert event.provider == "telnyx"
    assert event.provider_call_id == CALL_SID
    assert (event.status, event.is_final) == ("completed", True)
    assert (event.duration_seconds, event.sequence) == (45, 3)
    assert event.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC).timestamp()
    assert event.params["CallbackSource"] == "call-progress-events"


@pytest.mark.parametrize(
    ("telnyx", "status", "final"),
    [
        ("initiated", "ringing", False),
        ("ringing", "ringing", False),
        ("answered", "in-progress", False),
        ("in-progress", "in-progress", False),
        ("completed", "completed", True),
        ("busy", "busy", True),
        ("no-answer", "no-answer", True),
        ("failed", "failed", True),
        ("canceled", "canceled", True),
        ("Completed", "completed", True),
    ],
)
def test_call_statuses_are_normalised(telnyx: str, status: str, final: bool) -> None:
    event = provider.parse_status(post(status_form(telnyx)))
    assert (event.status, event.is_final) == (status, final)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2023-11-14T22:13:20.500Z", NOW + 0.5),
        ("2023-11-14T22:13:20+00:00", NOW),
        ("2023-11-14T22:13:20", NOW),
        ("Tue, 14 Nov 2023 22:13:20 +0000", NOW),
        ("", 123.0),
        ("yesterday", 123.0),
    ],
)
def test_status_timestamps_are_iso_or_rfc2822_else_arrival(timestamp: str, expected: float) -> None:
    req = post(status_form("ringing", Timestamp=timestamp), wall_time=123.0, timestamp=123)
    assert provider.parse_status(req).timestamp == expected


@pytest.mark.parametrize("value", ["", "abc", "-1", "1.5", "\u0663"])
def test_unreadable_durations_and_sequences_are_none(value: str) -> None:
    event = provider.parse_status(
        post(status_form("completed", CallDuration=value, SequenceNumber=value))
    )
    assert (event.duration_seconds, event.sequence) == (None, None)


def test_a_status_without_call_sid_or_known_status_is_malformed() -> None:
    with pytest.raises(MalformedWebhook, match="missing-call-sid"):
        provider.parse_status(post(status_form("completed", CallSid="")))
    with pytest.raises(MalformedWebhook, match="unknown-call-status"):
        provider.parse_status(post(status_form("exploded")))


def test_status_callbacks_are_acknowledged_with_an_empty_response() -> None:
    ack = provider.ack_status()
    assert (ack.status, ack.content_type) == (200, "text/xml; charset=utf-8")
    root = parse_texml(ack.body)
    assert (root.tag, list(root)) == ("Response", [])
