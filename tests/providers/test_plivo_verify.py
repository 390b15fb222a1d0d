"""X-Plivo-Signature-V3: router's HMAC agrees with the plivo SDK's `validate_v3_signature`
(the oracle) on many generated requests, a fixed vector, and every refusal fails closed."""

from __future__ import annotations

import random
import string
from urllib.parse import urlencode

import pytest
from plivo.utils.signature_v3 import validate_v3_signature

from router.providers.plivo import PlivoProvider, compute_signature, signed_url
from router.providers.plugin import VerificationFailed, WebhookRequest

from .plivo_support import (
    ANSWER_URL,
    AUTH_TOKEN,
    NONCE,
    OTHER_TOKEN,
    Pairs,
    answer_fields,
    make_credential,
    make_number,
    request,
    sdk_params,
)

PLIVO = PlivoProvider()
NUMBER = make_number()
CREDENTIALS = [make_credential()]

# Computed once with plivo 4.63's `get_signature_v3(construct_post_url(...))` and pasted:
# token "MAXXXXXXXXXXXXXXXXXX-token", URL https://router.example.com/plivo/answer?x=1,
# fields A=1, B=2, nonce 12345.
VECTOR_TOKEN = "MAXXXXXXXXXXXXXXXXXX-token"
VECTOR_URL = "https://router.example.com/plivo/answer?x=1"
VECTOR_SIGNED = "https://router.example.com/plivo/answer?x=1.A1B2"
VECTOR_SIGNATURE = "uPe7RX5N/wDOctyOCTJaMUatG1fijtfFoA+jQCMt5zM="


def verify(req: WebhookRequest) -> None:
    PLIVO.verify(req, NUMBER, CREDENTIALS)


def oracle_accepts(req: WebhookRequest, token: str = AUTH_TOKEN) -> bool:
    """The SDK's verdict on the request as router received it."""
    params = None if req.method == "GET" else sdk_params(list(req.params.items()))
    return bool(
        validate_v3_signature(
            req.method,
            req.url,
            req.headers["X-Plivo-Signature-V3-Nonce"],
            token,
            req.headers["X-Plivo-Signature-V3"],
            params,
        )
    )


def test_the_known_vector_is_reproduced() -> None:
    """A fixed token, URL, fields and nonce give the signature the SDK gave."""
    pairs = [("B", "2"), ("A", "1")]
    req = request("POST", VECTOR_URL, pairs, nonce="12345", signature=VECTOR_SIGNATURE)
    assert signed_url("POST", req.url, req.params) == VECTOR_SIGNED
    assert compute_signature(VECTOR_TOKEN, VECTOR_SIGNED, "12345") == VECTOR_SIGNATURE
    PLIVO.verify(req, NUMBER, [make_credential(VECTOR_TOKEN)])


# Characters a generated value is made of: ASCII letters, digits and URL-special ones, and
# (in form bodies) non-ASCII text, combining marks and astral characters.
_ASCII = string.ascii_letters + string.digits + " +-_.~!*'()&=?/%#,;:@$"
_UNICODE = "éü漢字🙂\u0301Ωß\u00a0"


def _text(rng: random.Random, *, unicode: bool) -> str:
    alphabet = _ASCII + (_UNICODE if unicode else "")
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def _pairs(rng: random.Random, *, unicode: bool) -> Pairs:
    names = [_text(rng, unicode=unicode) or "n" for _ in range(rng.randint(1, 4))]
    # Repeated names (the same value twice, too) and blank values.
    return [(rng.choice(names), _text(rng, unicode=unicode)) for _ in range(rng.randint(0, 8))]


def _generated(seed: int) -> WebhookRequest:
    rng = random.Random(seed)
    method = rng.choice(["GET", "POST"])
    url = ANSWER_URL
    if rng.random() < 0.6:
        # The SDK parses the query from the URL's bytes as ASCII: its query stays ASCII.
        url += "?" + urlencode(_pairs(rng, unicode=False))
    if rng.random() < 0.2:
        url = url.replace("router.example.com", "router.example.com:8443")
    fields = _pairs(rng, unicode=True) if method == "POST" else _pairs(rng, unicode=False)
    nonce = "".join(rng.choice(string.digits) for _ in range(20))
    return request(method, url, fields, nonce=nonce)


@pytest.mark.parametrize("seed", range(400))
def test_router_accepts_what_the_sdk_signs_and_the_sdk_accepts_router_s_signature(
    seed: int,
) -> None:
    """GET and POST, query strings, repeated and blank fields, unicode: the SDK's signature
    verifies in router, and router's own signature of the request verifies in the SDK."""
    req = _generated(seed)
    assert oracle_accepts(req)
    verify(req)
    ours = compute_signature(
        AUTH_TOKEN,
        signed_url(req.method, req.url, req.params if req.method == "POST" else None),
        req.headers["X-Plivo-Signature-V3-Nonce"],
    )
    assert ours == req.headers["X-Plivo-Signature-V3"]


@pytest.mark.parametrize("seed", range(100))
def test_a_changed_field_fails_in_router_as_in_the_sdk(seed: int) -> None:
    """One field changed after signing (a value, a name, one more): both refuse."""
    rng = random.Random(seed)
    method = rng.choice(["GET", "POST"])
    # Unicode in form bodies only: the SDK cannot read a non-ASCII query.
    fields = answer_fields(Extra=_text(rng, unicode=method == "POST") or "x")
    signed = request(method, ANSWER_URL, fields)
    tampered_fields = dict(fields)
    tampered_fields[rng.choice(sorted(fields))] += "1"
    req = request(
        method,
        ANSWER_URL,
        tampered_fields,
        signature=signed.headers["X-Plivo-Signature-V3"],
    )
    assert not oracle_accepts(req)
    with pytest.raises(VerificationFailed, match="bad-signature"):
        verify(req)


def test_another_token_another_nonce_or_another_url_fails() -> None:
    fields = answer_fields()
    good = request("POST", ANSWER_URL, fields)
    other_token = request("POST", ANSWER_URL, fields, token=OTHER_TOKEN)
    other_nonce = request(
        "POST",
        ANSWER_URL,
        fields,
        nonce=NONCE + "1",
        signature=good.headers["X-Plivo-Signature-V3"],
    )
    other_url = request(
        "POST",
        ANSWER_URL.replace("answer", "fallback"),
        fields,
        signature=good.headers["X-Plivo-Signature-V3"],
    )
    verify(good)
    for req in (other_token, other_nonce, other_url):
        assert not oracle_accepts(req)
        with pytest.raises(VerificationFailed, match="bad-signature"):
            verify(req)


def test_one_of_several_listed_signatures_is_enough() -> None:
    """The header may list several signatures, comma-separated, as the SDK reads it."""
    fields = answer_fields()
    good = request("POST", ANSWER_URL, fields).headers["X-Plivo-Signature-V3"]
    forged = "A" * 43 + "="
    req = request("POST", ANSWER_URL, fields, signature=f"{forged},{good}")
    assert oracle_accepts(req)
    verify(req)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"X-Plivo-Signature-V3": ""}, "missing-signature"),
        ({"X-Plivo-Signature-V3-Nonce": ""}, "missing-nonce"),
    ],
)
def test_a_request_without_signature_or_nonce_is_refused_before_the_lookup(
    headers: dict[str, str], reason: str
) -> None:
    req = request("POST", ANSWER_URL, answer_fields(), headers=headers)
    with pytest.raises(VerificationFailed, match=reason):
        PLIVO.preverify(req, settings=None)  # type: ignore[arg-type]  # unused by Plivo
    with pytest.raises(VerificationFailed, match=reason):
        verify(req)


def test_a_number_without_its_credential_fails_closed() -> None:
    req = request("POST", ANSWER_URL, answer_fields())
    with pytest.raises(VerificationFailed, match="no-credential"):
        PLIVO.verify(req, NUMBER, [])
    with pytest.raises(VerificationFailed, match="no-credential"):
        PLIVO.verify(req, make_number(credentialId="cred-other"), CREDENTIALS)


def test_a_post_body_that_is_not_a_form_is_refused() -> None:
    """Only form fields are signed: a JSON body would be read by nobody and bound by nothing."""
    signed = request("POST", ANSWER_URL, ())
    req = WebhookRequest.create(
        method="POST",
        url=ANSWER_URL,
        headers={**signed.headers, "Content-Type": "application/json"},
        body=b'{"CallUUID": "x"}',
        received_at=0.0,
        wall_time=0.0,
    )
    with pytest.raises(VerificationFailed, match="unsigned-body"):
        verify(req)


def test_header_bytes_that_are_not_utf8_are_a_bad_signature_not_an_error() -> None:
    """aiohttp keeps undecodable header bytes as lone surrogates: compared, never raised on."""
    req = request("POST", ANSWER_URL, answer_fields(), signature="\udcff\udcfe")
    with pytest.raises(VerificationFailed, match="bad-signature"):
        verify(req)
    nonce = request(
        "POST", ANSWER_URL, answer_fields(), headers={"X-Plivo-Signature-V3-Nonce": "\udcff"}
    )
    with pytest.raises(VerificationFailed, match="bad-signature"):
        verify(nonce)


def test_a_number_of_another_provider_is_a_mismatch() -> None:
    from .conftest import make_number as twilio_number

    req = request("POST", ANSWER_URL, answer_fields())
    with pytest.raises(VerificationFailed, match="provider-mismatch"):
        PLIVO.verify(req, twilio_number(), CREDENTIALS)
