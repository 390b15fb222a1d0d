"""Provider-facing endpoints: the same three handlers for every registered provider.

Paths are fixed by the operator contract (`/twilio/voice`, `/vonage/answer`, ...): each
provider names its own three endpoints.

A webhook answer is the hot path of the worker, so the steps that usually need no I/O (a
body that came whole, a warm number and credential cache, a number whose decision is
fixed) are taken without awaiting: each step's async form runs only when it must wait.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from functools import partial
from typing import Final

import structlog
from aiohttp import web

from router.api.edge import edge
from router.api.inputs import read_body
from router.models.phone_numbers import AnyPhoneNumber, number_only_key
from router.pipeline.inbound import Inbound, Outcome
from router.providers.plugin import (
    Challenge,
    MalformedWebhook,
    Provider,
    Rendered,
    RuntimeCallbacks,
    VerificationFailed,
    WebhookRequest,
)
from router.runtimes.attempts import Attempt, BadAttempt

log = structlog.get_logger("router.webhooks")


def signed_url(request: web.Request, public_url: str | None) -> str:
    """The URL the provider signed: `ROUTER_PUBLIC_URL` (or the URL the request arrived
    on, honouring X-Forwarded-Proto/Host) plus the path and query exactly as received.

    Trusting forwarded headers is safe here: they only choose which URL a signature is
    checked against, and a signature cannot be forged without the provider's key. Only a
    scheme and a host are taken from them, though: anything else (a path, a query, bytes
    that are not ASCII) would change how the URL reads, so such a header is ignored.
    """
    if public_url:
        base = public_url.rstrip("/")
    else:
        proto = _first(request.headers.get("X-Forwarded-Proto", "")).lower()
        host = _first(request.headers.get("X-Forwarded-Host", ""))
        if proto not in ("http", "https"):
            proto = request.scheme
        if not _HOST.fullmatch(host):
            host = request.host
        base = f"{proto}://{host}"
    return base + request.raw_path


# A host and optional port: a name, an IPv4 address or a bracketed IPv6 one.
_HOST: Final = re.compile(r"[A-Za-z0-9._-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _first(forwarded: str) -> str:
    """The first of a forwarded header's comma-separated values (the client-most proxy)."""
    return forwarded.split(",", 1)[0].strip()


def respond(rendered: Rendered) -> web.Response:
    return web.Response(
        body=rendered.body, status=rendered.status, headers={"Content-Type": rendered.content_type}
    )


# Provider webhooks are a few KiB. Anything far larger is refused before it is parsed or
# hashed: unauthenticated megabyte forms would otherwise stall the loop and delay real calls.
WEBHOOK_MAX_BODY_BYTES = 64 * 1024


async def _body(request: web.Request, inbound: Inbound, provider: Provider) -> bytes:
    """The whole body, read once: every later step works on the snapshot, never on the
    aiohttp request's body. Usually it came with the headers and is taken as it is;
    otherwise it must arrive within the body timeout and half the provider's budget
    (the budget runs from arrival: a late body leaves the decision the other half)."""
    content = request.content
    if content.is_eof():
        body = content.read_nowait()
    else:
        if (request.content_length or 0) > WEBHOOK_MAX_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=WEBHOOK_MAX_BODY_BYTES, actual_size=request.content_length or 0
            )
        settings = inbound.settings
        timeout = min(settings.request_body_timeout_seconds, provider.budget_seconds(settings) / 2)
        body = await read_body(request, timeout)
    if len(body) > WEBHOOK_MAX_BODY_BYTES:  # a chunked body announces no length
        raise web.HTTPRequestEntityTooLarge(max_size=WEBHOOK_MAX_BODY_BYTES, actual_size=len(body))
    return body


def _snapshot(
    request: web.Request, inbound: Inbound, body: bytes, received: float
) -> WebhookRequest:
    return WebhookRequest.create(
        method=request.method,
        url=signed_url(request, inbound.settings.public_url),
        headers=request.headers,
        body=body,
        received_at=received,
        wall_time=time.time(),
    )


# A verified request: the snapshot, its number, and whether the cache answered the lookup.
_Verified = tuple[WebhookRequest, AnyPhoneNumber, bool]


async def _verified(
    request: web.Request, inbound: Inbound, provider: Provider, *, status: bool = False
) -> _Verified | web.Response:
    """Snapshot, look up and verify: the request, or the answer that ends it here.

    Checks that need no number come first (`preverify`: e.g. a signature header at all),
    and fail with 403 whatever number the request names. After the lookup, an unknown
    number and a request that fails verification for a known one get the same answer,
    the provider's reject (a status ack for a status callback), so a caller without the
    number's key cannot tell which numbers exist; the events (`webhook.unknown_number`,
    `webhook.rejected`) tell ops which it was. A caller who must authenticate first gets
    the provider's challenge. None of them is routed.
    """
    received = inbound.loop_time()
    req = _snapshot(request, inbound, await _body(request, inbound, provider), received)
    try:
        provider.preverify(req, inbound.settings)
    except VerificationFailed as exc:
        inbound.events.rejected(provider.name, req.path, exc.reason, None)
        return _forbidden()
    key = provider.lookup_key(req)
    # A number stored before numbers were keyed by account still claims the older key.
    older = number_only_key(key) if key is not None else None
    cache_hit, number = inbound.cached_number(key)
    if number is None and cache_hit and older is not None:
        cache_hit, number = inbound.cached_number(older)
    if not cache_hit and key is not None:
        number, cache_hit = await inbound.lookup(provider, [k for k in (key, older) if k])
    if number is None:
        if status and key is None:
            # An event about no call of a number (e.g. a leg router dialled): acknowledge.
            log.debug("webhook.event_ignored", provider=provider.name, path=req.path)
            return respond(provider.ack_status())
        inbound.events.unknown_number(provider.name, req.path, key)
        return _refused(provider, status=status)
    credentials = inbound.cached_credentials(number)
    if credentials is None:
        credentials = await inbound.credentials_of(number)
    try:
        provider.verify(req, number, credentials, inbound.settings)
    except VerificationFailed as exc:
        inbound.events.rejected(provider.name, req.path, exc.reason, number)
        return _refused(provider, status=status)
    except Challenge as exc:
        inbound.events.challenged(provider.name, req.path, exc.reason, number)
        return respond(exc.rendered)
    except MalformedWebhook as exc:
        return _malformed(provider, req, exc)
    return req, number, cache_hit


def _forbidden() -> web.Response:
    return web.Response(status=403, text="Forbidden: the request signature is not valid")


def _refused(provider: Provider, *, status: bool) -> web.Response:
    """The one answer for an unknown number and for a known one whose request fails
    verification: the provider's reject (a genuine call to a number nobody configured is
    declined, unbilled where the provider allows it), or its ack for a status callback."""
    return respond(provider.ack_status() if status else provider.reject())


def _malformed(provider: Provider, req: WebhookRequest, exc: MalformedWebhook) -> web.Response:
    log.warning("webhook.malformed", provider=provider.name, path=req.path, reason=exc.reason)
    return web.Response(status=400, text=f"Bad Request: {exc.reason}")


async def _answer(
    request: web.Request, *, inbound: Inbound, provider: Provider, fallback: bool
) -> web.Response:
    # Latency on a fine clock: uvloop's `loop.time()`, which deadlines use, moves in
    # whole milliseconds, coarser than the fast answers being measured.
    started = time.perf_counter()
    verified = await _verified(request, inbound, provider)
    if not isinstance(verified, tuple):  # an answer that ends the request here
        return verified
    req, number, cache_hit = verified
    try:
        call = provider.parse(req)
    except MalformedWebhook as exc:
        return _malformed(provider, req, exc)
    try:
        if fallback:
            outcome = Outcome(inbound.fallback(number))
        else:
            outcome = inbound.fixed(number) or await inbound.decide(provider, number, call)
            if inbound.capped(number):
                outcome = await inbound.admit(provider, number, call, outcome)
        attempt = inbound.attempt(provider, outcome.decision, call, number)
        rendered = inbound.render(provider, outcome.decision, call, number, attempt, req.url)
    except Exception:
        # A fault of ours must still answer the call: apologise and hang up.
        log.exception("webhook.failed", provider=provider.name, call_id=call.provider_call_id)
        outcome = Outcome(inbound.apology())
        attempt = None
        rendered = inbound.render(provider, outcome.decision, call, number)
    inbound.events.call_routed(
        provider=provider.name,
        call=call,
        number=number,
        decision=outcome.decision,
        cache_hit=cache_hit,
        latency_ms=(time.perf_counter() - started) * 1000,
        replayed=outcome.replayed,
        endpoint="fallback" if fallback else "voice",
        warnings=rendered.warnings,
        runtime=attempt.runtime if attempt is not None else None,
    )
    return respond(rendered)


async def _attempted(
    request: web.Request, inbound: Inbound, provider: Provider, *, status: bool
) -> tuple[WebhookRequest, AnyPhoneNumber, Attempt] | web.Response:
    """A runtime callback verified like every webhook, and the attempt its URL names: or
    the answer that ends it here."""
    verified = await _verified(request, inbound, provider, status=status)
    if not isinstance(verified, tuple):
        return verified
    req, number, _ = verified
    try:
        return req, number, Attempt.from_query(req.query)
    except BadAttempt as exc:
        return _malformed(provider, req, MalformedWebhook(str(exc)))


async def _connect_callback(
    request: web.Request, *, inbound: Inbound, provider: Provider
) -> web.Response:
    """The `action` of the `<Connect>` / `<Dial>` that handed a call to a runtime: did the
    runtime take it? Hang up after a conversation; else the next runtime, or the failure
    branch (router/runtimes/attempts.py)."""
    attempted = await _attempted(request, inbound, provider, status=False)
    if not isinstance(attempted, tuple):
        return attempted
    req, number, attempt = attempted
    assert isinstance(provider, RuntimeCallbacks)
    runtime = inbound.runtimes.by_name.get(attempt.runtime)
    kind = attempt.kind or (runtime.kind if runtime is not None else "stream")
    try:
        call = provider.parse(req)
        result = provider.attempt_result(req, kind)
    except MalformedWebhook as exc:
        return _malformed(provider, req, exc)
    if attempt.call is not None:  # the callback is another leg's: the attempt names the call
        call = replace(call, provider_call_id=attempt.call, to_number=attempt.to or call.to_number)
    return respond(await inbound.after_attempt(provider, number, call, attempt, result, req.url))


async def _stream_callback(
    request: web.Request, *, inbound: Inbound, provider: Provider
) -> web.Response:
    """A media stream's status callback: a stream that started is the runtime taking the
    call, one that errored is not. Acknowledged like a status callback."""
    attempted = await _attempted(request, inbound, provider, status=True)
    if not isinstance(attempted, tuple):
        return attempted
    req, number, attempt = attempted
    assert isinstance(provider, RuntimeCallbacks)
    event = provider.stream_event(req)
    call_id = provider.call_id(req)
    if event is not None and call_id:
        await inbound.stream_event(number, call_id, attempt.runtime, event)
    return respond(provider.ack_status())


async def _status(request: web.Request, *, inbound: Inbound, provider: Provider) -> web.Response:
    verified = await _verified(request, inbound, provider, status=True)
    if not isinstance(verified, tuple):
        return verified
    req, number, _ = verified
    try:
        event = provider.parse_status(req)
    except MalformedWebhook as exc:
        return _malformed(provider, req, exc)
    await inbound.status(number, event)
    return respond(provider.ack_status())


def provider_routes(provider: Provider, inbound: Inbound) -> list[web.RouteDef]:
    """The endpoints of one provider, under `/{provider.name}/`, each behind `edge`; the
    answers to calls (voice and fallback) are also counted while in flight."""
    metrics = inbound.events.metrics
    inflight = metrics.inflight_webhooks
    answer = partial(_answer, inbound=inbound, provider=provider)
    handlers = {
        "voice": edge(partial(answer, fallback=False), metrics, inflight=inflight, timed=False),
        "fallback": edge(partial(answer, fallback=True), metrics, inflight=inflight, timed=False),
        "status": edge(partial(_status, inbound=inbound, provider=provider), metrics),
        "connect": edge(
            partial(_connect_callback, inbound=inbound, provider=provider),
            metrics,
            inflight=inflight,
        ),
        "stream": edge(partial(_stream_callback, inbound=inbound, provider=provider), metrics),
    }
    routes: list[web.RouteDef] = []
    for role, segment in provider.endpoints.items():
        path = f"/{provider.name}/{segment}"
        routes.append(web.get(path, handlers[role], allow_head=False))
        routes.append(web.post(path, handlers[role]))
    return routes


async def twilio_sms(request: web.Request) -> web.Response:
    """Inbound SMS: router routes calls only. Wiring points a number's SmsUrl here (unless
    `smsEnabled` is false) so messages are acknowledged with an empty `<Response/>`, not a
    404 in the operator's Twilio debugger."""
    return web.Response(
        body=b'<?xml version="1.0" encoding="UTF-8"?><Response/>',
        headers={"Content-Type": "text/xml; charset=utf-8"},
    )
