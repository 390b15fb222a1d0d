"""The assistant-request exchange (SPEC §6): one long-lived HTTP client per process.

Receivers: the request is a `POST` of `{"message": {"type": "assistant-request", ...}}`
(shape in docs/assistant-request.md). When the org has a server secret, the request is
signed:

    X-Router-Timestamp: <unix seconds>
    X-Router-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

Recompute the HMAC over the raw body bytes exactly as received, compare in constant
time, and refuse timestamps more than a few minutes old (each retry is signed afresh).

Timing: each attempt's timeout is `server.timeoutSeconds` (default 20) capped by what is
left before `deadline` minus a small margin, so the caller still has time to render its
answer. Retries follow `server.backoffPlan` (none without one): `fixed` waits
`baseDelaySeconds` each time, `exponential` waits `baseDelaySeconds * 2**n` after the
n-th failed attempt (n from 0). A status in `excludedStatusCodes` is final, and so is
any 2xx, even with an unusable body. No sleep and no attempt starts past the deadline.
Redirects are not followed (a 3xx is a non-2xx status): the body may be signed and
carries the caller's number, and must not be replayed to a host nobody configured.

Addresses: a server whose host is, or resolves only to, an address the `AddressPolicy`
refuses (router/pipeline/address_policy.py) is not contacted; the outcome is
`blocked-address`, final, and the call takes the failure branch.

Connections: one pool for the process, `max_connections` in all (`max_connections_per_host`
to one host; 0 is no limit). A call waiting on its server holds one connection for the whole
wait, so the pool must hold every call in flight (arrival rate x server latency): a call
that queues for a connection spends its budget queueing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver

from router.models.common import Server
from router.models.phone_numbers import AnyPhoneNumber, secret_fields
from router.pipeline.address_policy import AddressPolicy, BlockedAddress, GuardedResolver
from router.pipeline.decide import AssistantRequester, AssistantRequestResult
from router.pipeline.inbound_call import InboundCall

if TYPE_CHECKING:
    from router.settings import Settings

log = structlog.get_logger("router.server")
DEFAULT_TIMEOUT_SECONDS: Final = 20.0
DEFAULT_SAFETY_MARGIN_SECONDS: Final = 0.05
DEFAULT_MAX_BODY_BYTES: Final = 1_048_576
DEFAULT_MAX_CONNECTIONS: Final = 4096
BLOCKED: Final = "blocked-address"
TIMESTAMP_HEADER: Final = "X-Router-Timestamp"
SIGNATURE_HEADER: Final = "X-Router-Signature"
# Server-level fields left out of `phoneNumber` too: they are sent as HTTP headers
# already, and commonly hold the receiver's own bearer token.
_REDACTED_SERVER_FIELDS: Final = ("server.headers",)
# Headers router owns: a configured one of these names would corrupt or forge the request.
_RESERVED_HEADERS: Final = frozenset(
    {"content-type", "content-length", "transfer-encoding", "host"}
    | {TIMESTAMP_HEADER.lower(), SIGNATURE_HEADER.lower()}
)


class _TooLarge(Exception):
    """A 2xx body over the size cap."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Router-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def public_number(number: AnyPhoneNumber) -> dict[str, Any]:
    """The number's wire form without any secret, as sent to servers."""
    data = number.wire()
    for path in (*secret_fields(number.provider), *_REDACTED_SERVER_FIELDS):
        *parents, leaf = path.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def build_message(number: AnyPhoneNumber, call: InboundCall, org_id: str) -> dict[str, Any]:
    """The assistant-request body: Vapi's message with its Call object where it applies."""
    created = call.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    customer = {"number": call.from_number}
    # `plivo` is router's (Vapi's enum has no Plivo); SIP-edge numbers are Vapi's `vapi`.
    provider = (
        number.provider if number.provider in ("twilio", "telnyx", "vonage", "plivo") else "vapi"
    )
    return {
        "message": {
            "type": "assistant-request",
            "timestamp": int(time.time() * 1000),
            "call": {
                "id": call.id,
                "orgId": org_id,
                "type": "inboundPhoneCall",
                "phoneCallProvider": provider,
                "phoneCallProviderId": call.provider_call_id,
                "phoneCallTransport": call.transport,
                "status": "ringing",
                "phoneNumberId": number.id,
                "customer": customer,
                "createdAt": created,
                "updatedAt": created,
            },
            "phoneNumber": public_number(number),
            "customer": customer,
        }
    }


def _header_value(value: Any) -> str:
    # JSON spelling for booleans: `true`, not Python's `True`.
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class AssistantRequestClient:
    """Sends assistant-requests over one `aiohttp.ClientSession` kept for the process.

    Use as `async with AssistantRequestClient() as client:` (or `start()` / `close()`),
    then call it, or hand `client.bind(...)` to `decide`. `addresses` says which addresses
    servers may have; the default refuses every address that is not public.
    """

    def __init__(
        self,
        *,
        addresses: AddressPolicy | None = None,
        resolver: AbstractResolver | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_host: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        safety_margin_seconds: float = DEFAULT_SAFETY_MARGIN_SECONDS,
        user_agent: str = "router",
    ) -> None:
        self.addresses = addresses if addresses is not None else AddressPolicy()
        # What looks names up before the policy filters them (default: aiohttp's own).
        self.resolver = resolver
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.max_body_bytes = max_body_bytes
        self.safety_margin_seconds = safety_margin_seconds
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_settings(
        cls, settings: Settings, addresses: AddressPolicy | None = None
    ) -> AssistantRequestClient:
        """The worker's client: its connection limits and address policy from `settings`."""
        return cls(
            addresses=addresses if addresses is not None else AddressPolicy.for_settings(settings),
            max_connections=settings.assistant_request_max_connections,
            max_connections_per_host=settings.assistant_request_max_connections_per_host,
        )

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_connections_per_host,
                resolver=GuardedResolver(self.addresses, self.resolver),
            )
            # Per-attempt timeouts are set on each request; none on the session.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": self.user_agent},
            )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def bind(
        self, *, deadline: float, org_id: str | None = None, secret: str | None = None
    ) -> AssistantRequester:
        """This client with one call's deadline and org settings, in `decide`'s shape."""

        async def request(
            server: Server, number: AnyPhoneNumber, call: InboundCall
        ) -> AssistantRequestResult:
            return await self(server, number, call, deadline=deadline, org_id=org_id, secret=secret)

        return request

    async def __call__(
        self,
        server: Server,
        number: AnyPhoneNumber,
        call: InboundCall,
        *,
        deadline: float,
        org_id: str | None = None,
        secret: str | None = None,
    ) -> AssistantRequestResult:
        """POST the assistant-request to `server.url`, retrying, and never past `deadline`.

        `deadline` is absolute on the running loop's clock (`loop.time()`). Never raises
        for what the server or network does: every such failure is a `failed` result.
        """
        if self._session is None:
            raise RuntimeError("AssistantRequestClient is not started")
        if not server.url:
            raise ValueError("server has no url")
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.addresses.url_refusal(server.url) is not None:
            return self._failed(BLOCKED, 0, started, None)
        cutoff = deadline - self.safety_margin_seconds
        body = json.dumps(
            build_message(number, call, org_id or number.org_id), separators=(",", ":")
        ).encode()
        plan = server.backoff_plan
        max_retries = plan.max_retries if plan is not None else 0
        excluded = set(plan.excluded_status_codes or ()) if plan is not None else set()
        per_attempt = server.timeout_seconds or DEFAULT_TIMEOUT_SECONDS

        attempts, reason = 0, "timeout"
        status: int | None = None
        while True:
            remaining = cutoff - loop.time()
            if remaining <= 0:
                break
            attempts += 1
            headers = _headers(server, body, secret)
            try:
                async with asyncio.timeout(min(per_attempt, remaining)):
                    status, raw = await self._post(self._session, server.url, headers, body)
            except TimeoutError:
                reason = "timeout"
            except _TooLarge as exc:
                return self._failed("too-large", attempts, started, exc.status)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, BlockedAddress):
                    return self._failed(BLOCKED, attempts, started, None)
                reason = "transport"
            except aiohttp.ClientError:
                reason = "transport"
            else:
                if raw is not None:
                    # A 2xx is final, whatever its body.
                    return self._parse(raw, attempts, started, status)
                reason = f"http-{status}"
                if status in excluded:
                    break
            if attempts > max_retries or plan is None:
                break
            delay = plan.base_delay_seconds
            if plan.type == "exponential":
                delay *= 2 ** (attempts - 1)
            if loop.time() + delay >= cutoff:
                break
            await asyncio.sleep(delay)
        return self._failed(reason, attempts, started, status)

    async def notify(
        self,
        server: Server,
        message: dict[str, Any],
        *,
        timeout_seconds: float,
        secret: str | None,
    ) -> int | None:
        """POST a one-way message (e.g. `status-update`) once; its HTTP status, or None."""
        if self._session is None or not server.url:
            return None
        if self.addresses.url_refusal(server.url) is not None:
            _message_failed(message, BLOCKED)
            return None
        body = json.dumps({"message": message}, separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(timeout_seconds):
                status, _ = await self._post(
                    self._session, server.url, _headers(server, body, secret), body
                )
        except aiohttp.ClientConnectorError as exc:
            blocked = isinstance(exc.os_error, BlockedAddress)
            _message_failed(message, BLOCKED if blocked else type(exc).__name__)
            return None
        except (TimeoutError, aiohttp.ClientError, _TooLarge) as exc:
            _message_failed(message, type(exc).__name__)
            return None
        if not 200 <= status < 300:
            _message_failed(message, f"http-{status}")
        return status

    async def _post(
        self, session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes | None]:
        """One attempt: the status, and the body when it is a 2xx (capped in size)."""
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            if not 200 <= response.status < 300:
                return response.status, None
            if (response.content_length or 0) > self.max_body_bytes:
                raise _TooLarge(response.status)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(65_536):
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise _TooLarge(response.status)
                chunks.append(chunk)
            return response.status, b"".join(chunks)

    def _parse(
        self, raw: bytes, attempts: int, started: float, status: int
    ) -> AssistantRequestResult:
        try:
            parsed = json.loads(raw, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            # RecursionError: a deeply nested body is garbage, not a crash.
            return self._failed("non-json", attempts, started, status)
        if not isinstance(parsed, dict):
            return self._failed("not-object", attempts, started, status)
        return AssistantRequestResult(
            "ok", None, parsed, attempts, self._elapsed_ms(started), status
        )

    def _failed(
        self, reason: str, attempts: int, started: float, status: int | None
    ) -> AssistantRequestResult:
        return AssistantRequestResult(
            "failed", reason, None, attempts, self._elapsed_ms(started), status
        )

    @staticmethod
    def _elapsed_ms(started: float) -> float:
        return round((asyncio.get_running_loop().time() - started) * 1000, 1)


def _message_failed(message: dict[str, Any], reason: str) -> None:
    """A one-way message the server did not take: logged once (owned tasks surface errors)."""
    call = message.get("call") or {}
    log.warning(
        "server_message.failed",
        type=message.get("type"),
        call_id=call.get("phoneCallProviderId"),
        reason=reason,
    )


def _headers(server: Server, body: bytes, secret: str | None) -> dict[str, str]:
    """The server's own headers (reserved ones dropped), JSON, and the signature if any."""
    headers = {
        str(k): _header_value(v)
        for k, v in (server.headers or {}).items()
        if str(k).lower() not in _RESERVED_HEADERS
    }
    headers["Content-Type"] = "application/json"
    if secret is not None:
        timestamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return headers


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON; letting them in would poison the stored decision.
    raise ValueError(f"{name} is not JSON")
