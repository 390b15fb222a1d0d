"""Liveness and readiness."""

from __future__ import annotations

from aiohttp import web

from router.api.middleware import json_response
from router.state import METRICS, STORE
from router.store.base import StoreUnavailable

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process serves HTTP. Never checks dependencies (a restart would not help)."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: the store answers a ping now."""
    try:
        await request.app[STORE].ping()
    except StoreUnavailable as exc:
        return json_response({"status": "unavailable", "store": exc.detail}, status=503)
    return json_response({"status": "ready", "store": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition (unauthenticated, like most exporters: no secrets in it)."""
    app_metrics = request.app[METRICS]
    app_metrics.store_up.set(1 if request.app[STORE].healthy else 0)
    body, content_type = app_metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})
