"""Typed application state: one `web.AppKey` per resource, defined once."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.manage.credential_service import Credentials
from router.manage.number_service import PhoneNumbers
from router.manage.orgs import Orgs
from router.models.credentials import AnyCredential
from router.models.phone_numbers import AnyPhoneNumber
from router.ops.metrics import Metrics
from router.pipeline.call_records import CallRecords
from router.pipeline.inbound import Inbound
from router.pipeline.number_cache import CredentialCache, NumberCache
from router.settings import Settings
from router.store.interface import Store

SETTINGS = web.AppKey("settings", Settings)
ORGS = web.AppKey("orgs", Orgs)
STORE = web.AppKey("store", Store)
PHONE_NUMBERS = web.AppKey("phone_numbers", PhoneNumbers)
CREDENTIALS = web.AppKey("credentials", Credentials)
NUMBER_CACHE = web.AppKey("number_cache", NumberCache[AnyPhoneNumber])
OPENAPI = web.AppKey("openapi", dict[str, Any])
CREDENTIAL_CACHE = web.AppKey("credential_cache", CredentialCache[AnyCredential])
CALL_RECORDS = web.AppKey("call_records", CallRecords)
INBOUND = web.AppKey("inbound", Inbound)
METRICS = web.AppKey("metrics", Metrics)
