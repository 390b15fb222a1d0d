"""SIP digest authentication (RFC 2617, RFC 7616, RFC 3261 §22), stateless on the server.

Pure functions: the SIP edge forwards the caller's `Authorization` header value, and
`check` says whether it answers a nonce this router issued for the number's
username/realm/password.

Rules:
- Algorithms `MD5` (also when absent), `MD5-sess`, `SHA-256` and `SHA-256-sess`; qop
  `auth` (with `nc` and `cnonce`) or none (RFC 2069 style, still common in SIP).
  `auth-int` and `userhash` are not supported: such a header is answered with a challenge.
- Nonces are stateless: 8 hex digits of issue time (epoch seconds) and 32 hex digits of
  HMAC-SHA256 over that time, keyed per number (`nonce_key`). A nonce is good for
  `NONCE_TTL_SECONDS`; an older one whose response is otherwise right is `stale` (RFC 7616
  §3.3: the client retries with the fresh nonce without asking for the password again).
  Without server state, `nc` is not tracked: a captured header replays until its nonce
  expires, which is the trade every stateless digest server makes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

NONCE_TTL_SECONDS: Final = 300
# A nonce stamped this far in the future still counts: another worker's clock may lead ours.
NONCE_CLOCK_SKEW_SECONDS: Final = 30
_NONCE_MAC_HEX: Final = 32
_NONCE_RE: Final = re.compile(r"^([0-9a-f]{8})([0-9a-f]{32})$")
_NC_RE: Final = re.compile(r"^[0-9a-fA-F]{8}$")
_PARAM_RE: Final = re.compile(
    r"""\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(,|$)""", re.DOTALL
)
_HASHES: Final[dict[str, Callable[[bytes], str]]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
CHALLENGE_ALGORITHM: Final = "MD5"  # what SIP phones and trunks universally implement
CHALLENGE_QOP: Final = "auth"


class DigestError(Exception):
    """The header cannot be checked; `reason` is short, for logs and the edge."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """The parameters of an `Authorization: Digest ...` header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"  # upper-cased
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None


@dataclass(frozen=True, slots=True)
class DigestResult:
    """`ok`, or the reason to challenge and whether the challenge says `stale=true`."""

    ok: bool
    reason: str | None = None
    stale: bool = False


def parse_authorization(value: str) -> DigestCredentials:
    """The digest parameters of a header value (`Digest username="..", ...`).

    A leading `Authorization:` / `Proxy-Authorization:` header name is tolerated, since
    edges sometimes forward the whole header line. Raises DigestError.
    """
    text = value.strip()
    name, colon, rest = text.partition(":")
    if colon and name.strip().lower() in ("authorization", "proxy-authorization"):
        text = rest.strip()
    scheme, _, params_text = text.partition(" ")
    if scheme.lower() != "digest":
        raise DigestError("not-digest")
    params: dict[str, str] = {}
    pos = 0
    params_text = params_text.strip()
    while pos < len(params_text):
        match = _PARAM_RE.match(params_text, pos)
        if match is None or match.end() == pos:
            raise DigestError("malformed-authorization")
        key, raw, _sep = match.groups()
        key = key.lower()
        if key in params:
            raise DigestError("malformed-authorization")
        params[key] = _unquote(raw)
        pos = match.end()
    try:
        creds = DigestCredentials(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"].lower(),
            algorithm=params.get("algorithm", "MD5").upper(),
            qop=params["qop"].lower() if "qop" in params else None,
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
            opaque=params.get("opaque"),
        )
    except KeyError:
        raise DigestError("malformed-authorization") from None
    if params.get("userhash", "false").lower() == "true":
        raise DigestError("unsupported-userhash")
    if _base_algorithm(creds.algorithm) not in _HASHES:
        raise DigestError("unsupported-algorithm")
    if creds.qop is not None:
        if creds.qop != "auth":
            raise DigestError("unsupported-qop")
        if not creds.cnonce or creds.nc is None or not _NC_RE.fullmatch(creds.nc):
            raise DigestError("malformed-authorization")
    elif creds.algorithm.endswith("-SESS"):
        raise DigestError("malformed-authorization")  # -sess hashes a cnonce, sent with qop only
    return creds


def response_for(creds: DigestCredentials, password: str, method: str) -> str:
    """The `response` a client knowing `password` sends for `creds` and `method`."""
    algorithm = creds.algorithm.upper()
    digest = _HASHES[_base_algorithm(algorithm)]

    def h(*parts: str) -> str:
        return digest(":".join(parts).encode("utf-8"))

    ha1 = h(creds.username, creds.realm, password)
    if algorithm.endswith("-SESS"):
        ha1 = h(ha1, creds.nonce, creds.cnonce or "")
    ha2 = h(method, creds.uri)
    if creds.qop is None:
        return h(ha1, creds.nonce, ha2)
    return h(ha1, creds.nonce, creds.nc or "", creds.cnonce or "", creds.qop, ha2)


def nonce_key(*parts: str) -> bytes:
    """A nonce key from the number's identity and its digest credentials.

    Keyed by the password, so only the router (and the caller, who can authenticate
    anyway) can mint nonces, every worker mints the same ones, and a password change
    retires all outstanding nonces.
    """
    material = "\x00".join(("router/sip-digest-nonce/v1", *parts)).encode("utf-8")
    return hashlib.sha256(material).digest()


def make_nonce(key: bytes, now: float) -> str:
    """A nonce issued at `now` (epoch seconds)."""
    stamp = f"{int(now) & 0xFFFFFFFF:08x}"
    return stamp + _nonce_mac(key, stamp)


def nonce_age(key: bytes, nonce: str, now: float) -> float | None:
    """Seconds since `nonce` was issued, or None when this key did not issue it."""
    match = _NONCE_RE.fullmatch(nonce)
    if match is None:
        return None
    stamp, mac = match.groups()
    if not hmac.compare_digest(mac, _nonce_mac(key, stamp)):
        return None
    return now - int(stamp, 16)


def check(
    header: str | None,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri_matches: Callable[[str], bool],
    key: bytes,
    now: float,
) -> DigestResult:
    """Whether `header` answers a nonce of `key` for these credentials.

    Checked in this order, the first failure being the reason: present, parseable,
    username, realm, `uri` (`uri_matches`, the request's Request-URI), nonce issued by
    `key`, response; then the nonce's age (`stale` only when everything else was right).
    """
    if not header or not header.strip():
        return DigestResult(False, "missing-authorization")
    try:
        creds = parse_authorization(header)
    except DigestError as exc:
        return DigestResult(False, exc.reason)
    if creds.username != username:
        return DigestResult(False, "wrong-username")
    if creds.realm != realm:
        return DigestResult(False, "wrong-realm")
    if not uri_matches(creds.uri):
        return DigestResult(False, "wrong-uri")
    age = nonce_age(key, creds.nonce, now)
    if age is None or age < -NONCE_CLOCK_SKEW_SECONDS:
        return DigestResult(False, "bad-nonce")
    expected = response_for(creds, password, method)
    if not hmac.compare_digest(expected.encode(), creds.response.encode()):
        return DigestResult(False, "bad-response")
    if age > NONCE_TTL_SECONDS:
        return DigestResult(False, "stale-nonce", stale=True)
    return DigestResult(True)


def challenge_header(realm: str, nonce: str, *, stale: bool) -> str:
    """The `WWW-Authenticate` (or `Proxy-Authenticate`) value for a challenge."""
    value = (
        f'Digest realm="{_quote(realm)}", nonce="{nonce}", '
        f'algorithm={CHALLENGE_ALGORITHM}, qop="{CHALLENGE_QOP}"'
    )
    return value + (", stale=true" if stale else "")


def _nonce_mac(key: bytes, stamp: str) -> str:
    return hmac.new(key, stamp.encode(), hashlib.sha256).hexdigest()[:_NONCE_MAC_HEX]


def _base_algorithm(algorithm: str) -> str:
    return algorithm.removesuffix("-SESS")


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
    return raw


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
