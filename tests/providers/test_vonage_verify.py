"""Vonage signed webhooks: known vectors, a hand-made token, and every refusal (fail closed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest

from router.models.phone_numbers import AnyPhoneNumber
from router.providers.plugin import VerificationFailed, WebhookRequest
from router.providers.vonage import (
    CLOCK_LEEWAY_SECONDS,
    TOKEN_MAX_AGE_SECONDS,
    VonageProvider,
    payload_hashes,
)

from .vonage_support import (
    ANSWER_URL,
    API_KEY,
    NOW,
    OTHER_SECRET,
    SIGNATURE_SECRET,
    answer_fields,
    bearer,
    event_fields,
    get,
    make_credential,
    make_number,
    post,
    query_hash,
    sha256_hex,
    sign,
)

# Vonage's documented answer GET and `completed` event (PHP SDK test requests), signed once
# with PyJWT 2.15 under a fixed secret and pasted.
VECTOR_SECRET = "known-vector-signature-secret-of-32b"
VECTOR_NUMBER = "+16105553939"
VECTOR_QUERY = {
    "to": "16105553939",
    "from": "14845552121",
    "conversation_uuid": "CON-2541d01c-253e-48be-a8e0-da4bbe4c3722",
    "uuid": "0A0000000123ABCD1",
}
VECTOR_QUERY_HASH = "c0a85c08520190f91185c57b612b8940b72986569d8d088ad2833bae8a8b3003"
VECTOR_QUERY_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE1OTM2MzYzMzQsImp0aSI6ImM1YmE4ZjI0LTFhMT"
    "QtNGMxMC1iZmRmLTNmYmU4Y2U1MTFiNSIsImlzcyI6IlZvbmFnZSIsInBheWxvYWRfaGFzaCI6ImMwYTg1YzA4N"
    "TIwMTkwZjkxMTg1YzU3YjYxMmI4OTQwYjcyOTg2NTY5ZDhkMDg4YWQyODMzYmFlOGE4YjMwMDMiLCJhcGlfa2V5"
    "IjoiYTFiMmMzZDQiLCJhcHBsaWNhdGlvbl9pZCI6ImFhYWFhYWFhLWJiYmItY2NjYy1kZGRkLTAxMjM0NTY3ODl"
    "hYiJ9.NwrJRUtE0Q8vUkHKGoRnp08vxt282NJ8xdUlns71ESA"
)
VECTOR_QUERY_IAT = 1593636334
VECTOR_EVENT_BODY = (
    b'{"headers":{},"end_time":"2020-07-01T20:45:42.000Z","uuid":"0A0000000123ABCD1",'
    b'"network":"US-VIRTUAL-LEVEL3","duration":"7","start_time":"2020-07-01T20:45:35.000Z",'
    b'"rate":"0.00450000","price":"0.00052500","from":"14845552121","to":"16105553939",'
    b'"conversation_uuid":"CON-2541d01c-253e-48be-a8e0-da4bbe4c3722","status":"completed",'
    b'"direction":"inbound","timestamp":"2020-07-01T20:45:41.712Z"}'
)
VECTOR_EVENT_HASH = "3af2e17b2132f0682163fe37557dc0f816c293a5deee0501564774fc1b539a3d"
VECTOR_EVENT_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE1OTM2MzYzNDIsImp0aSI6IjBkMWM3YTU1LTJiOG"
    "UtNGE0My05YTU3LTRkMWYzZThmNmExMCIsImlzcyI6IlZvbmFnZSIsInBheWxvYWRfaGFzaCI6IjNhZjJlMTdiM"
    "jEzMmYwNjgyMTYzZmUzNzU1N2RjMGY4MTZjMjkzYTVkZWVlMDUwMTU2NDc3NGZjMWI1MzlhM2QiLCJhcGlfa2V5"
    "IjoiYTFiMmMzZDQiLCJhcHBsaWNhdGlvbl9pZCI6ImFhYWFhYWFhLWJiYmItY2NjYy1kZGRkLTAxMjM0NTY3ODl"
    "hYiJ9.Ba5zObVTgV7nR_-IPK0-N0eswcOh9P_ahKcvOBqAdlI"
)
VECTOR_EVENT_IAT = 1593636342


@pytest.fixture
def provider() -> VonageProvider:
    return VonageProvider()


def accepts(provider: VonageProvider, req: WebhookRequest, **number: Any) -> None:
    provider.verify(req, make_number(**number), [make_credential()])


def refusal(
    provider: VonageProvider,
    req: WebhookRequest,
    *,
    number: AnyPhoneNumber | None = None,
    credentials: list[Any] | None = None,
) -> str:
    """The reason verify refuses `req` for the number and credentials (defaults: ours)."""
    with pytest.raises(VerificationFailed) as failed:
        provider.verify(
            req,
            number or make_number(),
            [make_credential()] if credentials is None else credentials,
        )
    return failed.value.reason


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- known vectors and an independent token ------------------------------------------------


def test_query_vector_hash_is_the_compact_json_of_the_query_in_order() -> None:
    """Vonage's GET rule: the query fields as a JSON object, in order, no whitespace."""
    assert query_hash(VECTOR_QUERY) == VECTOR_QUERY_HASH
    req = get(VECTOR_QUERY, headers={})
    assert VECTOR_QUERY_HASH in payload_hashes(req)


def test_the_pinned_answer_get_vector_is_accepted(provider: VonageProvider) -> None:
    """The documented answer GET with its pinned token verifies for its number."""
    req = get(VECTOR_QUERY, headers=bearer(VECTOR_QUERY_TOKEN), wall_time=VECTOR_QUERY_IAT + 1)
    provider.verify(
        req,
        make_number(number=VECTOR_NUMBER),
        [make_credential(signature_secret=VECTOR_SECRET)],
    )


def test_the_pinned_event_vector_is_accepted_and_its_body_is_bound(
    provider: VonageProvider,
) -> None:
    """The documented `completed` event verifies; the same token over another body does not."""
    assert sha256_hex(VECTOR_EVENT_BODY) == VECTOR_EVENT_HASH
    number = make_number(number=VECTOR_NUMBER)
    credentials = [make_credential(signature_secret=VECTOR_SECRET)]
    headers = bearer(VECTOR_EVENT_TOKEN)
    req = post(VECTOR_EVENT_BODY, headers=headers, wall_time=VECTOR_EVENT_IAT)
    provider.verify(req, number, credentials)
    tampered = post(
        VECTOR_EVENT_BODY,
        headers=headers,
        body=VECTOR_EVENT_BODY.replace(b'"duration":"7"', b'"duration":"9"'),
        wall_time=VECTOR_EVENT_IAT,
    )
    assert refusal(provider, tampered, number=number, credentials=credentials) == (
        "payload-hash-mismatch"
    )


def test_a_token_signed_by_hand_with_hmac_sha256_is_accepted(provider: VonageProvider) -> None:
    """A JWT built with hashlib/hmac alone (no PyJWT) verifies: the HS256 is the standard one."""
    body = json.dumps(event_fields("ringing")).encode()
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"iat": int(NOW), "payload_hash": sha256_hex(body), "api_key": API_KEY}
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    mac = hmac.new(SIGNATURE_SECRET.encode(), signing_input, hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64url(mac)}"
    accepts(provider, post(body, headers=bearer(token)))


# --- what is accepted ------------------------------------------------------------------------


def test_a_signed_get_answer_is_accepted(provider: VonageProvider) -> None:
    """A GET whose token's payload_hash is the query's JSON hash verifies."""
    accepts(provider, get(answer_fields()))


def test_a_signed_post_json_answer_is_accepted(provider: VonageProvider) -> None:
    """A POST whose token's payload_hash is the raw body's SHA-256 verifies."""
    accepts(provider, post(answer_fields()))


def test_a_get_with_non_ascii_values_is_accepted_in_either_json_spelling(
    provider: VonageProvider,
) -> None:
    """`é` raw or as `\\u00e9`: both spellings bind the same field, both verify."""
    fields = answer_fields(from_user="José")
    raw = sha256_hex(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
    escaped = sha256_hex(json.dumps(fields, separators=(",", ":")).encode())
    assert raw != escaped
    for payload_hash in (raw, escaped):
        accepts(provider, get(fields, headers=bearer(sign(payload_hash))))


def test_the_bearer_scheme_is_case_insensitive(provider: VonageProvider) -> None:
    """`bearer` and `Bearer` alike (RFC 6750 schemes are case-insensitive)."""
    body = json.dumps(answer_fields()).encode()
    token = sign(sha256_hex(body))
    accepts(provider, post(body, headers={"Authorization": f"bearer {token}"}))


def test_a_token_without_api_key_is_accepted(provider: VonageProvider) -> None:
    """`api_key` is checked when present; the signature secret is what proves the sender."""
    body = json.dumps(answer_fields()).encode()
    accepts(provider, post(body, headers=bearer(sign(sha256_hex(body), api_key=None))))


def test_claims_vonage_may_add_do_not_refuse_a_valid_token(provider: VonageProvider) -> None:
    """An `aud` or `sub` (which Vonage does not send today) does not break every call."""
    body = json.dumps(answer_fields()).encode()
    token = sign(sha256_hex(body), aud="some-application", sub="voice")
    accepts(provider, post(body, headers=bearer(token)))


def test_a_short_vonage_secret_verifies_without_a_warning(provider: VonageProvider) -> None:
    """A 4-byte secret (Vonage asks for 32 bits) verifies; PyJWT's key-length advice, which
    would fire on every webhook, is not raised (pytest turns warnings into errors)."""
    body = json.dumps(answer_fields()).encode()
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        token = sign(sha256_hex(body), secret="s3cr")
    provider.verify(
        post(body, headers=bearer(token)), make_number(), [make_credential(signature_secret="s3cr")]
    )


@pytest.mark.parametrize(
    "iat",
    [NOW + CLOCK_LEEWAY_SECONDS, NOW - TOKEN_MAX_AGE_SECONDS - CLOCK_LEEWAY_SECONDS],
    ids=["ahead-within-leeway", "oldest-allowed"],
)
def test_iat_within_the_window_and_leeway_is_accepted(provider: VonageProvider, iat: float) -> None:
    """Clocks drift: a token up to the leeway ahead, or as old as the window allows, passes."""
    body = json.dumps(answer_fields()).encode()
    accepts(provider, post(body, headers=bearer(sign(sha256_hex(body), iat=iat))))


# --- what is refused ---------------------------------------------------------------------


def test_a_missing_authorization_header_is_refused(provider: VonageProvider) -> None:
    """No header at all: unsigned webhooks are never routed."""
    assert refusal(provider, post(answer_fields(), headers={})) == "missing-signature"


@pytest.mark.parametrize(
    "authorization",
    ["{token}", "Basic {token}", "Bearer", "Bearer   ", "Token {token}"],
    ids=["bearer-less", "basic", "scheme-only", "blank-token", "other-scheme"],
)
def test_an_authorization_header_that_is_not_a_bearer_token_is_refused(
    provider: VonageProvider, authorization: str
) -> None:
    """A bare token (no `Bearer `) or another scheme is refused, even with a valid token."""
    body = json.dumps(answer_fields()).encode()
    token = sign(sha256_hex(body))
    headers = {"Authorization": authorization.format(token=token)}
    assert refusal(provider, post(body, headers=headers)) == "bad-authorization"


def test_a_forged_signature_is_refused(provider: VonageProvider) -> None:
    """The right claims with a signature that is not the secret's."""
    body = json.dumps(answer_fields()).encode()
    head, payload, signature = sign(sha256_hex(body)).split(".")
    forged = f"{head}.{payload}.{b64url(bytes(32))}"
    assert forged.split(".")[2] != signature
    assert refusal(provider, post(body, headers=bearer(forged))) == "bad-signature"


def test_claims_changed_after_signing_are_refused(provider: VonageProvider) -> None:
    """Swapping in another payload_hash under the original signature breaks it."""
    body = json.dumps(answer_fields()).encode()
    head, _, signature = sign(sha256_hex(body)).split(".")
    other = sign(sha256_hex(body + b" "))
    swapped = f"{head}.{other.split('.')[1]}.{signature}"
    assert refusal(provider, post(body, headers=bearer(swapped))) == "bad-signature"


def test_a_token_signed_with_another_secret_is_refused(provider: VonageProvider) -> None:
    """Another account's (or a guessed) secret."""
    body = json.dumps(answer_fields()).encode()
    token = sign(sha256_hex(body), secret=OTHER_SECRET)
    assert refusal(provider, post(body, headers=bearer(token))) == "bad-signature"


def test_a_tampered_post_body_is_refused(provider: VonageProvider) -> None:
    """A validly signed token whose payload_hash is not the body that arrived."""
    signed = json.dumps(answer_fields()).encode()
    tampered = json.dumps(answer_fields(to="14155550199")).encode()
    req = post(signed, body=tampered)
    assert refusal(provider, req) == "payload-hash-mismatch"


def test_a_tampered_get_query_is_refused(provider: VonageProvider) -> None:
    """The token signs the original query; the request carries another caller."""
    token = sign(query_hash(answer_fields()))
    req = get(answer_fields(**{"from": "14155550999"}), headers=bearer(token))
    assert refusal(provider, req) == "payload-hash-mismatch"


def test_a_get_with_reordered_query_fields_is_refused(provider: VonageProvider) -> None:
    """Order is part of Vonage's GET hash: the same fields reordered are another payload."""
    fields = answer_fields()
    token = sign(query_hash(fields))
    reordered = dict(reversed(list(fields.items())))
    assert refusal(provider, get(reordered, headers=bearer(token))) == "payload-hash-mismatch"


def test_a_token_without_payload_hash_is_refused(provider: VonageProvider) -> None:
    """Without payload_hash nothing binds the token to this request's fields."""
    token = sign(None)
    assert refusal(provider, post(answer_fields(), headers=bearer(token))) == (
        "missing-payload-hash"
    )


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iat": NOW - TOKEN_MAX_AGE_SECONDS - CLOCK_LEEWAY_SECONDS - 1}, "token-expired"),
        ({"exp": NOW - CLOCK_LEEWAY_SECONDS - 1}, "token-expired"),
        ({"iat": NOW + CLOCK_LEEWAY_SECONDS + 1}, "token-not-yet-valid"),
        ({"nbf": NOW + CLOCK_LEEWAY_SECONDS + 1}, "token-not-yet-valid"),
        ({"iat": None}, "missing-iat"),
        ({"iat": "yesterday"}, "bad-claims"),
    ],
    ids=["too-old", "expired", "iat-ahead", "not-before", "no-iat", "iat-not-a-number"],
)
def test_tokens_outside_their_time_window_are_refused(
    provider: VonageProvider, claims: dict[str, Any], reason: str
) -> None:
    """`iat` is required and recent; `exp` and `nbf` are held to, with a small leeway."""
    body = json.dumps(answer_fields()).encode()
    token = sign(sha256_hex(body), **claims)
    assert refusal(provider, post(body, headers=bearer(token))) == reason


@pytest.mark.parametrize("algorithm", ["none", "HS384", "HS512"])
def test_algorithms_other_than_hs256_are_refused(provider: VonageProvider, algorithm: str) -> None:
    """`alg: none` (no signature at all) and other HMACs keyed by the same secret alike."""
    body = json.dumps(answer_fields()).encode()
    token = sign(sha256_hex(body), algorithm=algorithm)
    assert refusal(provider, post(body, headers=bearer(token))) == "bad-algorithm"


def test_a_none_token_with_an_hs256_header_is_refused(provider: VonageProvider) -> None:
    """An unsigned token that claims HS256 (an empty signature) fails the signature check."""
    body = json.dumps(answer_fields()).encode()
    head, payload, _ = sign(sha256_hex(body)).split(".")
    assert refusal(provider, post(body, headers=bearer(f"{head}.{payload}."))) == "bad-signature"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "e30.e30"])
def test_garbage_tokens_are_refused(provider: VonageProvider, token: str) -> None:
    """Anything that does not decode as a JWT."""
    assert refusal(provider, post(answer_fields(), headers=bearer(token))) == "malformed-token"


def test_an_api_key_other_than_the_credentials_is_refused(provider: VonageProvider) -> None:
    """A token for another Vonage account that happens to share the secret is refused."""
    body = json.dumps(answer_fields()).encode()
    token = sign(sha256_hex(body), api_key="ffff0000")
    assert refusal(provider, post(body, headers=bearer(token))) == "api-key-mismatch"


@pytest.mark.parametrize(
    "credentials",
    [
        [],
        [make_credential(credential_id="cred-other")],
    ],
    ids=["none", "other-id"],
)
def test_a_number_without_its_credential_is_refused(
    provider: VonageProvider, credentials: list[Any]
) -> None:
    """The secret comes only from the credential the number names; none found fails closed."""
    req = post(answer_fields())
    assert refusal(provider, req, credentials=credentials) == "no-credential"


def test_a_number_of_another_provider_is_refused(provider: VonageProvider) -> None:
    """A Twilio number's webhook never verifies on the Vonage endpoints."""
    twilio = make_number(
        provider="twilio",
        credentialId=None,
        twilioAccountSid="AC0123456789abcdef0123456789abcdef",
        twilioAuthToken="token",
    )
    assert refusal(provider, post(answer_fields()), number=twilio) == "provider-mismatch"


def test_an_answer_url_query_cannot_smuggle_fields_into_a_signed_post(
    provider: VonageProvider,
) -> None:
    """A POST verifies over its body; fields added to the URL are not read by parse."""
    body = json.dumps(answer_fields()).encode()
    req = post(body, url=f"{ANSWER_URL}?to=14155550199")
    accepts(provider, req)
    assert provider.parse(req).to_number == "+14155550100"
