"""Plivo requests read: the ringing call, the lookup key, hangup statuses, stream events and
what a runtime callback says."""

from __future__ import annotations

import pytest

from router.providers import PROVIDERS
from router.providers.plivo import PlivoProvider
from router.providers.plugin import CALL_STATUSES, MalformedWebhook

from .plivo_support import (
    ANSWER_URL,
    CALL_UUID,
    CALLER,
    HANGUP_URL,
    NUMBER,
    answer_fields,
    hangup_fields,
    request,
)

PLIVO = PlivoProvider()


def test_plivo_is_registered_with_its_three_webhooks() -> None:
    provider = PROVIDERS["plivo"]
    assert provider.number_provider == "plivo"
    assert provider.endpoints["voice"] == "answer"
    assert provider.endpoints["fallback"] == "fallback"
    assert provider.endpoints["status"] == "hangup"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_ringing_call_reads_plivo_s_numbers_as_e164(method: str) -> None:
    """Plivo sends numbers without `+`: the call and the lookup key read them as E.164."""
    req = request(method, ANSWER_URL, answer_fields())
    call = PLIVO.parse(req)
    assert call.provider == "plivo"
    assert call.provider_call_id == CALL_UUID
    assert call.from_number == CALLER
    assert call.to_number == NUMBER
    assert call.sip_uri is None
    assert call.account_id is None
    assert PLIVO.lookup_key(req) == f"plivo:{NUMBER}"
    assert PLIVO.call_id(req) == CALL_UUID


def test_a_withheld_caller_is_anonymous_and_a_sip_caller_is_kept() -> None:
    assert PLIVO.parse(request("POST", ANSWER_URL, answer_fields(From=""))).from_number == (
        "anonymous"
    )
    sip = "sip:alice@phone.plivo.com"
    assert PLIVO.parse(request("POST", ANSWER_URL, answer_fields(From=sip))).from_number == sip


def test_a_call_to_a_sip_endpoint_has_no_number_key() -> None:
    req = request("POST", ANSWER_URL, answer_fields(To="sip:bob@phone.plivo.com"))
    assert PLIVO.lookup_key(req) is None
    assert PLIVO.parse(req).sip_uri == "sip:bob@phone.plivo.com"


def test_a_stream_callback_is_looked_up_by_the_number_router_wrote_in_its_url() -> None:
    url = f"{ANSWER_URL.replace('answer', 'stream')}?runtime=default&to=%2B14155550100"
    req = request("POST", url, {"CallUUID": CALL_UUID, "Event": "StartStream"})
    assert PLIVO.lookup_key(req) == f"plivo:{NUMBER}"


def test_a_stream_callback_without_a_call_uuid_names_its_call_by_its_url() -> None:
    url = f"{ANSWER_URL.replace('answer', 'stream')}?runtime=default&to=%2B14155550100&call=c-1"
    assert PLIVO.call_id(request("POST", url, {"Event": "StartStream"})) == "c-1"
    with_uuid = request("POST", url, {"Event": "StartStream", "CallUUID": CALL_UUID})
    assert PLIVO.call_id(with_uuid) == CALL_UUID


def test_an_answer_without_a_call_uuid_is_malformed() -> None:
    fields = answer_fields()
    del fields["CallUUID"]
    with pytest.raises(MalformedWebhook, match="missing-call-uuid"):
        PLIVO.parse(request("POST", ANSWER_URL, fields))


@pytest.mark.parametrize(
    ("plivo_status", "status", "final"),
    [
        ("ringing", "ringing", False),
        ("in-progress", "in-progress", False),
        ("completed", "completed", True),
        ("busy", "busy", True),
        ("failed", "failed", True),
        ("no-answer", "no-answer", True),
        ("timeout", "failed", True),  # Plivo's `timeout` is a network timeout
        ("cancel", "canceled", True),
    ],
)
def test_hangup_statuses_are_normalised(plivo_status: str, status: str, final: bool) -> None:
    event = PLIVO.parse_status(request("POST", HANGUP_URL, hangup_fields(plivo_status)))
    assert event.provider == "plivo"
    assert event.provider_call_id == CALL_UUID
    assert event.status == status
    assert event.status in CALL_STATUSES
    assert event.is_final is final
    assert event.from_number == CALLER


UNANSWERED = {"AnswerTime": "", "Duration": "0", "BillDuration": "0"}


@pytest.mark.parametrize(
    ("cause", "status"),
    [
        ({"HangupCause": "ORIGINATOR_CANCEL"}, "canceled"),
        ({"HangupCause": "USER_BUSY"}, "busy"),
        ({"HangupCause": "NO_ANSWER"}, "no-answer"),
        ({"HangupCause": "NO_USER_RESPONSE"}, "no-answer"),
        ({"HangupCause": "", "HangupCauseName": "Busy Line"}, "busy"),
        ({"HangupCause": "", "HangupCauseName": "No Answer"}, "no-answer"),
        ({"HangupCause": "", "HangupCauseName": "Canceled"}, "canceled"),
        (
            {
                "HangupCause": "CALL_REJECTED",
                "HangupCauseName": "Rejected",
                "HangupSource": "Answer XML",
            },
            "failed",
        ),
        (
            {
                "HangupCause": "",
                "HangupCauseName": "Canceled (Out Of Credits)",
                "HangupSource": "Plivo",
            },
            "failed",
        ),
        ({"HangupCause": "NORMAL_CLEARING", "HangupSource": "Caller"}, "canceled"),
        ({"HangupCause": "NORMAL_CLEARING", "HangupSource": "Plivo"}, "failed"),
    ],
)
def test_a_completed_call_never_answered_takes_its_status_from_the_hangup_cause(
    cause: dict[str, str], status: str
) -> None:
    """Plivo reports every inbound call that ended as `completed`: one never answered
    (empty `AnswerTime`) is canceled, busy, no-answer or failed as its cause says."""
    fields = hangup_fields("completed", **UNANSWERED) | cause
    event = PLIVO.parse_status(request("POST", HANGUP_URL, fields))
    assert (event.status, event.is_final) == (status, True)


@pytest.mark.parametrize(
    "fields",
    [
        {"AnswerTime": "", "Duration": "42"},  # AnswerTime, when sent, decides
        {"Duration": "0"},
        {"Duration": "", "BillDuration": "0"},
    ],
)
def test_a_call_is_unanswered_by_its_answer_time_else_its_duration(fields: dict[str, str]) -> None:
    sent = hangup_fields("completed", HangupCause="USER_BUSY") | fields
    assert PLIVO.parse_status(request("POST", HANGUP_URL, sent)).status == "busy"


@pytest.mark.parametrize(
    "fields",
    [
        {"AnswerTime": "2024-01-01 10:00:03", "Duration": "0"},
        {"Duration": "42"},
        {"Duration": "", "BillDuration": ""},  # nothing says: kept as Plivo reported it
    ],
)
def test_an_answered_call_stays_completed_whatever_its_cause(fields: dict[str, str]) -> None:
    sent = hangup_fields("completed", HangupCause="USER_BUSY") | fields
    assert PLIVO.parse_status(request("POST", HANGUP_URL, sent)).status == "completed"


def test_a_hangup_carries_its_duration_and_cause_and_ranks_after_earlier_events() -> None:
    event = PLIVO.parse_status(request("POST", HANGUP_URL, hangup_fields()))
    assert event.duration_seconds == 42
    assert event.params["HangupCauseName"] == "Normal Hangup"
    ringing = PLIVO.parse_status(request("POST", HANGUP_URL, hangup_fields("ringing")))
    assert ringing.sequence is not None and event.sequence is not None
    assert ringing.sequence < event.sequence


def test_an_unknown_call_status_is_malformed() -> None:
    with pytest.raises(MalformedWebhook, match="unknown-call-status"):
        PLIVO.parse_status(request("POST", HANGUP_URL, hangup_fields("exploded")))


@pytest.mark.parametrize(
    ("event", "read"),
    [
        ("StartStream", "started"),
        ("StopStream", "stopped"),
        ("DroppedStream", "error"),
        ("DegradedStream", None),
    ],
)
def test_stream_status_callbacks(event: str, read: str | None) -> None:
    req = request("POST", ANSWER_URL, {"CallUUID": CALL_UUID, "Event": event})
    assert PLIVO.stream_event(req) == read


@pytest.mark.parametrize(
    ("kind", "fields", "result"),
    [
        ("sip", {"DialStatus": "completed", "CallStatus": "in-progress"}, "taken"),
        ("sip", {"DialStatus": "no-answer", "CallStatus": "in-progress"}, "refused"),
        ("sip", {"DialStatus": "failed", "CallStatus": "completed"}, "gone"),
        ("stream", {"CallStatus": "in-progress"}, "ask-stream"),
        ("stream", {"CallStatus": "completed"}, "gone"),
    ],
)
def test_what_a_runtime_callback_says(kind: str, fields: dict[str, str], result: str) -> None:
    req = request("POST", ANSWER_URL, {"CallUUID": CALL_UUID, **fields})
    assert PLIVO.attempt_result(req, kind) == result
