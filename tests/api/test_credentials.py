"""The Credentials API (SPEC 2): four providers, masking, PATCH semantics, on both backends."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from router.models.credentials import SipTrunkCredential, TwilioCredential, VonageCredential
from router.state import CREDENTIALS

from .conftest import (
    CREDENTIAL_AUTH_TOKEN,
    CREDENTIAL_BODIES,
    DEFAULT_ORG,
    TELNYX_API_KEY,
    TRUNK_PASSWORD,
    VONAGE_API_SECRET,
    VONAGE_SIGNATURE_SECRET,
    Api,
    expect,
    masked,
    rejected,
    telnyx_body,
    telnyx_credential,
    trunk_credential,
    twilio_credential,
    vonage_credential,
)

# Each provider's secrets as the response shows them.
MASKED: dict[str, dict[str, Any]] = {
    "telnyx": {"apiKey": masked(TELNYX_API_KEY)},
    "vonage": {
        "apiSecret": masked(VONAGE_API_SECRET),
        "signatureSecret": masked(VONAGE_SIGNATURE_SECRET),
    },
    "twilio": {"authToken": masked(CREDENTIAL_AUTH_TOKEN)},
    "byo-sip-trunk": {
        "outboundAuthenticationPlan": {
            "authUsername": "trunk-user",
            "authPassword": masked(TRUNK_PASSWORD),
        }
    },
}
# Fields PATCH may not clear, per provider.
REQUIRED = {
    "telnyx": ["apiKey", "publicKey"],
    "vonage": ["apiKey", "apiSecret", "signatureSecret"],
    "twilio": ["accountSid", "authToken"],
    "byo-sip-trunk": ["gateways"],
}


@pytest.mark.parametrize("provider", list(CREDENTIAL_BODIES))
async def test_credential_lifecycle(api: Api, provider: str) -> None:
    """POST 201 (secrets masked, id/orgId/timestamps), GET, list, PATCH, DELETE, then 404."""
    body = CREDENTIAL_BODIES[provider](name="Main account")
    created = await api.create_credential(body)
    assert uuid.UUID(created["id"])
    assert created["orgId"] == DEFAULT_ORG
    assert created["provider"] == provider
    assert created["name"] == "Main account"
    assert created["createdAt"] == created["updatedAt"]
    for field, shown in MASKED[provider].items():
        assert created[field] == shown
    for field, value in body.items():
        if field not in MASKED[provider]:
            assert created[field] == value or isinstance(value, list), field

    path = f"/credential/{created['id']}"
    assert expect(await api.get(path), 200) == created
    assert expect(await api.get("/credential"), 200) == [created]

    renamed = expect(await api.patch(path, {"name": "Renamed"}), 200)
    assert renamed["name"] == "Renamed"
    assert renamed["updatedAt"] > created["updatedAt"]
    assert renamed["createdAt"] == created["createdAt"]
    unnamed = expect(await api.patch(path, {"name": None}), 200)
    assert "name" not in unnamed

    for field in REQUIRED[provider]:
        reply = await api.patch(path, {field: None})
        assert f"{field} cannot be removed" in rejected(reply)

    assert expect(await api.delete(path), 200) == unnamed
    assert rejected(await api.get(path), 404) == "Credential not found"
    assert (await api.patch(path, {"name": "x"})).status == 404
    assert (await api.delete(path)).status == 404
    assert expect(await api.get("/credential"), 200) == []


async def test_credential_patch_echoing_masked_secrets_keeps_them(api: Api) -> None:
    """Masked secrets sent back (top level and nested) keep the stored values."""
    vonage = await api.create_credential(vonage_credential())
    path = f"/credential/{vonage['id']}"
    echo = {k: vonage[k] for k in ("apiKey", "apiSecret", "signatureSecret")}
    expect(await api.patch(path, echo), 200)
    stored = await api.app[CREDENTIALS].get(DEFAULT_ORG, vonage["id"])
    assert isinstance(stored, VonageCredential)
    assert stored.api_secret == VONAGE_API_SECRET
    assert stored.signature_secret == VONAGE_SIGNATURE_SECRET

    trunk = await api.create_credential(trunk_credential())
    trunk_path = f"/credential/{trunk['id']}"
    plan = trunk["outboundAuthenticationPlan"]
    expect(await api.patch(trunk_path, {"outboundAuthenticationPlan": plan}), 200)
    stored_trunk = await api.app[CREDENTIALS].get(DEFAULT_ORG, trunk["id"])
    assert isinstance(stored_trunk, SipTrunkCredential)
    assert stored_trunk.outbound_authentication_plan is not None
    assert stored_trunk.outbound_authentication_plan.auth_password == TRUNK_PASSWORD

    twilio = await api.create_credential(twilio_credential())
    new = expect(
        await api.patch(f"/credential/{twilio['id']}", {"authToken": "new-token-1234567"}), 200
    )
    assert new["authToken"] == masked("new-token-1234567")
    stored_twilio = await api.app[CREDENTIALS].get(DEFAULT_ORG, twilio["id"])
    assert isinstance(stored_twilio, TwilioCredential)
    assert stored_twilio.auth_token == "new-token-1234567"


async def test_credential_provider_cannot_change(api: Api) -> None:
    """PATCH with another provider is a 400; with its own it is accepted."""
    created = await api.create_credential(telnyx_credential())
    path = f"/credential/{created['id']}"
    assert (await api.patch(path, {"provider": "vonage"})).status == 400
    assert expect(await api.patch(path, {"provider": "telnyx"}), 200)["provider"] == "telnyx"


async def test_credential_bodies_are_validated(api: Api) -> None:
    """Unknown provider, missing/unknown fields, a bad Telnyx key, bad gateways: 400s."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"provider": "skype"}, "provider must be one of the following values"),
        ({"apiKey": "x"}, "provider must be one of the following values"),
        ({"provider": ["telnyx"]}, "provider must be one of the following values"),
        ({"provider": "telnyx", "apiKey": "k"}, "publicKey is required"),
        (telnyx_credential(publicKey="not base64!"), "publicKey"),
        (telnyx_credential(publicKey="AAAA"), "32-byte"),
        (vonage_credential(apiSecret=""), "apiSecret must be longer than or equal to 1"),
        (twilio_credential(extra=1), "property extra should not exist"),
        (trunk_credential(gateways=[]), "gateways must contain at least 1 elements"),
        (trunk_credential(gateways=[{"ip": "203.0.113.1", "port": 70000}]), "port"),
        (trunk_credential(gateways=[{"ip": "203.0.113.1", "netmask": 8}]), "netmask"),
        (telnyx_credential(name="n" * 41), "name must be shorter than or equal to 40"),
    ]
    for body, fragment in cases:
        assert fragment in rejected(await api.post("/credential", body)), body
    assert expect(await api.get("/credential"), 200) == []


async def test_credential_patch_is_validated_as_a_whole(api: Api) -> None:
    """A PATCH that would leave an invalid credential is a 400 and changes nothing."""
    created = await api.create_credential(telnyx_credential())
    path = f"/credential/{created['id']}"
    assert "32-byte" in rejected(await api.patch(path, {"publicKey": "AAAA"}))
    assert "property foo should not exist" in rejected(await api.patch(path, {"foo": 1}))
    assert expect(await api.get(path), 200) == created


async def test_credential_ids_are_checked(api: Api) -> None:
    """A non-UUID credential id is a 400; an unknown one a 404; a number's id is not one."""
    assert "credential id must be a UUID" in rejected(await api.get("/credential/nope"))
    assert (await api.patch("/credential/nope", {})).status == 400
    assert (await api.delete("/credential/nope")).status == 400
    assert (await api.get(f"/credential/{uuid.uuid4()}")).status == 404

    credential = await api.create_credential(telnyx_credential())
    number = await api.create_number(telnyx_body(credential["id"]))
    assert (await api.get(f"/credential/{number['id']}")).status == 404
    assert (await api.get(f"/phone-number/{credential['id']}")).status == 404


async def test_credential_list_takes_limit_and_time_filters(api: Api) -> None:
    """GET /credential honours `limit` and the createdAt filters, newest first."""
    first = await api.create_credential(telnyx_credential(name="first"))
    second = await api.create_credential(vonage_credential(name="second"))
    assert expect(await api.get("/credential"), 200) == [second, first]
    assert expect(await api.get("/credential", {"limit": "1"}), 200) == [second]
    after = {"createdAtGt": first["createdAt"]}
    assert expect(await api.get("/credential", after), 200) == [second]
    assert (await api.get("/credential", {"limit": "1001"})).status == 400
