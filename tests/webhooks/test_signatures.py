"""X-Twilio-Signature over real HTTP: what is accepted, and that anything else is refused
(403 without a signature at all, else the same `<Reject/>` an unknown number gets), logged,
never routed, and never reaches the customer's server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import pytest

from router.providers import twiml

from .conftest import (
    ACCOUNT_SID,
    API_SECRET,
    CREDENTIAL_TOKEN,
    OTHER_ACCOUNT_SID,
    OTHER_TOKEN,
    PUBLIC_URL,
    TOKEN,
    Answer,
    Customer,
    Logs,
    Router,
    sign,
    stream_parameters,
    voice_form,
)


@pytest.fixture
async def number(router: Router, customer: Customer) -> dict[str, object]:
    """A number whose calls go to the customer's server: a routed call is visible there."""
    return await router.create_number(server={"url": customer.url})


def assert_refused(answer: Answer) -> None:
    """The answer an unknown number gets too: Twilio's `<Reject/>`, not billed."""
    assert (answer.status, answer.body) == (200, twiml.REJECT)


def assert_connected(answer: Answer, customer: Customer, logs: Logs) -> None:
    assert stream_parameters(answer.root)["targetId"] == "asst-1"
    assert len(customer.assistant_requests) == 1
    assert len(logs.routed()) == 1


async def test_a_signed_form_post_is_routed(
    router: Router, number: dict[str, object], customer: Customer, logs: Logs
) -> None:
    """A POST signed with the number's auth token over the public URL is accepted."""
    assert_connected(await router.voice(), customer, logs)
    assert logs.named("webhook.rejected") == []


async def test_a_url_signed_with_its_explicit_default_port_is_accepted(
    router: Router, number: dict[str, object], customer: Customer, logs: Logs
) -> None:
    """Twilio may sign `https://host:443/...`; the router's public URL has no port."""
    answer = await router.post(voice_form(), signed_url=f"{PUBLIC_URL}:443/twilio/voice")
    assert_connected(answer, customer, logs)


async def test_a_json_body_bound_by_body_sha256_is_accepted(
    router: Router, number: dict[str, object], customer: Customer, logs: Logs
) -> None:
    """A JSON POST: the URL carrying `bodySHA256` is signed, and the body's hash matches."""
    assert_connected(await router.post_json(voice_form()), customer, logs)


async def test_a_number_without_a_token_is_verified_with_the_orgs_twilio_credential(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """A number imported with an API key and secret only is verified with the auth token of
    the org's `twilio` credential for its account; another token is still refused."""
    await router.create_credential(
        {"provider": "twilio", "accountSid": ACCOUNT_SID, "authToken": CREDENTIAL_TOKEN}
    )
    await router.create_number(
        twilioAuthToken=None,
        twilioApiKey="SK0123456789abcdef0123456789abcdef",
        twilioApiSecret=API_SECRET,
        server={"url": customer.url},
    )
    assert_refused(await router.post(voice_form(), token=TOKEN))
    assert [e["reason"] for e in logs.named("webhook.rejected")] == ["bad-signature"]
    assert_connected(await router.post(voice_form(), token=CREDENTIAL_TOKEN), customer, logs)


async def test_a_credential_of_another_account_does_not_verify(
    router: Router, customer: Customer, logs: Logs
) -> None:
    """Only a credential for the number's own AccountSid counts."""
    await router.create_credential(
        {"provider": "twilio", "accountSid": OTHER_ACCOUNT_SID, "authToken": CREDENTIAL_TOKEN}
    )
    await router.create_number(
        twilioAuthToken=None,
        twilioApiKey="SK0123456789abcdef0123456789abcdef",
        twilioApiSecret=API_SECRET,
        server={"url": customer.url},
    )
    assert_refused(await router.post(voice_form(), token=CREDENTIAL_TOKEN))
    assert [e["reason"] for e in logs.named("webhook.rejected")] == ["no-auth-token"]
    assert customer.received == []


Send = Callable[[Router], Awaitable[Answer]]


async def _forged(router: Router) -> Answer:
    return await router.post(voice_form(), signature="dGhpcyBpcyBub3QgYSBzaWduYXR1cmU=")


async def _wrong_token(router: Router) -> Answer:
    return await router.post(voice_form(), token=OTHER_TOKEN)


async def _tampered_field(router: Router) -> Answer:
    form = voice_form()
    signature = sign(f"{PUBLIC_URL}/twilio/voice", form)
    return await router.post(form | {"From": "+19005550000"}, signature=signature)


async def _other_url(router: Router) -> Answer:
    return await router.post(voice_form(), signed_url="https://attacker.example.com/twilio/voice")


async def _json_body_swapped(router: Router) -> Answer:
    signed = json.dumps(voice_form())
    path = f"/twilio/voice?bodySHA256={hashlib.sha256(signed.encode()).hexdigest()}"
    sent = json.dumps(voice_form(From="+19005550000"))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Signature": sign(PUBLIC_URL + path, None),
    }
    return await router.send("POST", path, sent.encode(), headers)


async def _undecodable_header(router: Router) -> Answer:
    # Raw bytes on the wire: no HTTP client sends a header that is not UTF-8, a forger may.
    headers = (
        b"Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: \xff\xfe=\r\n"
    )
    return await router.send_raw("POST", "/twilio/voice", headers, urlencode(voice_form()).encode())


async def _json_without_hash(router: Router) -> Answer:
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Signature": sign(f"{PUBLIC_URL}/twilio/voice", None),
    }
    return await router.send("POST", "/twilio/voice", json.dumps(voice_form()).encode(), headers)


@pytest.mark.parametrize(
    ("send", "reason"),
    [
        pytest.param(_forged, "bad-signature", id="forged"),
        pytest.param(_wrong_token, "bad-signature", id="wrong-token"),
        pytest.param(_tampered_field, "bad-signature", id="tampered-field"),
        pytest.param(_other_url, "bad-signature", id="signed-for-another-url"),
        pytest.param(_json_body_swapped, "body-hash-mismatch", id="json-body-swapped"),
        pytest.param(_json_without_hash, "missing-body-hash", id="json-without-body-hash"),
        pytest.param(_undecodable_header, "bad-signature", id="signature-not-utf-8"),
    ],
)
async def test_a_request_failing_verification_is_refused_and_never_routed(
    router: Router,
    number: dict[str, object],
    customer: Customer,
    logs: Logs,
    send: Send,
    reason: str,
) -> None:
    """The reject an unknown number gets, one `webhook.rejected` with the reason and the
    number, no `call.routed`, and no assistant-request reaches the customer's server."""
    assert_refused(await send(router))
    [event] = logs.named("webhook.rejected")
    assert event["reason"] == reason
    assert (event["provider"], event["path"]) == ("twilio", "/twilio/voice")
    assert (event["org_id"], event["phone_number_id"]) == ("default", number["id"])
    assert logs.routed() == []
    assert customer.received == []


async def test_a_status_callback_failing_verification_changes_nothing(
    router: Router, number: dict[str, object], customer: Customer, logs: Logs
) -> None:
    """A forged status callback gets the ack an unknown number's gets: no call record, no
    status-update forwarded."""
    answer = await router.post(
        {"AccountSid": ACCOUNT_SID, "CallSid": "CAforged", "CallStatus": "completed"}
        | {"To": "+14155550100", "From": "+14155550123"},
        path="/twilio/status",
        token=OTHER_TOKEN,
    )
    assert (answer.status, answer.body) == (200, twiml.EMPTY)
    assert [e["reason"] for e in logs.named("webhook.rejected")] == ["bad-signature"]
    assert (await router.call_record("CAforged"))[0] == 404
    assert logs.named("call.status") == []
    assert customer.received == []


async def test_a_request_without_a_signature_is_403_before_any_lookup(
    router: Router, number: dict[str, object], customer: Customer, logs: Logs
) -> None:
    """No X-Twilio-Signature at all: 403 whatever the number, and no number is named."""
    answer = await router.post(voice_form(), signed=False)
    assert answer.status == 403
    [event] = logs.named("webhook.rejected")
    assert event["reason"] == "missing-signature"
    assert event.get("phone_number_id") is None
    assert logs.routed() == []
    assert customer.received == []


async def test_a_request_signed_for_another_account_finds_no_number(
    router: Router, number: dict[str, object], customer: Customer, logs: Logs
) -> None:
    """Signed with the number's token but naming another AccountSid: numbers are keyed by
    account, so no number answers to it (an unknown number), and nothing is routed."""
    assert_refused(await router.post(voice_form(AccountSid=OTHER_ACCOUNT_SID)))
    [event] = logs.named("webhook.unknown_number")
    assert OTHER_ACCOUNT_SID in str(event["to"])
    assert logs.routed() == []
    assert customer.received == []
