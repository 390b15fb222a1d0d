"""The Phone Numbers API of the seed spec, per provider, through real HTTP on both backends."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from router.models.phone_numbers import TwilioPhoneNumber, VapiPhoneNumber
from router.state import PHONE_NUMBERS

from .conftest import (
    DEFAULT_ORG,
    SIP_AUTHENTICATION_MASKED,
    SIP_DOMAIN,
    SIP_PASSWORD,
    TWILIO_AUTH_TOKEN,
    Api,
    byo_body,
    expect,
    messages,
    rejected,
    sip_authentication,
    telnyx_body,
    telnyx_credential,
    trunk_credential,
    twilio_body,
    vapi_body,
    vonage_body,
    vonage_credential,
)

PROVIDERS = ["twilio", "telnyx", "vonage", "vapi", "byo-phone-number"]
SERVER_FIELDS = {"id", "orgId", "createdAt", "updatedAt", "status"}


async def number_body(api: Api, provider: str, number: str = "+14155550150") -> dict[str, Any]:
    """A valid create body of `provider`, with the credential it needs created first."""
    if provider == "twilio":
        return twilio_body(number)
    if provider == "vapi":
        return vapi_body(f"sip:{number.lstrip('+')}@sip.example.com")
    if provider == "telnyx":
        credential = await api.create_credential(telnyx_credential())
        return telnyx_body(credential["id"], number)
    if provider == "vonage":
        credential = await api.create_credential(vonage_credential())
        return vonage_body(credential["id"], number)
    credential = await api.create_credential(trunk_credential())
    return byo_body(credential["id"], number)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_number_lifecycle_create_get_list_delete(api: Api, provider: str) -> None:
    """POST is a 201 with id/orgId/timestamps/status; GET, both lists and DELETE return it."""
    body = await number_body(api, provider)
    created = await api.create_number(body)

    assert set(created) >= SERVER_FIELDS | set(body) - {"twilioAuthToken"}
    assert uuid.UUID(created["id"])
    assert created["orgId"] == DEFAULT_ORG
    assert created["provider"] == provider
    assert created["status"] == "active"
    assert created["createdAt"] == created["updatedAt"]
    for field, value in body.items():
        if field != "twilioAuthToken":
            assert created[field] == value, field

    path = f"/phone-number/{created['id']}"
    assert expect(await api.get(path), 200) == created
    assert await api.list_numbers() == [created]
    page = await api.page()
    assert page["results"] == [created]
    assert page["metadata"]["totalItems"] == 1

    assert expect(await api.delete(path), 200) == created
    assert expect(await api.get(path), 404)["message"] == "Phone number not found"
    assert (await api.delete(path)).status == 404
    assert await api.list_numbers() == []


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "vonage"])
async def test_a_provider_number_without_its_plus_is_refused_not_guessed(
    api: Api, provider: str
) -> None:
    """`14155551234` is not given a `+`: `4155552671` would become a Swiss number and `911`
    `+911`. A 400 says to write it with its country code; with it, it is a 201."""
    for bare in ("14155551234", "4155552671", "911"):
        body = await number_body(api, provider, number=bare)
        assert "number must start with + and its country code" in messages(
            await api.post("/phone-number", body)
        ), bare
    body = await number_body(api, provider, number="+14155551234")
    assert (await api.create_number(body))["number"] == "+14155551234"


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "vonage"])
async def test_provider_numbers_must_be_e164(api: Api, provider: str) -> None:
    """A provider number that is not a phone number is a 400: letters, too long, a leading
    0, digits of another script, a country code nobody has, a length its country's numbers
    cannot have (libphonenumber's data)."""
    for bad in (
        "+1415555abcd",
        "+1234567890123456",
        "+0415555123",
        "",
        "abc",
        "+1\u0664\u0661\u0665\u0665\u0665\u0665\u0662\u0666\u0667\u0661",
        "+9991234567",
        "+1415555",
        "+4155552671",
    ):
        body = await number_body(api, provider, number=bad)
        reply = await api.post("/phone-number", body)
        assert reply.status == 400, bad
        assert "E.164" in messages(reply), bad


async def test_a_destination_number_must_be_possible_unless_the_check_is_off(api: Api) -> None:
    """`fallbackDestination.number`: the same E.164 rules; `numberE164CheckEnabled: false`
    keeps the seed's `^\\+?[a-zA-Z0-9]+$`."""
    body = await number_body(api, "twilio", number="+14155551234")
    for bad in ("+9991234567", "+1415555"):
        reply = await api.post(
            "/phone-number", {**body, "fallbackDestination": {"type": "number", "number": bad}}
        )
        assert "E.164" in messages(reply), bad
    loose = {"type": "number", "number": "Ops1", "numberE164CheckEnabled": False}
    created = await api.create_number({**body, "fallbackDestination": loose})
    assert created["fallbackDestination"]["number"] == "Ops1"


async def test_import_twilio_turns_twilio_phone_number_into_number(api: Api) -> None:
    """POST /phone-number/import/twilio is a 201 twilio number; `twilioPhoneNumber` is `number`."""
    reply = await api.post(
        "/phone-number/import/twilio",
        {
            "twilioPhoneNumber": "+14155550177",
            "twilioAccountSid": "AC0123456789abcdef0123456789abcdef",
            "twilioApiKey": "SK0123456789abcdef",
            "twilioApiSecret": "twilio-api-secret-SECRET-0002",
            "name": "Imported",
            "assistantId": "assistant-1",
        },
    )
    imported = expect(reply, 201)
    assert imported["provider"] == "twilio"
    assert imported["number"] == "+14155550177"
    assert "twilioPhoneNumber" not in imported
    assert imported["smsEnabled"] is True
    assert imported["twilioApiKey"] == "SK0123456789abcdef"
    assert imported["name"] == "Imported"
    assert expect(await api.get(f"/phone-number/{imported['id']}"), 200) == imported

    # The same number through either endpoint is one number.
    clash = await api.post("/phone-number", twilio_body("+14155550177"))
    assert clash.status == 409


async def test_import_twilio_validates_like_its_schema(api: Api) -> None:
    """The import DTO requires its two fields and refuses `number` and `provider`."""
    missing = await api.post("/phone-number/import/twilio", {"twilioAccountSid": "AC1"})
    assert "twilioPhoneNumber is required" in rejected(missing)
    for extra in ({"number": "+14155550100"}, {"provider": "twilio"}):
        reply = await api.post(
            "/phone-number/import/twilio",
            {"twilioPhoneNumber": "+14155550178", "twilioAccountSid": "AC1", **extra},
        )
        assert reply.status == 400
        assert f"property {next(iter(extra))} should not exist" in messages(reply)
    half_key = await api.post(
        "/phone-number/import/twilio",
        {"twilioPhoneNumber": "+14155550178", "twilioAccountSid": "AC1", "twilioApiKey": "SK1"},
    )
    assert "twilioApiKey and twilioApiSecret go together" in messages(
        expect(half_key, 400) and half_key
    )


async def test_vapi_number_keeps_the_given_sip_uri_with_authentication(api: Api) -> None:
    """A vapi number with a sipUri and SIP digest authentication keeps both (password masked)."""
    created = await api.create_number(
        vapi_body("sip:Front-Desk@sip.example.com", authentication=sip_authentication())
    )
    assert created["sipUri"] == "sip:Front-Desk@sip.example.com"
    assert created["authentication"] == SIP_AUTHENTICATION_MASKED
    stored = await api.app[PHONE_NUMBERS].get(DEFAULT_ORG, created["id"])
    assert isinstance(stored, VapiPhoneNumber)
    assert stored.authentication is not None
    assert stored.authentication.password == SIP_PASSWORD


async def test_vapi_number_without_sip_uri_gets_one_on_the_configured_domain(api: Api) -> None:
    """No sipUri: one is generated on `sip_domain`, different for each number."""
    first = await api.create_number(vapi_body(None))
    second = await api.create_number(vapi_body(None, name="second"))
    pattern = re.compile(rf"^sip:[0-9a-f]{{16}}@{re.escape(SIP_DOMAIN)}$")
    assert pattern.match(first["sipUri"]), first["sipUri"]
    assert pattern.match(second["sipUri"]), second["sipUri"]
    assert first["sipUri"] != second["sipUri"]


async def test_vapi_sip_uri_is_unique_case_insensitively(api: Api) -> None:
    """`sipUri` is the vapi number's key, compared case-insensitively."""
    created = await api.create_number(vapi_body("sip:desk@sip.example.com"))
    clash = await api.post("/phone-number", vapi_body("SIP:DESK@SIP.EXAMPLE.COM"))
    assert clash.status == 409
    assert created["id"] in messages(clash)


async def test_number_desired_area_code_is_a_clear_400(api: Api) -> None:
    """This deployment cannot buy numbers: an area code on create or PATCH is refused, clearly."""
    reply = await api.post("/phone-number", vapi_body(None, numberDesiredAreaCode="415"))
    assert reply.status == 400
    assert "cannot buy numbers" in messages(reply)

    created = await api.create_number(vapi_body())
    patched = await api.patch(f"/phone-number/{created['id']}", {"numberDesiredAreaCode": "415"})
    assert patched.status == 400
    assert "cannot buy numbers" in messages(patched)


async def test_credential_numbers_need_a_credential_of_their_provider(api: Api) -> None:
    """telnyx needs a telnyx credential, vonage a vonage one, byo a byo-sip-trunk one."""
    telnyx = await api.create_credential(telnyx_credential())
    vonage = await api.create_credential(vonage_credential())
    trunk = await api.create_credential(trunk_credential())
    unknown = str(uuid.uuid4())

    for body, wanted in (
        (telnyx_body(vonage["id"]), "telnyx"),
        (vonage_body(trunk["id"]), "vonage"),
        (byo_body(telnyx["id"]), "byo-sip-trunk"),
    ):
        reply = await api.post("/phone-number", body)
        assert reply.status == 400
        assert f"need a {wanted} credential" in messages(reply)
    for body in (telnyx_body(unknown), vonage_body(unknown), byo_body(unknown)):
        reply = await api.post("/phone-number", body)
        assert reply.status == 400
        assert "does not name a credential of this org" in messages(reply)
    for body in (
        {"provider": "telnyx", "number": "+14155550111"},
        {"provider": "vonage", "number": "+14155550111"},
        {"provider": "byo-phone-number", "number": "+14155550111"},
    ):
        assert "credentialId is required" in messages(await api.post("/phone-number", body))

    created = await api.create_number(telnyx_body(telnyx["id"]))
    moved = await api.patch(f"/phone-number/{created['id']}", {"credentialId": vonage["id"]})
    assert moved.status == 400
    assert "need a telnyx credential" in messages(moved)


async def test_byo_number_follows_the_e164_switch(api: Api) -> None:
    """byo numbers are E.164 unless `numberE164CheckEnabled` is false, then alphanumeric."""
    trunk = await api.create_credential(trunk_credential())
    cred = trunk["id"]
    assert (await api.post("/phone-number", byo_body(cred, "1234"))).status == 400
    for number in ("1234", "+001234567890", "abc", "Front1"):
        created = await api.create_number(byo_body(cred, number, numberE164CheckEnabled=False))
        assert created["number"] == number
        assert created["numberE164CheckEnabled"] is False
    for bad in ("12 34", "+12-34", "sip:abc", "ab"):
        reply = await api.post("/phone-number", byo_body(cred, bad, numberE164CheckEnabled=False))
        assert reply.status == 400, bad


async def test_byo_patch_of_a_non_e164_number_keeps_the_records_switch(api: Api) -> None:
    """PATCH `number` alone on a number with the E.164 check off is checked under that switch."""
    trunk = await api.create_credential(trunk_credential())
    created = await api.create_number(byo_body(trunk["id"], "1234", numberE164CheckEnabled=False))
    path = f"/phone-number/{created['id']}"
    patched = expect(await api.patch(path, {"number": "5678"}), 200)
    assert patched["number"] == "5678"
    assert patched["numberE164CheckEnabled"] is False

    # Turning the check on with a non-E.164 number is refused; with an E.164 one it works.
    assert (await api.patch(path, {"numberE164CheckEnabled": True})).status == 400
    both = {"numberE164CheckEnabled": True, "number": "+14155550190"}
    assert expect(await api.patch(path, both), 200)["numberE164CheckEnabled"] is True
    assert (await api.patch(path, {"number": "5678"})).status == 400


# --- PATCH ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_patch_sets_and_null_clears_optional_fields(api: Api, provider: str) -> None:
    """PATCH changes only what it sends; `null` removes a field; updatedAt moves, createdAt not."""
    created = await api.create_number(await number_body(api, provider))
    path = f"/phone-number/{created['id']}"
    fields = {
        "name": "Support line",
        "assistantId": "assistant-9",
        "server": {"url": "https://customer.example.com/hook", "timeoutSeconds": 5},
        "status": "blocked",
    }
    patched = expect(await api.patch(path, fields), 200)
    for field, value in fields.items():
        assert patched[field] == value
    assert patched["createdAt"] == created["createdAt"]
    assert patched["updatedAt"] > created["updatedAt"]
    assert patched["provider"] == provider

    cleared = expect(await api.patch(path, {"name": None, "server": None}), 200)
    assert "name" not in cleared
    assert "server" not in cleared
    assert cleared["assistantId"] == "assistant-9"
    assert expect(await api.get(path), 200) == cleared

    # An empty PATCH changes nothing but updatedAt.
    same = expect(await api.patch(path, {}), 200)
    assert {k: v for k, v in same.items() if k != "updatedAt"} == {
        k: v for k, v in cleared.items() if k != "updatedAt"
    }


@pytest.mark.parametrize(
    ("provider", "required"),
    [
        ("twilio", ["number", "twilioAccountSid"]),
        ("telnyx", ["number", "credentialId"]),
        ("vonage", ["number", "credentialId"]),
        ("vapi", ["sipUri"]),
        ("byo-phone-number", ["credentialId"]),
    ],
)
async def test_patch_cannot_clear_required_fields(
    api: Api, provider: str, required: list[str]
) -> None:
    """`null` on a field the record requires is a 400 naming it; nothing changes."""
    created = await api.create_number(await number_body(api, provider))
    path = f"/phone-number/{created['id']}"
    for field in required:
        reply = await api.patch(path, {field: None})
        assert reply.status == 400
        assert f"{field} cannot be removed" in messages(reply)
    assert expect(await api.get(path), 200) == created


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_patch_provider_must_be_the_numbers_own(api: Api, provider: str) -> None:
    """Echoing the number's own provider is fine; another provider is a 400."""
    created = await api.create_number(await number_body(api, provider))
    path = f"/phone-number/{created['id']}"
    assert expect(await api.patch(path, {"provider": provider, "name": "x"}), 200)["name"] == "x"
    other = "vapi" if provider != "vapi" else "twilio"
    reply = await api.patch(path, {"provider": other})
    assert reply.status == 400
    assert "provider cannot be changed" in messages(reply)


async def test_patch_validates_with_the_providers_update_dto(api: Api) -> None:
    """A field of another provider's DTO is refused on PATCH, as on create."""
    created = await api.create_number(twilio_body())
    path = f"/phone-number/{created['id']}"
    reply = await api.patch(path, {"sipUri": "sip:a@b.example"})
    assert "property sipUri should not exist" in rejected(reply)
    reply = await api.patch(path, {"name": "x" * 41})
    assert "name must be shorter than or equal to 40 characters" in rejected(reply)


async def test_patch_echoing_a_masked_secret_keeps_the_stored_one(api: Api) -> None:
    """A client that PATCHes back what GET showed (masked) does not overwrite the secret."""
    created = await api.create_number(twilio_body())
    path = f"/phone-number/{created['id']}"
    masked = created["twilioAuthToken"]
    assert masked != TWILIO_AUTH_TOKEN

    echoed = expect(await api.patch(path, {"twilioAuthToken": masked, "name": "echo"}), 200)
    assert echoed["twilioAuthToken"] == masked
    stored = await api.app[PHONE_NUMBERS].get(DEFAULT_ORG, created["id"])
    assert isinstance(stored, TwilioPhoneNumber)
    assert stored.twilio_auth_token == TWILIO_AUTH_TOKEN

    # A new secret replaces it.
    replaced = expect(await api.patch(path, {"twilioAuthToken": "a-brand-new-token-value"}), 200)
    assert replaced["twilioAuthToken"].endswith("alue")
    stored = await api.app[PHONE_NUMBERS].get(DEFAULT_ORG, created["id"])
    assert isinstance(stored, TwilioPhoneNumber)
    assert stored.twilio_auth_token == "a-brand-new-token-value"


async def test_patch_echoing_masked_sip_authentication_keeps_the_password(api: Api) -> None:
    """Echoing the whole masked `authentication` object keeps the stored SIP password."""
    created = await api.create_number(vapi_body(authentication=sip_authentication()))
    path = f"/phone-number/{created['id']}"
    echoed = expect(await api.patch(path, {"authentication": created["authentication"]}), 200)
    assert echoed["authentication"] == SIP_AUTHENTICATION_MASKED
    stored = await api.app[PHONE_NUMBERS].get(DEFAULT_ORG, created["id"])
    assert isinstance(stored, VapiPhoneNumber)
    assert stored.authentication is not None
    assert stored.authentication.password == SIP_PASSWORD


async def test_patch_number_moves_the_uniqueness_claim(api: Api) -> None:
    """After a number changes, its old number is free and its new one is taken."""
    created = await api.create_number(twilio_body("+14155550120"))
    patched = expect(
        await api.patch(f"/phone-number/{created['id']}", {"number": "+14155550121"}), 200
    )
    assert patched["number"] == "+14155550121"

    freed = await api.create_number(twilio_body("+14155550120"))
    assert freed["id"] != created["id"]
    taken = await api.post("/phone-number", twilio_body("+14155550121"))
    assert taken.status == 409
    assert created["id"] in messages(taken)

    # Moving onto a claimed number is a 409 and changes nothing.
    clash = await api.patch(f"/phone-number/{freed['id']}", {"number": "+14155550121"})
    assert clash.status == 409
    assert expect(await api.get(f"/phone-number/{freed['id']}"), 200) == freed


async def test_patch_sip_uri_moves_the_uniqueness_claim(api: Api) -> None:
    """The same for a vapi number's sipUri."""
    created = await api.create_number(vapi_body("sip:old@sip.example.com"))
    path = f"/phone-number/{created['id']}"
    expect(await api.patch(path, {"sipUri": "sip:new@sip.example.com"}), 200)
    await api.create_number(vapi_body("sip:old@sip.example.com"))
    assert (await api.post("/phone-number", vapi_body("sip:NEW@sip.example.com"))).status == 409


async def test_delete_frees_the_number(api: Api) -> None:
    """A deleted number's key can be claimed again."""
    created = await api.create_number(twilio_body("+14155550130"))
    expect(await api.delete(f"/phone-number/{created['id']}"), 200)
    again = await api.create_number(twilio_body("+14155550130"))
    assert again["id"] != created["id"]


async def test_same_number_on_different_providers_or_trunks_is_allowed(api: Api) -> None:
    """Uniqueness is per provider (and per trunk for byo), not per digits."""
    telnyx = await api.create_credential(telnyx_credential())
    trunk_a = await api.create_credential(trunk_credential())
    trunk_b = await api.create_credential(trunk_credential(name="second trunk"))
    await api.create_number(twilio_body("+14155550140"))
    await api.create_number(telnyx_body(telnyx["id"], "+14155550140"))
    await api.create_number(byo_body(trunk_a["id"], "+14155550140"))
    await api.create_number(byo_body(trunk_b["id"], "+14155550140"))
    clash = await api.post("/phone-number", byo_body(trunk_a["id"], "+14155550140"))
    assert clash.status == 409
    assert len(await api.list_numbers()) == 4
