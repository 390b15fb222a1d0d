"""Builders for the provider tests: Twilio numbers, credentials and signed webhook requests.

Requests are signed with twilio-python's `RequestValidator`, the oracle the adapter's own
HMAC is checked against.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from router.models.credentials import TwilioCredential
from router.models.phone_numbers import RECORD_MODELS, AnyPhoneNumber, TwilioPhoneNumber
from router.pipeline.inbound_call import InboundCall
from router.providers.plugin import WebhookRequest
from router.providers.twilio import TwilioProvider

TOKEN = "twilio-auth-token-that-must-not-leak"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
CALL_SID = "CA0123456789abcdef0123456789abcdef"
NUMBER = "+14155550100"
CALLER = "+14155550123"
VOICE_URL = "https://router.example.com/twilio/voice"
RUNTIME_URL = "wss://runtime.example.com/stream"

Fields = Mapping[str, str] | Sequence[tuple[str, str]]


def make_number(**wire: Any) -> AnyPhoneNumber:
    """A stored number: Twilio with an auth token unless `wire` says otherwise."""
    base: dict[str, Any] = {
        "id": "pn-1",
        "orgId": "org-1",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "provider": "twilio",
        "number": NUMBER,
        "twilioAccountSid": ACCOUNT_SID,
        "twilioAuthToken": TOKEN,
    }
    data = {k: v for k, v in (base | wire).items() if v is not None}
    return RECORD_MODELS[data["provider"]].model_validate(data)


def twilio_number(**wire: Any) -> TwilioPhoneNumber:
    number = make_number(**wire)
    assert isinstance(number, TwilioPhoneNumber)
    return number


def make_credential(account_sid: str = ACCOUNT_SID, auth_token: str = TOKEN) -> TwilioCredential:
    return TwilioCredential.model_validate(
        {
            "id": f"cred-{auth_token[:8]}",
            "orgId": "org-1",
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
            "provider": "twilio",
            "accountSid": account_sid,
            "authToken": auth_token,
        }
    )


def voice_form(**overrides: str) -> dict[str, str]:
    """The fields of a real inbound voice webhook (a captured request, ids replaced)."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": CALL_SID,
        "CallStatus": "ringing",
        "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJhbGciOiJFUzI1NiJ9%22%7D",
        "Called": NUMBER,
        "CalledCity": "SAN FRANCISCO",
        "CalledCountry": "US",
        "CalledState": "CA",
        "CalledZip": "94105",
        "Caller": CALLER,
        "CallerCity": "OAKLAND",
        "CallerCountry": "US",
        "CallerState": "CA",
        "CallerZip": "94607",
        "Direction": "inbound",
        "From": CALLER,
        "FromCity": "OAKLAND",
        "FromCountry": "US",
        "FromState": "CA",
        "FromZip": "94607",
        "StirVerstat": "TN-Validation-Passed-A",
        "To": NUMBER,
        "ToCity": "SAN FRANCISCO",
        "ToCountry": "US",
        "ToState": "CA",
        "ToZip": "94105",
    }
    return form | overrides


def sign(url: str, fields: Fields | str | None = None, token: str = TOKEN) -> str:
    """X-Twilio-Signature as twilio-python computes it."""
    params: Any = fields
    if isinstance(fields, Sequence) and not isinstance(fields, str):
        from multidict import MultiDict

        params = MultiDict(fields)
    return str(RequestValidator(token).compute_signature(url, params or {}))


def post(
    fields: Fields,
    *,
    url: str = VOICE_URL,
    signature: str | None = None,
    signed_url: str | None = None,
    token: str = TOKEN,
    headers: Mapping[str, str] | None = None,
) -> WebhookRequest:
    """A form POST as Twilio sends it, signed over `signed_url` (default: `url`)."""
    items = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    if signature is None:
        signature = sign(signed_url or url, items, token)
    all_headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Twilio-Signature": signature,
        **(headers or {}),
    }
    return WebhookRequest.create(
        method="POST",
        url=url,
        headers=all_headers,
        body=urlencode(items).encode(),
        received_at=100.0,
        wall_time=1_700_000_000.0,
    )


def get(fields: Fields, *, base_url: str = VOICE_URL, token: str = TOKEN) -> WebhookRequest:
    """A GET as Twilio sends it: the fields in the query, the whole URL signed."""
    items = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    url = f"{base_url}?{urlencode(items)}"
    return WebhookRequest.create(
        method="GET",
        url=url,
        headers={"X-Twilio-Signature": sign(url, None, token)},
        body=b"",
        received_at=100.0,
        wall_time=1_700_000_000.0,
    )


def post_json(
    data: Mapping[str, Any], *, body_hash: str | None = None, body: bytes | None = None
) -> WebhookRequest:
    """A JSON POST: `bodySHA256` in the signed URL, then `body` (default: `data`) sent."""
    signed_body = json.dumps(data)
    validator = RequestValidator(TOKEN)
    url = f"{VOICE_URL}?bodySHA256={body_hash or validator.compute_hash(signed_body)}"
    return WebhookRequest.create(
        method="POST",
        url=url,
        headers={"Content-Type": "application/json", "X-Twilio-Signature": sign(url, None)},
        body=signed_body.encode() if body is None else body,
        received_at=100.0,
        wall_time=1_700_000_000.0,
    )


def make_call(**fields: Any) -> InboundCall:
    """A ringing Twilio call from CALLER to NUMBER."""
    base: dict[str, Any] = {
        "provider": "twilio",
        "provider_call_id": CALL_SID,
        "from_number": CALLER,
        "to_number": NUMBER,
        "received_at": 0.0,
        "account_id": ACCOUNT_SID,
    }
    return InboundCall(**(base | fields))


@pytest.fixture
def provider() -> TwilioProvider:
    return TwilioProvider()


def parse_twiml(body: bytes) -> ET.Element:
    """The root of a rendered document."""
    return ET.fromstring(body)  # noqa: S314  # the router's own output, not untrusted input
