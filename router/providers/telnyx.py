"""Telnyx TeXML webhooks: Ed25519 signatures, the inbound form, TeXML, status callbacks.

Rules (docs/reference: provider-protocols §2 and §4):
- Signature: `telnyx-signature-ed25519` is a base64 Ed25519 signature over
  `{telnyx-timestamp}|{raw body}`, checked with the `publicKey` of the number's
  `credentialId` (a `telnyx` credential of the number's org). `telnyx-timestamp` is Unix
  seconds and must be within ±300 s of when the request arrived (telnyx-python's
  tolerance). Anything missing or malformed is refused.
- GET (Telnyx's default `voice_method`) is refused (`unsigned-query`, 403): nothing says
  Telnyx signs the query, and a signature over `{timestamp}|` and an empty body would let
  anyone who saw one replay it with any fields for five minutes. Set the TeXML
  application's voice and status callback methods to POST, where every field is signed.
- Fields are Twilio's names with Telnyx ids: `CallSid` is the call control id
  (`v3:...`, it contains `:`), `AccountSid` a UUID, `ConnectionId` the TeXML
  application. Status `Timestamp`s are ISO 8601 (RFC 2822 is read too).

The runtime URL contract (Connect). TeXML's `<Stream>` is not documented to pass
`<Parameter>`s reliably, so the URL path carries what the runtime needs, each segment
percent-encoded (`urllib.parse.quote(value, safe="")`, so `v3:abc` is `v3%3Aabc`):

    {ROUTER_RUNTIME_URL}/{callId}/{target}/{targetId}   target known by id
    {ROUTER_RUNTIME_URL}/{callId}/{target}              transient target

`target` is `assistant`, `squad` or `workflow`. Static decisions write no call record, so
their target must travel in the path; a transient target (an `assistant` / `squad` /
`workflow` object from the server) is read with `GET /call/{callId}`, whose record holds
it. A URL over 2048 characters loses its `targetId` segment (reported in the log
event's warnings) rather than risk Telnyx refusing the stream. The same values also go as
`<Parameter>`s (`callId`, `target`, `targetId`, `phoneNumberId`), which Telnyx's
`<Stream>` page lists as sent in the `start` message; the path is the contract. The
stream is `bidirectionalMode="rtp"` with `PCMU`, so the runtime sends back the same 8 kHz
mu-law frames it gets (TeXML's default, `mp3`, would need MP3 chunks).

Transfers: `callerId` must be E.164 on Telnyx, so a template or literal that is not one
is left out (Telnyx then presents its default) and reported. Extensions become
`sendDigits` on `<Number>` after `ww` (one second), as for Twilio. SIP headers go in the
URI's query with the `x-` prefix (TwiML's form, which TeXML follows). `<Dial timeout>` is
held within TeXML's 5-120 seconds.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Final
from urllib.parse import quote

from multidict import MultiMapping
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from router.models.base import normalize_e164
from router.models.common import TransferDestinationNumber, TransferPlan
from router.models.credentials import AnyCredential, TelnyxCredential
from router.models.phone_numbers import AnyPhoneNumber, TelnyxPhoneNumber
from router.providers import twiml
from router.providers.base import (
    FINAL_STATUSES,
    STANDARD_ENDPOINTS,
    MalformedWebhook,
    RenderContext,
    Rendered,
    StatusEvent,
    VerificationFailed,
    WebhookRequest,
    ascii_int,
)
from router.routing.decision import Connect, Decision, Say, Transfer
from router.routing.inbound import InboundCall
from router.settings import Settings

SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TIMESTAMP_HEADER: Final = "telnyx-timestamp"
TIMESTAMP_TOLERANCE_SECONDS: Final = 300
SIGNATURE_BYTES: Final = 64
STREAM_URL_LIMIT: Final = 2048  # characters of a <Stream> url, inclusive
# Telnyx's rtp mode takes raw codec frames; PCMU matches Twilio's 8 kHz mu-law.
STREAM_ATTRIBUTES: Final = (("bidirectionalMode", "rtp"), ("bidirectionalCodec", "PCMU"))
DIAL_TIMEOUT_BOUNDS: Final = (5, 120)
SEND_DIGITS_PAUSE: Final = "ww"  # one second after answer, before an extension's digits
_TIMESTAMP: Final = re.compile(r"[0-9]{1,15}")
_STATUSES: Final = {
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


def signed_message(timestamp: str, body: bytes) -> bytes:
    """What Telnyx signs: the timestamp header as sent, `|`, the raw body."""
    return timestamp.encode() + b"|" + body


@lru_cache(maxsize=256)
def _verify_key(public_key: str) -> VerifyKey | None:
    """The key of a credential's base64 `publicKey`; None when it is not one."""
    try:
        raw = base64.b64decode(public_key, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 32:
        return None
    return VerifyKey(raw)


def _one(fields: MultiMapping[str], name: str) -> str:
    return fields.get(name, "").strip()


def _e164(value: str) -> str | None:
    try:
        return normalize_e164(value)
    except ValueError:
        return None


def _first_values(fields: MultiMapping[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in fields.items():
        values.setdefault(key, value)
    return values


class TelnyxProvider:
    """Telnyx TeXML applications: voice URL, failover URL and status callback."""

    name: Final = "telnyx"
    number_provider: Final = "telnyx"
    endpoints: Final = STANDARD_ENDPOINTS

    def budget_seconds(self, settings: Settings) -> float:
        """`telnyx_budget_seconds`: Telnyx hangs up after the application's first-command
        timeout."""
        return settings.telnyx_budget_seconds

    def preverify(self, req: WebhookRequest, settings: Settings) -> None:
        """Nothing to check before the lookup: the signature's key is the number's."""

    def lookup_key(self, req: WebhookRequest) -> str | None:
        """`telnyx:+E164` of `To`; None for SIP `To` forms."""
        number = _e164(_one(req.params, "To"))
        return None if number is None else f"telnyx:{number}"

    def call_id(self, req: WebhookRequest) -> str | None:
        """The CallSid (the call control id)."""
        return _one(req.params, "CallSid") or None

    def verify(
        self,
        req: WebhookRequest,
        number: AnyPhoneNumber,
        credentials: Sequence[AnyCredential],
        settings: Settings | None = None,
    ) -> None:
        """Check the Ed25519 signature with the public key of the number's credential.

        The timestamp must be within ±300 s of `req.wall_time`; the body signed is the raw
        body. A GET's query is not signed, so a GET carrying fields is refused.
        """
        if not isinstance(number, TelnyxPhoneNumber):
            raise VerificationFailed("provider-mismatch")
        if req.method == "GET" and req.query:
            raise VerificationFailed("unsigned-query")
        credential = next(
            (
                c
                for c in credentials
                if isinstance(c, TelnyxCredential) and c.id == number.credential_id
            ),
            None,
        )
        if credential is None:
            raise VerificationFailed("no-credential")
        key = _verify_key(credential.public_key)
        if key is None:
            raise VerificationFailed("bad-public-key")
        signature_b64 = req.headers.get(SIGNATURE_HEADER, "").strip()
        if not signature_b64:
            raise VerificationFailed("missing-signature")
        timestamp = req.headers.get(TIMESTAMP_HEADER, "").strip()
        if not timestamp:
            raise VerificationFailed("missing-timestamp")
        if _TIMESTAMP.fullmatch(timestamp) is None:
            raise VerificationFailed("bad-timestamp")
        if abs(req.wall_time - int(timestamp)) > TIMESTAMP_TOLERANCE_SECONDS:
            raise VerificationFailed("stale-timestamp")
        try:
            signature = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError):
            raise VerificationFailed("malformed-signature") from None
        if len(signature) != SIGNATURE_BYTES:
            raise VerificationFailed("malformed-signature")
        try:
            key.verify(signed_message(timestamp, req.body), signature)
        except (CryptoError, ValueError):
            raise VerificationFailed("bad-signature") from None

    def parse(self, req: WebhookRequest) -> InboundCall:
        """The ringing call. A withheld caller (`From` empty) becomes `anonymous`;
        `account_id` is the `ConnectionId` (the TeXML application), else `AccountSid`."""
        fields = req.params
        call_sid = _one(fields, "CallSid")
        if not call_sid:
            raise MalformedWebhook("missing-call-sid")
        to = _one(fields, "To")
        return InboundCall(
            provider=self.name,
            provider_call_id=call_sid,
            from_number=_one(fields, "From") or "anonymous",
            to_number=_e164(to),
            received_at=req.received_at,
            sip_uri=to if to.lower().startswith(("sip:", "sips:")) else None,
            account_id=_one(fields, "ConnectionId") or _one(fields, "AccountSid") or None,
            params=_first_values(fields),
            created_at=datetime.fromtimestamp(req.wall_time, UTC),
        )

    def render(
        self, decision: Decision, call: InboundCall, number: AnyPhoneNumber, ctx: RenderContext
    ) -> Rendered:
        """TeXML carrying out the decision; `warnings` say what had to be left out."""
        outcome = decision.outcome
        warnings: list[str] = []
        if isinstance(outcome, Connect):
            url = stream_url(ctx.runtime_url, ctx.call_id, outcome, warnings)
            stream = twiml.connect_stream(
                url,
                _stream_parameters(outcome, number, ctx),
                warnings,
                attributes=STREAM_ATTRIBUTES,
            )
            body = twiml.response(stream)
        elif isinstance(outcome, Transfer):
            body = twiml.response(
                twiml.say(outcome.message), _dial(outcome, call, number, warnings)
            )
        elif isinstance(outcome, Say):
            body = twiml.response(twiml.say(outcome.text), "<Hangup/>")
        else:
            return self.reject()
        return Rendered(body, twiml.CONTENT_TYPE, warnings=tuple(warnings))

    def reject(self) -> Rendered:
        """`<Reject/>` as the first verb: not answered, not charged."""
        return Rendered(twiml.REJECT, twiml.CONTENT_TYPE)

    def parse_status(self, req: WebhookRequest) -> StatusEvent:
        """A status callback: CallStatus, CallDuration, SequenceNumber, Timestamp."""
        fields = req.params
        call_sid = _one(fields, "CallSid")
        if not call_sid:
            raise MalformedWebhook("missing-call-sid")
        status = _STATUSES.get(_one(fields, "CallStatus").lower())
        if status is None:
            raise MalformedWebhook("unknown-call-status")
        timestamp = _timestamp(_one(fields, "Timestamp")) or req.wall_time
        return StatusEvent(
            provider=self.name,
            provider_call_id=call_sid,
            status=status,
            is_final=status in FINAL_STATUSES,
            duration_seconds=ascii_int(_one(fields, "CallDuration")),
            sequence=ascii_int(_one(fields, "SequenceNumber")),
            timestamp=timestamp,
            params=_first_values(fields),
        )

    def ack_status(self) -> Rendered:
        """An empty `<Response/>` as text/xml."""
        return Rendered(twiml.EMPTY, twiml.CONTENT_TYPE)


def _timestamp(value: str) -> float | None:
    """Epoch seconds of an ISO 8601 (Telnyx) or RFC 2822 date; None when unreadable."""
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


# --- decision → TeXML --------------------------------------------------------------------


def _segment(value: str) -> str:
    return quote(twiml.xml_clean(value), safe="")


def stream_url(runtime_url: str, call_id: str, outcome: Connect, warnings: list[str]) -> str:
    """`{runtime}/{callId}/{target}[/{targetId}]`, each segment percent-encoded.

    A targetId that would take the URL past `STREAM_URL_LIMIT` is left out and reported.
    """
    url = f"{runtime_url.rstrip('/')}/{_segment(call_id)}/{outcome.target}"
    if outcome.target_id is not None:
        with_id = f"{url}/{_segment(outcome.target_id)}"
        if len(with_id) > STREAM_URL_LIMIT:
            warnings.append(
                f"stream URL targetId dropped: over the {STREAM_URL_LIMIT}-character limit"
            )
        else:
            url = with_id
    return url


def _stream_parameters(
    outcome: Connect, number: AnyPhoneNumber, ctx: RenderContext
) -> list[tuple[str, str]]:
    """callId, target, targetId (absent for a transient target), phoneNumberId."""
    params = [("callId", ctx.call_id), ("target", outcome.target)]
    if outcome.target_id is not None:
        params.append(("targetId", outcome.target_id))
    params.append(("phoneNumberId", number.id))
    return params


def _dial(outcome: Transfer, call: InboundCall, number: AnyPhoneNumber, warnings: list[str]) -> str:
    dest = outcome.destination
    caller_id = _caller_id(dest.caller_id, call, number, warnings)
    if isinstance(dest, TransferDestinationNumber):
        digits = dest.extension
        if digits and digits[0] not in "wW":
            digits = SEND_DIGITS_PAUSE + digits
        noun = twiml.number(dest.number, digits)
    else:
        noun = twiml.sip(dest.sip_uri, dest.sip_headers or {}, warnings)
    return twiml.dial(
        noun, caller_id, _dial_timeout(dest.transfer_plan), timeout_bounds=DIAL_TIMEOUT_BOUNDS
    )


def _caller_id(
    template: str | None, call: InboundCall, number: AnyPhoneNumber, warnings: list[str]
) -> str | None:
    """`{{customer.number}}` → the caller, `{{phoneNumber.number}}` → the called number,
    else the literal; whatever is not E.164 is left out (TeXML requires E.164).

    A withheld caller leaves callerId out silently: Telnyx then presents its default.
    """
    if not template:
        return None
    key = template.replace(" ", "")
    if key == "{{customer.number}}":
        return _e164(call.from_number) if call.from_number.startswith("+") else None
    if key == "{{phoneNumber.number}}":
        return number.number or call.to_number
    literal = _e164(twiml.xml_clean(template).strip())
    if literal is None:
        warnings.append("callerId dropped: TeXML takes only an E.164 number")
    return literal


def _dial_timeout(plan: TransferPlan | None) -> float | None:
    """`dialTimeout`, else `timeout` when changed from its default; None without a plan."""
    if plan is None:
        return None
    default = TransferPlan.model_fields["dial_timeout"].default
    return plan.dial_timeout if plan.dial_timeout != default else plan.timeout
