"""Twilio SharedKey signing over real HTTP: a call signed with a shared key of the number's
account routes; an unknown key, or the auth token under a shared key's header, does not."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from router.providers import twiml

from .conftest import (
    ACCOUNT_SID,
    CREDENTIAL_TOKEN,
    PUBLIC_URL,
    SHARED_KEY_SECRET,
    Answer,
    Customer,
    Logs,
    MakeRouter,
    Router,
    sign,
    stream_parameters,
    voice_form,
)

OLD_SID = "webhooks_sharedkey_old"
NEW_SID = "webhooks_sharedkey_new"
OLD_SECRET = "twilio-old-shared-key-0123456789"
VOICE_URL = f"{PUBLIC_URL}/twilio/voice"


@pytest.fixture(params=["embedded", "redis"])
async def sealed_router(request: pytest.FixtureRequest, make_router: MakeRouter) -> Router:
    """A router on each store backend, its secrets sealed with ROUTER_SECRET_KEY."""
    key = SecretStr("an operator's passphrase")
    if request.param == "embedded":
        return await make_router(secret_key=key)
    return await make_router(secret_key=key, redis_url=request.getfixturevalue("redis_url"))


@pytest.fixture
async def number(sealed_router: Router, customer: Customer) -> dict[str, object]:
    """A Twilio number (with its own auth token) whose account's credential holds two
    shared keys, mid-rotation."""
    await sealed_router.create_credential(
        {
            "provider": "twilio",
            "accountSid": ACCOUNT_SID,
            "authToken": CREDENTIAL_TOKEN,
            "sharedKeys": [
                {"sid": OLD_SID, "secret": OLD_SECRET},
                {"sid": NEW_SID, "secret": SHARED_KEY_SECRET},
            ],
        }
    )
    return await sealed_router.create_number(server={"url": customer.url})


async def post_shared(router: Router, settings_header: str, signature: str | None = None) -> Answer:
    """The voice webhook as Twilio sends it under a Webhooks configuration Setting."""
    form = voice_form()
    if signature is None:
        signature = RequestValidator(SHARED_KEY_SECRET).compute_signature(
            VOICE_URL, form, algorithm="HMAC_SHA256"
        )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
        "X-Twilio-Webhooks-Signature-Settings": settings_header,
    }
    return await router.send("POST", "/twilio/voice", urlencode(form).encode(), headers)


async def test_a_call_signed_with_a_shared_key_routes(
    sealed_router: Router, number: dict[str, object], customer: Customer, logs: Logs
) -> None:
    """HMAC-SHA256 with the announced key's secret, read from the sealed credential: routed."""
    answer = await post_shared(sealed_router, f"key={NEW_SID},algorithm=HMAC_SHA256")
    assert stream_parameters(answer.root)["targetId"] == "asst-1"
    assert len(customer.assistant_requests) == 1
    assert len(logs.routed()) == 1
    assert logs.named("webhook.rejected") == []


async def test_unknown_key_and_token_signature_under_a_key_are_refused(
    sealed_router: Router, number: dict[str, object], customer: Customer, logs: Logs
) -> None:
    """An unknown key, and a call signed with the auth token while the header names a key,
    get the same `<Reject/>` as an unknown number, with their reasons logged."""
    unknown = await post_shared(sealed_router, "key=webhooks_sharedkey_gone,algorithm=HMAC_SHA256")
    token_signed = await post_shared(
        sealed_router,
        f"key={NEW_SID},algorithm=HMAC_SHA256",
        signature=sign(VOICE_URL, voice_form()),
    )
    unsupported = await post_shared(sealed_router, f"key={NEW_SID},algorithm=HMAC_SHA512")
    for answer in (unknown, token_signed, unsupported):
        assert (answer.status, answer.body) == (200, twiml.REJECT)
    reasons = [e["reason"] for e in logs.named("webhook.rejected")]
    assert reasons == ["unknown-shared-key", "bad-signature", "unsupported-signature-algorithm"]
    assert customer.received == []
