"""Edge translation of errors into the NestJS JSON shape Vapi clients parse."""

from __future__ import annotations

import time
from http import HTTPStatus

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from router.errors import ApiError, validation_messages
from router.secrets import SecretKeyError
from router.state import METRICS
from router.store.base import StoreUnavailable

log = structlog.get_logger("router.api")


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    response = json_response(error.body(), status=error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request counted by route template and status, and timed; every error leaves
    as JSON, and bad input is never a 500. One middleware, not two: each one is another
    coroutine around every webhook."""
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                status = exc.status
                raise
            response = _http_error(exc)
        except Exception as exc:  # translated, and logged when it is a fault of ours
            response = _error_answer(request, exc)
        status = response.status
        return response
    finally:
        _count(request, status, time.perf_counter() - started)


def _count(request: web.Request, status: int, seconds: float) -> None:
    request.app[METRICS].http_request(
        request.method, request.match_info.route.resource, status, seconds
    )


def _http_error(exc: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx/5xx (404, 405, 413, ...) in the JSON shape."""
    phrase = HTTPStatus(exc.status).phrase
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else phrase
    if exc.status == 413:
        message = "Request body is too large"
    error = error_response(ApiError(exc.status, message))
    for name in ("Allow",):
        if name in exc.headers:
            error.headers[name] = exc.headers[name]
    return error


def _error_answer(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer for an exception a handler raised."""
    if isinstance(exc, ApiError):
        if exc.status >= 500:
            log.error("api.error", path=request.path, status=exc.status, detail=str(exc))
        return error_response(exc)
    if isinstance(exc, StoreUnavailable):
        log.warning("api.store_unavailable", path=request.path, detail=exc.detail)
        # The detail (addresses, driver messages) stays in the log; clients get the gist.
        gist = exc.detail.split(":", 1)[0]
        return error_response(ApiError(503, f"{gist}; the request was not applied, retry later"))
    if isinstance(exc, SecretKeyError):
        # An operator fault (another ROUTER_SECRET_KEY), not bad input: said plainly.
        log.error("api.error", path=request.path, status=500, detail=str(exc))
        return error_response(ApiError(500, f"stored secrets cannot be read: {exc}"))
    if isinstance(exc, ValidationError):
        return error_response(ApiError(400, validation_messages(exc)))
    # A fault of ours, not bad input: logged once here, answered in the shape clients parse.
    log.error(
        "api.unhandled_error",
        method=request.method,
        path=request.path,
        exc_info=exc,
    )
    return error_response(ApiError(500, "Internal server error"))
