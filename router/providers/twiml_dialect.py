"""The webhook dialect Twilio defined and Telnyx TeXML follows: fields, statuses, TwiML pieces.

Both providers POST the same form field names (`CallSid`, `From`, `To`, `AccountSid`,
`CallStatus`, `CallDuration`, `SequenceNumber`, `Timestamp`), use the same call status
vocabulary and take the same TwiML verbs, so reading a webhook and building the parts of
a document that do not depend on the provider live here. What differs (signatures, which
fields name the account, how `Timestamp` is written, callerId rules, `<Dial timeout>`
bounds, the stream URL) stays in `router.providers.twilio` and `router.providers.telnyx`.

Everything is a plain function over already-parsed fields: no copies, no second pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Final

from multidict import MultiMapping

from router.models.common import TransferDestinationNumber, TransferPlan
from router.models.phone_numbers import AnyPhoneNumber
from router.models.wire import normalize_e164
from router.pipeline.decision import Connect, Decision, Say, Transfer
from router.pipeline.inbound_call import AttestationReader, InboundCall
from router.providers import twiml
from router.providers.plugin import (
    FINAL_STATUSES,
    AttemptResult,
    MalformedWebhook,
    RenderContext,
    Rendered,
    StatusEvent,
    StreamEvent,
    WebhookRequest,
    ascii_int,
)
from router.providers.runtime_legs import callback_url, runtime_headers

SEND_DIGITS_PAUSE: Final = "ww"  # one second after answer, before an extension's digits
# `CallStatus` values → `router.providers.plugin.CALL_STATUSES`.
STATUSES: Final = {
    "queued": "ringing",
    "initiated": "ringing",
    "ringing": "ringing",
    "answered": "in-progress",
    "in-progress": "in-progress",
    "completed": "completed",
    "busy": "busy",
    "failed": "failed",
    "no-answer": "no-answer",
    "canceled": "canceled",
}
REJECTED: Final = Rendered(twiml.REJECT, twiml.CONTENT_TYPE)  # not answered, not billed
_SIP_SCHEMES: Final = ("sip:", "sips:")
_DIAL_TIMEOUT_DEFAULT: Final = TransferPlan.model_fields["dial_timeout"].default


# --- webhook fields ----------------------------------------------------------------------


def one(fields: MultiMapping[str], name: str) -> str:
    """The field's first value, stripped; "" when absent."""
    return fields.get(name, "").strip()


# The longest E.164 number: `+` and 15 digits.
_E164_MAX_CHARS: Final = 16


def e164(value: str) -> str | None:
    """`value` as E.164, else None (`client:` and SIP forms, withheld numbers)."""
    # Read before the signature is checked: anything longer is no number, and is never
    # kept, so the cache below holds short strings only.
    return None if len(value) > _E164_MAX_CHARS else _e164(value)


# The called numbers are few and called again and again (each webhook reads `To` twice).
@lru_cache(maxsize=4096)
def _e164(value: str) -> str | None:
    try:
        return normalize_e164(value)
    except ValueError:
        return None


def first_values(fields: MultiMapping[str]) -> dict[str, str]:
    """Each field name with its first value, in order: the `params` events keep."""
    values = dict(fields.items())
    if len(values) == len(fields):
        return values  # each name once, as providers send forms: nothing to choose
    values = {}
    for key, value in fields.items():
        values.setdefault(key, value)
    return values


def parse_call(
    provider: str,
    req: WebhookRequest,
    fields: MultiMapping[str],
    account_fields: tuple[str, ...],
    attestation: AttestationReader | None = None,
) -> InboundCall:
    """The ringing call. A withheld caller (`From` empty) becomes `anonymous`; a SIP `To`
    is kept as `sip_uri`; `account_id` is the first non-empty of `account_fields`;
    `attestation` reads the provider's STIR/SHAKEN fields when a filter asks (None: the
    provider reports none)."""
    call_sid = one(fields, "CallSid")
    if not call_sid:
        raise MalformedWebhook("missing-call-sid")
    to = one(fields, "To")
    account_id = None
    for name in account_fields:
        value = one(fields, name)
        if value:
            account_id = value
            break
    return InboundCall(
        provider=provider,
        provider_call_id=call_sid,
        from_number=one(fields, "From") or "anonymous",
        to_number=e164(to),
        received_at=req.received_at,
        sip_uri=to if to.lower().startswith(_SIP_SCHEMES) else None,
        account_id=account_id,
        # The fields as parsed, not copied: a multi-mapping reads a name's first value,
        # and a static route never reads them at all.
        params=fields,
        wall_time=req.wall_time,
        attestation_reader=attestation,
    )


def parse_status(
    provider: str,
    req: WebhookRequest,
    fields: MultiMapping[str],
    timestamp: Callable[[str], float | None],
) -> StatusEvent:
    """A status callback: CallStatus, CallDuration, SequenceNumber, and `Timestamp` read by
    `timestamp` (else when the request arrived)."""
    call_sid = one(fields, "CallSid")
    if not call_sid:
        raise MalformedWebhook("missing-call-sid")
    status = STATUSES.get(one(fields, "CallStatus").lower())
    if status is None:
        raise MalformedWebhook("unknown-call-status")
    return StatusEvent(
        provider=provider,
        provider_call_id=call_sid,
        status=status,
        is_final=status in FINAL_STATUSES,
        duration_seconds=ascii_int(one(fields, "CallDuration")),
        sequence=ascii_int(one(fields, "SequenceNumber")),
        timestamp=timestamp(one(fields, "Timestamp")) or req.wall_time,
        params=first_values(fields),
    )


def rfc2822_timestamp(value: str) -> float | None:
    """Epoch seconds of an RFC 2822 date (Twilio's); None when absent or unreadable."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def iso_or_rfc2822_timestamp(value: str) -> float | None:
    """Epoch seconds of an ISO 8601 (Telnyx's) or RFC 2822 date, UTC unless it says
    otherwise; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# --- decision → TwiML / TeXML ------------------------------------------------------------


def render(
    decision: Decision,
    call: InboundCall,
    number: AnyPhoneNumber,
    ctx: RenderContext,
    *,
    connect: Callable[[Connect, AnyPhoneNumber, RenderContext, list[str]], str],
    dial: Callable[[Transfer, InboundCall, AnyPhoneNumber, list[str]], str],
) -> Rendered:
    """The document carrying out the decision: `connect` renders a Connect's verb, `dial`
    a Transfer's `<Dial>` (the provider's rules); `warnings` say what had to be left out.
    A decision to reject is `REJECTED`."""
    outcome = decision.outcome
    warnings: list[str] = []
    if isinstance(outcome, Connect):
        body = twiml.response(connect(outcome, number, ctx, warnings))
    elif isinstance(outcome, Transfer):
        body = twiml.response(twiml.say(outcome.message), dial(outcome, call, number, warnings))
    elif isinstance(outcome, Say):
        body = twiml.response(twiml.say(outcome.text), "<Hangup/>")
    else:
        return REJECTED
    return Rendered(body, twiml.CONTENT_TYPE, warnings=tuple(warnings))


# How long a SIP runtime's leg may ring before router moves the call on (Twilio's own
# default is 30 s of ringing; an agent that answers at all answers in a second or two).
RUNTIME_DIAL_TIMEOUT_SECONDS: Final = 15


def connect_runtime(
    outcome: Connect,
    number: AnyPhoneNumber,
    ctx: RenderContext,
    warnings: list[str],
    *,
    provider: str,
    stream_url: str,
    stream_attributes: Sequence[tuple[str, str]] = (),
) -> str:
    """The verb that hands the call to its runtime, the ids as `<Parameter>`s (or `x-`
    headers of a SIP runtime's URI): `<Connect><Stream>`, `<Connect><ConversationRelay>`
    or `<Dial><Sip>`. With callbacks, `<Connect>`'s and `<Dial>`'s `action` (and the
    stream's `statusCallback`) under `/{provider}/` tell router whether the runtime took
    the call."""
    action = callback_url(ctx, f"/{provider}/connect")
    kind = ctx.runtime_kind
    if kind == "sip":
        headers = runtime_headers(outcome, number, ctx, warnings)
        noun = twiml.sip(ctx.runtime_address, headers, warnings)
        return twiml.dial(noun, timeout=RUNTIME_DIAL_TIMEOUT_SECONDS, action=action)
    params = stream_parameters(outcome, number, ctx)
    on_end = [("action", action), ("method", "POST")] if action else []
    if kind == "conversation-relay":
        return twiml.connect_relay(ctx.runtime_address, params, warnings, connect_attributes=on_end)
    status = callback_url(ctx, f"/{provider}/stream")
    on_status = [("statusCallback", status), ("statusCallbackMethod", "POST")] if status else []
    return twiml.connect_stream(
        stream_url,
        params,
        warnings,
        attributes=[*stream_attributes, *on_status],
        connect_attributes=on_end,
    )


def stream_parameters(
    outcome: Connect, number: AnyPhoneNumber, ctx: RenderContext
) -> list[tuple[str, str]]:
    """The Connect `<Parameter>`s: callId, target, targetId (absent for a transient
    target, which the runtime reads from the call record), phoneNumberId."""
    params = [("callId", ctx.call_id), ("target", outcome.target)]
    if outcome.target_id is not None:
        params.append(("targetId", outcome.target_id))
    params.append(("phoneNumberId", number.id))
    return params


def caller_id(
    template: str | None,
    call: InboundCall,
    number: AnyPhoneNumber,
    literal: Callable[[str], str | None],
) -> str | None:
    """`{{customer.number}}` → the caller, `{{phoneNumber.number}}` → the called number,
    anything else → `literal` of the template without XML-forbidden characters, stripped
    (the provider's rule for a literal callerId).

    A withheld caller leaves callerId out: the provider then presents its default.
    """
    if not template:
        return None
    key = template.replace(" ", "")
    if key == "{{customer.number}}":
        return e164(call.from_number) if call.from_number.startswith("+") else None
    if key == "{{phoneNumber.number}}":
        return number.number or call.to_number
    return literal(twiml.xml_clean(template).strip())


def number_noun(dest: TransferDestinationNumber) -> str:
    """`<Number>`; an extension becomes `sendDigits` after `SEND_DIGITS_PAUSE`, unless it
    starts with its own pause."""
    digits = dest.extension
    if digits and digits[0] not in "wW":
        digits = SEND_DIGITS_PAUSE + digits
    return twiml.number(dest.number, digits)


def dial_timeout(plan: TransferPlan | None) -> float | None:
    """`dialTimeout`, else `timeout` when changed from its default; None without a plan.

    Defaults are compared, not `model_fields_set`, so a stored decision replays alike.
    """
    if plan is None:
        return None
    return plan.dial_timeout if plan.dial_timeout != _DIAL_TIMEOUT_DEFAULT else plan.timeout


# --- runtime callbacks (router/runtimes/attempts.py) ------------------------------------------

HANG_UP: Final = Rendered(twiml.response("<Hangup/>"), twiml.CONTENT_TYPE)
_LEG_TAKEN: Final = frozenset({"completed", "answered"})
_STREAM_EVENTS: Final[Mapping[str, StreamEvent]] = {
    "stream-started": "started",
    "stream-stopped": "stopped",
    "stream-error": "error",
    "stream-failed": "error",  # Telnyx's migration notes name it so
}


def attempt_result(fields: MultiMapping[str], kind: str) -> AttemptResult:
    """What a `<Connect>` / `<Dial>` action says of a runtime's attempt. A `<Dial><Sip>`
    leg was taken when `DialCallStatus` is `completed` or `answered`; a ConversationRelay
    session when it ended without an `ErrorCode`, or after it had run (`SessionDuration`
    above 0); a stream's outcome is in its status callbacks. A caller who hung up
    (`CallStatus` final) leaves nothing to do."""
    if kind == "sip" and one(fields, "DialCallStatus").lower() in _LEG_TAKEN:
        return "taken"
    if kind == "conversation-relay":
        error = one(fields, "ErrorCode")
        ran = one(fields, "SessionDuration") not in ("", "0")
        if not error or ran:
            return "taken"
    if one(fields, "CallStatus").lower() in FINAL_STATUSES:
        return "gone"
    if kind == "stream":
        return "ask-stream"
    return "refused"


def stream_event(fields: MultiMapping[str]) -> StreamEvent | None:
    """`StreamEvent` of a `<Stream>` status callback: `stream-started`, `stream-stopped`,
    `stream-error` (`stream-failed` too)."""
    return _STREAM_EVENTS.get(one(fields, "StreamEvent").lower())
