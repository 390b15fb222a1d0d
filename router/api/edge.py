"""The edge of every route: errors translated into the NestJS JSON shape Vapi clients
parse, and each request counted and timed."""

from __future__ import annotations

import time
from collections.abc import Iterable
from http import HTTPStatus

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Gauge
from pydantic import ValidationError

from router.errors import ApiError, validation_messages
from router.manage.secrecy import SecretKeyError
from router.ops.metrics import Metrics
from router.state import METRICS
from router.store.interface import StoreUnavailable

log = structlog.get_logger("router.api")


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    response = json_response(error.body(), status=error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    elif error.status == 408:
        # A body too slow to arrive: `Connection: close`, never reused. aiohttp drops what
        # still comes for its lingering time (1 s, router/commands/serve.py), then closes.
        response.force_close()
    return response


def edge(
    handler: Handler,
    metrics: Metrics,
    *,
    inflight: Gauge | None = None,
    matched: bool = True,
    timed: bool = True,
) -> Handler:
    """`handler` with what every route gets at the edge: the request counted by route
    template and status, and timed; every error leaves as JSON, and bad input is never a
    500. `inflight` also counts the requests being answered now (provider webhooks);
    `matched=False` counts them as `unmatched` (the route no other route matched);
    `timed=False` leaves the timing to another histogram (the answers to calls:
    `router_decision_seconds`).

    A wrapper put on each route, not an application middleware: aiohttp then calls a
    route's handler directly, without building a middleware chain and two more coroutines
    around every webhook."""

    async def at_the_edge(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        if inflight is not None:
            inflight.inc()
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
            if inflight is not None:
                inflight.dec()
            resource = request.match_info.route.resource if matched else None
            seconds = time.perf_counter() - started if timed else None
            metrics.http_request(request.method, resource, status, seconds)

    return at_the_edge


def add_routes(app: web.Application, routes: Iterable[web.AbstractRouteDef]) -> None:
    """Add `routes` to `app`, each handler behind `edge`."""
    for route in routes:
        if not isinstance(route, web.RouteDef):  # a static directory, say: not served here
            raise TypeError(f"only plain routes are added behind the edge, not {route!r}")
        # Registered as aiohttp registers the route itself (a GET also answers HEAD).
        handler = edge(route.handler, app[METRICS])
        web.RouteDef(route.method, route.path, handler, route.kwargs).register(app.router)


def add_unmatched_route(app: web.Application) -> None:
    """The last route: any method on any path no other route has, answered 405 (with
    `Allow`) when the path is another route's but the method is not, else 404; JSON either
    way, as from any route, and counted as `unmatched`.

    Any path here means any path that starts with `/`, as every request to the API does.
    Request targets without one (`OPTIONS *`, `CONNECT host:port`, an absolute URL with
    no path) are no route's: aiohttp answers them its own plain-text 404, uncounted."""

    async def unmatched(request: web.Request) -> web.StreamResponse:
        this = request.match_info.route.resource
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if resource is not this:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    # Any character, newlines too (a path's %0A arrives decoded; `.` would not match it).
    everything = r"/{path:[\s\S]*}"
    app.router.add_route("*", everything, edge(unmatched, app[METRICS], matched=False))


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
