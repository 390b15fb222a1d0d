"""Telnyx Ed25519 verification: a known vector, an independent signer, every refusal."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from router.models.credentials import TelnyxCredential, TwilioCredential
from router.providers.plugin import VerificationFailed, WebhookRequest
from router.providers.telnyx import TelnyxProvider, signed_message

from .telnyx_support import (
    CREDENTIAL_ID,
    KEY,
    NOW,
    OTHER_KEY,
    get,
    make_credential,
    make_number,
    post,
    public_key,
    sign,
    voice_form,
    without,
)

# Computed once with PyNaCl over RFC 8032 TEST 1's key and pasted: the form body below,
# signed at NOW, and the empty body (a GET) signed at NOW.
VECTOR_BODY = (
    b"AccountSid=f5586561-8ff0-4291-a51b-c7dfe4139ff9"
    b"&CallSid=v3%3A9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ"
    b"&CallStatus=ringing&From=%2B14155550123&To=%2B14155550100"
)
VECTOR_SIGNATURE = (
    "iIgRbWF5LRqWemVWtlkbz9ygf53vRpqSqedrkyLA98wjoArcmWHOwgi3P/BZesRQcbOWcQLfS4s3s/jZWHf4BQ=="
)
VECTOR_GET_SIGNATURE = (
    "rCd4Wrq89Q/PGOdFxiyXKd/BhCfaVjBc6L4IDQVtenxv+Tou8wn9F/rTnj0xItbd0Za6Dvt/32tZd1LIK4c4Bg=="
)
VECTOR_PUBLIC_KEY = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="  # RFC 8032 TEST 1


def verify(req: WebhookRequest, **number: Any) -> None:
    TelnyxProvider().verify(req, make_number(**number), [make_credential()])


def refusal(req: WebhookRequest, credentials: Any = None, **number: Any) -> str:
    """The reason verify refuses `req` for the number (built from `number` wire fields)."""
    creds = [make_credential()] if credentials is None else credentials
    with pytest.raises(VerificationFailed) as failed:
        TelnyxProvider().verify(req, make_number(**number), creds)
    return failed.value.reason


# --- known vector ----------------------------------------------------------------------------


def test_the_signed_message_is_timestamp_bar_raw_body() -> None:
    assert signed_message("1700000000", b"a=1&b=2") == b"1700000000|a=1&b=2"


def test_known_vector_matches_the_independent_signer_and_verifies() -> None:
    """RFC 8032 key, fixed timestamp and body: `cryptography` produces the pasted signature
    (Ed25519 is deterministic) and the PyNaCl verifier accepts it."""
    assert public_key(KEY) == VECTOR_PUBLIC_KEY
    assert sign(NOW, VECTOR_BODY) == VECTOR_SIGNATURE
    assert sign(NOW, b"") == VECTOR_GET_SIGNATURE
    req = WebhookRequest.create(
        method="POST",
        url="https://router.example.com/telnyx/voice",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "telnyx-timestamp": str(NOW),
            "telnyx-signature-ed25519": VECTOR_SIGNATURE,
        },
        body=VECTOR_BODY,
        received_at=0.0,
        wall_time=NOW,
    )
    verify(req)


# --- accepted --------------------------------------------------------------------------------


def test_a_signed_form_post_is_accepted() -> None:
    verify(post(voice_form()))


def test_a_credential_naming_its_account_accepts_only_that_account() -> None:
    """`accountId` on the credential: the call's `AccountSid` must be it, signature or not
    (a public key is no secret: another account's calls must not pass with it)."""
    credential = make_credential(accountId=voice_form()["AccountSid"])
    TelnyxProvider().verify(post(voice_form()), make_number(), [credential])
    for other in ({"AccountSid": "another-account"}, {"AccountSid": ""}):
        reason = refusal(post(voice_form(**other)), credentials=[credential])
        assert reason == "account-mismatch"


def test_a_get_with_fields_is_refused_because_its_query_is_not_signed() -> None:
    """A GET's signature covers only `{timestamp}|`: its query fields could be swapped by
    anyone who saw one signature, so GETs are refused (operators configure POST)."""
    with pytest.raises(VerificationFailed) as refused:
        verify(get(voice_form(), signature=VECTOR_GET_SIGNATURE))
    assert refused.value.reason == "unsigned-query"


def test_header_names_are_case_insensitive() -> None:
    req = post(voice_form())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Telnyx-Timestamp": req.headers["telnyx-timestamp"],
        "TELNYX-SIGNATURE-ED25519": req.headers["telnyx-signature-ed25519"],
    }
    verify(
        WebhookRequest.create(
            method="POST",
            url=req.url,
            headers=headers,
            body=req.body,
            received_at=0.0,
            wall_time=NOW,
        )
    )


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_timestamps_within_300_seconds_either_way_are_accepted(skew: int) -> None:
    verify(post(voice_form(), timestamp=NOW + skew))


def test_the_matching_credential_is_picked_among_the_orgs_credentials() -> None:
    """Only the number's `credentialId` counts; other Telnyx credentials are ignored."""
    credentials = [
        make_credential(OTHER_KEY, credential_id="cred-other"),
        make_credential(KEY),
    ]
    TelnyxProvider().verify(post(voice_form()), make_number(), credentials)


# --- refused ---------------------------------------------------------------------------------


def test_a_forged_body_is_refused() -> None:
    """A field changed after signing (a different caller) breaks the signature."""
    signed = post(voice_form())
    forged = post(
        voice_form(From="+19005550000"), signature=signed.headers["telnyx-signature-ed25519"]
    )
    assert refusal(forged) == "bad-signature"


def test_a_signature_moved_to_another_timestamp_is_refused() -> None:
    """The timestamp is signed: a fresh timestamp on an old signature does not verify."""
    old = post(voice_form(), timestamp=NOW - 200)
    moved = post(voice_form(), timestamp=NOW, signature=old.headers["telnyx-signature-ed25519"])
    assert refusal(moved) == "bad-signature"


@pytest.mark.parametrize("skew", [-301, -3600, 301, 3600])
def test_stale_and_future_timestamps_are_refused(skew: int) -> None:
    """Outside ±300 s of arrival, even a correct signature is refused (replay window)."""
    assert refusal(post(voice_form(), timestamp=NOW + skew)) == "stale-timestamp"


def test_a_signature_by_another_key_is_refused() -> None:
    assert refusal(post(voice_form(), key=OTHER_KEY)) == "bad-signature"


@pytest.mark.parametrize(
    ("missing", "reason"),
    [
        (("telnyx-signature-ed25519",), "missing-signature"),
        (("telnyx-timestamp",), "missing-timestamp"),
        (("telnyx-signature-ed25519", "telnyx-timestamp"), "missing-signature"),
    ],
)
def test_missing_headers_are_refused(missing: tuple[str, ...], reason: str) -> None:
    assert refusal(without(post(voice_form()), *missing)) == reason


@pytest.mark.parametrize(
    "signature",
    [
        "not base64 at all!",
        "iIgRbWF5LRqWemVWtlkbz9ygf53vRpqSqedrkyLA98wjoArcmWHOwgi3P_BZesRQcbOWcQLfS4s3s_jZWHf4BQ==",
        base64.b64encode(b"x" * 63).decode(),
        base64.b64encode(b"x" * 65).decode(),
        "====",
    ],
    ids=["garbage", "urlsafe-alphabet", "63-bytes", "65-bytes", "padding-only"],
)
def test_malformed_signatures_are_refused(signature: str) -> None:
    assert refusal(post(voice_form(), signature=signature)) == "malformed-signature"


def test_sixty_four_zero_bytes_are_a_bad_signature() -> None:
    """Well-formed but wrong: refused by the Ed25519 check, not by the format check."""
    zeros = base64.b64encode(bytes(64)).decode()
    assert refusal(post(voice_form(), signature=zeros)) == "bad-signature"


@pytest.mark.parametrize(
    "timestamp", ["1700000000.5", "-1700000000", "17e8", "now", "\u0661\u0667\u0660\u0660"]
)
def test_malformed_timestamps_are_refused(timestamp: str) -> None:
    """Only plain ASCII digits are a timestamp: no fraction, sign, exponent or other script."""
    assert refusal(post(voice_form(), timestamp=timestamp)) == "bad-timestamp"


def test_no_credential_for_the_number_is_refused() -> None:
    """Fail closed: the org has no credential with the number's `credentialId`."""
    assert refusal(post(voice_form()), credentials=[]) == "no-credential"
    other = make_credential(credential_id="cred-someone-else")
    assert refusal(post(voice_form()), credentials=[other]) == "no-credential"


def test_a_non_telnyx_credential_with_the_same_id_does_not_count() -> None:
    twilio = TwilioCredential.model_validate(
        {
            "id": CREDENTIAL_ID,
            "orgId": "org-1",
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
            "provider": "twilio",
            "accountSid": "AC0123456789abcdef0123456789abcdef",
            "authToken": "token",
        }
    )
    assert refusal(post(voice_form()), credentials=[twilio]) == "no-credential"


@pytest.mark.parametrize("stored", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_stored_key_that_is_not_an_ed25519_key_is_refused(stored: str) -> None:
    """Keys are validated on write; one that slipped past (an old record) still fails closed."""
    broken = TelnyxCredential.model_construct(
        **{**make_credential().model_dump(), "public_key": stored}
    )
    assert refusal(post(voice_form()), credentials=[broken]) == "bad-public-key"


def test_a_number_of_another_provider_is_refused() -> None:
    number = {
        "provider": "twilio",
        "twilioAccountSid": "AC0123456789abcdef0123456789abcdef",
        "twilioAuthToken": "token",
        "credentialId": None,
    }
    assert refusal(post(voice_form()), **number) == "provider-mismatch"
