"""Liveness and readiness."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from router.api.edge import json_response
from router.state import METRICS, NUMBER_CACHE, STORE
from router.store.interface import StoreUnavailable

log = structlog.get_logger("router.health")
routes = web.RouteTableDef()

READY_PING_TIMEOUT_SECONDS = 1.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process serves HTTP. Never checks dependencies (a restart would not help)."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to take traffic (docs/runbook.md):

    - `ready` (200): the store answers a ping now.
    - `degraded` (200): the store does not answer, but this worker's cache holds numbers,
      so calls to them keep routing. Taking such a worker out of the load balancer would
      drop calls it can still answer; API writes get 503 meanwhile.
    - `unavailable` (503): no store and an empty cache: nothing could be routed.
    """
    try:
        async with asyncio.timeout(READY_PING_TIMEOUT_SECONDS):
            await request.app[STORE].ping()
    except (StoreUnavailable, TimeoutError) as exc:
        # The endpoint is unauthenticated: the store's address and driver error go to the
        # log, the answer says only that the store is unavailable.
        detail = exc.detail if isinstance(exc, StoreUnavailable) else "ping timed out"
        log.warning("readyz.store_unavailable", error=detail)
        cached = request.app[NUMBER_CACHE].known
        if cached:
            return json_response(
                {"status": "degraded", "store": "unavailable", "cachedNumbers": cached}
            )
        return json_response({"status": "unavailable", "store": "unavailable"}, status=503)
    return json_response({"status": "ready", "store": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition (unauthenticated, like most exporters: no secrets in it)."""
    app_metrics = request.app[METRICS]
    app_metrics.store_up.set(1 if request.app[STORE].healthy else 0)
    body, content_type = app_metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})
