"""Inputs that once slipped through: a trailing newline, a marker-prefixed secret."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Api

TWILIO: dict[str, Any] = {
    "provider": "twilio",
    "number": "+14155550100",
    "twilioAccountSid": "AC1",
    "twilioAuthToken": "a-real-token-0123456789",
}


@pytest.mark.parametrize(
    "body",
    [
        {**TWILIO, "number": "+14155550100\n"},
        {**TWILIO, "server": {"url": "https://example.com", "headers": {"X-A\n": "1"}}},
        {
            **TWILIO,
            "fallbackDestination": {
                "type": "sip",
                "sipUri": "sip:desk@pbx.example.com\n",
            },
        },
        {
            **TWILIO,
            "fallbackDestination": {
                "type": "sip",
                "sipUri": "sip:desk@pbx.example.com",
                "sipHeaders": {"X-B\n": "1"},
            },
        },
        {"provider": "byo-phone-number", "credentialId": "c", "number": "+14155550100\n"},
    ],
    ids=["number", "server-header", "sip-uri", "sip-header", "byo-number"],
)
async def test_a_trailing_newline_is_refused(api: Api, body: dict[str, Any]) -> None:
    """`$` matches before a final newline: every rule matches the whole value instead, so
    `+1...\\n` is neither a second copy of a number nor a header name that breaks calls."""
    reply = await api.post("/phone-number", body)
    assert reply.status == 400, reply.text


async def test_a_number_with_a_newline_does_not_dodge_uniqueness(api: Api) -> None:
    await api.create_number(TWILIO)
    reply = await api.post("/phone-number", {**TWILIO, "number": "+14155550100\n"})
    assert reply.status == 400


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/phone-number", {**TWILIO, "twilioAuthToken": "enc:v1:looks-encrypted"}),
        (
            "/credential",
            {
                "provider": "vonage",
                "apiKey": "key",
                "apiSecret": "enc:v1:x",
                "signatureSecret": "signature-secret",
            },
        ),
    ],
)
async def test_a_secret_that_starts_with_the_encryption_marker_is_refused(
    api: Api, path: str, body: dict[str, Any]
) -> None:
    """Stored, such a value would read back as ciphertext and break every call of the org."""
    reply = await api.post(path, body)
    assert reply.status == 400
    assert "must not start with enc:v1:" in reply.text
