"""The one shape every provider plug-in has: verify, parse, render, and status events.

A provider module holds no I/O: the HTTP pipeline snapshots the request into a
`WebhookRequest`, finds the number and the org's credentials, and calls the provider's
pure functions. Adding a provider is one module and one line in `router.providers`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy, MultiMapping

from router.models.credentials import AnyCredential
from router.models.phone_numbers import AnyPhoneNumber
from router.pipeline.decision import Decision
from router.pipeline.inbound_call import InboundCall
from router.providers.forms import form_pairs
from router.runtimes.config import Runtime
from router.settings import Settings

C = TypeVar("C", bound=AnyCredential)

STANDARD_ENDPOINTS: Final[Mapping[str, str]] = {
    "voice": "voice",
    "fallback": "fallback",
    "status": "status",
}
# Also the runtime callbacks: the `action` of `<Connect>` / `<Dial>` and a stream's
# status callback (router/runtimes/attempts.py).
RUNTIME_ENDPOINTS: Final[Mapping[str, str]] = {
    **STANDARD_ENDPOINTS,
    "connect": "connect",
    "stream": "stream",
}
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_NO_PARAMS: Final[MultiMapping[str]] = MultiDictProxy(MultiDict())
# The call statuses every provider's status events are normalised to.
CALL_STATUSES: Final = (
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
)
FINAL_STATUSES: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def origin(url: str) -> str:
    """`scheme://host[:port]` of an absolute URL; "" for anything else."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


# Built on every webhook and never changed after; not `frozen`, which would set each
# field through `object.__setattr__` on every construction.
@dataclass(slots=True)
class WebhookRequest:
    """What a provider needs of an inbound HTTP request, without aiohttp.

    `url` is the URL the provider signed: the public base URL, the path and the query
    string exactly as received. `params` holds the form fields of a form POST, or the
    query fields of a GET. `headers` must be case-insensitive.
    """

    method: str
    url: str
    path: str
    query: MultiMapping[str]
    headers: Mapping[str, str]
    body: bytes
    params: MultiMapping[str]
    received_at: float  # loop.time()
    wall_time: float  # time.time()

    @classmethod
    def create(
        cls,
        *,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        received_at: float,
        wall_time: float,
    ) -> WebhookRequest:
        """A snapshot from raw parts; query and params are parsed as the provider signed them."""
        parts = urlsplit(url)
        query = (
            MultiDictProxy(MultiDict(parse_qsl(parts.query, keep_blank_values=True)))
            if parts.query
            else _NO_PARAMS
        )
        # aiohttp's request headers are already a read-only case-insensitive view, fixed
        # once the request is parsed: kept as they are rather than copied on every webhook.
        ci_headers = (
            headers
            if isinstance(headers, CIMultiDictProxy)
            else CIMultiDictProxy(CIMultiDict(headers))
        )
        verb = method.upper()
        params: MultiMapping[str] = query if verb == "GET" else _NO_PARAMS
        if verb != "GET" and is_form(ci_headers):
            params = MultiDictProxy(MultiDict(form_pairs(body)))
        return cls(
            method=verb,
            url=url,
            path=parts.path,
            query=query,
            headers=ci_headers,
            body=body,
            params=params,
            received_at=received_at,
            wall_time=wall_time,
        )


def number_credential(
    credentials: Sequence[AnyCredential], number: AnyPhoneNumber, kind: type[C]
) -> C:
    """The credential of type `kind` the number's `credentialId` names, among its org's;
    `VerificationFailed("no-credential")` when there is none (fail closed)."""
    wanted = getattr(number, "credential_id", None)
    for credential in credentials:
        if isinstance(credential, kind) and credential.id == wanted:
            return credential
    raise VerificationFailed("no-credential")


def ascii_int(value: str) -> int | None:
    """A non-negative integer field (`CallDuration`, `SequenceNumber`), else None.

    ASCII digits only: `"²".isdigit()` is True, and `int("²")` raises.
    """
    return int(value) if value.isascii() and value.isdigit() else None


def text_bytes(text: str) -> bytes:
    """`text` in UTF-8, never raising. What a request carries is not always UTF-8: aiohttp
    keeps a header's undecodable bytes as lone surrogates, and JSON's `\\udcff` escapes
    make them too. Each is written as itself, so such a value hashes and compares as a
    wrong one does (a 403, never a 500)."""
    return text.encode("utf-8", "surrogatepass")


def hmac_digest(secret: str, message: bytes, digest: str) -> bytes:
    """`hmac.digest(text_bytes(secret), message, digest)`, made from a copy of an HMAC
    keyed once per secret (`HMAC.copy`, hmac's documented way to reuse a shared start).

    The one-shot `hmac.digest` asks OpenSSL 3 to look the algorithm up again on every
    call, and under load that lookup cost as much as the rest of a signature check
    (bench/README.md, "Signature checks")."""
    mac = _keyed(secret, digest).copy()
    mac.update(message)
    return mac.digest()


# The keyed HMACs of the secrets in use: a few per org (tokens, rotation), bounded.
@lru_cache(maxsize=1024)
def _keyed(secret: str, digest: str) -> hmac.HMAC:
    return hmac.new(text_bytes(secret), digestmod=digest)


def same_text(a: str, b: str) -> bool:
    """Whether `a` and `b` are the same text, in constant time (secrets, signatures)."""
    return hmac.compare_digest(text_bytes(a), text_bytes(b))


def is_form(headers: Mapping[str, str]) -> bool:
    """Whether the body is `application/x-www-form-urlencoded`."""
    media_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return media_type == FORM_CONTENT_TYPE


class VerificationFailed(Exception):
    """The request is not provably from the provider; `reason` is short and secret-free."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedWebhook(Exception):
    """A verified request that lacks what the provider always sends (answer 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Built on every webhook and never changed after; not `frozen`, which would set each
# field through `object.__setattr__` on every construction.
@dataclass(slots=True)
class Rendered:
    """An HTTP answer for the provider. `warnings` name what render had to drop, for logs."""

    body: bytes
    content_type: str
    status: int = 200
    warnings: tuple[str, ...] = ()


class Challenge(Exception):
    """Not refused, not yet routed: the caller must authenticate first (a SIP digest
    challenge). The pipeline answers `rendered` and decides nothing."""

    def __init__(self, rendered: Rendered, reason: str) -> None:
        super().__init__(reason)
        self.rendered = rendered
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A call status callback, normalised to `CALL_STATUSES`."""

    provider: str
    provider_call_id: str
    status: str
    is_final: bool
    duration_seconds: int | None
    sequence: int | None  # orders events of one call; None when the provider sends none
    timestamp: float  # the provider's event time (epoch seconds), else when it arrived
    params: Mapping[str, Any] = field(default_factory=dict)
    from_number: str | None = None  # the caller, for a record the event creates


# Built on every webhook and never changed after; not `frozen`, which would set each
# field through `object.__setattr__` on every construction.
@dataclass(slots=True)
class RenderContext:
    """What render needs besides the decision: where the runtime is and the call's id."""

    runtime_url: str
    call_id: str  # the id the runtime reads the call record with: the provider call id
    public_base: str
    # The runtime chosen for a connect (None: a stream to `runtime_url`), and the query
    # string of the callbacks that tell router whether it took the call (its name, the
    # runtimes to try next, the called number: router/runtimes/attempts.py); "" for none.
    runtime: Runtime | None = None
    callbacks: str = ""
    # `scheme://host` the webhook arrived on (as its signed URL was built: forwarded
    # headers honoured) when `public_base` is empty: for a provider that needs absolute
    # callback URLs (Plivo); "" when `public_base` is set or nothing is known.
    request_base: str = ""

    @property
    def runtime_kind(self) -> str:
        return "stream" if self.runtime is None else self.runtime.kind

    @property
    def runtime_address(self) -> str:
        return self.runtime_url if self.runtime is None else self.runtime.address


# What a runtime callback says of an attempt (router/runtimes/attempts.py):
# - `taken`: the runtime took the call (and, on TwiML, the conversation ended);
# - `refused`: it did not take the call: the next runtime, or the failure branch;
# - `gone`: the caller hung up first: nothing to do, nobody to blame;
# - `pending`: not known yet (a leg still ringing): nothing to do now;
# - `ask-stream`: a stream's outcome, told by its status callbacks (`stream_event`).
AttemptResult = Literal["taken", "refused", "gone", "pending", "ask-stream"]
StreamEvent = Literal["started", "stopped", "error"]


@runtime_checkable
class RuntimeCallbacks(Protocol):
    """A provider whose documents tell router whether a runtime took the call: the
    `connect` endpoint takes the `action` of `<Connect>` / `<Dial>`, the `stream` endpoint
    a media stream's status callback."""

    def attempt_result(self, req: WebhookRequest, kind: str) -> AttemptResult:
        """What the `connect` callback says of a `kind` runtime's attempt."""

    def stream_event(self, req: WebhookRequest) -> StreamEvent | None:
        """A stream status callback's event; None for one router does not act on."""

    @property
    def callbacks_name_the_call(self) -> bool:
        """Whether the callbacks come from another leg than the caller's, so their query
        must name the call (`call`)."""

    def finished(self) -> Rendered:
        """The answer when router has nothing more for the call: TwiML's `<Hangup/>` (the
        conversation ended), Vonage's empty answer (the call goes on as it is)."""


class Provider(Protocol):
    """A telephony provider's webhook dialect. Implementations are stateless and pure."""

    @property
    def name(self) -> str:
        """Used in paths, logs and metrics, e.g. `twilio`."""

    @property
    def number_provider(self) -> str:
        """The phone-number `provider` this webhook dialect serves."""

    @property
    def endpoints(self) -> Mapping[str, str]:
        """Path segments under `/{name}/` for `voice`, `fallback` and `status`; a provider
        without one of them leaves it out (the SIP edge serves only `voice` at `route`)."""

    def budget_seconds(self, settings: Settings) -> float:
        """How long the provider waits for an answer, minus a margin."""

    def preverify(self, req: WebhookRequest, settings: Settings) -> None:
        """Checks that need no number (e.g. the SIP edge's shared secret), made before the
        lookup so an unauthenticated caller learns nothing, not even whether a number
        exists. Raise VerificationFailed; most providers have nothing to check here."""

    def lookup_key(self, req: WebhookRequest) -> str | None:
        """The number's cache key (`router.models.phone_numbers.lookup_key` format)."""

    def call_id(self, req: WebhookRequest) -> str | None:
        """The provider's call id, or None when absent."""

    def verify(
        self,
        req: WebhookRequest,
        number: AnyPhoneNumber,
        credentials: Sequence[AnyCredential],
        settings: Settings | None = None,
    ) -> None:
        """Raise VerificationFailed unless the request is signed for this number.

        `credentials` are the number's org's credentials; `settings` carry deployment-wide
        secrets. Raise `Challenge` to answer before any decision (e.g. a SIP digest
        challenge), so an unauthenticated call never reaches the customer's server."""

    def parse(self, req: WebhookRequest) -> InboundCall:
        """The ringing call; raises MalformedWebhook."""

    def render(
        self, decision: Decision, call: InboundCall, number: AnyPhoneNumber, ctx: RenderContext
    ) -> Rendered:
        """The provider's document carrying out the decision."""

    def reject(self) -> Rendered:
        """Do not answer (unknown or blocked numbers)."""

    def parse_status(self, req: WebhookRequest) -> StatusEvent:
        """A status callback; raises MalformedWebhook."""

    def ack_status(self) -> Rendered:
        """The answer to a status callback."""
