"""Numbers belong to a provider account: a registration under another account can neither
block nor intercept the owner's, and requests that are not the provider's cannot tell known
numbers from unknown ones."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from pytest_aiohttp import AiohttpServer

from router.state import STORE
from router.store.interface import KIND_PHONE_NUMBER

from .conftest import (
    ACCOUNT_SID,
    API_KEY,
    NUMBER,
    OTHER_ACCOUNT_SID,
    OTHER_KEY,
    OTHER_TOKEN,
    PUBLIC_URL,
    TOKEN,
    Answer,
    Customer,
    Logs,
    Router,
    sign,
    start_customer,
    status_form,
    stream_parameters,
    voice_form,
)

UNKNOWN = "+14155550999"
# The key a number stored before numbers were keyed by account still claims.
NUMBER_ONLY_KEY = f"twilio:{NUMBER}"


async def squat(router: Router, server_url: str) -> dict[str, Any]:
    """Org B registers our number under B's own Twilio account."""
    return await router.create_number(
        key=OTHER_KEY,
        twilioAccountSid=OTHER_ACCOUNT_SID,
        twilioAuthToken=OTHER_TOKEN,
        server={"url": server_url},
    )


def theirs() -> dict[str, str]:
    """A call to the same number, as B's Twilio account sends it."""
    return voice_form(AccountSid=OTHER_ACCOUNT_SID)


async def routed_to(router: Router, fields: Mapping[str, str], token: str, to: Customer) -> None:
    before = len(to.assistant_requests)
    answer = await router.post(fields, token=token)
    assert stream_parameters(answer.root)["callId"] == fields["CallSid"]
    assert len(to.assistant_requests) == before + 1


# --- squatting ----------------------------------------------------------------------------


async def test_a_number_registered_under_another_account_blocks_nothing(
    router_on: Router, customer: Customer, aiohttp_server: AiohttpServer
) -> None:
    """Org B registers our number first, under B's account: our create is still a 201, our
    account's signed calls reach our server, and B's account's reach B's."""
    router = router_on
    their_server = await start_customer(aiohttp_server)
    await squat(router, their_server.url)
    ours = await router.create_number(server={"url": customer.url})
    assert ours["twilioAccountSid"] == ACCOUNT_SID

    await routed_to(router, voice_form(), TOKEN, customer)
    await routed_to(router, theirs(), OTHER_TOKEN, their_server)
    assert len(customer.assistant_requests) == 1
    assert len(their_server.assistant_requests) == 1


async def test_the_same_account_and_number_twice_is_409(router_on: Router) -> None:
    """A number belongs to one account at Twilio: a second registration of that account's
    number is a 409, from our org and from another."""
    router = router_on
    await router.create_number()
    for key in (API_KEY, OTHER_KEY):
        async with router.client.post(
            "/phone-number",
            json={
                "provider": "twilio",
                "number": NUMBER,
                "twilioAccountSid": ACCOUNT_SID,
                "twilioAuthToken": TOKEN,
            },
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            assert response.status == 409, await response.text()


# --- numbers stored before numbers were keyed by account ----------------------------------


async def stored_the_old_way(router: Router, **fields: Any) -> dict[str, Any]:
    """A number as an older version stored it: its document claiming `twilio:+E164`."""
    created = await router.create_number(**fields)
    store = router.client.app[STORE]
    doc = await store.delete(KIND_PHONE_NUMBER, "default", created["id"])
    assert doc is not None
    await store.create(KIND_PHONE_NUMBER, doc, NUMBER_ONLY_KEY)
    assert (await store.lookup(f"twilio:{ACCOUNT_SID}:{NUMBER}")) is None
    return created


async def test_a_number_stored_by_an_older_version_still_routes(
    router_on: Router, customer: Customer, aiohttp_server: AiohttpServer
) -> None:
    """Its number-only claim is found when the account's key misses; another account may
    register the number beside it; the same account may not; an update moves its claim
    to the account's key."""
    router = router_on
    ours = await stored_the_old_way(router, server={"url": customer.url})
    await routed_to(router, voice_form(), TOKEN, customer)

    their_server = await start_customer(aiohttp_server)
    await squat(router, their_server.url)
    await routed_to(router, theirs(), OTHER_TOKEN, their_server)
    await routed_to(router, voice_form(), TOKEN, customer)

    async with router.client.post(
        "/phone-number",
        json={"provider": "twilio", "number": NUMBER, "twilioAccountSid": ACCOUNT_SID},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert response.status == 409
        assert ours["id"] in (await response.json())["message"]

    await router.patch_number(ours["id"], name="moved")
    store = router.client.app[STORE]
    moved = await store.lookup(f"twilio:{ACCOUNT_SID}:{NUMBER}")
    assert moved is not None and moved["id"] == ours["id"]
    assert await store.lookup(NUMBER_ONLY_KEY) is None
    await routed_to(router, voice_form(), TOKEN, customer)


# --- probing ------------------------------------------------------------------------------


async def exchange(
    router: Router, fields: Mapping[str, str], path: str, signature: str | None
) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers (but `Date`) of the answer to a form POST."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    async with router.client.post(path, data=urlencode(fields), headers=headers) as response:
        body = await response.read()
        kept = {k: v for k, v in response.headers.items() if k.lower() != "date"}
        return response.status, body, kept


@pytest.mark.parametrize("path", ["/twilio/voice", "/twilio/status"])
@pytest.mark.parametrize(
    "signing",
    ["unsigned", "forged", "other-token", "our-token-other-account"],
)
async def test_a_request_that_is_not_the_providers_tells_nothing_of_the_number(
    router: Router, customer: Customer, logs: Logs, path: str, signing: str
) -> None:
    """The same status, body and headers for a known number and an unknown one, whether
    the request is unsigned (403 before any lookup) or badly signed (the answer an unknown
    number gets); the events still tell ops which it was, and nothing is routed."""
    await router.create_number(server={"url": customer.url})
    form = voice_form() if path == "/twilio/voice" else status_form("CAprobe", "completed")
    answers = []
    for to in (NUMBER, UNKNOWN):
        fields = form | {"To": to, "Called": to}
        if signing == "our-token-other-account":
            fields |= {"AccountSid": OTHER_ACCOUNT_SID}
        signature = {
            "unsigned": None,
            "forged": "dGhpcyBpcyBub3QgYSBzaWduYXR1cmU=",
            "other-token": sign(PUBLIC_URL + path, fields, OTHER_TOKEN),
            "our-token-other-account": sign(PUBLIC_URL + path, fields, TOKEN),
        }[signing]
        answers.append(await exchange(router, fields, path, signature))
    known, unknown = answers
    assert known == unknown
    assert known[0] == (403 if signing == "unsigned" else 200)
    assert logs.routed() == []
    assert customer.received == []
    if signing == "unsigned":
        assert [e["reason"] for e in logs.named("webhook.rejected")] == ["missing-signature"] * 2
    elif signing == "our-token-other-account":  # keyed by account: neither number is found
        assert len(logs.named("webhook.unknown_number")) == 2
    else:
        assert len(logs.named("webhook.rejected")) == 1
        assert len(logs.named("webhook.unknown_number")) == 1


# --- Vonage: keyed by the account its token's `api_key` names ------------------------------

VONAGE_KEYS = {API_KEY: "acct-ours", OTHER_KEY: "acct-theirs"}
VONAGE_SECRETS = {
    API_KEY: "vonage-signature-secret-of-ours-0123",
    OTHER_KEY: "vonage-signature-secret-of-theirs-01",
}


async def vonage_credential(router: Router, key: str, api_key: str | None = None) -> str:
    """A Vonage credential of `key`'s org (its own account unless `api_key` says which)."""
    credential = await router.create_credential(
        {
            "provider": "vonage",
            "apiKey": api_key or VONAGE_KEYS[key],
            "apiSecret": "vonage-api-secret",
            "signatureSecret": VONAGE_SECRETS[key],
        },
        key=key,
    )
    return str(credential["id"])


async def vonage_number(router: Router, key: str, server_url: str) -> dict[str, Any]:
    """`NUMBER` registered by `key`'s org under its own Vonage account."""
    return await router.create_number(
        key=key,
        provider="vonage",
        twilioAccountSid=None,
        twilioAuthToken=None,
        credentialId=await vonage_credential(router, key),
        server={"url": server_url},
    )


async def vonage_call(router: Router, key: str, uuid: str) -> Answer:
    """A call to `NUMBER` as the Vonage account of `key`'s org sends it, signed."""
    body = json.dumps({"to": NUMBER[1:], "from": "14155550123", "uuid": uuid}).encode()
    claims = {
        "iat": int(time.time()),
        "jti": uuid,
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": VONAGE_KEYS[key],
    }
    token = jwt.encode(claims, VONAGE_SECRETS[key], algorithm="HS256")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return await router.send("POST", "/vonage/answer", body, headers)


async def vonage_routed_to(router: Router, key: str, to: Customer) -> None:
    before = len(to.assistant_requests)
    uuid = f"call-{key[-9:]}-{before}"
    answer = await vonage_call(router, key, uuid)
    assert answer.status == 200, answer.body
    assert uuid.encode() in answer.body  # the runtime's websocket names the call
    assert len(to.assistant_requests) == before + 1


async def test_a_vonage_number_registered_under_another_account_blocks_nothing(
    router_on: Router, customer: Customer, aiohttp_server: AiohttpServer
) -> None:
    """Org B registers our Vonage number first, under B's account: our create is a 201 and
    each account's signed calls reach its own org's server; the number's key names the
    account (`vonage:<apiKey>:+E164`)."""
    router = router_on
    their_server = await start_customer(aiohttp_server)
    await vonage_number(router, OTHER_KEY, their_server.url)
    await vonage_number(router, API_KEY, customer.url)
    store = router.client.app[STORE]
    for key in (API_KEY, OTHER_KEY):
        assert await store.lookup(f"vonage:{VONAGE_KEYS[key]}:{NUMBER}") is not None
    assert await store.lookup(f"vonage:{NUMBER}") is None

    await vonage_routed_to(router, API_KEY, customer)
    await vonage_routed_to(router, OTHER_KEY, their_server)
    assert len(customer.assistant_requests) == len(their_server.assistant_requests) == 1


async def test_the_same_vonage_account_and_number_twice_is_409(
    router_on: Router, customer: Customer
) -> None:
    """A second registration of the number under the same account is a 409, from our
    org and from another that holds a credential naming the same account."""
    router = router_on
    await vonage_number(router, API_KEY, customer.url)
    for key in (API_KEY, OTHER_KEY):
        credential_id = await vonage_credential(router, key, api_key=VONAGE_KEYS[API_KEY])
        async with router.client.post(
            "/phone-number",
            json={"provider": "vonage", "number": NUMBER, "credentialId": credential_id},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            assert response.status == 409, await response.text()


async def test_a_vonage_number_stored_by_an_older_version_still_routes(
    router_on: Router, customer: Customer, aiohttp_server: AiohttpServer
) -> None:
    """A number claiming `vonage:+E164` is found when the account's key misses; another
    account may register the number beside it, the same account may not; an update
    moves its claim to the account's key."""
    router = router_on
    ours = await vonage_number(router, API_KEY, customer.url)
    store = router.client.app[STORE]
    doc = await store.delete(KIND_PHONE_NUMBER, "default", ours["id"])
    assert doc is not None
    await store.create(KIND_PHONE_NUMBER, doc, f"vonage:{NUMBER}")
    await vonage_routed_to(router, API_KEY, customer)

    their_server = await start_customer(aiohttp_server)
    await vonage_number(router, OTHER_KEY, their_server.url)
    await vonage_routed_to(router, OTHER_KEY, their_server)
    await vonage_routed_to(router, API_KEY, customer)

    async with router.client.post(
        "/phone-number",
        json={"provider": "vonage", "number": NUMBER, "credentialId": ours["credentialId"]},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert response.status == 409
        assert ours["id"] in (await response.json())["message"]

    await router.patch_number(ours["id"], name="moved")
    moved = await store.lookup(f"vonage:{VONAGE_KEYS[API_KEY]}:{NUMBER}")
    assert moved is not None and moved["id"] == ours["id"]
    assert await store.lookup(f"vonage:{NUMBER}") is None
    await vonage_routed_to(router, API_KEY, customer)


async def test_a_vonage_credentials_api_key_cannot_change(
    router: Router, customer: Customer
) -> None:
    """Its numbers are found by it: a new apiKey is a 400 that says why, and the calls
    still route; the same apiKey and the other fields may be sent."""
    ours = await vonage_number(router, API_KEY, customer.url)
    path = f"/credential/{ours['credentialId']}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with router.client.patch(path, json={"apiKey": "acct-new"}, headers=headers) as reply:
        assert reply.status == 400
        assert "apiKey cannot be changed" in (await reply.json())["message"][0]
    same = {"apiKey": VONAGE_KEYS[API_KEY], "apiSecret": "rotated-secret", "name": "main"}
    async with router.client.patch(path, json=same, headers=headers) as reply:
        assert reply.status == 200, await reply.text()
    await vonage_routed_to(router, API_KEY, customer)
