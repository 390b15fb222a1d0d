"""`router simulate`: decide a call for a number and a caller, with no provider involved.

The number comes from the store (by called number or SIP URI) or from a JSON file in
the API's create shape. The assistant-request is really sent to the number's (or the
org's) server, unless `--response` gives the server's answer or `--offline` treats the
server as unreachable. The call rings at `--at` (default now), with the STIR/SHAKEN level
`--attestation` (default `none`), which ringing hooks' schedule and attestation filters read.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from router.errors import validation_messages
from router.manage.number_service import CREATE_MODELS, parse_number
from router.manage.orgs import Orgs
from router.models.phone_numbers import (
    ACCOUNT_SCOPED_PROVIDERS,
    AnyPhoneNumber,
    account_lookup_key,
    lookup_key,
    sip_lookup_key,
)
from router.models.ringing import Attestation
from router.models.wire import normalize_e164
from router.pipeline.assistant_request import AssistantRequestClient
from router.pipeline.decide import AssistantRequestResult, decide
from router.pipeline.decision import Connect, Decision
from router.pipeline.inbound_call import InboundCall
from router.providers import PROVIDERS, RenderContext
from router.runtimes.attempts import Attempt, planned
from router.runtimes.choice import plan
from router.runtimes.config import Runtimes
from router.runtimes.health import MemoryRuntimeHealth
from router.settings import DEFAULT_ORG_ID, Settings
from router.store.interface import KIND_PHONE_NUMBER, Doc, ListQuery, Store, StoreUnavailable


class SimulateError(Exception):
    """The simulation cannot run (no such number, bad file); the message says why."""


@dataclass(frozen=True, slots=True)
class Request:
    caller: str
    to: str | None
    sip_uri: str | None
    provider: str
    number_file: Path | None
    response: dict[str, Any] | None
    offline: bool
    render: str | None
    account: str | None = None  # the provider account (Twilio AccountSid), with `to`
    at: datetime | None = None  # when the call rings (aware); None: now
    attestation: Attestation = "none"  # the level the provider would report


READ_ONLY_FIELDS = ("id", "orgId", "createdAt", "updatedAt", "status")


def number_from_file(path: Path, org_id: str = DEFAULT_ORG_ID) -> AnyPhoneNumber:
    """A number in the API's create shape, or as `GET /phone-number/{id}` returns it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SimulateError(f"{path}: {exc}") from None
    provider = data.get("provider") if isinstance(data, dict) else None
    if not isinstance(provider, str) or provider not in CREATE_MODELS:
        raise SimulateError(f"{path}: provider must be one of {', '.join(CREATE_MODELS)}")
    body = {k: v for k, v in data.items() if k not in READ_ONLY_FIELDS}
    try:
        dto = CREATE_MODELS[provider].model_validate(body)
    except ValidationError as exc:
        raise SimulateError(f"{path}: " + "; ".join(validation_messages(exc, data=body))) from None
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = data.get("status", "active")
    return parse_number(
        {
            **dto.wire(),
            "id": str(data.get("id", "simulated")),
            "orgId": str(data.get("orgId", org_id)),
            "createdAt": now,
            "updatedAt": now,
            "status": status if status in ("active", "blocked") else "active",
        }
    )


async def _by_number(store: Store, settings: Settings, provider: str, to: str) -> Doc | None:
    """The one `provider` number `to` among the configured orgs' numbers, whatever its
    account; `SimulateError` when several accounts hold it."""
    found: list[Doc] = []
    for org_id in dict.fromkeys([DEFAULT_ORG_ID, *(org.id for org in settings.all_orgs())]):
        page = await store.list(KIND_PHONE_NUMBER, org_id, ListQuery(search=to, limit=1000))
        found += [d for d in page.items if d.get("provider") == provider and d.get("number") == to]
    if len(found) > 1:
        raise SimulateError(f"{len(found)} accounts hold {provider} number {to}: give --account")
    return found[0] if found else None


async def _number_from_store(
    settings: Settings, key: str, *, number: tuple[str, str] | None = None
) -> AnyPhoneNumber:
    """The number claiming `key`; with `number` (provider, E.164), when no number claims
    `key`, the one number of that provider and number among the orgs', whatever account."""
    from router.app import make_store
    from router.manage.documents import Codec
    from router.manage.secrecy import SecretBox, SecretKeyError
    from router.models.phone_numbers import secret_fields

    store = make_store(settings)
    try:
        await store.start()
    except StoreUnavailable as exc:
        raise SimulateError(
            f"cannot read the store: {exc.detail} (with the embedded store and a running "
            "worker, use --number-file with the number's JSON instead)"
        ) from None
    try:
        doc = await store.lookup(key)
        if doc is None and number is not None:
            doc = await _by_number(store, settings, *number)
    except StoreUnavailable as exc:
        raise SimulateError(f"cannot read the store: {exc.detail}") from None
    finally:
        await store.close()
    if doc is None:
        raise SimulateError(f"no number is configured for {key}")
    box = SecretBox(settings.secret_key.get_secret_value() if settings.secret_key else None)
    try:
        return parse_number(Codec(box).open(doc, secret_fields(doc["provider"])))
    except SecretKeyError as exc:
        raise SimulateError(f"the number's stored secrets cannot be read: {exc}") from None


async def simulate(settings: Settings, request: Request) -> dict[str, Any]:
    """The decision (and optionally the rendered answer) as a JSON-ready dict."""
    if request.number_file is not None:
        number = number_from_file(request.number_file)
    elif request.sip_uri:
        number = await _number_from_store(settings, sip_lookup_key(request.sip_uri))
    elif request.to:
        try:
            to = normalize_e164(request.to)
        except ValueError as exc:
            raise SimulateError(f"--to: {exc}") from None
        if request.account and request.provider in ACCOUNT_SCOPED_PROVIDERS:
            key = account_lookup_key(request.provider, request.account, to)
            number = await _number_from_store(settings, key)
        else:
            # Without an account: the number-only key (also what numbers stored before
            # numbers were keyed by account claim), else the one number of any account.
            key = f"{request.provider}:{to}"
            number = await _number_from_store(settings, key, number=(request.provider, to))
    else:
        raise SimulateError("give --to, --sip-uri or --number-file")
    loop = asyncio.get_running_loop()
    rings_at = request.at.timestamp() if request.at is not None else time.time()
    level = request.attestation
    call = InboundCall(
        provider=number.provider if number.provider != "byo-phone-number" else "sip",
        provider_call_id=f"SIM{int(time.time() * 1000)}",
        from_number=request.caller,
        to_number=getattr(number, "number", None),
        received_at=loop.time(),
        sip_uri=getattr(number, "sip_uri", None),
        wall_time=rings_at,
        attestation_reader=lambda _params: level,
    )
    orgs = Orgs(settings.all_orgs())
    budget = settings.twilio_budget_seconds

    async def canned(*_: Any) -> AssistantRequestResult:
        if request.offline:
            return AssistantRequestResult("failed", "transport", attempts=1)
        return AssistantRequestResult("ok", body=request.response, attempts=1, http_status=200)

    async with AssistantRequestClient.for_settings(settings) as client:
        requester: Any = (
            canned
            if request.offline or request.response is not None
            else client.bind(
                deadline=call.received_at + budget,
                org_id=number.org_id,
                secret=orgs.server_secret(number.org_id),
            )
        )
        decision: Decision = await decide(
            number,
            call,
            org_server=orgs.server(number.org_id),
            assistant_request=requester,
            apology=settings.apology_message,
        )
    out: dict[str, Any] = {
        "number": lookup_key(number),
        "caller": request.caller,
        "at": datetime.fromtimestamp(rings_at, UTC).isoformat().replace("+00:00", "Z"),
        "attestation": level,
    }
    out["decision"] = decision.to_dict()
    runtimes = settings.runtimes()
    edge = "sip" if number.provider in ("vapi", "byo-phone-number") else number.provider
    attempt = _attempt(runtimes, decision, call, number, request.render or edge)
    if attempt is not None:
        chosen = runtimes.by_name[attempt.runtime]
        out["runtime"] = {
            "name": chosen.name,
            "kind": chosen.kind,
            "address": chosen.address,
            "then": list(attempt.next),
        }
    if request.render:
        provider = PROVIDERS.get(request.render)
        if provider is None:
            raise SimulateError(f"--render takes one of {', '.join(PROVIDERS)}")
        ctx = RenderContext(
            settings.runtime_url,
            call.provider_call_id,
            settings.public_url or "",
            runtime=runtimes.by_name[attempt.runtime] if attempt is not None else None,
            callbacks=attempt.query() if attempt and "connect" in provider.endpoints else "",
        )
        out["rendered"] = provider.render(decision, call, number, ctx).body.decode()
    return out


def _attempt(
    runtimes: Runtimes,
    decision: Decision,
    call: InboundCall,
    number: AnyPhoneNumber,
    provider: str,
) -> Attempt | None:
    """The runtime a connect would go to first, and then, every runtime taken as healthy
    (the workers' health is theirs: `runtime.unhealthy` lines and `router_runtime_healthy`
    say which are down). Weighted choices are random: run it again for another draw."""
    outcome = decision.outcome
    if not isinstance(outcome, Connect):
        return None
    facts = {
        f"{outcome.target}Id": outcome.target_id,
        "orgId": number.org_id,
        "provider": provider,
    }
    order = plan(runtimes, facts, call.from_number, MemoryRuntimeHealth())
    return planned(runtimes, order, call.to_number)
