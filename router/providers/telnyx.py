"""Telnyx TeXML webhooks: Ed25519 signatures, the inbound form, TeXML, status callbacks.

Rules (docs/reference: provider-protocols §2 and §4):
- Signature: `telnyx-signature-ed25519` is a base64 Ed25519 signature over
  `{telnyx-timestamp}|{raw body}`, checked with the `publicKey` of the number's
  `credentialId` (a `telnyx` credential of the number's org). `telnyx-timestamp` is Unix
  seconds and must be within ±300 s of when the request arrived (telnyx-python's
  tolerance). Anything missing or malformed is refused.
- GET (Telnyx's default `voice_method`) is refused (`unsigned-query`, 403, before the
  number is looked up): nothing says
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
stream names its codec both ways: `codec="PCMU"` (without it Telnyx streams the call's own
codec, G.722 or Opus on a wideband call) and `bidirectionalMode="rtp"` with
`bidirectionalCodec="PCMU"`, so the runtime gets and sends back 8 kHz mu-law frames, as
on Twilio (TeXML's default, `mp3`, would need MP3 chunks).

Transfers: `callerId` must be E.164 on Telnyx, so a template or literal that is not one
is left out (Telnyx then presents its default) and reported. Extensions become
`sendDigits` on `<Number>` after `ww` (one second), as for Twilio. TeXML documents no way
to put SIP headers on a `<Sip>` leg (TwiML's `?x-...` URI query is not in Telnyx's
`<Dial>` page): a transfer's `sipHeaders` are left out and reported, the call still
transferred; a `sip` runtime, which needs its `x-router-*` headers, is refused for Telnyx
calls when the runtimes file is read (router/runtimes/config.py). `<Dial timeout>` is held
within TeXML's 5-120 seconds.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Final
from urllib.parse import quote

from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from router.models.common import TransferDestinationNumber
from router.models.credentials import AnyCredential, TelnyxCredential
from router.models.phone_numbers import AnyPhoneNumber, TelnyxPhoneNumber, account_lookup_key
from router.models.ringing import Attestation
from router.pipeline.decision import Connect, Decision, Transfer
from router.pipeline.inbound_call import InboundCall
from router.providers import twiml
from router.providers.plugin import (
    RUNTIME_ENDPOINTS,
    AttemptResult,
    RenderContext,
    Rendered,
    StatusEvent,
    StreamEvent,
    VerificationFailed,
    WebhookRequest,
    number_credential,
    same_text,
)
from router.providers.twiml_dialect import (
    HANG_UP,
    attempt_result,
    caller_id,
    connect_runtime,
    dial_timeout,
    e164,
    iso_or_rfc2822_timestamp,
    number_noun,
    one,
    parse_call,
    parse_status,
    render,
    stream_event,
)
from router.settings import Settings

SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TIMESTAMP_HEADER: Final = "telnyx-timestamp"
TIMESTAMP_TOLERANCE_SECONDS: Final = 300
SIGNATURE_BYTES: Final = 64
STREAM_URL_LIMIT: Final = 2048  # characters of a <Stream> url, inclusive
# 8 kHz mu-law both ways, as Twilio streams: `codec` is what Telnyx sends (its default is
# the call's own codec; it transcodes only PCMA to PCMU), `bidirectionalCodec` what it
# takes back in rtp mode (raw codec frames, not TeXML's default MP3 chunks).
STREAM_ATTRIBUTES: Final = (
    ("codec", "PCMU"),
    ("bidirectionalMode", "rtp"),
    ("bidirectionalCodec", "PCMU"),
)
DIAL_TIMEOUT_BOUNDS: Final = (5, 120)
_TIMESTAMP: Final = re.compile(r"[0-9]{1,15}")
# `account_id`: the TeXML application, else the account.
_ACCOUNT_FIELDS: Final = ("ConnectionId", "AccountSid")
_LEVELS: Final[Mapping[str, Attestation]] = {"A": "A", "B": "B", "C": "C"}


def attestation(fields: Mapping[str, Any]) -> Attestation:
    """The STIR/SHAKEN level of a TeXML request: `ShakenStirAttestation` (A, B or C) when
    `ShakenStirValidated` is true, `failed` when it is false; `none` without a level, with
    another value, or when the validation is not stated (a level nobody verified)."""
    raw = fields.get("ShakenStirAttestation")
    level = _LEVELS.get(raw.strip().upper()) if isinstance(raw, str) else None
    validated = fields.get("ShakenStirValidated")
    verdict = validated.strip().lower() if isinstance(validated, str) else ""
    if level is None or verdict not in ("true", "false"):
        return "none"
    return level if verdict == "true" else "failed"


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


class TelnyxProvider:
    """Telnyx TeXML applications: voice URL, failover URL and status callback."""

    name: Final = "telnyx"
    number_provider: Final = "telnyx"
    endpoints: Final = RUNTIME_ENDPOINTS

    def budget_seconds(self, settings: Settings) -> float:
        """`telnyx_budget_seconds`: Telnyx hangs up after the application's first-command
        timeout."""
        return settings.telnyx_budget_seconds

    def preverify(self, req: WebhookRequest, settings: Settings) -> None:
        """A request without a signature is refused whatever number it names: Telnyx signs
        every webhook; a GET carrying fields, whose query is not signed, is refused too. The
        signature itself is checked with the number's credential."""
        if req.method == "GET" and req.query:
            raise VerificationFailed("unsigned-query")
        if not req.headers.get(SIGNATURE_HEADER, "").strip():
            raise VerificationFailed("missing-signature")

    def lookup_key(self, req: WebhookRequest) -> str | None:
        """`telnyx:<AccountSid>:+E164` of `AccountSid` and `To` (`telnyx:+E164` without an
        `AccountSid`: numbers whose credential names no account claim that); a stream
        status callback's URL, which router wrote, names `To`. None for SIP `To` forms."""
        number = e164(one(req.params, "To") or req.query.get("to", ""))
        if number is None:
            return None
        account = one(req.params, "AccountSid")
        return account_lookup_key(self.name, account, number) if account else f"telnyx:{number}"

    def call_id(self, req: WebhookRequest) -> str | None:
        """The CallSid (the call control id)."""
        return one(req.params, "CallSid") or None

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
        if req.method == "GET" and req.query:  # also refused before the lookup (preverify)
            raise VerificationFailed("unsigned-query")
        credential = number_credential(credentials, number, TelnyxCredential)
        if credential.account_id is not None and not same_text(
            one(req.params, "AccountSid"), credential.account_id
        ):
            raise VerificationFailed("account-mismatch")
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
        return parse_call(self.name, req, req.params, _ACCOUNT_FIELDS, attestation)

    def render(
        self, decision: Decision, call: InboundCall, number: AnyPhoneNumber, ctx: RenderContext
    ) -> Rendered:
        """TeXML carrying out the decision; `warnings` say what had to be left out."""
        return render(decision, call, number, ctx, connect=_connect, dial=_dial)

    def reject(self) -> Rendered:
        """`<Reject/>` as the first verb: not answered, not charged."""
        return Rendered(twiml.REJECT, twiml.CONTENT_TYPE)

    def parse_status(self, req: WebhookRequest) -> StatusEvent:
        """A status callback: CallStatus, CallDuration, SequenceNumber, Timestamp (ISO 8601,
        RFC 2822 read too)."""
        return parse_status(self.name, req, req.params, iso_or_rfc2822_timestamp)

    def ack_status(self) -> Rendered:
        """An empty `<Response/>` as text/xml."""
        return Rendered(twiml.EMPTY, twiml.CONTENT_TYPE)

    # --- runtime callbacks (router/runtimes/attempts.py) --------------------------------------

    def attempt_result(self, req: WebhookRequest, kind: str) -> AttemptResult:
        """What the `<Connect>` / `<Dial>` action says (twiml_dialect.attempt_result)."""
        return attempt_result(req.params, kind)

    def stream_event(self, req: WebhookRequest) -> StreamEvent | None:
        """`StreamEvent` of a `<Stream>` status callback."""
        return stream_event(req.params)

    callbacks_name_the_call: Final = False

    def finished(self) -> Rendered:
        """`<Hangup/>`: the conversation ended."""
        return HANG_UP


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


def _connect(
    outcome: Connect, number: AnyPhoneNumber, ctx: RenderContext, warnings: list[str]
) -> str:
    """The verb handing the call to its runtime: a stream to `stream_url` (the contract),
    rtp/PCMU, ids as `<Parameter>`s; a SIP runtime dialled; a ConversationRelay."""
    url = ""
    if ctx.runtime_kind == "stream":
        url = stream_url(ctx.runtime_address, ctx.call_id, outcome, warnings)
    return connect_runtime(
        outcome,
        number,
        ctx,
        warnings,
        provider="telnyx",
        stream_url=url,
        stream_attributes=STREAM_ATTRIBUTES,
    )


def _dial(outcome: Transfer, call: InboundCall, number: AnyPhoneNumber, warnings: list[str]) -> str:
    dest = outcome.destination
    caller = caller_id(
        dest.caller_id, call, number, lambda value: _literal_caller_id(value, warnings)
    )
    if isinstance(dest, TransferDestinationNumber):
        noun = number_noun(dest)
    else:
        if dest.sip_headers:
            # Telnyx documents no SIP headers on a TeXML <Sip>: the transfer goes ahead
            # without them rather than with a URI Telnyx may dial as written.
            warnings.append("sipHeaders dropped: TeXML documents no SIP headers on <Sip>")
        noun = twiml.sip(dest.sip_uri, {}, warnings)
    return twiml.dial(
        noun, caller, dial_timeout(dest.transfer_plan), timeout_bounds=DIAL_TIMEOUT_BOUNDS
    )


def _literal_caller_id(value: str, warnings: list[str]) -> str | None:
    """A literal callerId must be E.164 (TeXML requires it): anything else is left out, so
    Telnyx presents its default, and reported."""
    literal = e164(value)
    if literal is None:
        warnings.append("callerId dropped: TeXML takes only an E.164 number")
    return literal
