"""Builders for the Telnyx tests (this module holds no tests): keys, numbers, credentials,
signed webhook requests.

Requests are signed with `cryptography`'s Ed25519, an implementation independent of the
PyNaCl one the adapter verifies with. The main key is RFC 8032's test vector 1, so the
known-vector test can pin signatures computed once.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from router.models.credentials import TelnyxCredential
from router.models.phone_numbers import RECORD_MODELS, AnyPhoneNumber
from router.pipeline.inbound_call import InboundCall
from router.providers.plugin import WebhookRequest

# RFC 8032 §7.1 TEST 1 secret key, and TEST 2's as the "other account".
KEY = Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
)

ACCOUNT_SID = "f5586561-8ff0-4291-a51b-c7dfe4139ff9"
CALL_SID = "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ"
CONNECTION_ID = "1494404757140276705"
CREDENTIAL_ID = "cred-telnyx-1"
NUMBER = "+14155550100"
CALLER = "+14155550123"
NOW = 1_700_000_000
VOICE_URL = "https://router.example.com/telnyx/voice"
RUNTIME_URL = "wss://runtime.example.com/stream"

Fields = Mapping[str, str] | Sequence[tuple[str, str]]


def public_key(key: Ed25519PrivateKey = KEY) -> str:
    """The base64 public key, as Mission Control shows it."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(timestamp: str | int, body: bytes, key: Ed25519PrivateKey = KEY) -> str:
    """`telnyx-signature-ed25519` over `{timestamp}|{body}`."""
    return base64.b64encode(key.sign(f"{timestamp}|".encode() + body)).decode()


def make_credential(
    key: Ed25519PrivateKey = KEY, credential_id: str = CREDENTIAL_ID, **extra: Any
) -> TelnyxCredential:
    return TelnyxCredential.model_validate(
        {
            "id": credential_id,
            "orgId": "org-1",
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
            "provider": "telnyx",
            "apiKey": "KEY0123-telnyx-api-key",
            "publicKey": public_key(key),
            **extra,
        }
    )


def make_number(**wire: Any) -> AnyPhoneNumber:
    """A stored Telnyx number on CREDENTIAL_ID unless `wire` says otherwise."""
    base: dict[str, Any] = {
        "id": "pn-1",
        "orgId": "org-1",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "provider": "telnyx",
        "number": NUMBER,
        "credentialId": CREDENTIAL_ID,
    }
    data = {k: v for k, v in (base | wire).items() if v is not None}
    return RECORD_MODELS[data["provider"]].model_validate(data)


def voice_form(**overrides: str) -> dict[str, str]:
    """The fields of an inbound TeXML instruction fetch (Telnyx's documented example)."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": CALL_SID,
        "CallSidLegacy": CALL_SID,
        "CallStatus": "ringing",
        "ConnectionId": CONNECTION_ID,
        "Direction": "inbound",
        "From": CALLER,
        "To": NUMBER,
        "CallerId": "John Doe",
        "ShakenStirAttestation": "A",
        "ShakenStirValidated": "true",
    }
    return form | overrides


def status_form(status: str, **overrides: str) -> dict[str, str]:
    """The fields of a call-progress status callback."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": CALL_SID,
        "CallStatus": status,
        "CallbackSource": "call-progress-events",
        "ConnectionId": CONNECTION_ID,
        "From": CALLER,
        "To": NUMBER,
        "Timestamp": "2023-11-14T22:13:20Z",
    }
    return form | overrides


def _items(fields: Fields) -> list[tuple[str, str]]:
    return list(fields.items()) if isinstance(fields, Mapping) else list(fields)


def post(
    fields: Fields,
    *,
    timestamp: str | int = NOW,
    signature: str | None = None,
    key: Ed25519PrivateKey = KEY,
    headers: Mapping[str, str] | None = None,
    wall_time: float = NOW,
) -> WebhookRequest:
    """A form POST as Telnyx sends it, signed with `key` at `timestamp`."""
    body = urlencode(_items(fields)).encode()
    all_headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "telnyx-timestamp": str(timestamp),
        "telnyx-signature-ed25519": signature or sign(timestamp, body, key),
        **(headers or {}),
    }
    return WebhookRequest.create(
        method="POST",
        url=VOICE_URL,
        headers=all_headers,
        body=body,
        received_at=100.0,
        wall_time=wall_time,
    )


def get(
    fields: Fields, *, timestamp: str | int = NOW, signature: str | None = None
) -> WebhookRequest:
    """A GET as Telnyx sends it: the fields in the query, the empty body signed."""
    return WebhookRequest.create(
        method="GET",
        url=f"{VOICE_URL}?{urlencode(_items(fields))}",
        headers={
            "telnyx-timestamp": str(timestamp),
            "telnyx-signature-ed25519": signature or sign(timestamp, b""),
        },
        body=b"",
        received_at=100.0,
        wall_time=NOW,
    )


def without(req: WebhookRequest, *names: str) -> WebhookRequest:
    """`req` with the named headers removed."""
    headers = {k: v for k, v in req.headers.items() if k.lower() not in {n.lower() for n in names}}
    return WebhookRequest.create(
        method=req.method,
        url=req.url,
        headers=headers,
        body=req.body,
        received_at=req.received_at,
        wall_time=req.wall_time,
    )


def make_call(**fields: Any) -> InboundCall:
    """A ringing Telnyx call from CALLER to NUMBER."""
    base: dict[str, Any] = {
        "provider": "telnyx",
        "provider_call_id": CALL_SID,
        "from_number": CALLER,
        "to_number": NUMBER,
        "received_at": 0.0,
        "account_id": CONNECTION_ID,
    }
    return InboundCall(**(base | fields))


def parse_texml(body: bytes) -> ET.Element:
    """The root of a rendered document."""
    return ET.fromstring(body)  # noqa: S314  # the router's own output, not untrusted input
