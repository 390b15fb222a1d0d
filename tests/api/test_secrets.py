"""Secrets: masked (length kept) in every response, encrypted at rest when a key is set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from router.models.credentials import VonageCredential
from router.models.phone_numbers import TwilioPhoneNumber, VapiPhoneNumber
from router.state import CREDENTIALS, PHONE_NUMBERS
from router.store import redis_keys as keys

from .conftest import (
    CREDENTIAL_AUTH_TOKEN,
    DEFAULT_ORG,
    SECRETS,
    SIP_PASSWORD,
    TELNYX_API_KEY,
    TRUNK_PASSWORD,
    TWILIO_API_SECRET,
    TWILIO_AUTH_TOKEN,
    VONAGE_API_SECRET,
    VONAGE_SIGNATURE_SECRET,
    Api,
    MakeSettings,
    Reply,
    StartApi,
    expect,
    masked,
    rejected,
    sip_authentication,
    telnyx_body,
    telnyx_credential,
    trunk_credential,
    twilio_body,
    twilio_credential,
    vapi_body,
    vonage_credential,
)

SECRET_KEY = "a passphrase only the operator knows"

# Where each secret shows up in a response, and as what.
NUMBER_SECRETS = {
    "twilio": {"twilioAuthToken": TWILIO_AUTH_TOKEN, "twilioApiSecret": TWILIO_API_SECRET},
    "vapi": {"authentication.password": SIP_PASSWORD},
}
CREDENTIAL_SECRETS = {
    "telnyx": {"apiKey": TELNYX_API_KEY},
    "vonage": {"apiSecret": VONAGE_API_SECRET, "signatureSecret": VONAGE_SIGNATURE_SECRET},
    "twilio": {"authToken": CREDENTIAL_AUTH_TOKEN},
    "byo-sip-trunk": {"outboundAuthenticationPlan.authPassword": TRUNK_PASSWORD},
}


def field(item: dict[str, Any], path: str) -> Any:
    node: Any = item
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def check_masked(reply: Reply, kind: str = "phone-number") -> int:
    """No secret in clear anywhere in the reply; every secret field masked, length kept.

    Returns how many secret fields the reply showed (masked).
    """
    assert 200 <= reply.status < 300, reply.text
    for secret in SECRETS:
        assert secret not in reply.text
    table = NUMBER_SECRETS if kind == "phone-number" else CREDENTIAL_SECRETS
    body = reply.body
    items = body["results"] if isinstance(body, dict) and "results" in body else body
    shown = 0
    for item in items if isinstance(items, list) else [items]:
        for path, secret in table.get(item["provider"], {}).items():
            value = field(item, path)
            if value is not None:
                assert value == masked(secret), path
                shown += 1
    return shown


async def create_secret_holders(api: Api) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    numbers = [
        await api.create_number(
            twilio_body(twilioApiKey="SK0123456789", twilioApiSecret=TWILIO_API_SECRET)
        ),
        await api.create_number(vapi_body(authentication=sip_authentication())),
    ]
    credentials = [
        await api.create_credential(make())
        for make in (telnyx_credential, vonage_credential, twilio_credential, trunk_credential)
    ]
    return numbers, credentials


async def test_every_response_masks_every_secret(api: Api) -> None:
    """create, get, list, v2, patch and delete of numbers and credentials: all masked."""
    numbers, credentials = await create_secret_holders(api)
    for kind, items in (("phone-number", numbers), ("credential", credentials)):
        for item in items:
            path = f"/{kind}/{item['id']}"
            assert check_masked(await api.get(path), kind) > 0
            assert check_masked(await api.patch(path, {"name": "renamed"}), kind) > 0
        assert check_masked(await api.get(f"/{kind}"), kind) > 0
    assert check_masked(await api.get("/v2/phone-number")) == 3
    assert check_masked(await api.get("/v2/phone-number", {"search": "renamed"})) > 0
    for kind, items in (("phone-number", numbers), ("credential", credentials)):
        for item in items:
            assert check_masked(await api.delete(f"/{kind}/{item['id']}"), kind) > 0


async def test_create_and_delete_replies_mask_secrets(api: Api) -> None:
    """The 201 of each create and the 200 of each delete carry masked secrets only."""
    for body in (
        twilio_body(twilioApiKey="SK0123456789", twilioApiSecret=TWILIO_API_SECRET),
        vapi_body(authentication=sip_authentication()),
    ):
        created = await api.post("/phone-number", body)
        assert check_masked(created) > 0
        assert check_masked(await api.delete(f"/phone-number/{created.body['id']}")) > 0
    imported = await api.post(
        "/phone-number/import/twilio",
        {
            "twilioPhoneNumber": "+14155550111",
            "twilioAccountSid": "AC1",
            "twilioAuthToken": TWILIO_AUTH_TOKEN,
        },
    )
    assert check_masked(imported) > 0
    for make in (telnyx_credential, vonage_credential, twilio_credential, trunk_credential):
        created = await api.post("/credential", make())
        assert check_masked(created, "credential") > 0
        assert check_masked(await api.delete(f"/credential/{created.body['id']}"), "credential") > 0


async def test_short_secrets_are_fully_masked(api: Api) -> None:
    """A secret under 12 characters shows none of its characters, only its length."""
    created = await api.create_number(twilio_body(twilioAuthToken="short-tok"))
    assert created["twilioAuthToken"] == "*" * len("short-tok")


def files_text(folder: Path) -> str:
    """Every document file of the embedded store, as stored."""
    return "\n".join(p.read_text() for p in sorted(folder.rglob("*.json")))


async def raw_storage(backend: str, settings_dir: Path, redis_url: str | None) -> str:
    """Everything the store holds, as text: every file, or every Redis value."""
    if backend == "embedded":
        return files_text(settings_dir)
    assert redis_url is not None
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        dumped: list[str] = []
        async for key in client.scan_iter("*"):
            kind = await client.type(key)
            if kind == "string":
                dumped.append(str(await client.get(key)))
            elif kind == "hash":
                dumped.append(json.dumps(await client.hgetall(key)))
            elif kind == "zset":
                dumped.append(json.dumps(await client.zrange(key, 0, -1)))
        return "\n".join(dumped)
    finally:
        await client.aclose()


async def test_secrets_are_encrypted_at_rest_and_survive_a_restart(
    backend: str, start_api: StartApi, make_settings: MakeSettings
) -> None:
    """With `secret_key`, no secret is stored in clear; the API and a restart still read them."""
    settings = make_settings(secret_key=SECRET_KEY)
    api = await start_api(settings)
    numbers, credentials = await create_secret_holders(api)
    twilio_id, vapi_id = numbers[0]["id"], numbers[1]["id"]

    raw = await raw_storage(backend, settings.data_dir, settings.redis_url)
    for secret in SECRETS:
        assert secret not in raw
    assert raw.count("enc:v1:") == 3 + 5  # two numbers' three secrets, five in credentials
    assert "+14155550100" in raw  # the rest is stored as it was: only secrets are encrypted
    if backend == "redis":
        assert settings.redis_url is not None
        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        doc = await client.get(keys.doc("phone-number", twilio_id))
        await client.aclose()
        assert doc is not None
        assert json.loads(doc)["twilioAuthToken"].startswith("enc:v1:")
    else:
        stored_file = settings.data_dir / "phone-number" / f"{twilio_id}.json"
        assert json.loads(stored_file.read_text())["doc"]["twilioAuthToken"].startswith("enc:v1:")

    # The API masks the clear secret (same length as the original), not the ciphertext.
    assert check_masked(await api.get(f"/phone-number/{twilio_id}")) > 0
    assert check_masked(await api.get("/credential"), "credential") > 0

    await api.client.close()
    restarted = await start_api(settings)
    assert check_masked(await restarted.get("/phone-number")) == 3
    assert check_masked(await restarted.get("/credential"), "credential") == 5
    stored = await restarted.app[PHONE_NUMBERS].get(DEFAULT_ORG, twilio_id)
    assert isinstance(stored, TwilioPhoneNumber)
    assert stored.twilio_auth_token == TWILIO_AUTH_TOKEN
    assert stored.twilio_api_secret == TWILIO_API_SECRET
    sip = await restarted.app[PHONE_NUMBERS].get(DEFAULT_ORG, vapi_id)
    assert isinstance(sip, VapiPhoneNumber)
    assert sip.authentication is not None
    assert sip.authentication.password == SIP_PASSWORD
    vonage = await restarted.app[CREDENTIALS].get(DEFAULT_ORG, credentials[1]["id"])
    assert isinstance(vonage, VonageCredential)
    assert vonage.signature_secret == VONAGE_SIGNATURE_SECRET

    # A PATCH keeps the stored secrets encrypted, and the masked echo keeps the value.
    path = f"/phone-number/{twilio_id}"
    expect(await restarted.patch(path, {"twilioAuthToken": numbers[0]["twilioAuthToken"]}), 200)
    raw = await raw_storage(backend, settings.data_dir, settings.redis_url)
    assert TWILIO_AUTH_TOKEN not in raw
    again = await restarted.app[PHONE_NUMBERS].get(DEFAULT_ORG, twilio_id)
    assert isinstance(again, TwilioPhoneNumber)
    assert again.twilio_auth_token == TWILIO_AUTH_TOKEN


@pytest.mark.parametrize(
    ("restart_key", "reason"),
    [
        ("not the key it was written with", "does not decrypt with ROUTER_SECRET_KEY"),
        (None, "encrypted but ROUTER_SECRET_KEY is not set"),
    ],
)
async def test_a_restart_with_the_wrong_key_answers_a_clear_500(
    start_api: StartApi, make_settings: MakeSettings, restart_key: str | None, reason: str
) -> None:
    """A wrong or missing `secret_key` is an operator's misconfiguration, not bad input.

    Records whose secrets cannot be decrypted answer 500 (the one 500 we accept: the
    request was fine, the worker is not) with a message saying which setting is wrong,
    in the NestJS shape; nothing crashes, nothing is changed or removed behind it, no
    secret leaks, and records without secrets keep working.
    """
    api = await start_api(make_settings(secret_key=SECRET_KEY))
    twilio = await api.create_number(twilio_body())
    telnyx_cred = await api.create_credential(telnyx_credential())
    plain = await api.create_number(telnyx_body(telnyx_cred["id"]))
    await api.client.close()

    wrong = await start_api(make_settings(secret_key=restart_key))
    number_path = f"/phone-number/{twilio['id']}"
    credential_path = f"/credential/{telnyx_cred['id']}"
    for reply in (
        await wrong.get(number_path),
        await wrong.patch(number_path, {"name": "x"}),
        await wrong.delete(number_path),
        await wrong.get("/phone-number"),
        await wrong.get("/v2/phone-number"),
        await wrong.get(credential_path),
        await wrong.delete(credential_path),
    ):
        text = rejected(reply, 500)
        assert "stored secrets cannot be read" in text
        assert reason in text
        assert TWILIO_AUTH_TOKEN not in reply.text
        assert SECRET_KEY not in reply.text
    # A number without secrets still reads and routes its lookups.
    assert expect(await wrong.get(f"/phone-number/{plain['id']}"), 200) == plain
    await wrong.client.close()

    # Nothing was removed: with the right key everything is there, unchanged.
    right = await start_api(make_settings(secret_key=SECRET_KEY))
    assert expect(await right.get(number_path), 200) == twilio
    assert expect(await right.get(credential_path), 200) == telnyx_cred
