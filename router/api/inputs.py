"""Reading requests: bearer auth, JSON bodies and list query parameters."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from aiohttp import web
from multidict import MultiMapping

from router.errors import ApiError, bad_request
from router.settings import OrgConfig
from router.state import ORGS, SETTINGS
from router.store.interface import ListQuery, to_micros

log = structlog.get_logger("router.api")

JSON_TYPES = ("application/json",)


def authenticate(request: web.Request) -> OrgConfig:
    """The org of the request's bearer key; 401 otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "Unauthorized: send Authorization: Bearer <API key>")
    org = request.app[ORGS].authenticate(key.strip()) if _is_utf8(key) else None
    if org is None:
        raise ApiError(401, "Unauthorized: the API key is not valid")
    return org


def _is_utf8(header_value: str) -> bool:
    """Whether a header value arrived as UTF-8.

    aiohttp keeps a header's other bytes as lone surrogates, which strict UTF-8 (what API
    keys are hashed as) cannot encode: such a value is no key of ours, never a 500.
    """
    try:
        header_value.encode()
    except UnicodeEncodeError:
        return False
    return True


async def json_body(request: web.Request) -> Any:
    """The parsed JSON body: 415 for another content type, 400 for malformed JSON."""
    ctype = request.content_type
    if ctype not in JSON_TYPES and not (
        ctype.startswith("application/") and ctype.endswith("+json")
    ):
        raise ApiError(415, f"Content-Type must be application/json, not {ctype or 'missing'}")
    raw = await read_body(request, request.app[SETTINGS].request_body_timeout_seconds)
    if not raw.strip():
        raise bad_request("body must be a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from None


async def read_body(request: web.Request, timeout_seconds: float) -> bytes:
    """The whole body, or 408 when it has not arrived within `timeout_seconds`.

    aiohttp waits for a body as long as bytes keep coming; a client sending one every few
    seconds would hold the connection, its descriptor and a task for minutes. The 408
    ends the connection (`error_response`) at most a second later (the lingering time of
    router/commands/serve.py): the rest of that body is not waited for.
    """
    try:
        async with asyncio.timeout(timeout_seconds):
            return await request.read()
    except TimeoutError:
        log.warning(
            "request.body_timeout",
            method=request.method,
            path=request.path,
            timeout_seconds=timeout_seconds,
            content_length=request.content_length,
            received_bytes=request.content.total_bytes,
        )
        raise ApiError(
            408, f"Request Timeout: the body did not arrive within {timeout_seconds:g} s"
        ) from None


def _number(query: MultiMapping[str], name: str, default: int, low: int, high: int | None) -> int:
    """The whole number `name` of a listing, `default` when absent. Present but empty
    (`?limit=`) is no number: a 400, as an empty date is (schemathesis found it taken)."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{name} must be a number") from None
    if not math.isfinite(value) or value != int(value):
        raise bad_request(f"{name} must be a whole number")
    if value < low:
        raise bad_request(f"{name} must not be less than {low}")
    if high is not None and value > high:
        raise bad_request(f"{name} must not be greater than {high}")
    return int(value)


def moment(query: MultiMapping[str], name: str) -> datetime | None:
    """The time filter `name` of a listing (UTC unless it says otherwise), None if absent.
    Present but empty (`?updatedAtLt=`) is no date: a 400, as the API's validators say."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace(" ", "+"))  # a bare + in a query is a space
    except ValueError:
        raise bad_request(f"{name} must be a valid ISO 8601 date string") from None
    offset = value.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        # Python reads `+01:00:30`; no date-time of the API (RFC 3339) can carry it.
        raise bad_request(f"{name} must have an offset in whole minutes")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _micros(query: MultiMapping[str], name: str) -> int | None:
    value = moment(query, name)
    return None if value is None else to_micros(value)


TIME_FILTERS = (
    "createdAtGt",
    "createdAtLt",
    "createdAtGe",
    "createdAtLe",
    "updatedAtGt",
    "updatedAtLt",
    "updatedAtGe",
    "updatedAtLe",
)


def list_query(query: MultiMapping[str], *, paginated: bool) -> tuple[ListQuery, int]:
    """The store query of `GET /phone-number` (or `/v2/...` when paginated) and the page."""
    limit = _number(query, "limit", 100, 0, 1000)
    times = {name: _micros(query, name) for name in TIME_FILTERS}
    page, descending, search = 1, True, None
    if paginated:
        page = _number(query, "page", 1, 1, 1_000_000_000)
        order = query.get("sortOrder", "DESC")
        if order not in ("ASC", "DESC"):
            raise bad_request("sortOrder must be one of the following values: ASC, DESC")
        descending = order == "DESC"
        sort_by = query.get("sortBy", "createdAt")
        if sort_by not in ("createdAt", "duration", "cost"):
            raise bad_request(
                "sortBy must be one of the following values: createdAt, duration, cost"
            )
        search = query.get("search") or None
        if search is not None and len(search) > 100:
            raise bad_request("search must be shorter than or equal to 100 characters")
    return (
        ListQuery(
            created_gt=times["createdAtGt"],
            created_lt=times["createdAtLt"],
            created_ge=times["createdAtGe"],
            created_le=times["createdAtLe"],
            updated_gt=times["updatedAtGt"],
            updated_lt=times["updatedAtLt"],
            updated_ge=times["updatedAtGe"],
            updated_le=times["updatedAtLe"],
            search=search,
            descending=descending,
            offset=(page - 1) * limit,
            limit=limit,
        ),
        page,
    )
