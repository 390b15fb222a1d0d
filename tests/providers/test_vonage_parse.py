"""Reading Vonage webhooks: the answer request (GET or JSON POST), lookup keys, events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from router.providers import PROVIDERS
from router.providers.plugin import CALL_STATUSES, MalformedWebhook
from router.providers.vonage import VonageProvider
from router.settings import Settings

from .vonage_support import (
    API_KEY,
    CALL_UUID,
    CALLER,
    CONVERSATION_UUID,
    EVENT_URL,
    NOW,
    NUMBER,
    answer_fields,
    bearer,
    digits,
    event_fields,
    get,
    post,
    query_hash,
    sign,
)


@pytest.fixture
def provider() -> VonageProvider:
    return VonageProvider()


def test_vonage_is_registered_with_its_endpoints() -> None:
    """`/vonage/answer`, `/vonage/fallback`, `/vonage/event`, for `vonage` numbers, and
    `/vonage/connect` for the events of a runtime's leg."""
    provider = PROVIDERS["vonage"]
    assert provider.number_provider == "vonage"
    assert dict(provider.endpoints) == {
        "voice": "answer",
        "fallback": "fallback",
        "status": "event",
        "connect": "connect",
    }


def test_the_budget_is_vonage_budget_seconds(provider: VonageProvider) -> None:
    """4 s by default (Vonage gives up at 5 s), configurable."""
    assert provider.budget_seconds(Settings()) == 4.0
    assert provider.budget_seconds(Settings(vonage_budget_seconds=1.5)) == 1.5


# --- the answer request --------------------------------------------------------------------


def test_a_get_answer_is_parsed_with_numbers_read_as_e164(provider: VonageProvider) -> None:
    """`to` and `from` arrive without `+`; the call carries them in E.164."""
    call = provider.parse(get(answer_fields()))
    assert call.provider == "vonage"
    assert call.provider_call_id == CALL_UUID
    assert (call.from_number, call.to_number) == (CALLER, NUMBER)
    assert call.sip_uri is None
    assert call.params["conversation_uuid"] == CONVERSATION_UUID
    assert call.received_at == 100.0
    assert call.created_at == datetime.fromtimestamp(NOW, UTC)


def test_a_post_json_answer_is_parsed_alike(provider: VonageProvider) -> None:
    """`answer_method=POST` sends the same fields as a JSON body."""
    call = provider.parse(post(answer_fields()))
    assert (call.provider_call_id, call.from_number, call.to_number) == (CALL_UUID, CALLER, NUMBER)


def test_vonage_reports_no_attestation(provider: VonageProvider) -> None:
    """Vonage's answer request carries no STIR/SHAKEN level: `none`, whatever fields it has."""
    fields = answer_fields(StirVerstat="TN-Validation-Passed-A", attestation="A")
    assert provider.parse(get(fields)).attestation == "none"


def test_numbers_that_already_carry_a_plus_are_kept(provider: VonageProvider) -> None:
    """`+14155550123` and `14155550123` are one number."""
    call = provider.parse(get(answer_fields(to=NUMBER, **{"from": CALLER})))
    assert (call.from_number, call.to_number) == (CALLER, NUMBER)


@pytest.mark.parametrize("caller", ["Unknown", "Restricted", "anonymous"])
def test_a_caller_that_is_not_a_number_is_kept_as_sent(
    provider: VonageProvider, caller: str
) -> None:
    """A withheld caller is not turned into a `+` number."""
    assert provider.parse(get(answer_fields(**{"from": caller}))).from_number == caller


def test_a_client_sdk_caller_is_its_user_and_no_caller_is_anonymous(
    provider: VonageProvider,
) -> None:
    """Client SDK calls have `from_user` instead of `from`; neither means anonymous."""
    fields = answer_fields()
    del fields["from"]
    assert provider.parse(get(fields | {"from_user": "alice"})).from_number == "alice"
    assert provider.parse(get(fields)).from_number == "anonymous"


def test_the_api_key_is_read_from_the_verified_token(provider: VonageProvider) -> None:
    """`account_id` is the token's `api_key` (verify has checked it against the credential)."""
    assert provider.parse(post(answer_fields())).account_id == "a1b2c3d4"
    assert provider.parse(get(answer_fields(), headers={})).account_id is None


def test_an_answer_without_uuid_is_malformed(provider: VonageProvider) -> None:
    fields = answer_fields()
    del fields["uuid"]
    with pytest.raises(MalformedWebhook, match="missing-uuid"):
        provider.parse(get(fields))


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"'])
def test_a_post_body_that_is_not_a_json_object_is_malformed(
    provider: VonageProvider, body: bytes
) -> None:
    with pytest.raises(MalformedWebhook, match="bad-json"):
        provider.parse(post(body))


def test_lookup_key_and_call_id_come_from_to_and_uuid(provider: VonageProvider) -> None:
    """`vonage:<api_key>:+E164`: the token's account and the called number, for GET and
    POST alike."""
    for req in (get(answer_fields()), post(answer_fields())):
        assert provider.lookup_key(req) == f"vonage:{API_KEY}:{NUMBER}"
        assert provider.call_id(req) == CALL_UUID


def test_lookup_key_without_an_account_is_the_number_only_key(provider: VonageProvider) -> None:
    """A token without `api_key` (or no token at all) names no account: the number-only
    key, which only numbers stored before numbers were keyed by account still claim."""
    fields = answer_fields()
    unkeyed = bearer(sign(query_hash(fields), api_key=None))
    assert provider.lookup_key(get(fields, headers=unkeyed)) == f"vonage:{NUMBER}"
    assert provider.lookup_key(get(fields, headers={})) == f"vonage:{NUMBER}"
    other = bearer(sign(query_hash(fields), api_key="other-account"))
    assert provider.lookup_key(get(fields, headers=other)) == f"vonage:other-account:{NUMBER}"


def test_lookup_key_is_none_without_a_number(provider: VonageProvider) -> None:
    """A SIP `to`, or no `to`, or a body that is not JSON: no number to look up."""
    assert provider.lookup_key(get(answer_fields(to="sip:bot@example.com"))) is None
    assert provider.lookup_key(get({"uuid": CALL_UUID})) is None
    assert provider.lookup_key(post(b"{oops")) is None
    assert provider.call_id(post(b"{oops")) is None


# --- events ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vonage_status", "status", "final"),
    [
        ("started", "ringing", False),
        ("ringing", "ringing", False),
        ("answered", "in-progress", False),
        ("completed", "completed", True),
        ("busy", "busy", True),
        ("failed", "failed", True),
        ("rejected", "failed", True),
        ("timeout", "no-answer", True),
        ("unanswered", "no-answer", True),
        ("cancelled", "canceled", True),
    ],
)
def test_event_statuses_are_normalised(
    provider: VonageProvider, vonage_status: str, status: str, final: bool
) -> None:
    """Each Vonage call state maps to one of the router's call statuses."""
    event = provider.parse_status(post(event_fields(vonage_status), url=EVENT_URL))
    assert status in CALL_STATUSES
    assert (event.status, event.is_final) == (status, final)
    assert event.provider == "vonage"
    assert event.provider_call_id == CALL_UUID


def test_completed_carries_its_duration_and_event_time(provider: VonageProvider) -> None:
    """`duration` (a string of seconds) and the ISO `timestamp` as epoch seconds."""
    fields = event_fields(
        "completed",
        duration="37",
        start_time="2023-11-14T22:12:43.000Z",
        end_time="2023-11-14T22:13:20.000Z",
        timestamp="2023-11-14T22:13:20.250Z",
    )
    event = provider.parse_status(post(fields, url=EVENT_URL))
    assert event.duration_seconds == 37
    assert event.timestamp == pytest.approx(1_700_000_000.25)
    assert event.params["end_time"] == "2023-11-14T22:13:20.000Z"


def test_an_event_without_a_readable_timestamp_is_timed_on_arrival(
    provider: VonageProvider,
) -> None:
    for timestamp in ("", "last tuesday"):
        event = provider.parse_status(post(event_fields("ringing", timestamp=timestamp)))
        assert event.timestamp == NOW


def test_events_are_ordered_by_their_place_in_the_call(provider: VonageProvider) -> None:
    """Vonage numbers no events: ringing < answered < final, so a late event cannot undo."""
    rank: dict[str, int] = {}
    for status in ("started", "ringing", "answered", "completed", "busy", "cancelled"):
        sequence = provider.parse_status(post(event_fields(status))).sequence
        assert sequence is not None
        rank[status] = sequence
    assert rank["started"] == rank["ringing"] < rank["answered"] < rank["completed"]
    assert rank["completed"] == rank["busy"] == rank["cancelled"]


def test_a_get_event_is_parsed_from_its_query(provider: VonageProvider) -> None:
    """`event_method=GET` sends the fields in the query."""
    fields = {k: v for k, v in event_fields("answered").items() if isinstance(v, str)}
    event = provider.parse_status(get(fields, url=EVENT_URL))
    assert (event.status, event.provider_call_id) == ("in-progress", CALL_UUID)


def test_an_event_with_an_unknown_status_or_no_uuid_is_malformed(
    provider: VonageProvider,
) -> None:
    with pytest.raises(MalformedWebhook, match="unknown-call-status"):
        provider.parse_status(post(event_fields("levitating")))
    fields = event_fields("ringing")
    del fields["uuid"]
    with pytest.raises(MalformedWebhook, match="missing-uuid"):
        provider.parse_status(post(fields))


@pytest.mark.parametrize(
    "fields",
    [
        event_fields("disconnected"),
        event_fields("human"),
        event_fields("machine"),
        event_fields("answered", direction="outbound", to="14155550142"),
        event_fields("completed", direction="outbound", to=digits(NUMBER)),
        {
            "conversation_uuid_from": CONVERSATION_UUID,
            "conversation_uuid_to": "CON-00000000-0000-0000-0000-000000000000",
            "type": "transfer",
            "uuid": CALL_UUID,
            "timestamp": "2023-11-14T22:13:20.000Z",
        },
    ],
    ids=["disconnected", "human", "machine", "outbound-leg", "outbound-leg-to-own", "transfer"],
)
def test_events_that_are_not_the_inbound_calls_status_have_no_lookup_key(
    provider: VonageProvider, fields: dict[str, Any]
) -> None:
    """Legs router dialled and non-status events are acknowledged, never recorded."""
    assert provider.lookup_key(post(fields, url=EVENT_URL)) is None


def test_inbound_status_events_are_looked_up_by_the_called_number(
    provider: VonageProvider,
) -> None:
    started = post(event_fields("started"), url=EVENT_URL)
    assert provider.lookup_key(started) == f"vonage:{API_KEY}:{NUMBER}"


def test_status_events_are_acknowledged_with_204(provider: VonageProvider) -> None:
    """No body: nothing for Vonage to run (a body on `disconnected` would be an NCCO)."""
    ack = provider.ack_status()
    assert (ack.status, ack.body) == (204, b"")
