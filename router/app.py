"""The app factory: one `create_app(settings)`; nothing happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from router.api import credentials as credentials_api
from router.api import health as health_api
from router.api import openapi as openapi_api
from router.api import phone_numbers as phone_numbers_api
from router.api.middleware import error_middleware
from router.api.openapi import build_document
from router.cache import NumberCache
from router.credentials import Credentials
from router.models.phone_numbers import AnyPhoneNumber
from router.orgs import Orgs
from router.phone_numbers import PhoneNumbers
from router.records import Codec
from router.secrets import SecretBox
from router.settings import Settings
from router.state import CREDENTIALS, NUMBER_CACHE, OPENAPI, ORGS, PHONE_NUMBERS, SETTINGS, STORE
from router.store.base import Store

log = structlog.get_logger("router.app")


def make_store(settings: Settings) -> Store:
    """Redis when `ROUTER_REDIS_URL` is set, else the embedded store in `ROUTER_DATA_DIR`."""
    if settings.redis_url:
        from router.store.redis import RedisStore

        return RedisStore(
            settings.redis_url,
            connect_retries=settings.redis_connect_retries,
            retry_delay_seconds=settings.redis_retry_delay_seconds,
        )
    from router.store.embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]
    await store.start()
    log.info("store.started", backend=type(store).__name__)
    yield
    await store.close()
    log.info("store.closed", backend=type(store).__name__)


def create_app(settings: Settings, *, store: Store | None = None) -> web.Application:
    """The worker's aiohttp application over one settings object."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
    the_store = store if store is not None else make_store(settings)
    codec = Codec(
        SecretBox(settings.secret_key.get_secret_value() if settings.secret_key else None)
    )
    credentials = Credentials(the_store, codec)
    phone_numbers = PhoneNumbers(the_store, codec, credentials, sip_domain=settings.sip_domain)
    orgs = Orgs(settings.all_orgs())
    if not orgs.has_keys:
        log.warning("api.no_keys", detail="no API keys configured: the API refuses every request")

    app[SETTINGS] = settings
    app[ORGS] = orgs
    app[STORE] = the_store
    app[CREDENTIALS] = credentials
    app[PHONE_NUMBERS] = phone_numbers
    app[NUMBER_CACHE] = NumberCache[AnyPhoneNumber](the_store, phone_numbers.from_doc)
    app[OPENAPI] = build_document()

    app.cleanup_ctx.append(_store_ctx)
    app.add_routes(phone_numbers_api.routes)
    app.add_routes(credentials_api.routes)
    app.add_routes(openapi_api.routes)
    app.add_routes(health_api.routes)
    return app
