"""The app factory: one `create_app(settings)`; nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from router.api import call_record_routes as calls_api
from router.api import credential_routes as credentials_api
from router.api import health_routes as health_api
from router.api import number_routes as phone_numbers_api
from router.api import openapi_routes as openapi_api
from router.api.edge import add_routes, add_unmatched_route
from router.api.openapi_routes import build_document
from router.api.webhook_routes import provider_routes, twilio_sms
from router.manage.credential_service import Credentials
from router.manage.documents import Codec
from router.manage.number_service import PhoneNumbers
from router.manage.orgs import Orgs
from router.manage.secrecy import SecretBox
from router.manage.twilio_wiring import TwilioWiring
from router.models.credentials import AnyCredential
from router.models.phone_numbers import AnyPhoneNumber
from router.ops.events import Events, set_caller_mode
from router.ops.metrics import Metrics
from router.pipeline.address_policy import AddressPolicy
from router.pipeline.admission import Admission, MemoryAdmission, RedisAdmission
from router.pipeline.assistant_request import AssistantRequestClient
from router.pipeline.call_records import CallRecords, MemoryCallRecords, RedisCallRecords
from router.pipeline.inbound import Inbound
from router.pipeline.number_cache import CredentialCache, NumberCache
from router.providers import PROVIDERS
from router.runtimes.health import (
    MemoryRuntimeHealth,
    RedisRuntimeHealth,
    RuntimeHealth,
    RuntimeState,
    probe_forever,
)
from router.settings import Settings
from router.state import (
    CALL_RECORDS,
    CREDENTIAL_CACHE,
    CREDENTIALS,
    INBOUND,
    METRICS,
    NUMBER_CACHE,
    OPENAPI,
    ORGS,
    PHONE_NUMBERS,
    SETTINGS,
    STORE,
)
from router.store.interface import Store
from router.tasks import BackgroundTasks

log = structlog.get_logger("router.app")


def make_store(settings: Settings) -> Store:
    """Redis when `ROUTER_REDIS_URL` is set, else the embedded store in `ROUTER_DATA_DIR`."""
    if settings.redis_url:
        from router.store.redis_store import RedisStore

        return RedisStore(
            settings.redis_url,
            connect_retries=settings.redis_connect_retries,
            retry_delay_seconds=settings.redis_retry_delay_seconds,
        )
    from router.store.embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir)


def make_call_records(settings: Settings, store: Store) -> CallRecords:
    """Shared records in Redis; in-process ones beside the embedded store."""
    from router.store.redis_store import RedisStore

    if isinstance(store, RedisStore):
        return RedisCallRecords(store.client, settings.call_record_ttl_seconds)
    return MemoryCallRecords(settings.call_record_ttl_seconds, settings.call_records_max)


def make_admission(settings: Settings, store: Store) -> Admission:
    """Slots shared through Redis; in process beside the embedded store."""
    from router.store.redis_store import RedisStore

    if isinstance(store, RedisStore):
        return RedisAdmission(store.client, settings.admission_slot_seconds)
    return MemoryAdmission(settings.admission_slot_seconds)


def make_runtime_health(store: Store, events: Events) -> RuntimeHealth:
    """Health shared through Redis; in process beside the embedded store."""
    from router.store.redis_store import RedisStore

    def changed(name: str, healthy: bool, state: RuntimeState) -> None:
        events.runtime_health(name, healthy, state.failures, state.down_until)

    if isinstance(store, RedisStore):
        return RedisRuntimeHealth(store.client, on_change=changed)
    return MemoryRuntimeHealth(on_change=changed)


async def _runtimes_ctx(app: web.Application) -> AsyncIterator[None]:
    """Each worker keeps its snapshot of runtime health fresh, and probes the runtimes
    that have a `healthUrl`."""
    inbound = app[INBOUND]
    for name in inbound.runtimes.by_name:
        app[METRICS].runtime_healthy.labels(name).set(1 if inbound.health.healthy(name) else 0)
    probes = {
        name: runtime.health_url
        for name, runtime in inbound.runtimes.by_name.items()
        if runtime.health_url
    }
    tasks = []
    if inbound.runtimes.routes:  # without routes, health chooses nothing: nothing to read
        tasks.append(asyncio.create_task(inbound.health.run(), name="runtime-health-refresh"))
    if probes:
        tasks.append(
            asyncio.create_task(probe_forever(inbound.health, probes), name="runtime-probes")
        )
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]
    await store.start()
    log.info("store.started", backend=type(store).__name__)
    yield
    await store.close()
    log.info("store.closed", backend=type(store).__name__)


STORE_SAMPLE_SECONDS = 5.0


async def _store_health_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every worker samples its store's health into `router_store_up`, so the gauge is
    right whichever worker a scrape reaches (the scrape itself also refreshes it)."""
    store, gauge = app[STORE], app[METRICS].store_up

    async def sample() -> None:
        while True:
            gauge.set(1 if store.healthy else 0)
            await asyncio.sleep(STORE_SAMPLE_SECONDS)

    task = asyncio.create_task(sample(), name="store-health-sampler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _inbound_ctx(app: web.Application) -> AsyncIterator[None]:
    inbound = app[INBOUND]
    inbound.loop = asyncio.get_running_loop()
    await inbound.requests.start()
    yield
    # In-flight webhooks have finished (aiohttp waits for handlers first); forwards get
    # a short grace, then the HTTP client closes.
    await inbound.tasks.close(grace_seconds=2.0)
    await inbound.requests.close()
    inbound.loop = None


def create_app(settings: Settings, *, store: Store | None = None) -> web.Application:
    """The worker's aiohttp application over one settings object."""
    # No application middleware: each route gets `edge` (errors, metrics) of its own.
    app = web.Application(client_max_size=settings.max_body_bytes)
    the_store = store if store is not None else make_store(settings)
    codec = Codec(
        SecretBox(settings.secret_key.get_secret_value() if settings.secret_key else None)
    )
    credentials = Credentials(the_store, codec)
    wiring = TwilioWiring.from_settings(settings, credentials)  # None unless switched on
    addresses = AddressPolicy.for_settings(settings)  # where servers may be (no SSRF)
    phone_numbers = PhoneNumbers(
        the_store,
        codec,
        credentials,
        sip_domain=settings.sip_domain,
        wiring=wiring,
        addresses=addresses,
    )
    orgs = Orgs(settings.all_orgs())
    if not orgs.has_keys:
        log.warning("api.no_keys", detail="no API keys configured: the API refuses every request")

    metrics = Metrics()
    the_store.on_invalidation(lambda _: metrics.cache_invalidations.inc(), metrics.cache_resets.inc)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[ORGS] = orgs
    app[STORE] = the_store
    app[CREDENTIALS] = credentials
    app[PHONE_NUMBERS] = phone_numbers
    app[NUMBER_CACHE] = NumberCache[AnyPhoneNumber](the_store, phone_numbers.from_doc)
    app[CREDENTIAL_CACHE] = CredentialCache[AnyCredential](the_store, credentials.from_doc)
    app[CALL_RECORDS] = make_call_records(settings, the_store)
    app[OPENAPI] = build_document()
    set_caller_mode(settings.log_caller)
    events = Events(metrics)
    app[INBOUND] = Inbound(
        settings=settings,
        orgs=orgs,
        numbers=app[NUMBER_CACHE],
        credentials=app[CREDENTIAL_CACHE],
        records=app[CALL_RECORDS],
        requests=AssistantRequestClient.for_settings(settings, addresses),
        tasks=BackgroundTasks(),
        events=events,
        runtimes=settings.runtimes(),
        health=make_runtime_health(the_store, events),
        admission=make_admission(settings, the_store),
    )

    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_store_health_ctx)
    app.cleanup_ctx.append(_inbound_ctx)
    app.cleanup_ctx.append(_runtimes_ctx)
    if wiring is not None:
        app.cleanup_ctx.append(wiring.lifespan)
    for api_routes in (
        phone_numbers_api.routes,
        credentials_api.routes,
        openapi_api.routes,
        health_api.routes,
        calls_api.routes,
    ):
        add_routes(app, api_routes)
    for provider in PROVIDERS.values():
        app.add_routes(provider_routes(provider, app[INBOUND]))
    add_routes(app, [web.post("/twilio/sms", twilio_sms)])
    add_unmatched_route(app)  # last: it matches any path
    return app
