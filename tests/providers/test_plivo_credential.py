"""Credentials keep their secrets out of `repr()`: a credential in a traceback, a log line or
a debugger shows its ids, never its tokens. Plivo's first, then every provider's the same way."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from router.models.credentials import (
    CREATE_CREDENTIAL_MODELS,
    CREDENTIAL_MODELS,
    credential_patch_model,
)

from .plivo_support import AUTH_ID, AUTH_TOKEN, make_credential

RECORD = {
    "id": "cred-1",
    "orgId": "org-1",
    "createdAt": "2024-01-01T00:00:00Z",
    "updatedAt": "2024-01-01T00:00:00Z",
}
# Each provider's wire fields, every secret holding "SECRET".
WIRE: dict[str, dict[str, Any]] = {
    "plivo": {"authId": AUTH_ID, "authToken": "plivo-SECRET-token"},
    "twilio": {
        "accountSid": "AC123",
        "authToken": "twilio-SECRET-token",
        "sharedKeys": [{"sid": "webhooks_sharedkey_0", "secret": "shared-SECRET-key"}],
    },
    "telnyx": {
        "apiKey": "KEY-SECRET-telnyx",
        "publicKey": base64.b64encode(b"k" * 32).decode(),
    },
    "vonage": {
        "apiKey": "vonage-key",
        "apiSecret": "vonage-SECRET-api",
        "signatureSecret": "vonage-SECRET-signature",
    },
    "byo-sip-trunk": {
        "gateways": [{"ip": "192.0.2.1"}],
        "outboundAuthenticationPlan": {"authUsername": "u", "authPassword": "sip-SECRET-pw"},
    },
}


def test_a_plivo_credential_s_repr_shows_its_auth_id_not_its_auth_token() -> None:
    credential = make_credential()
    assert credential.auth_token == AUTH_TOKEN
    assert AUTH_TOKEN not in repr(credential)
    assert AUTH_TOKEN not in str(credential)
    assert AUTH_ID in repr(credential)


@pytest.mark.parametrize("provider", sorted(WIRE))
def test_no_credential_shows_a_secret_in_its_repr(provider: str) -> None:
    """The stored record, the create body and the PATCH body alike."""
    wire = WIRE[provider] | {"provider": provider}
    shapes = [
        CREDENTIAL_MODELS[provider].model_validate(RECORD | wire),
        CREATE_CREDENTIAL_MODELS[provider].model_validate(wire),
        credential_patch_model(provider).model_validate(WIRE[provider]),
    ]
    for shape in shapes:
        assert "SECRET" in shape.model_dump_json()  # the secret is there...
        assert "SECRET" not in repr(shape)  # ...and never shown
        assert "SECRET" not in str(shape)
