"""Credentials that are not UTF-8 text, over real HTTP: each is refused as a wrong one is
(403, 401, the provider's reject), never a 500.

aiohttp keeps a header's undecodable bytes as lone surrogates (`\\xff` becomes '\\udcff'),
and JSON's `\\udcff` escapes decode to them too: strict UTF-8 cannot encode either. No
HTTP client sends such a header, so those requests are written as raw bytes on a socket.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr

from router.providers import PROVIDERS

from .conftest import API_KEY, NUMBER, Answer, Logs, MakeRouter, Router, sign, voice_form

EDGE_SECRET = "edge-secret-SECRET-header-bytes-01"
VONAGE_SIGNATURE_SECRET = "vonage-signature-SECRET-header-bytes-02"
VONAGE_API_KEY = "a1b2c3d4"
SIP_URI = "sip:support@sip.example.com"
NOT_UTF8 = b"\xff\xfe\xc3"  # a lone continuation byte, a BOM half, a truncated sequence


@pytest.fixture(autouse=True)
def secrets_stay_out_of_logs(logs: Logs) -> Iterator[None]:
    """This module's own secrets, in no log event (the shared fixture checks the others)."""
    yield
    dumped = json.dumps(logs.events, default=str)
    assert EDGE_SECRET not in dumped
    assert VONAGE_SIGNATURE_SECRET not in dumped


def json_headers(authorization: bytes) -> bytes:
    return b"Content-Type: application/json\r\nAuthorization: " + authorization + b"\r\n"


def reject_of(answer: Answer, provider: str) -> bool:
    """Whether `answer` is the provider's reject: what a request failing verification for a
    known number gets, as an unknown number does."""
    return (answer.status, answer.body) == (200, PROVIDERS[provider].reject().body)


def rejections(logs: Logs) -> list[str]:
    return [event["reason"] for event in logs.named("webhook.rejected")]


# --- the SIP edge -------------------------------------------------------------------------


@pytest.fixture
async def edge(make_router: MakeRouter) -> Router:
    """A router that takes route requests from a SIP edge holding `EDGE_SECRET`."""
    return await make_router(sip_edge_secret=SecretStr(EDGE_SECRET))


async def vapi_number(router: Router) -> None:
    await router.create_number(
        provider="vapi",
        number=None,
        twilioAccountSid=None,
        twilioAuthToken=None,
        sipUri=SIP_URI,
        authentication={"username": "sip-username-header-bytes", "password": "p" * 24},
        assistantId="asst-1",
    )


def route_body(**fields: Any) -> dict[str, Any]:
    return {"callId": "a84b4c76e66710@pbx.example.com", "to": "support", "toUri": SIP_URI} | fields


@pytest.mark.parametrize("path", ["/sip/route", "/sip/status"])
@pytest.mark.parametrize(
    "token",
    [NOT_UTF8, EDGE_SECRET.encode() + NOT_UTF8],
    ids=["not-utf-8", "the-secret-then-not-utf-8"],
)
async def test_an_edge_secret_that_is_not_utf8_is_403_and_never_routed(
    edge: Router, logs: Logs, path: str, token: bytes
) -> None:
    """`Authorization: Bearer` and bytes that are not UTF-8 is a wrong secret: 403, logged
    as `bad-edge-secret`, and nothing looked up or routed."""
    await vapi_number(edge)
    body = json.dumps(route_body(status="ringing")).encode()
    answer = await edge.send_raw("POST", path, json_headers(b"Bearer " + token), body)
    assert answer.status == 403
    assert rejections(logs) == ["bad-edge-secret"]
    assert logs.named("webhook.unknown_number") == []
    assert logs.routed() == []


@pytest.mark.parametrize("field", ["authorization", "callId"])
async def test_a_route_request_with_a_lone_surrogate_is_not_read_and_not_routed(
    edge: Router, logs: Logs, field: str
) -> None:
    """A JSON body whose strings hold a `\\udcff` escape is no JSON router reads: like any
    unreadable body it names no number, so the edge gets the unknown-number reject."""
    await vapi_number(edge)
    text = json.dumps(route_body(**{field: "Digest username=\udcff"}))
    assert "\\udcff" in text
    answer = await edge.send_raw(
        "POST", "/sip/route", json_headers(f"Bearer {EDGE_SECRET}".encode()), text.encode()
    )
    assert (answer.status, answer.content_type) == (200, "application/json")
    assert json.loads(answer.body)["action"] == "reject"
    assert json.loads(answer.body)["status"] == 404
    assert logs.named("webhook.challenged") == []
    assert logs.routed() == []


# --- Vonage -------------------------------------------------------------------------------


async def vonage_number(router: Router) -> None:
    credential = await router.create_credential(
        {
            "provider": "vonage",
            "apiKey": VONAGE_API_KEY,
            "apiSecret": "vonage-api-secret-header-bytes",
            "signatureSecret": VONAGE_SIGNATURE_SECRET,
        }
    )
    await router.create_number(
        provider="vonage",
        twilioAccountSid=None,
        twilioAuthToken=None,
        credentialId=credential["id"],
        assistantId="asst-1",
    )


def answer_body() -> bytes:
    fields = {"to": NUMBER[1:], "from": "14155550123", "uuid": "63f61863-4a51-4f6b-86e1"}
    return json.dumps(fields).encode()


def vonage_token(body: bytes, **claims: Any) -> str:
    """A signed-webhook JWT over `body`, as Vonage signs it; `claims` replace its own."""
    payload = {
        "iat": int(time.time()),
        "jti": "0b4ab7b5-0c0d-4b37-a4bd-9b9e1c2f2c55",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": VONAGE_API_KEY,
    }
    return jwt.encode(payload | claims, VONAGE_SIGNATURE_SECRET, algorithm="HS256")


async def test_a_vonage_token_that_is_not_utf8_is_403_and_never_routed(
    router: Router, logs: Logs
) -> None:
    """A bearer token with bytes that are not UTF-8 is no JWT: 403 `malformed-token`."""
    await vonage_number(router)
    token = b"eyJhbGciOiJIUzI1NiJ9." + NOT_UTF8 + b".c2ln"
    answer = await router.send_raw(
        "POST", "/vonage/answer", json_headers(b"Bearer " + token), answer_body()
    )
    assert answer.status == 403
    assert rejections(logs) == ["malformed-token"]
    assert logs.routed() == []


@pytest.mark.parametrize(
    ("claim", "reason"),
    [("payload_hash", "payload-hash-mismatch"), ("api_key", None)],
)
async def test_a_signed_vonage_claim_with_a_lone_surrogate_is_refused(
    router: Router, logs: Logs, claim: str, reason: str | None
) -> None:
    """A claim is JSON inside the token: a `\\udcff` escape in it is a claim that does not
    match (the reject, with the claim's reason), even in a token signed with the right
    secret. Such an `api_key` names an account no number is held under: the number is
    not found (`webhook.unknown_number`), so the same reject."""
    await vonage_number(router)
    body = answer_body()
    token = vonage_token(body, **{claim: "\udcff"})
    answer = await router.send(
        "POST",
        "/vonage/answer",
        body,
        {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )
    assert reject_of(answer, "vonage")
    assert rejections(logs) == ([reason] if reason else [])
    assert len(logs.named("webhook.unknown_number")) == (0 if reason else 1)
    assert logs.routed() == []


# --- Telnyx -------------------------------------------------------------------------------


async def test_telnyx_headers_that_are_not_utf8_are_refused_and_never_routed(
    router: Router, logs: Logs
) -> None:
    """A `telnyx-signature-ed25519` or `telnyx-timestamp` holding bytes that are not UTF-8
    is refused as a malformed one is."""
    key = Ed25519PrivateKey.generate()
    raw_key = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    credential = await router.create_credential(
        {
            "provider": "telnyx",
            "apiKey": "KEY-telnyx-header-bytes",
            "publicKey": base64.b64encode(raw_key).decode(),
        }
    )
    await router.create_number(
        provider="telnyx",
        twilioAccountSid=None,
        twilioAuthToken=None,
        credentialId=credential["id"],
        assistantId="asst-1",
    )
    body = urlencode({"CallSid": "v3:header-bytes", "From": "+14155550123", "To": NUMBER}).encode()
    stamp = str(int(time.time())).encode()
    signature = base64.b64encode(key.sign(stamp + b"|" + body))
    form = b"Content-Type: application/x-www-form-urlencoded\r\n"

    async def post(timestamp: bytes, signed: bytes) -> Answer:
        headers = form + b"telnyx-timestamp: " + timestamp + b"\r\n"
        headers += b"telnyx-signature-ed25519: " + signed + b"\r\n"
        return await router.send_raw("POST", "/telnyx/voice", headers, body)

    assert reject_of(await post(stamp, NOT_UTF8 + signature), "telnyx")
    assert reject_of(await post(stamp + NOT_UTF8, signature), "telnyx")
    assert rejections(logs) == ["malformed-signature", "bad-timestamp"]
    assert logs.routed() == []


# --- the REST API and the runtime's call records ------------------------------------------


@pytest.mark.parametrize("path", ["/phone-number", "/call/CA0123456789abcdef"])
@pytest.mark.parametrize(
    "key", [NOT_UTF8, API_KEY.encode() + NOT_UTF8], ids=["not-utf-8", "the-key-then-not-utf-8"]
)
async def test_an_api_key_that_is_not_utf8_is_401(router: Router, path: str, key: bytes) -> None:
    """`Authorization: Bearer` and bytes that are not UTF-8 is a wrong key: the 401 in the
    NestJS shape that any key that is not ours gets (the runtime's `/call/{id}` alike)."""
    answer = await router.send_raw("GET", path, b"Authorization: Bearer " + key + b"\r\n")
    assert (answer.status, answer.content_type) == (401, "application/json")
    assert json.loads(answer.body) == {
        "statusCode": 401,
        "error": "Unauthorized",
        "message": "Unauthorized: the API key is not valid",
    }


async def test_an_api_body_with_a_lone_surrogate_is_400(router: Router) -> None:
    """A `\\udcff` escape in a JSON body is not valid JSON text for the API: 400."""
    body = b'{"provider": "vapi", "name": "\\udcff"}'
    headers = b"Content-Type: application/json\r\nAuthorization: Bearer " + API_KEY.encode()
    answer = await router.send_raw("POST", "/phone-number", headers + b"\r\n", body)
    assert answer.status == 400
    assert json.loads(answer.body)["statusCode"] == 400


# --- Twilio behind a proxy ----------------------------------------------------------------


async def test_a_forwarded_host_that_is_not_utf8_fails_the_signature_not_the_worker(
    make_router: MakeRouter, logs: Logs
) -> None:
    """Without ROUTER_PUBLIC_URL the signed URL is built from X-Forwarded-Host as sent: bytes
    that are not UTF-8 sign as themselves, so the request is refused: `bad-signature`."""
    router = await make_router(public_url=None)
    await router.create_number()
    form = urlencode(voice_form()).encode()
    signature = sign("https://example.com/twilio/voice", voice_form())
    headers = (
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com" + NOT_UTF8 + b"\r\n"
        b"X-Twilio-Signature: " + signature.encode() + b"\r\n"
    )
    answer = await router.send_raw("POST", "/twilio/voice", headers, form)
    assert reject_of(answer, "twilio")
    assert rejections(logs) == ["bad-signature"]
    assert logs.routed() == []


@pytest.mark.parametrize(
    "forwarded_host",
    [
        b"example.com" + NOT_UTF8,
        b"example.com/\xff",  # a path, in bytes that are not UTF-8
        b"example.com?bodySHA256=\xff",  # a query the signature check would read
        b"user@example.com",
        b"",
    ],
    ids=["not-utf8", "path", "query", "userinfo", "empty"],
)
async def test_a_forwarded_host_that_is_no_host_is_ignored(
    make_router: MakeRouter, logs: Logs, forwarded_host: bytes
) -> None:
    """Only a host (and port) is taken from X-Forwarded-Host: anything else would change how
    the signed URL reads. Such a header is ignored, the URL the request arrived on is used:
    a request signed for that URL is routed, whatever the header held."""
    router = await make_router(public_url=None)
    await router.create_number()
    server = router.client.server
    form = voice_form()
    signature = sign(f"http://{server.host}:{server.port}/twilio/voice", form)
    headers = (
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Forwarded-Proto: gopher\r\nX-Forwarded-Host: " + forwarded_host + b"\r\n"
        b"X-Twilio-Signature: " + signature.encode() + b"\r\n"
    )
    answer = await router.send_raw("POST", "/twilio/voice", headers, urlencode(form).encode())
    assert answer.status == 200, answer.body
    assert len(logs.routed()) == 1


async def test_forwarded_proto_and_host_name_the_signed_url(
    make_router: MakeRouter, logs: Logs
) -> None:
    """Behind a proxy without ROUTER_PUBLIC_URL: the scheme and host the proxy forwards (the
    first of each list) are the ones Twilio signed."""
    router = await make_router(public_url=None)
    await router.create_number()
    form = voice_form()
    signature = sign("https://router.example.com:8443/twilio/voice", form)
    headers = (
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Forwarded-Proto: HTTPS, http\r\n"
        b"X-Forwarded-Host: router.example.com:8443, internal:8080\r\n"
        b"X-Twilio-Signature: " + signature.encode() + b"\r\n"
    )
    answer = await router.send_raw("POST", "/twilio/voice", headers, urlencode(form).encode())
    assert answer.status == 200, answer.body
    assert len(logs.routed()) == 1
