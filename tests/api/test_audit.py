"""Audit logs: every write is one event naming org and ids, and no secret ever reaches a log."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from structlog.testing import capture_logs

from .conftest import (
    DEFAULT_ORG,
    OTHER_ORG,
    SECRETS,
    TWILIO_API_SECRET,
    Api,
    expect,
    sip_authentication,
    telnyx_credential,
    trunk_credential,
    twilio_body,
    twilio_credential,
    vapi_body,
    vonage_credential,
)

NEW_TOKEN = "a-new-twilio-token-SECRET-09"


Logs = Sequence[MutableMapping[str, Any]]


def events(logs: Logs, name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_number_writes_are_audited_without_secrets(api: Api, other: Api) -> None:
    """created/updated/deleted events carry org, id, provider and lookup key, never a secret."""
    with capture_logs() as logs:
        twilio = await api.create_number(
            twilio_body(twilioApiKey="SK0123456789", twilioApiSecret=TWILIO_API_SECRET)
        )
        vapi = await api.create_number(vapi_body(authentication=sip_authentication()))
        path = f"/phone-number/{twilio['id']}"
        expect(await api.patch(path, {"twilioAuthToken": NEW_TOKEN, "name": "renamed"}), 200)
        expect(await api.delete(path), 200)
        theirs = await other.create_number(twilio_body("+14155550401"))
        # Refused writes are not audited as writes.
        assert (await api.post("/phone-number", twilio_body("+14155550401"))).status == 409
        assert (await api.post("/phone-number", twilio_body(name="x" * 41))).status == 400

    created = events(logs, "phone_number.created")
    assert [(e["org_id"], e["phone_number_id"], e["provider"]) for e in created] == [
        (DEFAULT_ORG, twilio["id"], "twilio"),
        (DEFAULT_ORG, vapi["id"], "vapi"),
        (OTHER_ORG, theirs["id"], "twilio"),
    ]
    assert created[0]["lookup_key"] == "twilio:AC0123456789abcdef0123456789abcdef:+14155550100"
    assert created[1]["lookup_key"] == "sip:front-desk@sip.example.com"
    (updated,) = events(logs, "phone_number.updated")
    assert updated["org_id"] == DEFAULT_ORG
    assert updated["phone_number_id"] == twilio["id"]
    assert updated["fields"] == ["name", "twilioAuthToken"]  # which fields, not their values
    (deleted,) = events(logs, "phone_number.deleted")
    assert (deleted["org_id"], deleted["phone_number_id"]) == (DEFAULT_ORG, twilio["id"])
    assert_no_secret(logs)


async def test_credential_writes_are_audited_without_secrets(api: Api) -> None:
    """credential.created/updated/deleted carry org, id and provider, never a secret."""
    with capture_logs() as logs:
        created = [
            await api.create_credential(make())
            for make in (telnyx_credential, vonage_credential, twilio_credential, trunk_credential)
        ]
        for credential in created:
            path = f"/credential/{credential['id']}"
            expect(await api.patch(path, {"name": "rotated"}), 200)
        twilio_path = f"/credential/{created[2]['id']}"
        expect(await api.patch(twilio_path, {"authToken": NEW_TOKEN}), 200)
        for credential in created:
            expect(await api.delete(f"/credential/{credential['id']}"), 200)

    def seen(name: str) -> list[tuple[str, str, str]]:
        return [(e["org_id"], e["credential_id"], e["provider"]) for e in events(logs, name)]

    expected = [(DEFAULT_ORG, c["id"], c["provider"]) for c in created]
    assert seen("credential.created") == expected
    assert seen("credential.updated") == [*expected, expected[2]]
    assert seen("credential.deleted") == expected
    assert events(logs, "credential.updated")[-1]["fields"] == ["authToken"]
    assert_no_secret(logs)


def assert_no_secret(logs: Logs) -> None:
    """No captured event mentions a secret, in any field, however nested."""
    text = repr(logs)
    for secret in (*SECRETS, NEW_TOKEN):
        assert secret not in text
