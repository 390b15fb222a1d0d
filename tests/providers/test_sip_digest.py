"""SIP digest verification (router/providers/sip_digest.py): published vectors, the
session and legacy variants, and every way a header is refused."""

from __future__ import annotations

import hashlib

import pytest

from router.providers import sip_digest as digest

# RFC 2617 §3.5.
RFC2617_HEADER = (
    'Digest username="Mufasa", realm="testrealm@host.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_PASSWORD = "Circle Of Life"

# RFC 7616 §3.9.1 (one request, answered once with MD5 and once with SHA-256).
RFC7616_PARAMS = (
    'username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
    'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_PASSWORD = "Circle of Life"

USERNAME = "sip-user-000000000001"
PASSWORD = "sip-password-000000000001"
REALM = "sip.example.com"
URI = "sip:support@sip.example.com"
KEY = digest.nonce_key("pn-1", USERNAME, REALM, PASSWORD)
NOW = 1_700_000_000.0


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def sip_authorization(
    *,
    nonce: str,
    username: str = USERNAME,
    realm: str = REALM,
    password: str = PASSWORD,
    uri: str = URI,
    method: str = "INVITE",
    qop: str | None = "auth",
    algorithm: str | None = None,
    cnonce: str = "0a4f113b",
    nc: str = "00000001",
) -> str:
    """The header a SIP phone sends, computed here from the RFC formulas (MD5 family)."""
    ha1 = md5(f"{username}:{realm}:{password}")
    if algorithm == "MD5-sess":
        ha1 = md5(f"{ha1}:{nonce}:{cnonce}")
    ha2 = md5(f"{method}:{uri}")
    if qop is None:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    else:
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
    ]
    if algorithm is not None:
        parts.append(f"algorithm={algorithm}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)


def check(header: str | None, *, now: float = NOW, uri: str = URI) -> digest.DigestResult:
    return digest.check(
        header,
        username=USERNAME,
        realm=REALM,
        password=PASSWORD,
        method="INVITE",
        uri_matches=lambda candidate: candidate == uri,
        key=KEY,
        now=now,
    )


def test_rfc2617_example_response_is_reproduced() -> None:
    """The RFC 2617 §3.5 example (MD5, qop=auth) gives its published response."""
    creds = digest.parse_authorization(RFC2617_HEADER)
    assert creds.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    assert digest.response_for(creds, RFC2617_PASSWORD, "GET") == (
        "6629fae49393a05397450978507c4ef1"
    )


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples_are_reproduced(algorithm: str, response: str) -> None:
    """The RFC 7616 §3.9.1 example gives its published MD5 and SHA-256 responses."""
    header = f'Digest {RFC7616_PARAMS}, algorithm={algorithm}, response="{response}"'
    creds = digest.parse_authorization(header)
    assert digest.response_for(creds, RFC7616_PASSWORD, "GET") == response


def test_md5_sess_folds_nonce_and_cnonce_into_ha1() -> None:
    """MD5-sess: HA1 = MD5(MD5(user:realm:password):nonce:cnonce), per RFC 2617 §3.2.2.2."""
    nonce = digest.make_nonce(KEY, NOW)
    header = sip_authorization(nonce=nonce, algorithm="MD5-sess", cnonce="c0ffee")
    assert check(header).ok
    plain_md5 = sip_authorization(nonce=nonce, cnonce="c0ffee")
    swapped = header.replace(_response(header), _response(plain_md5))
    assert check(swapped) == digest.DigestResult(False, "bad-response")


def test_no_qop_uses_the_rfc2069_formula() -> None:
    """A header without qop (RFC 2069 style, common on SIP phones) is accepted."""
    nonce = digest.make_nonce(KEY, NOW)
    assert check(sip_authorization(nonce=nonce, qop=None)).ok


def test_a_correct_header_within_the_nonce_lifetime_is_accepted() -> None:
    nonce = digest.make_nonce(KEY, NOW)
    assert check(sip_authorization(nonce=nonce), now=NOW + digest.NONCE_TTL_SECONDS).ok


def test_wrong_password_is_a_bad_response_and_not_stale() -> None:
    nonce = digest.make_nonce(KEY, NOW)
    header = sip_authorization(nonce=nonce, password="not-the-password-0000000")
    assert check(header) == digest.DigestResult(False, "bad-response", stale=False)


def test_expired_nonce_with_the_right_password_is_stale() -> None:
    """Stale only when the response was right: the phone retries without asking again."""
    nonce = digest.make_nonce(KEY, NOW)
    late = NOW + digest.NONCE_TTL_SECONDS + 1
    assert check(sip_authorization(nonce=nonce), now=late) == digest.DigestResult(
        False, "stale-nonce", stale=True
    )
    wrong = sip_authorization(nonce=nonce, password="not-the-password-0000000")
    assert check(wrong, now=late) == digest.DigestResult(False, "bad-response", stale=False)


def test_tampered_nonce_is_refused_without_stale() -> None:
    """A nonce whose timestamp was moved forward no longer carries a valid MAC."""
    nonce = digest.make_nonce(KEY, NOW)
    tampered = f"{int(NOW) + 3600:08x}" + nonce[8:]
    assert check(sip_authorization(nonce=tampered)) == digest.DigestResult(False, "bad-nonce")


def test_nonce_of_another_key_or_shape_is_refused() -> None:
    other = digest.make_nonce(digest.nonce_key("pn-2", USERNAME, REALM, PASSWORD), NOW)
    assert check(sip_authorization(nonce=other)).reason == "bad-nonce"
    assert check(sip_authorization(nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093")).reason == (
        "bad-nonce"
    )


def test_nonce_from_the_future_beyond_clock_skew_is_refused() -> None:
    ahead = digest.make_nonce(KEY, NOW + digest.NONCE_CLOCK_SKEW_SECONDS + 5)
    assert check(sip_authorization(nonce=ahead)).reason == "bad-nonce"
    slightly_ahead = digest.make_nonce(KEY, NOW + 5)
    assert check(sip_authorization(nonce=slightly_ahead)).ok


def test_a_password_change_retires_outstanding_nonces() -> None:
    rotated = digest.nonce_key("pn-1", USERNAME, REALM, "new-password-00000000000")
    assert digest.nonce_age(rotated, digest.make_nonce(KEY, NOW), NOW) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"username": "someone-else-0000000001"}, "wrong-username"),
        ({"realm": "other.example.com"}, "wrong-realm"),
        ({"uri": "sip:sales@sip.example.com"}, "wrong-uri"),
        ({"method": "REGISTER"}, "bad-response"),
    ],
)
def test_each_mismatch_names_its_reason(overrides: dict[str, str], reason: str) -> None:
    nonce = digest.make_nonce(KEY, NOW)
    assert check(sip_authorization(nonce=nonce, **overrides)) == digest.DigestResult(False, reason)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing-authorization"),
        ("  ", "missing-authorization"),
        ("Basic dXNlcjpwYXNz", "not-digest"),
        ('Digest username="a", realm="b"', "malformed-authorization"),
        ('Digest username="a" realm="b"', "malformed-authorization"),
        ('Digest username="a", username="b"', "malformed-authorization"),
        (
            'Digest username="a", realm="b", nonce="c", uri="d", response="e", algorithm=MD4',
            "unsupported-algorithm",
        ),
        (
            'Digest username="a", realm="b", nonce="c", uri="d", response="e", qop=auth-int, '
            'nc=00000001, cnonce="f"',
            "unsupported-qop",
        ),
        (
            'Digest username="a", realm="b", nonce="c", uri="d", response="e", qop=auth',
            "malformed-authorization",
        ),
        (
            'Digest username="a", realm="b", nonce="c", uri="d", response="e", algorithm=MD5-sess',
            "malformed-authorization",
        ),
        (
            'Digest username="a", realm="b", nonce="c", uri="d", response="e", userhash=true',
            "unsupported-userhash",
        ),
    ],
)
def test_unusable_headers_are_answered_with_their_reason(header: str | None, reason: str) -> None:
    result = check(header)
    assert (result.ok, result.reason, result.stale) == (False, reason, False)


def test_forwarded_header_line_and_quoted_pairs_are_read() -> None:
    """Edges sometimes forward `Authorization: Digest ...`; quoted-pairs are unescaped."""
    creds = digest.parse_authorization(
        'Proxy-Authorization: DIGEST username="a\\"b", realm="r", nonce="n", uri="u", '
        'response="ABCDEF", algorithm=md5-sess, qop=auth, nc=00000002, cnonce="x,y"'
    )
    assert (creds.username, creds.cnonce, creds.algorithm, creds.response) == (
        'a"b',
        "x,y",
        "MD5-SESS",
        "abcdef",
    )


def test_challenge_header_offers_md5_with_qop_auth_and_marks_stale() -> None:
    nonce = digest.make_nonce(KEY, NOW)
    assert digest.challenge_header(REALM, nonce, stale=False) == (
        f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"'
    )
    assert digest.challenge_header('a"b', nonce, stale=True).endswith(", stale=true")
    assert 'realm="a\\"b"' in digest.challenge_header('a"b', nonce, stale=True)


def _response(header: str) -> str:
    return header.split('response="', 1)[1].split('"', 1)[0]
