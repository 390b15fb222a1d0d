"""Vonage Voice API webhooks: signed-webhook JWTs, the answer request, NCCO, events.

Rules (docs/reference: provider-protocols §3):
- Every webhook carries `Authorization: Bearer <JWT>`, HS256 only, keyed by the signature
  secret of the number's `vonage` credential. The token must carry `iat` (not ahead of our
  clock, not older than five minutes, a small leeway each way); `exp` and `nbf` are held
  to when present, `api_key` must be the credential's when present. `payload_hash` is
  required: the hex SHA-256 of the raw body, or for a GET of the query as a compact JSON
  object in the order received (Vonage's rule for GET webhooks). Replays inside the age
  window are harmless: a call id gets one decision, and status events are idempotent.
- Numbers arrive without `+`; they are read as E.164. A caller that is not a number
  (`Unknown`, a Client SDK user) is kept as sent.
- No NCCO action declines a call: Vonage fetches the answer URL for a call it has taken.
  Reject is the empty NCCO `[]`, which ends the call at once with nothing played; a Say
  with nothing to speak is the same empty NCCO.
- The websocket `headers` of a Connect are held to Vonage's 512 bytes (compact JSON): a
  header that would not fit is dropped whole (an id cut short would name another call or
  target) and the next one still tried, so the same decision always renders alike.
- Events: `status` is normalised to `CALL_STATUSES`. Vonage numbers no events, so each
  carries its lifecycle rank as its sequence: a late `ringing` cannot undo `answered`.
  Events that are not a status of the inbound call (the legs router dialled, `transfer`,
  `disconnected`, `human`/`machine`, ...) get no lookup key: they are acknowledged (204)
  and nothing is recorded. A non-2xx answer would send Vonage to the fallback answer URL.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final
from warnings import catch_warnings, simplefilter

import jwt
import orjson
from multidict import MultiMapping

from router.models.common import TransferDestinationNumber, TransferPlan
from router.models.credentials import AnyCredential, VonageCredential
from router.models.phone_numbers import AnyPhoneNumber, VonagePhoneNumber, account_lookup_key
from router.models.wire import normalize_e164
from router.pipeline.decision import Connect, Decision, Say, Transfer
from router.pipeline.inbound_call import InboundCall
from router.providers.plugin import (
    FINAL_STATUSES,
    AttemptResult,
    MalformedWebhook,
    RenderContext,
    Rendered,
    StatusEvent,
    StreamEvent,
    VerificationFailed,
    WebhookRequest,
    ascii_int,
    is_form,
    number_credential,
    same_text,
)
from router.providers.runtime_legs import callback_url, runtime_headers
from router.settings import Settings

ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    # `connect`: the events of the leg a `connect` to a runtime dialled (synchronous: the
    # answer to a failure carries on the call, router/runtimes/attempts.py).
    {"voice": "answer", "fallback": "fallback", "status": "event", "connect": "connect"}
)
# SIP headers Vonage takes by their standard names (`standardHeaders`), not as `X-` ones.
_STANDARD: Final = {"user-to-user": "User-to-User"}
# How long a SIP runtime's leg may ring before router moves the call on.
RUNTIME_CONNECT_TIMEOUT_SECONDS: Final = 15
# A connected leg's `status`: what it says of the runtime's attempt.
_ATTEMPT_RESULTS: Final[Mapping[str, AttemptResult]] = {
    "answered": "taken",
    "completed": "taken",
    "disconnected": "taken",
    "busy": "refused",
    "failed": "refused",
    "rejected": "refused",
    "timeout": "refused",
    "unanswered": "refused",
    "cancelled": "gone",
}
AUTHORIZATION_HEADER: Final = "Authorization"
ALGORITHM: Final = "HS256"
CLOCK_LEEWAY_SECONDS: Final = 30
TOKEN_MAX_AGE_SECONDS: Final = 300
CONTENT_TYPE: Final = "application/json"
REJECT: Final = b"[]"
WEBSOCKET_CONTENT_TYPE: Final = "audio/l16;rate=16000"
WEBSOCKET_HEADERS_LIMIT_BYTES: Final = 512  # the `headers` object, as compact JSON
TALK_TEXT_LIMIT: Final = 1500  # characters of a `talk` action's text
CONNECT_TIMEOUT_BOUNDS: Final = (1, 120)  # seconds a `connect` rings an endpoint
DTMF_PAUSE: Final = "pp"  # one second after answer (each `p` is 500 ms), before an extension
_STATUSES: Final = {
    "started": "ringing",
    "ringing": "ringing",
    "answered": "in-progress",
    "completed": "completed",
    "busy": "busy",
    "failed": "failed",
    "rejected": "failed",
    "timeout": "no-answer",
    "unanswered": "no-answer",
    "cancelled": "canceled",
}
_RANKS: Final = {"ringing": 0, "in-progress": 1}  # every final status ranks 2
# What Vonage takes as a `from` or phone `number`: E.164 digits without the `+`.
_VONAGE_NUMBER = re.compile(r"^[1-9]\d{6,14}$")
# Whitespace controls become spaces in speech; other controls, lone surrogates and
# non-characters go (orjson refuses surrogates, and a TTS engine has no use for the rest).
_SPACE_CONTROLS = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]")
_UNSPEAKABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


class VonageProvider:
    """Vonage Voice API: answer URL (GET or POST JSON), fallback answer URL and event URL."""

    name: Final = "vonage"
    number_provider: Final = "vonage"
    endpoints: Final = ENDPOINTS

    def budget_seconds(self, settings: Settings) -> float:
        """`vonage_budget_seconds`: Vonage gives up on an answer URL after 5 s."""
        return settings.vonage_budget_seconds

    def preverify(self, req: WebhookRequest, settings: Settings) -> None:
        """A request without a bearer token is refused whatever number it names: Vonage
        signs every webhook. The token itself is checked with the number's credential."""
        _bearer_token(req.headers.get(AUTHORIZATION_HEADER, ""))

    def lookup_key(self, req: WebhookRequest) -> str | None:
        """`vonage:<api_key>:+E164` of `to` and the token's `api_key` (`vonage:+E164`
        without one); None for events that are not the inbound call's status."""
        fields = _lenient_fields(req)
        runtime_leg = bool(req.query.get("runtime"))  # /vonage/connect: the URL names `to`
        status = _text(fields, "status").lower()
        if not runtime_leg and "status" in fields and status not in _STATUSES:
            return None  # transfer, disconnected, human/machine, ...: nothing to record
        if not runtime_leg and _text(fields, "direction").lower() == "outbound":
            return None  # a leg router dialled (runtime websocket, transfer): not a routed call
        number = _e164(req.query.get("to", "") if runtime_leg else _text(fields, "to"))
        if number is None:
            return None
        # The account its token names (not yet verified: `verify` then checks the token
        # with the found number's credential, whose apiKey must be this one).
        api_key = _api_key_claim(req)
        if api_key is None:
            return f"vonage:{number}"
        return account_lookup_key(self.name, api_key, number)

    def call_id(self, req: WebhookRequest) -> str | None:
        """The call leg's `uuid`."""
        return _text(_lenient_fields(req), "uuid") or None

    def verify(
        self,
        req: WebhookRequest,
        number: AnyPhoneNumber,
        credentials: Sequence[AnyCredential],
        settings: Settings | None = None,
    ) -> None:
        """Check the signed-webhook JWT against the number's credential and the payload."""
        if not isinstance(number, VonagePhoneNumber):
            raise VerificationFailed("provider-mismatch")
        token = _bearer_token(req.headers.get(AUTHORIZATION_HEADER, ""))
        credential = number_credential(credentials, number, VonageCredential)
        claims = decode_token(token, credential.signature_secret)
        check_times(claims, now=req.wall_time)
        api_key = claims.get("api_key")
        if api_key is not None and not (
            isinstance(api_key, str) and same_text(api_key, credential.api_key)
        ):
            raise VerificationFailed("api-key-mismatch")
        claimed = claims.get("payload_hash")
        if not isinstance(claimed, str) or not claimed:
            raise VerificationFailed("missing-payload-hash")
        if not any(same_text(digest, claimed.lower()) for digest in payload_hashes(req)):
            raise VerificationFailed("payload-hash-mismatch")

    def parse(self, req: WebhookRequest) -> InboundCall:
        """The ringing call: `uuid`, `from` and `to` (numbers read as E.164)."""
        fields = _fields(req)
        uuid = _text(fields, "uuid")
        if not uuid:
            raise MalformedWebhook("missing-uuid")
        to = _text(fields, "to")
        caller = _text(fields, "from") or _text(fields, "from_user")
        return InboundCall(
            provider=self.name,
            provider_call_id=uuid,
            from_number=(_e164(caller) or caller) if caller else "anonymous",
            to_number=_e164(to),
            received_at=req.received_at,
            sip_uri=to if to.lower().startswith(("sip:", "sips:")) else None,
            account_id=_api_key_claim(req),
            params=fields,
            wall_time=req.wall_time,
        )

    def render(
        self, decision: Decision, call: InboundCall, number: AnyPhoneNumber, ctx: RenderContext
    ) -> Rendered:
        """The NCCO carrying out the decision; `warnings` say what had to be left out."""
        outcome = decision.outcome
        warnings: list[str] = []
        ncco: list[dict[str, Any]]
        if isinstance(outcome, Connect):
            ncco = [_connect_runtime(outcome, call, number, ctx, warnings)]
        elif isinstance(outcome, Transfer):
            ncco = [*_talk(outcome.message, warnings), _transfer(outcome, call, number, warnings)]
        elif isinstance(outcome, Say):
            ncco = _talk(outcome.text, warnings)  # the call ends when the actions run out
        else:
            return self.reject()
        return Rendered(orjson.dumps(ncco), CONTENT_TYPE, warnings=tuple(warnings))

    def reject(self) -> Rendered:
        """The empty NCCO: Vonage cannot decline a call, this ends it with nothing played."""
        return Rendered(REJECT, CONTENT_TYPE)

    def parse_status(self, req: WebhookRequest) -> StatusEvent:
        """An event: `status`, `duration` (completed), `timestamp` (ISO 8601)."""
        fields = _fields(req)
        uuid = _text(fields, "uuid")
        if not uuid:
            raise MalformedWebhook("missing-uuid")
        status = _STATUSES.get(_text(fields, "status").lower())
        if status is None:
            raise MalformedWebhook("unknown-call-status")
        return StatusEvent(
            provider=self.name,
            provider_call_id=uuid,
            status=status,
            is_final=status in FINAL_STATUSES,
            duration_seconds=ascii_int(_text(fields, "duration")),
            sequence=_RANKS.get(status, 2),
            timestamp=_timestamp(_text(fields, "timestamp")) or req.wall_time,
            params=fields,
            from_number=(_e164(caller) or caller) if (caller := _text(fields, "from")) else None,
        )

    # --- runtime callbacks (router/runtimes/attempts.py) --------------------------------------

    callbacks_name_the_call: Final = True  # the events are the dialled leg's

    def attempt_result(self, req: WebhookRequest, kind: str) -> AttemptResult:
        """The dialled leg's `status`: `answered` (and its end) is the runtime taking the
        call; `failed`, `unanswered`, `rejected`, `busy` and `timeout` are not; the caller
        hanging up first is `cancelled`; `started` and `ringing` say nothing yet."""
        return _ATTEMPT_RESULTS.get(_text(_lenient_fields(req), "status").lower(), "pending")

    def stream_event(self, req: WebhookRequest) -> StreamEvent | None:
        """Vonage says it all in the leg's events: no stream callbacks."""
        return None

    def finished(self) -> Rendered:
        """An empty answer: the call goes on as it is (a connected runtime keeps it; after
        its end, no action is left and the call ends)."""
        return self.ack_status()

    def ack_status(self) -> Rendered:
        """204 No Content: received, and no NCCO for Vonage to run (e.g. on `disconnected`)."""
        return Rendered(b"", CONTENT_TYPE, status=204)


# --- verification ------------------------------------------------------------------------


def _bearer_token(authorization: str) -> str:
    if not authorization.strip():
        raise VerificationFailed("missing-signature")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise VerificationFailed("bad-authorization")
    # A JWT is ASCII (base64url and dots). PyJWT encodes a str token as strict UTF-8, which
    # raises on the lone surrogates aiohttp keeps a header's undecodable bytes as.
    if not token.isascii():
        raise VerificationFailed("malformed-token")
    return token.strip()


def decode_token(token: str, secret: str) -> dict[str, Any]:
    """The claims of an HS256 token signed with `secret`; times are checked by the caller."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise VerificationFailed("malformed-token") from None
    if header.get("alg") != ALGORITHM:
        raise VerificationFailed("bad-algorithm")  # `none` and every other algorithm
    try:
        with catch_warnings():
            # The secret is the Vonage account's, not ours to lengthen; Vonage only
            # recommends 32 bits, so PyJWT's 32-byte advice would warn on every webhook.
            simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            claims: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={
                    # Checked against the request's arrival time in `check_times`.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    # Vonage names no audience; an `aud` it may add must not refuse every call.
                    "verify_aud": False,
                },
            )
    except jwt.InvalidSignatureError:
        raise VerificationFailed("bad-signature") from None
    except jwt.InvalidTokenError:
        raise VerificationFailed("malformed-token") from None
    return claims


def check_times(claims: Mapping[str, Any], *, now: float) -> None:
    """`iat` required and recent; `exp` and `nbf` held to when present (with leeway)."""
    iat = _time_claim(claims, "iat")
    if iat is None:
        raise VerificationFailed("missing-iat")
    if iat > now + CLOCK_LEEWAY_SECONDS:
        raise VerificationFailed("token-not-yet-valid")
    if iat < now - TOKEN_MAX_AGE_SECONDS - CLOCK_LEEWAY_SECONDS:
        raise VerificationFailed("token-expired")
    exp = _time_claim(claims, "exp")
    if exp is not None and exp < now - CLOCK_LEEWAY_SECONDS:
        raise VerificationFailed("token-expired")
    nbf = _time_claim(claims, "nbf")
    if nbf is not None and nbf > now + CLOCK_LEEWAY_SECONDS:
        raise VerificationFailed("token-not-yet-valid")


def payload_hashes(req: WebhookRequest) -> tuple[str, ...]:
    """The hex SHA-256 digests `payload_hash` may equal for this request.

    A body is hashed as received. A GET is hashed as Vonage describes: its query fields as
    a JSON object, in their order, without whitespace; both JSON spellings of non-ASCII
    text are accepted, since each binds exactly the same fields.
    """
    if req.method != "GET":
        return (hashlib.sha256(req.body).hexdigest(),)
    fields: dict[str, str] = {}
    for key, value in req.query.items():
        fields[key] = value  # a repeated name keeps its first place and its last value
    spellings = (orjson.dumps(fields), json.dumps(fields, separators=(",", ":")).encode())
    return tuple(dict.fromkeys(hashlib.sha256(spelling).hexdigest() for spelling in spellings))


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VerificationFailed("bad-claims")
    return float(value)


def _api_key_claim(req: WebhookRequest) -> str | None:
    """The token's `api_key`, as the token says: the lookup key is chosen with it before
    `verify` checks the token (which then holds it to the credential's)."""
    try:
        token = _bearer_token(req.headers.get(AUTHORIZATION_HEADER, ""))
    except VerificationFailed:
        return None
    return _unverified_api_key(token)


# Read twice per webhook (its lookup key, its call's account): decoded once. Each token is
# new (`jti`), so a few recent ones are all there is to keep.
@lru_cache(maxsize=64)
def _unverified_api_key(token: str) -> str | None:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    api_key = claims.get("api_key")
    return api_key if isinstance(api_key, str) and api_key else None


# --- fields ------------------------------------------------------------------------------


def _fields(req: WebhookRequest) -> dict[str, Any]:
    """The webhook's fields: the query of a GET (or a form), else the JSON object body."""
    if req.method == "GET" or is_form(req.headers):
        return _first_values(req.params)
    if not req.body:
        return {}
    try:
        data = orjson.loads(req.body)
    except orjson.JSONDecodeError:
        raise MalformedWebhook("bad-json") from None
    if not isinstance(data, dict):
        raise MalformedWebhook("bad-json")
    return data


def _lenient_fields(req: WebhookRequest) -> dict[str, Any]:
    try:
        return _fields(req)
    except MalformedWebhook:
        return {}


def _first_values(fields: MultiMapping[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in fields.items():
        values.setdefault(key, value)
    return values


def _text(fields: Mapping[str, Any], name: str) -> str:
    """A scalar field as text; objects, arrays and absent fields are ``""``."""
    value = fields.get(name)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _e164(value: str) -> str | None:
    try:
        return normalize_e164(value)
    except ValueError:
        return None


def _timestamp(iso: str) -> float | None:
    """Epoch seconds of an ISO 8601 time (UTC when it names no zone); None if unreadable."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# --- decision → NCCO ---------------------------------------------------------------------


def _connect_runtime(
    outcome: Connect,
    call: InboundCall,
    number: AnyPhoneNumber,
    ctx: RenderContext,
    warnings: list[str],
) -> dict[str, Any]:
    """`connect` to the runtime: its websocket, ids in `headers` (no transient config), or
    its SIP URI with the `x-router-*` headers. With callbacks, the leg's events go to
    `/vonage/connect`, synchronously: the answer to a failure carries on the call."""
    action: dict[str, Any] = {"action": "connect"}
    # Vonage takes fully qualified URLs only (every NCCO example is one).
    callbacks = callback_url(ctx, "/vonage/connect", absolute=True)
    if callbacks is not None:
        action |= {"eventUrl": [callbacks], "eventMethod": "POST", "eventType": "synchronous"}
    own = _vonage_number(number.number or call.to_number)
    if own is not None:
        action["from"] = own  # optional for a websocket, but Vonage's own SDK insists
    if ctx.runtime_kind == "sip":
        sip_headers = _sip_headers(runtime_headers(outcome, number, ctx, warnings))
        uri = _clean(ctx.runtime_address)
        action["endpoint"] = [{"type": "sip", "uri": uri, "headers": sip_headers}]
        action["timeout"] = RUNTIME_CONNECT_TIMEOUT_SECONDS
        return action
    wanted = [("callId", ctx.call_id), ("target", outcome.target)]
    if outcome.target_id is not None:
        wanted.append(("targetId", outcome.target_id))
    wanted.append(("phoneNumberId", number.id))
    headers: dict[str, str] = {}
    for name, raw in wanted:
        candidate = {**headers, name: _clean(raw)}
        if len(orjson.dumps(candidate)) > WEBSOCKET_HEADERS_LIMIT_BYTES:
            warnings.append(f"websocket header {name} dropped: headers over the 512-byte limit")
            continue
        headers = candidate
    endpoint = {
        "type": "websocket",
        "uri": ctx.runtime_address,
        "content-type": WEBSOCKET_CONTENT_TYPE,
        "headers": headers,
    }
    action["endpoint"] = [endpoint]
    return action


def _transfer(
    outcome: Transfer, call: InboundCall, number: AnyPhoneNumber, warnings: list[str]
) -> dict[str, Any]:
    """`connect` to a phone number (extension as `dtmfAnswer`) or a SIP URI."""
    dest = outcome.destination
    endpoint: dict[str, Any]
    if isinstance(dest, TransferDestinationNumber):
        digits = dest.number.strip().removeprefix("+")
        if not _VONAGE_NUMBER.match(digits):
            warnings.append("transfer number is not E.164: Vonage may refuse to dial it")
        endpoint = {"type": "phone", "number": _clean(digits)}
        if dest.extension:
            endpoint["dtmfAnswer"] = _dtmf(dest.extension)
    else:
        endpoint = {"type": "sip", "uri": _clean(dest.sip_uri)}
        sip_headers = dict(dest.sip_headers or {})
        # Vonage sends `headers` as `X-<name>`; a standard header goes in `standardHeaders`
        # under its own name (Vonage takes `User-to-User` there).
        standard = {
            name: sip_headers.pop(name) for name in list(sip_headers) if name.lower() in _STANDARD
        }
        headers = _sip_headers(sip_headers)
        if headers:
            endpoint["headers"] = headers
        if standard:
            endpoint["standardHeaders"] = {
                _STANDARD[name.lower()]: _clean(str(value)) for name, value in standard.items()
            }
    action: dict[str, Any] = {"action": "connect"}
    caller_id = _caller_id(dest.caller_id, call, number, warnings)
    if caller_id is not None:
        action["from"] = caller_id
    action["endpoint"] = [endpoint]
    timeout = _connect_timeout(dest.transfer_plan)
    if timeout is not None:
        action["timeout"] = timeout
    return action


def _talk(text: str, warnings: list[str]) -> list[dict[str, Any]]:
    """A `talk` action, or none for a text with nothing to speak."""
    text = _clean(_SPACE_CONTROLS.sub(" ", text))
    if not text.strip():
        return []
    if len(text) > TALK_TEXT_LIMIT:
        # Cut rather than refused: Vonage drops a call whose NCCO is invalid.
        warnings.append("talk text cut to Vonage's 1500-character limit")
        text = text[:TALK_TEXT_LIMIT]
    return [{"action": "talk", "text": text}]


def _caller_id(
    template: str | None, call: InboundCall, number: AnyPhoneNumber, warnings: list[str]
) -> str | None:
    """The `from` of a transfer: `{{customer.number}}` → the caller,
    `{{phoneNumber.number}}` → the called number, else the literal number.

    Vonage needs a `from` it can present (one of the account's numbers, else the callee
    sees an unknown caller), so without a callerId, or with one that is no phone number
    (a withheld caller), the called number is used.
    """
    own = _vonage_number(number.number or call.to_number)
    if not template:
        return own
    key = template.replace(" ", "")
    if key == "{{customer.number}}":
        candidate: str | None = call.from_number
    elif key == "{{phoneNumber.number}}":
        candidate = number.number or call.to_number
    else:
        candidate = template
    resolved = _vonage_number(candidate)
    if resolved is None:
        warnings.append("callerId is not a phone number: the called number is used instead")
        return own
    return resolved


def _vonage_number(value: str | None) -> str | None:
    """`value` as Vonage spells numbers (E.164 digits, no `+`), or None if it is none."""
    digits = (value or "").strip().removeprefix("+")
    return digits if _VONAGE_NUMBER.match(digits) else None


def _dtmf(extension: str) -> str:
    """Twilio-style digits (`w` half a second, `W` one) as Vonage's (`p` half a second),
    after a one-second pause unless the extension starts with its own."""
    digits = extension.replace("W", "pp").replace("w", "p")
    return digits if digits.startswith("p") else DTMF_PAUSE + digits


def _sip_headers(headers: Mapping[str, object]) -> dict[str, str]:
    """`sipHeaders` for Vonage, which sends each as `X-<name>`: an `x-` already in the
    name is left out so it is not doubled; booleans spelled as JSON."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        bare = name[2:] if name.lower().startswith("x-") else name
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out[_clean(bare)] = _clean(text)
    return out


def _connect_timeout(plan: TransferPlan | None) -> int | None:
    """`dialTimeout`, else `timeout` when changed from its default, within Vonage's bounds."""
    if plan is None:
        return None
    default = TransferPlan.model_fields["dial_timeout"].default
    seconds = plan.dial_timeout if plan.dial_timeout != default else plan.timeout
    low, high = CONNECT_TIMEOUT_BOUNDS
    return max(low, min(high, round(seconds)))


def _clean(value: str) -> str:
    """`value` without control characters, lone surrogates or non-characters."""
    return _UNSPEAKABLE.sub("", value)


def transfer_refusal(number: AnyPhoneNumber) -> str | None:
    """Why a Vonage number's own transfer destinations cannot be dialled, or None: Vonage's
    NCCO takes a `phone` endpoint's number as digits, 7 to 15 of them, not starting with
    0 (E.164 without the `+`). Checked when the number is saved, so the call does not find
    out; a destination a server returns is checked on the call (and reported)."""
    places: list[tuple[str, Any]] = [
        ("fallbackDestination", number.fallback_destination),
        ("overflowDestination", number.overflow_destination),
    ]
    for index, hook in enumerate(number.hooks or ()):
        actions = hook.do if isinstance(hook.do, list) else [hook.do]
        for position, action in enumerate(actions):
            destination = getattr(action, "destination", None)
            where = f"hooks.{index}.do" + (f".{position}" if isinstance(hook.do, list) else "")
            places.append((f"{where}.destination", destination))
    for where, destination in places:
        if isinstance(destination, TransferDestinationNumber):
            digits = destination.number.strip().removeprefix("+")
            if not _VONAGE_NUMBER.match(digits):
                return (
                    f"{where}.number must be a phone number Vonage can dial "
                    "(E.164: 7 to 15 digits, not starting with 0)"
                )
    return None
