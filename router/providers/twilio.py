"""Twilio voice webhooks: X-Twilio-Signature, the inbound form, TwiML, status callbacks.

Rules (docs/reference: provider-protocols §1):
- The signature is HMAC-SHA1 (base64) keyed by the auth token over the URL plus, for a
  form POST, every field sorted by name as `name + value` (repeated values sorted and
  de-duplicated, as twilio-python does). The URL is tried as received and with its port
  toggled (an explicit port removed, or the scheme's default port added), since Twilio
  signs both forms. A `bodySHA256` query parameter binds a non-form body: its hex SHA-256
  must match and the URL alone is signed; a non-form body without one is refused.
- SharedKey signing: `X-Twilio-Webhooks-Signature-Settings: key=<sid>,algorithm=<alg>`
  (comma-separated `name=value` pairs, read as twilio-python's `get_signature_algorithm`
  reads `algorithm`; no `algorithm` means HMAC_SHA1). With a `key`, the same signed
  string is checked with the announced algorithm (HMAC_SHA256, or HMAC_SHA1) and the
  secret of that shared key on the number's account's credentials, never the auth
  token. Without a `key`, HMAC_SHA1 is the auth-token signature and anything else is
  refused; so is any algorithm but those two.
- Extensions become `sendDigits` after `ww` (one second), so the digits go after the
  callee answers; an extension that starts with its own pause is sent as given.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy, MultiMapping

from router.models.common import TransferDestinationNumber
from router.models.credentials import AnyCredential, TwilioCredential
from router.models.phone_numbers import AnyPhoneNumber, TwilioPhoneNumber, account_lookup_key
from router.models.ringing import Attestation
from router.pipeline.decision import Connect, Decision, Transfer
from router.pipeline.inbound_call import InboundCall
from router.providers import twiml
from router.providers.attestation import verstat_level
from router.providers.forms import signing_fields
from router.providers.plugin import (
    RUNTIME_ENDPOINTS,
    AttemptResult,
    MalformedWebhook,
    RenderContext,
    Rendered,
    StatusEvent,
    StreamEvent,
    VerificationFailed,
    WebhookRequest,
    hmac_digest,
    is_form,
    same_text,
    text_bytes,
)
from router.providers.twiml_dialect import (
    HANG_UP,
    attempt_result,
    caller_id,
    connect_runtime,
    dial_timeout,
    e164,
    number_noun,
    one,
    parse_call,
    parse_status,
    render,
    rfc2822_timestamp,
    stream_event,
)
from router.settings import Settings

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER: Final = "X-Twilio-Webhooks-Signature-Settings"
_ACCOUNT_FIELDS: Final = ("AccountSid",)
_SIP_CALLER_ID_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-_."
)


def compute_signature(token: str, url: str, params: MultiMapping[str] | None) -> str:
    """X-Twilio-Signature of `url` and the form `params` (None for GET and hashed bodies)."""
    digest = hmac_digest(token, text_bytes(url) + signing_bytes(params), "sha1")
    return binascii.b2a_base64(digest, newline=False).decode()


def signing_bytes(params: MultiMapping[str] | None) -> bytes:
    """What follows the URL in the signed string, in UTF-8: every field sorted by name as
    `name + value`, a name's values sorted and de-duplicated (twilio-python's rule)."""
    if not params:
        return b""
    if isinstance(params, _CASE_SENSITIVE) and not isinstance(params, _CASE_INSENSITIVE):
        # Case-sensitive names: a name's values are exactly its pairs.
        return signing_fields(params.items())
    # Any other mapping: its own `getall` says which values are a name's.
    values = {name: set(params.getall(name)) for name in params}
    signed = "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    return signed.encode()


_CASE_SENSITIVE: Final = (MultiDict, MultiDictProxy)
_CASE_INSENSITIVE: Final = (CIMultiDict, CIMultiDictProxy)


def _signed_by_any(
    tokens: Sequence[str], urls: Sequence[str], fields: bytes, given: bytes, digest_name: str
) -> bool:
    """Whether `given` (the header, base64) signs one of `urls` + `fields` with one of
    `tokens` (HMAC with the hashlib digest `digest_name`)."""
    for url in urls:
        # Without ROUTER_PUBLIC_URL the URL holds the Host header as sent.
        message = text_bytes(url) + fields
        for token in tokens:
            digest = hmac_digest(token, message, digest_name)
            expected = binascii.b2a_base64(digest, newline=False)
            if hmac.compare_digest(expected, given):
                return True
    return False


def url_variants(url: str) -> tuple[str, ...]:
    """`url` as received and normalised, with its port removed or the default port added."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, colon, port = hostport.rpartition(":")
    if colon and port.isdigit():
        toggled = host
    else:
        toggled = f"{hostport}:{443 if parts.scheme == 'https' else 80}"
    other = parts._replace(netloc=f"{userinfo}{at}{toggled}").geturl()
    return tuple(dict.fromkeys((url, parts.geturl(), other)))


def _fields(req: WebhookRequest) -> MultiMapping[str]:
    """The webhook's fields: form or query params, else a JSON object body's scalars."""
    if req.params or not req.body or is_form(req.headers):
        return req.params
    try:
        data = json.loads(req.body)
    except ValueError:
        raise MalformedWebhook("bad-json") from None
    if not isinstance(data, dict):
        raise MalformedWebhook("bad-json")
    fields: MultiDict[str] = MultiDict()
    for key, value in data.items():
        if isinstance(value, bool):
            fields.add(key, "true" if value else "false")
        elif isinstance(value, str | int | float):
            fields.add(key, str(value))
    return fields


def _lenient_fields(req: WebhookRequest) -> MultiMapping[str]:
    try:
        return _fields(req)
    except MalformedWebhook:
        return req.params


class TwilioProvider:
    """Twilio Programmable Voice: voice URL, fallback URL and status callback."""

    name: Final = "twilio"
    number_provider: Final = "twilio"
    endpoints: Final = RUNTIME_ENDPOINTS

    def budget_seconds(self, settings: Settings) -> float:
        """`twilio_budget_seconds`: Twilio waits 15 s in all, retries included."""
        return settings.twilio_budget_seconds

    def preverify(self, req: WebhookRequest, settings: Settings) -> None:
        """A request without X-Twilio-Signature is refused whatever number it names: Twilio
        signs every webhook. The signature itself is checked with the number's token."""
        if not req.headers.get(SIGNATURE_HEADER, "").strip():
            raise VerificationFailed("missing-signature")

    def lookup_key(self, req: WebhookRequest) -> str | None:
        """`twilio:AccountSid:+E164` of `AccountSid` and `To`; None without an `AccountSid`
        and for `client:` and SIP `To` forms."""
        fields = _lenient_fields(req)
        # A stream status callback names no `To`: its URL, which router wrote, does.
        number = e164(one(fields, "To") or req.query.get("to", ""))
        account = one(fields, "AccountSid")
        if number is None or not account:
            return None
        return account_lookup_key(self.name, account, number)

    def call_id(self, req: WebhookRequest) -> str | None:
        """The CallSid."""
        return one(_lenient_fields(req), "CallSid") or None

    def verify(
        self,
        req: WebhookRequest,
        number: AnyPhoneNumber,
        credentials: Sequence[AnyCredential],
        settings: Settings | None = None,
    ) -> None:
        """Check X-Twilio-Signature and that `AccountSid` is the number's account.

        The key is the number's `twilioAuthToken`, else the auth token of each of the
        org's `twilio` credentials for the number's account (several allow rotation).
        A request announcing a shared key (`X-Twilio-Webhooks-Signature-Settings`) is
        checked with that key's secret from those credentials instead, never a token.
        """
        if not isinstance(number, TwilioPhoneNumber):
            raise VerificationFailed("provider-mismatch")
        signature = req.headers.get(SIGNATURE_HEADER, "").strip()
        if not signature:
            raise VerificationFailed("missing-signature")
        settings_header = req.headers.get(SIGNATURE_SETTINGS_HEADER)
        digest_name = "sha1"
        if settings_header is None:
            # The common case, and as cheap as before: no settings, the auth token's HMAC-SHA1.
            tokens = self._auth_tokens(number, credentials)
        else:
            announced = _signature_settings(settings_header)
            digest_name = _DIGESTS.get(announced.get("algorithm", "HMAC_SHA1").upper(), "")
            if not digest_name:
                raise VerificationFailed("unsupported-signature-algorithm")
            key_sid = announced.get("key")
            if key_sid is not None:
                tokens = _shared_key_secrets(key_sid, number, credentials)
            elif digest_name == "sha1":
                tokens = self._auth_tokens(number, credentials)
            else:
                # HMAC_SHA256 is SharedKey signing: an auth token never signs with it.
                raise VerificationFailed("missing-shared-key")

        params: MultiMapping[str] | None = None
        # As parse_qs reads it: blank values are no values.
        claimed = [value for value in req.query.getall("bodySHA256", ()) if value] or None
        if claimed is not None:
            actual = hashlib.sha256(req.body).hexdigest()
            if len(claimed) != 1 or not same_text(actual, claimed[0].lower()):
                raise VerificationFailed("body-hash-mismatch")
        elif req.method != "GET" and req.body and not is_form(req.headers):
            raise VerificationFailed("missing-body-hash")  # nothing would bind the body
        elif req.method != "GET":
            params = req.params

        # The fields are sorted once for every URL form and token tried; the other URL forms
        # are only made when the URL as received does not match (it does for a right one).
        fields = signing_bytes(params)
        given = text_bytes(signature)
        if not _signed_by_any(
            tokens, (req.url,), fields, given, digest_name
        ) and not _signed_by_any(tokens, url_variants(req.url)[1:], fields, given, digest_name):
            raise VerificationFailed("bad-signature")
        if one(_lenient_fields(req), "AccountSid") != number.twilio_account_sid:
            raise VerificationFailed("account-mismatch")

    @staticmethod
    def _auth_tokens(number: TwilioPhoneNumber, credentials: Sequence[AnyCredential]) -> list[str]:
        """The number's auth token, else its account's credentials' (several: rotation)."""
        if number.twilio_auth_token:
            tokens = [number.twilio_auth_token]
        else:
            tokens = [
                c.auth_token
                for c in credentials
                if isinstance(c, TwilioCredential) and c.account_sid == number.twilio_account_sid
            ]
        if not tokens:
            raise VerificationFailed("no-auth-token")
        return tokens

    def parse(self, req: WebhookRequest) -> InboundCall:
        """The ringing call. A withheld caller (`From` empty) becomes `anonymous`;
        `account_id` is the `AccountSid`."""
        return parse_call(self.name, req, _fields(req), _ACCOUNT_FIELDS, attestation)

    def render(
        self, decision: Decision, call: InboundCall, number: AnyPhoneNumber, ctx: RenderContext
    ) -> Rendered:
        """TwiML carrying out the decision; `warnings` say what had to be left out."""
        outcome = decision.outcome
        if isinstance(outcome, Connect):
            document = _connect_document(outcome, number, ctx)
            if document is not None:
                return Rendered(document, twiml.CONTENT_TYPE)
        return render(decision, call, number, ctx, connect=_connect, dial=_dial)

    def reject(self) -> Rendered:
        """`<Reject/>` as the first verb: not answered, not billed."""
        return Rendered(twiml.REJECT, twiml.CONTENT_TYPE)

    def parse_status(self, req: WebhookRequest) -> StatusEvent:
        """A status callback: CallStatus, CallDuration, SequenceNumber, Timestamp (RFC 2822)."""
        return parse_status(self.name, req, _fields(req), rfc2822_timestamp)

    def ack_status(self) -> Rendered:
        """An empty `<Response/>` as text/xml: one of the two answers Twilio takes silently."""
        return Rendered(twiml.EMPTY, twiml.CONTENT_TYPE)

    # --- runtime callbacks (router/runtimes/attempts.py) --------------------------------------

    def attempt_result(self, req: WebhookRequest, kind: str) -> AttemptResult:
        """What the `<Connect>` / `<Dial>` action says (twiml_dialect.attempt_result)."""
        return attempt_result(_fields(req), kind)

    def stream_event(self, req: WebhookRequest) -> StreamEvent | None:
        """`StreamEvent` of a `<Stream>` status callback."""
        return stream_event(_fields(req))

    callbacks_name_the_call: Final = False

    def finished(self) -> Rendered:
        """`<Hangup/>`: the conversation ended."""
        return HANG_UP


def attestation(fields: Mapping[str, Any]) -> Attestation:
    """The STIR/SHAKEN level of `StirVerstat` (router/providers/attestation.py); absent or
    unknown: `none`."""
    return verstat_level(fields.get("StirVerstat"))


# The algorithms a settings header may announce, by the hashlib name of their digest.
_DIGESTS: Final = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def _signature_settings(settings_header: str) -> dict[str, str]:
    """The header's `name=value` pairs, as twilio-python's `get_signature_algorithm` reads
    them: split on commas, names and values stripped, blank values left out, the first
    of a name kept."""
    pairs: dict[str, str] = {}
    for part in settings_header.split(","):
        name, sep, value = part.partition("=")
        if sep and value.strip():
            pairs.setdefault(name.strip(), value.strip())
    return pairs


def _shared_key_secrets(
    key_sid: str, number: TwilioPhoneNumber, credentials: Sequence[AnyCredential]
) -> list[str]:
    """The secrets of the shared key `key_sid` on the `twilio` credentials of the number's
    account; `unknown-shared-key` when none holds it."""
    secrets = [
        secret
        for c in credentials
        if isinstance(c, TwilioCredential) and c.account_sid == number.twilio_account_sid
        for secret in c.shared_key_secrets(key_sid)
    ]
    if not secrets:
        raise VerificationFailed("unknown-shared-key")
    return secrets


# --- decision → TwiML --------------------------------------------------------------------


def _connect(
    outcome: Connect, number: AnyPhoneNumber, ctx: RenderContext, warnings: list[str]
) -> str:
    """The verb handing the call to its runtime, the stream URL as configured."""
    return connect_runtime(
        outcome, number, ctx, warnings, provider="twilio", stream_url=ctx.runtime_address
    )


def _connect_document(outcome: Connect, number: AnyPhoneNumber, ctx: RenderContext) -> bytes | None:
    """The whole `<Connect>` document, when it can be spliced: else None.

    Only the call id differs from one call of a route to the next: a CallSid-like id
    (nothing to escape, far under the parameter limit) goes into the route's document
    made once, in bytes. Any other id, or a route whose document warns, is rendered in
    full every time."""
    call_id = ctx.call_id
    plain = len(call_id) <= _PLAIN_CALL_ID_CHARS and call_id.isascii() and call_id.isalnum()
    if not plain and _PLAIN_CALL_ID.fullmatch(call_id) is None:
        return None
    # Everything the document is made of besides the call id (and the public URL, fixed
    # for the process): the runtime, the callbacks' query, the target and the number.
    key = (
        ctx.runtime_address,
        ctx.runtime_kind,
        ctx.callbacks,
        outcome.target,
        outcome.target_id,
        number.id,
    )
    try:
        around = _AROUND_CALL_ID[key]
    except KeyError:
        around = _around_call_id(outcome, number, ctx)
        if len(_AROUND_CALL_ID) >= _ROUTES_KEPT:
            _AROUND_CALL_ID.clear()
        _AROUND_CALL_ID[key] = around
    if around is None:
        return None
    return around[0] + call_id.encode() + around[1]


# Call ids that escaping leaves as they are and that keep `callId` under the limit (the
# common ones, letters and digits, are told without the pattern).
_PLAIN_CALL_ID_CHARS: Final = 128
_PLAIN_CALL_ID: Final = re.compile(r"[A-Za-z0-9_.:~-]{1,128}")
# Stands for the call id while a route's document is made; itself a plain call id.
_CALL_ID_SLOT: Final = "router-call-id-slot"
_ROUTES_KEPT: Final = 1024
_AROUND_CALL_ID: dict[tuple[str | None, ...], tuple[bytes, bytes] | None] = {}


def _around_call_id(
    outcome: Connect, number: AnyPhoneNumber, ctx: RenderContext
) -> tuple[bytes, bytes] | None:
    """The route's document before and after its call id; None when making it warned (the
    warnings must then be given on every call) or the slot is not in it exactly once."""
    warnings: list[str] = []
    slot = RenderContext(
        runtime_url=ctx.runtime_url,
        call_id=_CALL_ID_SLOT,
        public_base=ctx.public_base,
        runtime=ctx.runtime,
        callbacks=ctx.callbacks,
    )
    document = twiml.response(_connect(outcome, number, slot, warnings))
    if warnings or document.count(_CALL_ID_SLOT.encode()) != 1:
        return None
    before, _, after = document.partition(_CALL_ID_SLOT.encode())
    return before, after


def _dial(outcome: Transfer, call: InboundCall, number: AnyPhoneNumber, warnings: list[str]) -> str:
    dest = outcome.destination
    caller = caller_id(dest.caller_id, call, number, _literal_caller_id)
    if isinstance(dest, TransferDestinationNumber):
        noun = number_noun(dest)
    else:
        if caller and not set(caller) <= _SIP_CALLER_ID_CHARS:
            warnings.append("callerId dropped: <Sip> takes only letters, digits and +-_.")
            caller = None
        noun = twiml.sip(dest.sip_uri, dest.sip_headers or {}, warnings)
    return twiml.dial(noun, caller, dial_timeout(dest.transfer_plan))


def _literal_caller_id(value: str) -> str | None:
    """Twilio takes a literal callerId as written (checked only for <Sip>, in `_dial`)."""
    return value or None
