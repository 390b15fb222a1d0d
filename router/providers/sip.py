"""The SIP edge: Kamailio, FreeSWITCH, LiveKit-style edges ask where a call goes in JSON.

The contract is docs/sip-edge.md. Rules:
- The edge authenticates itself with `Authorization: Bearer <ROUTER_SIP_EDGE_SECRET>`
  (constant-time compare); with the secret unset every request is refused. That is the
  only thing `verify` checks, so only the edge itself ever gets a 403.
- Numbers: a request with `credentialId` finds a `byo-phone-number` by
  `byo:{credentialId}:{number}`, the number being `to` (else the user part of `toUri`)
  in E.164 when it starts with `+` and is one, otherwise exactly as sent. Without
  `credentialId`, the Request-URI (`toUri`, else a SIP `to`) finds a `vapi` number by
  `sip:user@host`, case-insensitive, parameters ignored.
- Call ids: the SIP Call-ID is chosen by the caller, so router's call id is the Call-ID
  plus `~` and 12 hex digits naming the called number. One Call-ID sent to two numbers
  can then never share a stored decision or call record (no replay across numbers).
- Digest: a `vapi` number with `authentication` needs the caller's forwarded digest
  `authorization` (router/providers/sip_digest.py). The check runs in `verify`, before
  anything is decided: a missing or failing digest raises `Challenge`, answered as a
  `challenge` JSON, so an unauthenticated INVITE never reaches the customer's server.
  The edge's bearer secret is checked even earlier (`preverify`, before the number is
  looked up), so without it nobody learns which numbers exist. The realm is the number's
  `authentication.realm`, else the host of its `sipUri`. `byo-phone-number` calls have no
  digest: the trunk is trusted through the edge.
- Every decision is HTTP 200 with a JSON `action`; an HTTP error means router did not
  decide (403: not the edge, 400: malformed request).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar, cast

import orjson
from pydantic import Field, ValidationError

from router.models.common import TransferDestinationNumber, TransferPlan
from router.models.credentials import AnyCredential
from router.models.phone_numbers import (
    AnyPhoneNumber,
    ByoPhoneNumber,
    VapiPhoneNumber,
    sip_lookup_key,
)
from router.models.ringing import Attestation
from router.models.wire import OpenModel, normalize_e164
from router.pipeline.decision import RINGING_REJECT, Connect, Decision, Reject, Say, Transfer
from router.pipeline.inbound_call import InboundCall
from router.providers import sip_digest as digest
from router.providers.attestation import verstat_level
from router.providers.plugin import (
    FINAL_STATUSES,
    AttemptResult,
    Challenge,
    MalformedWebhook,
    RenderContext,
    Rendered,
    StatusEvent,
    StreamEvent,
    VerificationFailed,
    WebhookRequest,
    text_bytes,
)
from router.providers.runtime_legs import callback_url, runtime_headers
from router.runtimes.config import DEFAULT_RUNTIME
from router.settings import Settings

CONTENT_TYPE: Final = "application/json"
ROUTED_METHOD: Final = "INVITE"
CALL_ID_SUFFIX_HEX: Final = 12
MAX_CALL_ID_CHARS: Final = 256
CHALLENGE_STATUS: Final = 401
CHALLENGE_HEADER: Final = "WWW-Authenticate"
UNKNOWN_NUMBER: Final = (404, "Not Found")
BLOCKED_NUMBER: Final = (403, "Forbidden")
# A `call.ringing` hook's reject: the number's owner declines this call (RFC 3261 603:
# the callee was reached and does not wish to take it; the caller's network does not
# try elsewhere).
DECLINED_BY_HOOK: Final = (603, "Decline")
DEFAULT_REALM: Final = "router"
_LEVELS: Final[Mapping[str, Attestation]] = {
    "a": "A",
    "b": "B",
    "c": "C",
    "failed": "failed",
    "none": "none",
}
# Standard headers a transfer may set by name; any other name gets the `x-` prefix.
PLAIN_HEADERS: Final = frozenset(
    {"user-to-user", "remote-party-id", "p-preferred-identity", "p-called-party-id"}
)
_STATUSES: Final = {
    "ringing": "ringing",
    "early": "ringing",
    "answered": "in-progress",
    "in-progress": "in-progress",
    "completed": "completed",
    "ended": "completed",
    "busy": "busy",
    "failed": "failed",
    "no-answer": "no-answer",
    "canceled": "canceled",
    "cancelled": "canceled",
}
# Control characters: they would end or split a SIP header line at the edge.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A SIP header name (RFC 3261 `token`): only these make a line an edge can append as is.
_HEADER_NAME = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_URI_SCHEMES: Final = ("sip:", "sips:", "tel:")
_M = TypeVar("_M", bound=OpenModel)


class RouteRequest(OpenModel):
    """`POST /sip/route`: the ringing call as the edge saw it (unknown fields ignored)."""

    call_id: str = Field(min_length=1, max_length=MAX_CALL_ID_CHARS)
    caller: str = Field(default="", alias="from", max_length=512)
    to: str | None = Field(default=None, max_length=512)
    to_uri: str | None = Field(default=None, max_length=2048)
    credential_id: str | None = Field(default=None, max_length=200)
    source_ip: str | None = Field(default=None, max_length=100)
    headers: dict[str, str | list[str]] = Field(default_factory=dict)
    authorization: str | None = Field(default=None, max_length=4096)
    method: str = ROUTED_METHOD
    # Router extension: the STIR/SHAKEN level the edge verified (`attestation()`).
    attestation: str | None = Field(default=None, max_length=100)


class StatusRequest(OpenModel):
    """`POST /sip/status`: a call-state event for a call the edge asked about."""

    call_id: str = Field(min_length=1, max_length=MAX_CALL_ID_CHARS)
    status: str
    caller: str = Field(default="", alias="from", max_length=512)
    duration_seconds: int | None = Field(default=None, ge=0)
    sequence: int | None = Field(default=None, ge=0)
    timestamp: float | None = None  # epoch seconds
    sip_code: int | None = Field(default=None, ge=100, le=699)


class SipProvider:
    """A SIP edge routing `vapi` (SIP URI) and `byo-phone-number` (SIP trunk) numbers."""

    name: Final = "sip"
    # The protocol names one; the request decides which of `number_providers` it finds.
    number_provider: Final = "vapi"
    number_providers: Final = ("vapi", "byo-phone-number")
    # `connect`: the edge tells whether the runtime took the call (docs/sip-edge.md).
    endpoints: Final[Mapping[str, str]] = {
        "voice": "route",
        "status": "status",
        "connect": "connect",
    }
    callbacks_name_the_call: Final = False  # the edge sends the call's callId again

    def budget_seconds(self, settings: Settings) -> float:
        """`sip_budget_seconds`: how long the edge lets the INVITE wait for a decision."""
        return settings.sip_budget_seconds

    def lookup_key(self, req: WebhookRequest) -> str | None:
        """`byo:{credentialId}:{number}` or `sip:user@host`; None for anything but a
        JSON POST naming a called number or URI (the pipeline then rejects with 404)."""
        data = _json_object(req)
        return None if data is None else called_key(data)

    def call_id(self, req: WebhookRequest) -> str | None:
        """Router's id for the call: the SIP Call-ID scoped to the called number."""
        data = _json_object(req)
        if data is None:
            return None
        key = called_key(data)
        sip_call_id = data.get("callId")
        if key is None or not isinstance(sip_call_id, str) or not sip_call_id:
            return None
        return scoped_call_id(sip_call_id, key)

    def preverify(self, req: WebhookRequest, settings: Settings) -> None:
        """The edge's bearer secret, compared in constant time; fails closed when unset.

        Checked before the number is looked up, so a caller without the secret cannot
        tell known numbers from unknown ones.
        """
        secret = settings.sip_edge_secret
        expected = secret.get_secret_value() if secret is not None else ""
        if not expected:
            raise VerificationFailed("edge-secret-not-configured")
        scheme, _, token = req.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise VerificationFailed("missing-edge-secret")
        # Hashing first keeps the compare constant-time in the secret's length too.
        if not hmac.compare_digest(_sha256(token.strip()), _sha256(expected)):
            raise VerificationFailed("bad-edge-secret")

    def verify(
        self,
        req: WebhookRequest,
        number: AnyPhoneNumber,
        credentials: Sequence[AnyCredential],
        settings: Settings | None = None,
    ) -> None:
        """The caller's digest for a number with `authentication`: a missing or failing one
        raises `Challenge` (answered before any decision, so an unauthenticated INVITE
        never reaches the customer's server)."""
        if not isinstance(number, VapiPhoneNumber | ByoPhoneNumber):
            raise VerificationFailed("provider-mismatch")
        if req.path.endswith(("/status", "/connect")):
            return  # call-state events and runtime outcomes come from the edge itself
        call = self.parse(req)
        challenge = _challenge(call, number, call.provider_call_id)
        if challenge is not None:
            raise Challenge(challenge, challenge.warnings[0])

    # --- runtime callbacks (router/runtimes/attempts.py) --------------------------------------

    def attempt_result(self, req: WebhookRequest, kind: str) -> AttemptResult:
        """The edge's `result`: `taken` (the runtime answered), `refused` (it did not: an
        error, no answer, unreachable) or `gone` (the caller hung up first)."""
        data = _json_object(req) or {}
        result = data.get("result")
        if result not in ("taken", "refused", "gone"):
            raise MalformedWebhook("bad-result")
        return cast(AttemptResult, result)

    def stream_event(self, req: WebhookRequest) -> StreamEvent | None:
        """The edge says what happened in `/sip/connect` alone."""
        return None

    def finished(self) -> Rendered:
        """`{"action": "none"}`: nothing more for the edge to do."""
        return Rendered(_dump({"action": "none"}), CONTENT_TYPE)

    def parse(self, req: WebhookRequest) -> InboundCall:
        """The ringing call (also read by `verify` for the digest check)."""
        body = _validated(req, RouteRequest)
        if body.method.strip().upper() != ROUTED_METHOD:
            raise MalformedWebhook("unsupported-method")
        data = body.model_dump(by_alias=True)
        key = called_key(data)
        if key is None:
            raise MalformedWebhook("missing-called-number")
        called = called_number(data)
        return InboundCall(
            provider=self.name,
            provider_call_id=scoped_call_id(body.call_id, key),
            from_number=caller_number(body.caller),
            to_number=_e164(called) if called else None,
            received_at=req.received_at,
            sip_uri=request_uri(data),
            account_id=body.credential_id,
            params={
                "sipCallId": body.call_id,
                "from": body.caller,
                "to": body.to,
                "toUri": body.to_uri,
                "credentialId": body.credential_id,
                "sourceIp": body.source_ip,
                "headers": body.headers,
                "method": ROUTED_METHOD,
                "authorization": body.authorization,
                "attestation": body.attestation,
            },
            wall_time=req.wall_time,
            attestation_reader=attestation,
        )

    def render(
        self, decision: Decision, call: InboundCall, number: AnyPhoneNumber, ctx: RenderContext
    ) -> Rendered:
        """The decision as JSON (the caller's digest was checked by `verify`)."""
        warnings: list[str] = []
        head: dict[str, Any] = {
            "callId": ctx.call_id,
            "sipCallId": call.params.get("sipCallId", ctx.call_id),
            "routerCallId": call.id,
            "phoneNumberId": number.id,
        }
        outcome = decision.outcome
        body: dict[str, Any]
        if isinstance(outcome, Connect):
            body = {
                "action": "connect",
                **head,
                "target": outcome.target,
                "targetId": outcome.target_id,
                "runtime": ctx.runtime.name if ctx.runtime is not None else DEFAULT_RUNTIME,
                "runtimeKind": ctx.runtime_kind,
                # A media stream's URL for a `stream` runtime, a SIP URI for a `sip` one.
                "runtimeUrl": ctx.runtime_address if ctx.runtime_kind != "sip" else None,
                "runtimeUri": ctx.runtime_address if ctx.runtime_kind == "sip" else None,
                "headers": (headers := runtime_headers(outcome, number, ctx, warnings)),
                "headerLines": header_lines(headers, warnings),
                # Where the edge says whether the runtime took the call (None: nowhere).
                "connectUrl": callback_url(ctx, "/sip/connect"),
            }
        elif isinstance(outcome, Transfer):
            body = {
                "action": "transfer",
                **head,
                "message": outcome.message,
                "destination": _destination(outcome, call, number, warnings),
            }
        elif isinstance(outcome, Say):
            body = {"action": "say", **head, "text": outcome.text, "hangup": True}
        else:
            assert isinstance(outcome, Reject)
            hook = decision.ended_reason == RINGING_REJECT
            status, reason = DECLINED_BY_HOOK if hook else BLOCKED_NUMBER
            body = {"action": "reject", **head, "status": status, "reason": reason}
        body |= {
            "route": decision.route,
            "endedReason": decision.ended_reason,
            "trace": list(decision.trace),
        }
        return Rendered(_dump(body), CONTENT_TYPE, warnings=tuple(warnings))

    def reject(self) -> Rendered:
        """`404 Not Found` for the caller: no number is configured for the request."""
        status, reason = UNKNOWN_NUMBER
        body = {
            "action": "reject",
            "status": status,
            "reason": reason,
            "route": None,
            "endedReason": None,
            "trace": ["unknown-number"],
        }
        return Rendered(_dump(body), CONTENT_TYPE)

    def parse_status(self, req: WebhookRequest) -> StatusEvent:
        """A call-state event: `status` normalised, `durationSeconds`, `sequence`."""
        body = _validated(req, StatusRequest)
        data = _json_object(req) or {}
        key = called_key(data)
        if key is None:
            raise MalformedWebhook("missing-called-number")
        status = _STATUSES.get(body.status.strip().lower())
        if status is None:
            raise MalformedWebhook("unknown-call-status")
        return StatusEvent(
            provider=self.name,
            provider_call_id=scoped_call_id(body.call_id, key),
            status=status,
            is_final=status in FINAL_STATUSES,
            duration_seconds=body.duration_seconds,
            sequence=body.sequence,
            timestamp=body.timestamp if body.timestamp is not None else req.wall_time,
            from_number=caller_number(body.caller) if body.caller else None,
            params={
                "From": caller_number(body.caller) if body.caller else "",
                "sipCallId": body.call_id,
                "sipCode": body.sip_code,
            },
        )

    def ack_status(self) -> Rendered:
        """`{"ok": true}`."""
        return Rendered(b'{"ok":true}', CONTENT_TYPE)


# --- the request --------------------------------------------------------------------------


def called_key(data: Mapping[str, Any]) -> str | None:
    """The number's cache key for a route or status request body."""
    credential = _text(data.get("credentialId"))
    if credential:
        number = called_number(data)
        return f"byo:{credential}:{number}" if number else None
    uri = request_uri(data)
    return sip_lookup_key(uri) if uri else None


def called_number(data: Mapping[str, Any]) -> str | None:
    """`to` (else `toUri`'s user part) as a byo number stores it: E.164 when it starts
    with `+` and is one, otherwise exactly as sent."""
    value = _text(data.get("to"))
    if value.lower().startswith(_URI_SCHEMES) or value.startswith("<"):
        value = _user_part(value)
    if not value:
        value = _user_part(_text(data.get("toUri")))
    if value.startswith("+"):
        return _e164(value) or value
    return value or None


def request_uri(data: Mapping[str, Any]) -> str | None:
    """The Request-URI: `toUri`, else `to` when it is a SIP URI."""
    for name in ("toUri", "to"):
        value = _text(data.get(name)).strip("<>")
        if value.lower().startswith(("sip:", "sips:")):
            return value
    return None


def scoped_call_id(sip_call_id: str, lookup_key: str) -> str:
    """The SIP Call-ID plus `~` and 12 hex digits of the called number's key."""
    scope = hashlib.sha256(lookup_key.encode()).hexdigest()[:CALL_ID_SUFFIX_HEX]
    return f"{sip_call_id}~{scope}"


def attestation(fields: Mapping[str, Any]) -> Attestation:
    """The `attestation` the edge sent: router's level (`A`, `B`, `C`, `failed`, `none`),
    or a `verstat` value as the edge found it (router/providers/attestation.py); absent
    or unknown: `none`."""
    value = fields.get("attestation")
    if not isinstance(value, str):
        return "none"
    level = _LEVELS.get(value.strip().lower())
    return level if level is not None else verstat_level(value)


def caller_number(value: str) -> str:
    """The caller from `from`: a number, or a URI's (or name-addr's) user part;
    `anonymous` when withheld."""
    text = value.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.index(">")]
    if text.lower().startswith(_URI_SCHEMES):
        text = _user_part(text)
    text = _CONTROL.sub("", text).strip()
    if not text or text.lower() in ("anonymous", "restricted", "unavailable"):
        return "anonymous"
    return text


def _user_part(uri: str) -> str:
    text = uri.strip().strip("<>")
    scheme, colon, rest = text.partition(":")
    if colon and (scheme + ":").lower() in _URI_SCHEMES:
        text = rest
    user = text.split("@", 1)[0] if "@" in text or scheme.lower() == "tel" else ""
    return user.split(";", 1)[0].strip()


def _json_object(req: WebhookRequest) -> dict[str, Any] | None:
    if req.method != "POST" or not req.body:
        return None
    try:
        # orjson refuses deep nesting with a ValueError; the stdlib raises RecursionError.
        data = orjson.loads(req.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _validated(req: WebhookRequest, model: type[_M]) -> _M:
    if req.method != "POST":
        raise MalformedWebhook("method-not-allowed")
    data = _json_object(req)
    if data is None:
        raise MalformedWebhook("bad-json")
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        where = ".".join(str(part) for part in exc.errors()[0]["loc"])
        raise MalformedWebhook(f"invalid-field:{where}") from None
    call_id = getattr(body, "call_id", "")
    if _CONTROL.search(call_id):
        raise MalformedWebhook("invalid-field:callId")  # it lands in SIP headers
    return body


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _e164(value: str) -> str | None:
    try:
        return normalize_e164(value)
    except ValueError:
        return None


def _sha256(value: str) -> bytes:
    return hashlib.sha256(text_bytes(value)).digest()


def _dump(body: Mapping[str, Any]) -> bytes:
    # ASCII-only output: every user-supplied character arrives escaped.
    return json.dumps(body, separators=(",", ":")).encode()


# --- the digest gate ----------------------------------------------------------------------


def realm_of(number: VapiPhoneNumber) -> str:
    """`authentication.realm`, else the host of `sipUri`, else `router`."""
    configured = number.authentication.realm if number.authentication else None
    realm = configured or (
        sip_lookup_key(number.sip_uri).partition("@")[2].split(":", 1)[0] if number.sip_uri else ""
    )
    return _CONTROL.sub("", realm).strip() or DEFAULT_REALM


def _challenge(call: InboundCall, number: AnyPhoneNumber, call_id: str) -> Rendered | None:
    """The challenge for a call to a digest-protected number that did not prove it."""
    if call.provider != "sip" or not isinstance(number, VapiPhoneNumber):
        return None  # only calls this provider parsed carry what the check needs
    auth = number.authentication
    if auth is None:
        return None
    realm = realm_of(number)
    key = digest.nonce_key(number.id, auth.username, realm, auth.password)
    now = call.wall_time
    target = sip_lookup_key(str(call.params.get("toUri") or call.sip_uri or number.sip_uri or ""))
    authorization = call.params.get("authorization")
    result = digest.check(
        authorization if isinstance(authorization, str) else None,
        username=auth.username,
        realm=realm,
        password=auth.password,
        method=str(call.params.get("method", ROUTED_METHOD)),
        uri_matches=lambda uri: sip_lookup_key(uri) == target,
        key=key,
        now=now,
    )
    if result.ok:
        return None
    nonce = digest.make_nonce(key, now)
    body = {
        "action": "challenge",
        "callId": call_id,
        "sipCallId": call.params.get("sipCallId", call_id),
        "status": CHALLENGE_STATUS,
        "header": CHALLENGE_HEADER,
        "value": digest.challenge_header(realm, nonce, stale=result.stale),
        "realm": realm,
        "nonce": nonce,
        "algorithm": digest.CHALLENGE_ALGORITHM,
        "qop": digest.CHALLENGE_QOP,
        "stale": result.stale,
        "reason": result.reason,
        "route": None,
        "endedReason": None,
        "trace": [f"digest-challenge:{result.reason}"],
    }
    return Rendered(_dump(body), CONTENT_TYPE, warnings=(f"digest-challenge:{result.reason}",))


# --- decision → JSON ----------------------------------------------------------------------


def _destination(
    outcome: Transfer, call: InboundCall, number: AnyPhoneNumber, warnings: list[str]
) -> dict[str, Any]:
    dest = outcome.destination
    caller_id = _caller_id(dest.caller_id, call, number)
    out: dict[str, Any]
    if isinstance(dest, TransferDestinationNumber):
        out = {"type": "number", "number": dest.number, "extension": dest.extension}
    else:
        headers = _sip_headers(dest.sip_headers, warnings)
        out = {
            "type": "sip",
            "uri": dest.sip_uri,
            "headers": headers,
            "headerLines": header_lines(headers, warnings),
        }
    out["callerId"] = caller_id
    plan = dest.transfer_plan
    if plan is not None:
        out["timeoutSeconds"] = _dial_timeout(plan)
        out["sipVerb"] = plan.sip_verb
    return out


def _sip_headers(headers: Mapping[str, Any] | None, warnings: list[str]) -> dict[str, str]:
    """`sipHeaders` as SIP headers: `x-` added unless present or a standard name. Control
    characters (a CR LF would start another header in the edge's INVITE) are removed from
    values, and said in `warnings`; a name holding one is no header name: left out."""
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if _CONTROL.search(name):
            warnings.append("sipHeaders: a header name with control characters left out")
            continue
        lowered = name.lower()
        if not lowered.startswith("x-") and lowered not in PLAIN_HEADERS:
            name = f"x-{name}"
        # JSON spelling for booleans, as assistant-request headers are sent.
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        clean = _CONTROL.sub("", text)
        if clean != text:
            warnings.append(f"header {name}: control characters removed")
        out[name] = clean
    return out


def header_lines(headers: Mapping[str, str], warnings: list[str]) -> str:
    """`headers` as SIP header lines, `Name: value` each ended by CRLF, for an edge that
    cannot walk a JSON object (Kamailio's json module reads fields by name only). Values
    hold no control characters already; a name that is no SIP token is left out, and said."""
    lines = []
    for name, value in headers.items():
        if _HEADER_NAME.fullmatch(name):
            lines.append(f"{name}: {value}\r\n")
        else:
            warnings.append(f"header {name!r} left out of headerLines: not a SIP header name")
    return "".join(lines)


def _caller_id(template: str | None, call: InboundCall, number: AnyPhoneNumber) -> str | None:
    """`{{customer.number}}` → the caller, `{{phoneNumber.number}}` → the called number,
    else the literal; None (the edge's default) for a withheld caller or nothing."""
    if not template:
        return None
    key = template.replace(" ", "")
    if key == "{{customer.number}}":
        return None if call.from_number == "anonymous" else call.from_number
    if key == "{{phoneNumber.number}}":
        return number.number or call.to_number
    return _CONTROL.sub("", template).strip() or None


def _dial_timeout(plan: TransferPlan) -> float:
    """`dialTimeout`, else `timeout` when only that was changed from its default."""
    default = TransferPlan.model_fields["dial_timeout"].default
    return plan.dial_timeout if plan.dial_timeout != default else plan.timeout
