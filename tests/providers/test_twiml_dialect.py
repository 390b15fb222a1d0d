"""The shared Twilio/TeXML webhook dialect: fields, statuses, timestamps, dial pieces."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from multidict import MultiDict, MultiDictProxy

from router.models.common import TransferPlan
from router.providers.plugin import CALL_STATUSES, MalformedWebhook, WebhookRequest
from router.providers.twiml_dialect import (
    STATUSES,
    dial_timeout,
    e164,
    first_values,
    iso_or_rfc2822_timestamp,
    one,
    parse_call,
    parse_status,
    rfc2822_timestamp,
)

ISO = "2024-05-01T12:00:00Z"
RFC = "Wed, 01 May 2024 12:00:00 +0000"
EPOCH = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()


def _post(**fields: str) -> WebhookRequest:
    form = "&".join(f"{name}={value}" for name, value in fields.items())
    return WebhookRequest.create(
        method="POST",
        url="https://router.example/x/voice",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=form.encode(),
        received_at=1.0,
        wall_time=1000.0,
    )


def test_fields_are_stripped_first_values() -> None:
    fields = MultiDictProxy(MultiDict([("To", " +14155550100 "), ("To", "x")]))
    assert one(fields, "To") == "+14155550100"
    assert one(fields, "From") == ""
    assert first_values(fields) == {"To": " +14155550100 "}
    assert e164("+14155550100") == "+14155550100"
    assert e164("client:alice") is None


def test_every_status_maps_to_a_call_status() -> None:
    assert set(STATUSES.values()) <= set(CALL_STATUSES)


def test_timestamps() -> None:
    """Twilio's reader takes RFC 2822 only; the TeXML reader takes ISO 8601 too."""
    assert rfc2822_timestamp(RFC) == EPOCH
    assert rfc2822_timestamp(ISO) is None
    assert rfc2822_timestamp("") is None
    assert iso_or_rfc2822_timestamp(ISO) == EPOCH
    assert iso_or_rfc2822_timestamp(RFC) == EPOCH
    assert iso_or_rfc2822_timestamp("2024-05-01T12:00:00") == EPOCH  # naive is UTC
    assert iso_or_rfc2822_timestamp("soon") is None


def test_parse_call_takes_the_first_account_field_present() -> None:
    req = _post(CallSid="CA1", To="%2B14155550100", AccountSid="AC1", ConnectionId="")
    call = parse_call("p", req, req.params, ("ConnectionId", "AccountSid"))
    assert (call.provider, call.provider_call_id, call.account_id) == ("p", "CA1", "AC1")
    assert (call.from_number, call.to_number, call.sip_uri) == ("anonymous", "+14155550100", None)
    assert parse_call("p", req, req.params, ("ConnectionId",)).account_id is None
    with pytest.raises(MalformedWebhook, match="missing-call-sid"):
        parse_call("p", _post(To="x"), _post(To="x").params, ("AccountSid",))


def test_parse_status_uses_the_given_timestamp_reader() -> None:
    req = _post(CallSid="CA1", CallStatus="Answered", CallDuration="7", Timestamp=ISO)
    event = parse_status("p", req, req.params, iso_or_rfc2822_timestamp)
    assert (event.status, event.is_final, event.duration_seconds) == ("in-progress", False, 7)
    assert event.timestamp == EPOCH
    assert parse_status("p", req, req.params, rfc2822_timestamp).timestamp == 1000.0
    bad = _post(CallSid="CA1", CallStatus="exploded")
    with pytest.raises(MalformedWebhook, match="unknown-call-status"):
        parse_status("p", bad, bad.params, rfc2822_timestamp)


def test_dial_timeout_prefers_a_changed_dial_timeout() -> None:
    assert dial_timeout(None) is None
    assert dial_timeout(TransferPlan.model_validate({"mode": "blind-transfer"})) == 60
    plan = TransferPlan.model_validate({"mode": "blind-transfer", "timeout": 30})
    assert dial_timeout(plan) == 30
    plan = TransferPlan.model_validate({"mode": "blind-transfer", "dialTimeout": 20, "timeout": 30})
    assert dial_timeout(plan) == 20


def test_e164_keeps_only_short_values_it_has_seen() -> None:
    """`To` is read before the signature is checked: a long value is no number, and no
    unauthenticated request can grow the cache with one."""
    from router.providers.twiml_dialect import _e164

    before = _e164.cache_info().currsize
    assert e164("+1" + "5" * 5000) is None
    assert e164("1" * 17) is None
    assert _e164.cache_info().currsize == before
    assert e164("14155550100") == "+14155550100"
    assert e164("+14155550100") == "+14155550100"
    assert e164("client:alice") is None


def test_first_values_keeps_each_names_first_value_in_order() -> None:
    fields = MultiDict([("B", "1"), ("A", "2"), ("B", "3")])
    assert list(first_values(fields).items()) == [("B", "1"), ("A", "2")]
    assert first_values(MultiDict([("A", "x"), ("B", "y")])) == {"A": "x", "B": "y"}
