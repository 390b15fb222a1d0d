"""Plivo voice webhooks: X-Plivo-Signature-V3, the answer request, Plivo XML, hangup events.

Rules (SPEC §13; docs/providers.md#plivo cites Plivo's pages):
- Signature V3: `X-Plivo-Signature-V3` is the base64 HMAC-SHA256, keyed by the auth token
  of the number's `plivo` credential, of `{url}.{nonce}` (`X-Plivo-Signature-V3-Nonce`),
  where `url` is built as the plivo SDK's `plivo/utils/signature_v3.py` builds it: scheme,
  host and path, then `?` and the query's fields sorted (`name=value` joined by `&`, a
  name's values sorted, repeats kept); for a POST with form fields, `?` (even without a
  query), the sorted query and a `.` when there is one, then every field sorted as
  `name + value`. The header may list several signatures, comma-separated; one must
  match. Nothing dates a nonce, so a request can be replayed: harmless, since a call id
  gets one decision and status events are idempotent.
- Plivo's webhooks name no account (no auth id among the answer URL's fields), so Plivo
  numbers are keyed by number only (`plivo:+E164`); the credential the number names
  verifies it. Numbers arrive without `+` and are read as E.164.
- Unknown numbers and requests that fail verification get `<Hangup reason="rejected"/>`
  as the first element: Plivo declines the call without answering it.
- Status comes from the hangup URL: `CallStatus` (`completed` for an inbound call that
  ended, answered or not; `busy`, `failed`, `timeout` (a network timeout: `failed`),
  `no-answer`, `cancel` otherwise) and `Duration`. A `completed` call never answered (no
  `AnswerTime`, else no `Duration`) is canceled, busy, no-answer or failed as its
  `HangupCause` says. Plivo numbers no events, so each carries its lifecycle rank as its
  sequence.

Runtimes. A stream runtime is `<Stream bidirectional="true" keepCallAlive="true">` with
8 kHz mu-law (`audio/x-mulaw;rate=8000`), the ids in `extraHeaders` (`callId`, `target`,
`targetId`, `phoneNumberId`, as `key=value,key=value` within Plivo's 512 bytes, values of
letters and digits only: UUIDs without their dashes). With
failover, its `statusCallbackUrl` is `/plivo/stream` (`StartStream`, `StopStream`,
`DroppedStream`; its URL names the call too) and a `<Redirect>` to `/plivo/connect`
follows it: with `keepCallAlive` Plivo runs it only once the stream has ended, and router
then hangs up after a conversation or moves the call to the next runtime. A SIP runtime is
`<Dial action=/plivo/connect><User>sip:...</User></Dial>` with the ids as `sipHeaders`
(Plivo sends them as `X-PH-<name>`; values percent-encoded, as for a transfer's).
Plivo XML has no ConversationRelay.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qs, urlparse, urlunparse

from multidict import MultiMapping

from router.models.common import TransferDestinationNumber
from router.models.credentials import AnyCredential, PlivoCredential
from router.models.phone_numbers import AnyPhoneNumber, PlivoPhoneNumber
from router.pipeline.decision import Connect, Decision, Say, Transfer
from router.pipeline.inbound_call import InboundCall
from router.providers import twiml
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
    hmac_digest,
    is_form,
    number_credential,
    text_bytes,
)
from router.providers.runtime_legs import callback_url, runtime_headers
from router.providers.twiml_dialect import (
    RUNTIME_DIAL_TIMEOUT_SECONDS,
    caller_id,
    dial_timeout,
    e164,
    first_values,
    one,
)
from router.settings import Settings

SIGNATURE_HEADER: Final = "X-Plivo-Signature-V3"
NONCE_HEADER: Final = "X-Plivo-Signature-V3-Nonce"
ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "voice": "answer",
        "fallback": "fallback",
        "status": "hangup",
        # The runtime callbacks: the `<Redirect>` after a stream and a `<Dial>`'s `action`
        # (`connect`), a stream's `statusCallbackUrl` (`stream`).
        "connect": "connect",
        "stream": "stream",
    }
)
CONTENT_TYPE: Final = twiml.CONTENT_TYPE
STREAM_CONTENT_TYPE: Final = "audio/x-mulaw;rate=8000"
EXTRA_HEADERS_LIMIT_BYTES: Final = 512
SEND_DIGITS_PAUSE: Final = "W"  # one second after answer, before an extension's digits
# `CallStatus` values → `router.providers.plugin.CALL_STATUSES`.
STATUSES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ringing": "ringing",
        "in-progress": "in-progress",
        "answered": "in-progress",
        "completed": "completed",
        "busy": "busy",
        "failed": "failed",
        "no-answer": "no-answer",
        "timeout": "failed",  # a network timeout connecting the call (Plivo's support page)
        "cancel": "canceled",
        "canceled": "canceled",
        "cancelled": "canceled",
    }
)
_RANKS: Final = {"ringing": 0, "in-progress": 1}  # every final status ranks 2
# Plivo reports an inbound call's end as `completed` whether or not it was answered; for
# one never answered, its hangup cause says what happened (`HangupCause`, then
# `HangupCauseName`, read upper-cased with `_` for what is not a letter or digit: "Busy
# Line" is BUSY_LINE). A cause not listed is `failed`, unless the caller hung up.
_UNANSWERED_CAUSES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ORIGINATOR_CANCEL": "canceled",
        "CANCELED": "canceled",
        "CANCELLED": "canceled",
        "USER_BUSY": "busy",
        "BUSY_LINE": "busy",
        "NO_ANSWER": "no-answer",
        "NO_USER_RESPONSE": "no-answer",
        "RING_TIMEOUT_REACHED": "no-answer",
    }
)
_NOT_CAUSE: Final = re.compile(r"[^A-Z0-9]+")
_STREAM_EVENTS: Final[Mapping[str, StreamEvent]] = MappingProxyType(
    {"startstream": "started", "stopstream": "stopped", "droppedstream": "error"}
)
# A `<Dial>`'s `DialStatus` when the dialled leg answered.
_LEG_TAKEN: Final = frozenset({"completed", "answered", "in-progress"})
_SIP_SCHEMES: Final = ("sip:", "sips:")
# What goes into a `key=value,key=value` attribute. `extraHeaders` (Plivo's audio stream
# page): letters and digits only, 512 bytes in all; a UUID goes without its dashes (the
# runtime can put them back), anything else outside the rule is left out whole, never cut.
# `sipHeaders` (Plivo's Dial page): names of letters and digits (at most 24), values of
# letters, digits and `%` (at most 120): values are percent-encoded, the target decodes.
_ALNUM: Final = re.compile(r"[A-Za-z0-9]+")
_NOT_ALNUM: Final = re.compile(r"[^A-Za-z0-9]")
_ALNUM_BYTES: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_UUID: Final = re.compile(r"[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
SIP_HEADER_NAME_LIMIT: Final = 24
SIP_HEADER_VALUE_LIMIT: Final = 120

REJECT: Final = Rendered(twiml.response('<Hangup reason="rejected"/>'), CONTENT_TYPE)
HANG_UP: Final = Rendered(twiml.response("<Hangup/>"), CONTENT_TYPE)
EMPTY: Final = Rendered(twiml.EMPTY, CONTENT_TYPE)


# --- verification ------------------------------------------------------------------------


def signed_url(method: str, url: str, params: MultiMapping[str] | None) -> str:
    """The URL string V3 signs, as plivo's `construct_get_url` / `construct_post_url`
    build it; `params` are a POST's form fields (None or empty for a GET)."""
    parts = urlparse(url)
    base = urlunparse((parts.scheme, parts.netloc, parts.path, "", "", ""))
    query: dict[str, list[str]] = parse_qs(parts.query, keep_blank_values=True)
    sorted_query = "&".join(
        f"{name}={value}" for name in sorted(query) for value in sorted(query[name])
    )
    if method.upper() == "GET" or not params:
        return f"{base}?{sorted_query}" if sorted_query else base
    fields = "".join(
        name + value for name in sorted(set(params)) for value in sorted(params.getall(name))
    )
    return f"{base}?{sorted_query}{'.' if sorted_query else ''}{fields}"


def compute_signature(auth_token: str, url: str, nonce: str) -> str:
    """The V3 signature of a signed URL string and a nonce (base64)."""
    # The SDK reads the nonce header as bytes, one character each, then writes the whole
    # string as UTF-8: a non-ASCII nonce is signed so, twice encoded.
    nonce_text = text_bytes(nonce).decode("latin-1")
    message = text_bytes(f"{url}.{nonce_text}")
    digest = hmac_digest(auth_token, message, "sha256")
    return base64.b64encode(digest).decode()


def signature_matches(header: str, expected: str) -> bool:
    """Whether one of the header's comma-separated signatures is `expected`."""
    wanted = expected.encode()
    parts = header.split(",")
    return any(hmac.compare_digest(text_bytes(part.strip()), wanted) for part in parts)


class PlivoProvider:
    """Plivo applications: answer URL, fallback URL and hangup URL."""

    name: Final = "plivo"
    number_provider: Final = "plivo"
    endpoints: Final = ENDPOINTS

    def budget_seconds(self, settings: Settings) -> float:
        """`plivo_budget_seconds`: Plivo waits up to 40 s for one answer, 55 s in all."""
        return settings.plivo_budget_seconds

    def preverify(self, req: WebhookRequest, settings: Settings) -> None:
        """A request without its V3 signature and nonce is refused whatever number it
        names: Plivo signs every webhook. The signature is checked with the number's token."""
        if not req.headers.get(SIGNATURE_HEADER, "").strip():
            raise VerificationFailed("missing-signature")
        if not req.headers.get(NONCE_HEADER, "").strip():
            raise VerificationFailed("missing-nonce")

    def lookup_key(self, req: WebhookRequest) -> str | None:
        """`plivo:+E164` of `To` (a stream status callback's URL, which router wrote,
        names it as `to`); None for SIP `To` forms."""
        number = e164(one(req.params, "To") or req.query.get("to", ""))
        return None if number is None else f"plivo:{number}"

    def call_id(self, req: WebhookRequest) -> str | None:
        """The CallUUID; for a stream status callback without one, the `call` its URL
        names (router wrote it, and V3 signs the query)."""
        return one(req.params, "CallUUID") or req.query.get("call") or None

    def verify(
        self,
        req: WebhookRequest,
        number: AnyPhoneNumber,
        credentials: Sequence[AnyCredential],
        settings: Settings | None = None,
    ) -> None:
        """Check X-Plivo-Signature-V3 with the auth token of the number's credential. The
        URL is the one received (`ROUTER_PUBLIC_URL` and the path and query); a POST body
        that is not a form is not signed, so it is refused."""
        if not isinstance(number, PlivoPhoneNumber):
            raise VerificationFailed("provider-mismatch")
        credential = number_credential(credentials, number, PlivoCredential)
        signature = req.headers.get(SIGNATURE_HEADER, "").strip()
        if not signature:
            raise VerificationFailed("missing-signature")
        nonce = req.headers.get(NONCE_HEADER, "").strip()
        if not nonce:
            raise VerificationFailed("missing-nonce")
        if req.method != "GET" and req.body and not is_form(req.headers):
            raise VerificationFailed("unsigned-body")
        params = req.params if req.method != "GET" else None
        expected = compute_signature(
            credential.auth_token, signed_url(req.method, req.url, params), nonce
        )
        if not signature_matches(signature, expected):
            raise VerificationFailed("bad-signature")

    def parse(self, req: WebhookRequest) -> InboundCall:
        """The ringing call: `CallUUID`, `From` and `To` (read as E.164). A withheld
        caller (`From` empty) becomes `anonymous`; one that is no number is kept as sent."""
        fields = req.params
        call_uuid = one(fields, "CallUUID")
        if not call_uuid:
            raise MalformedWebhook("missing-call-uuid")
        to = one(fields, "To")
        caller = one(fields, "From")
        return InboundCall(
            provider=self.name,
            provider_call_id=call_uuid,
            from_number=(e164(caller) or caller) if caller else "anonymous",
            to_number=e164(to),
            received_at=req.received_at,
            sip_uri=to if to.lower().startswith(_SIP_SCHEMES) else None,
            account_id=None,
            params=fields,
            wall_time=req.wall_time,
        )

    def render(
        self, decision: Decision, call: InboundCall, number: AnyPhoneNumber, ctx: RenderContext
    ) -> Rendered:
        """Plivo XML carrying out the decision; `warnings` say what had to be left out."""
        outcome = decision.outcome
        warnings: list[str] = []
        if isinstance(outcome, Connect):
            body = twiml.response(*_connect(outcome, number, ctx, warnings))
        elif isinstance(outcome, Transfer):
            body = twiml.response(speak(outcome.message), _dial(outcome, call, number, warnings))
        elif isinstance(outcome, Say):
            body = twiml.response(speak(outcome.text), "<Hangup/>")
        else:
            return REJECT
        return Rendered(body, CONTENT_TYPE, warnings=tuple(warnings))

    def reject(self) -> Rendered:
        """`<Hangup reason="rejected"/>` as the first element: the call is not answered."""
        return REJECT

    def parse_status(self, req: WebhookRequest) -> StatusEvent:
        """The hangup URL's request (or any with a `CallStatus`): status, `Duration`."""
        fields = req.params
        call_uuid = one(fields, "CallUUID")
        if not call_uuid:
            raise MalformedWebhook("missing-call-uuid")
        status = STATUSES.get(one(fields, "CallStatus").lower())
        if status is None:
            raise MalformedWebhook("unknown-call-status")
        if status == "completed" and not answered(fields):
            status = unanswered_status(fields)
        caller = one(fields, "From")
        return StatusEvent(
            provider=self.name,
            provider_call_id=call_uuid,
            status=status,
            is_final=status in FINAL_STATUSES,
            duration_seconds=ascii_int(one(fields, "Duration")),
            sequence=_RANKS.get(status, 2),
            timestamp=req.wall_time,
            params=first_values(fields),
            from_number=(e164(caller) or caller) if caller else None,
        )

    def ack_status(self) -> Rendered:
        """An empty `<Response/>`: Plivo reads nothing from a hangup URL's answer."""
        return EMPTY

    # --- runtime callbacks (router/runtimes/attempts.py) --------------------------------------

    # The Redirect and the Dial action are the caller's leg, but Plivo's page does not list
    # the call among a stream status callback's fields: the callbacks' URLs name it.
    callbacks_name_the_call: Final = True

    def attempt_result(self, req: WebhookRequest, kind: str) -> AttemptResult:
        """A SIP runtime's `<Dial>` action: taken when `DialStatus` says the leg answered;
        a caller who hung up leaves nothing to do; a stream's outcome is in its status
        callbacks (the `<Redirect>` after it comes once it has ended)."""
        fields = req.params
        if kind == "sip" and one(fields, "DialStatus").lower() in _LEG_TAKEN:
            return "taken"
        if STATUSES.get(one(fields, "CallStatus").lower()) in FINAL_STATUSES:
            return "gone"
        if kind == "stream":
            return "ask-stream"
        return "refused"

    def stream_event(self, req: WebhookRequest) -> StreamEvent | None:
        """`Event` of a stream status callback: `StartStream`, `StopStream`,
        `DroppedStream` (failed to connect, or cut off); `DegradedStream` is not acted on."""
        return _STREAM_EVENTS.get(one(req.params, "Event").lower())

    def finished(self) -> Rendered:
        """`<Hangup/>`: the conversation ended."""
        return HANG_UP


# --- hangup status ------------------------------------------------------------------------


def answered(fields: MultiMapping[str]) -> bool:
    """Whether a call Plivo reports `completed` was answered: an `AnswerTime` when the
    field is sent, else a `Duration` (or `BillDuration`) above 0; yes when nothing says."""
    if "AnswerTime" in fields:
        return bool(one(fields, "AnswerTime"))
    for name in ("Duration", "BillDuration"):
        seconds = ascii_int(one(fields, name))
        if seconds is not None:
            return seconds > 0
    return True


def unanswered_status(fields: MultiMapping[str]) -> str:
    """The status of a call that ended unanswered, from its hangup cause: `canceled`,
    `busy` or `no-answer`; `canceled` for an unlisted cause when the caller hung up,
    `failed` otherwise."""
    for name in ("HangupCause", "HangupCauseName"):
        cause = _NOT_CAUSE.sub("_", one(fields, name).upper()).strip("_")
        status = _UNANSWERED_CAUSES.get(cause)
        if status is not None:
            return status
    return "canceled" if one(fields, "HangupSource").lower() == "caller" else "failed"


# --- decision → Plivo XML ----------------------------------------------------------------


def speak(text: str) -> str:
    """`<Speak>`, or nothing for a text with nothing to speak."""
    text = twiml.xml_clean(text)
    return f"<Speak>{twiml.xml_text(text)}</Speak>" if text.strip() else ""


def _attrs(pairs: Sequence[tuple[str, str | None]]) -> str:
    return "".join(f' {name}="{twiml.xml_attr(value)}"' for name, value in pairs if value)


def stream_value(value: str) -> str:
    """An `extraHeaders` value: a UUID without its dashes (32 hex digits; reversible)."""
    return value.replace("-", "") if _UUID.fullmatch(value) else value


def extra_headers(headers: Sequence[tuple[str, str]], warnings: list[str]) -> str:
    """`key=value,key=value` of the headers whose value is letters and digits (a UUID's
    dashes taken out), within Plivo's 512 bytes; each other one is left out whole and
    reported."""
    kept: list[str] = []
    for name, raw in headers:
        value = stream_value(raw)
        if not _ALNUM.fullmatch(value):
            warnings.append(f"extraHeader {name} dropped: Plivo takes letters and digits only")
            continue
        candidate = ",".join([*kept, f"{name}={value}"])
        if len(candidate.encode()) > EXTRA_HEADERS_LIMIT_BYTES:
            warnings.append(
                f"extraHeader {name} dropped: over Plivo's {EXTRA_HEADERS_LIMIT_BYTES}-byte limit"
            )
            continue
        kept.append(f"{name}={value}")
    return ",".join(kept)


def sip_header_name(name: str) -> str:
    """A `sipHeaders` name: its letters and digits without an `X-` (Plivo adds `X-PH-`),
    at most 24 of them."""
    return _NOT_ALNUM.sub("", _bare(name))[:SIP_HEADER_NAME_LIMIT]


def sip_header_value(value: str) -> str:
    """A `sipHeaders` value: every UTF-8 byte outside `[A-Za-z0-9]` as `%XX`."""
    return "".join(
        chr(byte) if byte in _ALNUM_BYTES else f"%{byte:02X}" for byte in text_bytes(value)
    )


def sip_headers(headers: Sequence[tuple[str, str]], warnings: list[str]) -> str:
    """`name=value,name=value` for Plivo's `sipHeaders`: names cut to letters and digits,
    values percent-encoded; a pair that still breaks Plivo's rules (an empty or repeated
    name, a value over 120 characters) is left out and reported."""
    kept: dict[str, str] = {}  # SIP header names are case-insensitive: keyed lowercased
    for raw_name, raw_value in headers:
        name = sip_header_name(raw_name)
        value = sip_header_value(raw_value)
        if not name or name.lower() in kept:
            warnings.append(f"sipHeader {raw_name} dropped: no name Plivo takes")
            continue
        if len(value) > SIP_HEADER_VALUE_LIMIT:
            warnings.append(
                f"sipHeader {raw_name} dropped: over Plivo's {SIP_HEADER_VALUE_LIMIT}"
                " characters once encoded"
            )
            continue
        kept[name.lower()] = f"{name}={value}"
    return ",".join(kept.values())


def _connect(
    outcome: Connect, number: AnyPhoneNumber, ctx: RenderContext, warnings: list[str]
) -> list[str]:
    """The elements that hand the call to its runtime: a bidirectional `<Stream>` (with the
    `<Redirect>` that moves the call on once it ends) or a `<Dial>` to a SIP runtime."""
    kind = ctx.runtime_kind
    action = callback_url(ctx, "/plivo/connect", absolute=True)
    if kind == "sip":
        headers = runtime_headers(outcome, number, ctx, warnings)
        # `x-router-call-id` → `RouterCallId`, which Plivo sends as `X-PH-RouterCallId`.
        pairs = sip_headers(
            [(_bare(name).title(), value) for name, value in headers.items()], warnings
        )
        dial = _attrs(
            [
                ("action", action),
                ("method", "POST" if action else None),
                ("timeout", str(RUNTIME_DIAL_TIMEOUT_SECONDS)),
                ("sipHeaders", pairs),
            ]
        )
        user = twiml.xml_text(twiml.xml_clean(ctx.runtime_address))
        return [f"<Dial{dial}><User>{user}</User></Dial>"]
    if kind != "stream":
        raise ValueError(f"Plivo XML cannot connect a {kind} runtime")
    wanted = [("callId", ctx.call_id), ("target", outcome.target)]
    if outcome.target_id is not None:
        wanted.append(("targetId", outcome.target_id))
    wanted.append(("phoneNumberId", number.id))
    extra = extra_headers(wanted, warnings)
    status = callback_url(ctx, "/plivo/stream", absolute=True)
    stream = _attrs(
        [
            ("bidirectional", "true"),
            ("keepCallAlive", "true"),
            ("contentType", STREAM_CONTENT_TYPE),
            ("extraHeaders", extra),
            ("statusCallbackUrl", status),
            ("statusCallbackMethod", "POST" if status else None),
        ]
    )
    elements = [f"<Stream{stream}>{twiml.xml_text(twiml.xml_clean(ctx.runtime_address))}</Stream>"]
    if action is not None:
        elements.append(f'<Redirect method="POST">{twiml.xml_text(action)}</Redirect>')
    return elements


def _dial(outcome: Transfer, call: InboundCall, number: AnyPhoneNumber, warnings: list[str]) -> str:
    """`<Dial>` to a number (an extension as `sendDigits`) or a SIP URI (`sipHeaders`)."""
    dest = outcome.destination
    caller = caller_id(
        dest.caller_id, call, number, lambda value: _literal_caller_id(value, warnings)
    )
    timeout = dial_timeout(dest.transfer_plan)
    attributes: list[tuple[str, str | None]] = [
        ("callerId", caller),
        ("timeout", str(max(1, round(timeout))) if timeout is not None else None),
    ]
    if isinstance(dest, TransferDestinationNumber):
        digits = dest.extension
        if digits and digits[0] not in "wW":
            digits = SEND_DIGITS_PAUSE + digits
        phone = twiml.xml_text(twiml.xml_clean(dest.number))
        noun = f"<Number{_attrs([('sendDigits', digits)])}>{phone}</Number>"
    else:
        headers = [(name, _header_text(v)) for name, v in (dest.sip_headers or {}).items()]
        attributes.append(("sipHeaders", sip_headers(headers, warnings)))
        noun = f"<User>{twiml.xml_text(twiml.xml_clean(dest.sip_uri))}</User>"
    return f"<Dial{_attrs(attributes)}>{noun}</Dial>"


def _bare(name: str) -> str:
    """A header name without its `x-`: Plivo adds its own `X-PH-` prefix."""
    return name[2:] if name.lower().startswith("x-") else name


def _header_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _literal_caller_id(value: str, warnings: list[str]) -> str | None:
    """A literal callerId must be a phone number (Plivo's rule): anything else is left
    out, so Plivo presents the caller's, and reported."""
    literal = e164(value)
    if literal is None:
        warnings.append("callerId dropped: Plivo takes only a phone number")
    return literal
