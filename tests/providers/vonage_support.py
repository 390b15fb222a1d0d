"""Builders for the Vonage tests (this module holds no tests): secrets, numbers,
credentials, signed webhook requests, NCCO reading.

Tokens are built with PyJWT the way Vonage signs webhooks: HS256 over `iat`, `jti`,
`iss`, `payload_hash`, `api_key` and `application_id`, keyed by the signature secret.
The secrets are generated per test session; known vectors use their own fixed secret.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson

from router.models.credentials import VonageCredential
from router.models.phone_numbers import RECORD_MODELS, AnyPhoneNumber
from router.pipeline.inbound_call import InboundCall
from router.providers.plugin import WebhookRequest

SIGNATURE_SECRET = secrets.token_urlsafe(48)  # 64 characters: long enough for HS512 too
OTHER_SECRET = secrets.token_urlsafe(48)
API_KEY = "a1b2c3d4"
API_SECRET = secrets.token_urlsafe(16)
APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
CREDENTIAL_ID = "cred-vonage-1"
NUMBER = "+14155550100"
CALLER = "+14155550123"
CALL_UUID = "63f61863-4a51-4f6b-86e1-46edebcf9356"
CONVERSATION_UUID = "CON-f972836a-550f-45fa-956c-12a2ab5b7d22"
NOW = 1_700_000_000.0
BASE_URL = "https://router.example.com"
ANSWER_URL = f"{BASE_URL}/vonage/answer"
EVENT_URL = f"{BASE_URL}/vonage/event"
RUNTIME_URL = "wss://runtime.example.com/stream"


def digits(number: str) -> str:
    """A number as Vonage sends it: E.164 without the `+`."""
    return number.removeprefix("+")


def answer_fields(**overrides: str) -> dict[str, str]:
    """The fields of an answer webhook (Vonage's documented example, ids replaced)."""
    fields = {
        "to": digits(NUMBER),
        "from": digits(CALLER),
        "conversation_uuid": CONVERSATION_UUID,
        "uuid": CALL_UUID,
    }
    return fields | overrides


def event_fields(status: str, **overrides: Any) -> dict[str, Any]:
    """The body of an event webhook, shaped like Vonage's captured `started` event."""
    fields: dict[str, Any] = {
        "headers": {},
        "from": digits(CALLER),
        "to": digits(NUMBER),
        "uuid": CALL_UUID,
        "conversation_uuid": CONVERSATION_UUID,
        "status": status,
        "direction": "inbound",
        "timestamp": "2023-11-14T22:13:20.000Z",
    }
    return fields | overrides


def make_number(**wire: Any) -> AnyPhoneNumber:
    """A stored Vonage number on CREDENTIAL_ID unless `wire` says otherwise."""
    base: dict[str, Any] = {
        "id": "pn-vonage-1",
        "orgId": "org-1",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "provider": "vonage",
        "number": NUMBER,
        "credentialId": CREDENTIAL_ID,
    }
    data = {k: v for k, v in (base | wire).items() if v is not None}
    return RECORD_MODELS[data["provider"]].model_validate(data)


def make_credential(
    *,
    credential_id: str = CREDENTIAL_ID,
    api_key: str = API_KEY,
    signature_secret: str = SIGNATURE_SECRET,
) -> VonageCredential:
    return VonageCredential.model_validate(
        {
            "id": credential_id,
            "orgId": "org-1",
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
            "provider": "vonage",
            "apiKey": api_key,
            "apiSecret": API_SECRET,
            "signatureSecret": signature_secret,
        }
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def query_hash(fields: Mapping[str, str]) -> str:
    """`payload_hash` of a GET: the query fields as compact JSON, in order."""
    return sha256_hex(json.dumps(dict(fields), separators=(",", ":"), ensure_ascii=False).encode())


def sign(
    payload_hash: str | None,
    *,
    secret: str = SIGNATURE_SECRET,
    algorithm: str = "HS256",
    iat: Any = NOW,
    **claims: Any,
) -> str:
    """A signed-webhook JWT as Vonage builds it; `claims` add to or replace (None: remove)."""
    payload: dict[str, Any] = {
        "iat": int(iat) if isinstance(iat, float) else iat,
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": payload_hash,
        "api_key": API_KEY,
        "application_id": APPLICATION_ID,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, "" if algorithm == "none" else secret, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(
    fields: Mapping[str, str],
    *,
    url: str = ANSWER_URL,
    headers: Mapping[str, str] | None = None,
    wall_time: float = NOW,
) -> WebhookRequest:
    """A GET as Vonage sends it: the fields in the query, the query's JSON hashed and signed
    unless `headers` are given."""
    if headers is None:
        headers = bearer(sign(query_hash(fields)))
    return WebhookRequest.create(
        method="GET",
        url=f"{url}?{urlencode(dict(fields))}",
        headers=headers,
        body=b"",
        received_at=100.0,
        wall_time=wall_time,
    )


def post(
    data: Mapping[str, Any] | bytes,
    *,
    url: str = ANSWER_URL,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    wall_time: float = NOW,
) -> WebhookRequest:
    """A JSON POST as Vonage sends it, its body hashed and signed unless `headers` are
    given; `body` replaces what is sent after signing (a tampered request)."""
    signed = data if isinstance(data, bytes) else orjson.dumps(dict(data))
    if headers is None:
        headers = bearer(sign(sha256_hex(signed)))
    return WebhookRequest.create(
        method="POST",
        url=url,
        headers={"Content-Type": "application/json", **headers},
        body=signed if body is None else body,
        received_at=100.0,
        wall_time=wall_time,
    )


def make_call(**fields: Any) -> InboundCall:
    """A ringing Vonage call from CALLER to NUMBER."""
    base: dict[str, Any] = {
        "provider": "vonage",
        "provider_call_id": CALL_UUID,
        "from_number": CALLER,
        "to_number": NUMBER,
        "received_at": 0.0,
    }
    return InboundCall(**(base | fields))


def ncco(body: bytes) -> list[dict[str, Any]]:
    """A rendered NCCO, asserting it is a JSON array of actions."""
    actions = json.loads(body)
    assert isinstance(actions, list)
    assert all(isinstance(action, dict) and "action" in action for action in actions)
    return actions
