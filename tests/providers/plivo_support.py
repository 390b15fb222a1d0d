"""Builders for the Plivo tests (this module holds no tests): numbers, credentials, and
requests signed by the plivo SDK (`plivo.utils.signature_v3`), the oracle router's own
HMAC is checked against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from plivo.utils.signature_v3 import construct_get_url, construct_post_url, get_signature_v3

from router.models.credentials import PlivoCredential
from router.models.phone_numbers import AnyPhoneNumber, PlivoPhoneNumber
from router.providers.plugin import WebhookRequest

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
AUTH_TOKEN = "plivo-auth-token-SECRET-must-not-leak"
OTHER_TOKEN = "plivo-other-token-SECRET-must-not-leak"
CREDENTIAL_ID = "cred-plivo-1"
NUMBER = "+14155550100"
CALLER = "+14155550123"
CALL_UUID = "2d4f1f4a-9b5e-11ee-8c90-0242ac120002"
NUMBER_ID = "36cc8218-4b1e-4c1a-9d2e-5f0a1b2c3d4e"
NONCE = "05429567804466091622"
BASE_URL = "https://router.example.com"
ANSWER_URL = f"{BASE_URL}/plivo/answer"
HANGUP_URL = f"{BASE_URL}/plivo/hangup"
RUNTIME_URL = "wss://runtime.example.com/stream"

Pairs = Sequence[tuple[str, str]]


def answer_fields(**overrides: str) -> dict[str, str]:
    """The fields Plivo sends to an answer URL (its documented list), numbers without `+`."""
    fields = {
        "CallUUID": CALL_UUID,
        "From": CALLER.removeprefix("+"),
        "To": NUMBER.removeprefix("+"),
        "CallStatus": "ringing",
        "Direction": "inbound",
        "CallerName": "+14155550123",
        "Event": "StartApp",
    }
    return fields | overrides


def hangup_fields(status: str = "completed", **overrides: str) -> dict[str, str]:
    """The fields Plivo sends to a hangup URL."""
    fields = answer_fields(CallStatus=status, Event="Hangup")
    fields |= {
        "HangupCause": "NORMAL_CLEARING",
        "HangupCauseName": "Normal Hangup",
        "HangupSource": "Caller",
        "Duration": "42",
        "BillDuration": "60",
    }
    return fields | overrides


def make_number(**wire: Any) -> AnyPhoneNumber:
    """A stored Plivo number on CREDENTIAL_ID unless `wire` says otherwise."""
    base: dict[str, Any] = {
        "id": NUMBER_ID,
        "orgId": "org-1",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "provider": "plivo",
        "number": NUMBER,
        "credentialId": CREDENTIAL_ID,
    }
    return PlivoPhoneNumber.model_validate(base | wire)


def make_credential(auth_token: str = AUTH_TOKEN, **wire: Any) -> PlivoCredential:
    base: dict[str, Any] = {
        "id": CREDENTIAL_ID,
        "orgId": "org-1",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "provider": "plivo",
        "authId": AUTH_ID,
        "authToken": auth_token,
    }
    return PlivoCredential.model_validate(base | wire)


def sdk_params(pairs: Pairs) -> dict[str, Any]:
    """Form pairs as the SDK takes them: a name's one value, or the list of its values."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


def sdk_signature(
    method: str, url: str, pairs: Pairs = (), nonce: str = NONCE, token: str = AUTH_TOKEN
) -> str:
    """X-Plivo-Signature-V3 as the plivo SDK computes it."""
    if method == "GET":
        base = construct_get_url(url, {})
    else:
        base = construct_post_url(url, sdk_params(pairs))
    signature: bytes = get_signature_v3(token.encode(), base.decode(), nonce.encode())
    return signature.decode()


def request(
    method: str,
    url: str,
    pairs: Pairs | Mapping[str, str] = (),
    *,
    nonce: str = NONCE,
    token: str = AUTH_TOKEN,
    signature: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> WebhookRequest:
    """A webhook request as Plivo sends it: a GET's fields in its URL, a POST's in a form
    body; signed by the SDK unless `signature` is given."""
    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
    body = b""
    if method == "GET" and items:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(items)}"
        items = []
    all_headers = {"X-Plivo-Signature-V3-Nonce": nonce}
    if method != "GET":
        body = urlencode(items).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    all_headers["X-Plivo-Signature-V3"] = (
        signature if signature is not None else sdk_signature(method, url, items, nonce, token)
    )
    all_headers |= headers or {}
    return WebhookRequest.create(
        method=method,
        url=url,
        headers=all_headers,
        body=body,
        received_at=0.0,
        wall_time=1_700_000_000.0,
    )
