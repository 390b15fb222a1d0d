"""Handlers of the minimal Credentials API (SPEC section 2)."""

from __future__ import annotations

from aiohttp import web

from router.api.edge import json_response
from router.api.inputs import authenticate, json_body, list_query
from router.state import CREDENTIALS

routes = web.RouteTableDef()


@routes.post("/credential")
async def create(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[CREDENTIALS]
    credential = await service.create(org.id, await json_body(request))
    return json_response(service.present(credential), status=201)


@routes.get("/credential")
async def find_all(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[CREDENTIALS]
    query, _ = list_query(request.query, paginated=False)
    credentials, _total = await service.list(org.id, query)
    return json_response([service.present(c) for c in credentials])


@routes.get("/credential/{id}")
async def find_one(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[CREDENTIALS]
    return json_response(service.present(await service.get(org.id, request.match_info["id"])))


@routes.patch("/credential/{id}")
async def update(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[CREDENTIALS]
    credential = await service.update(org.id, request.match_info["id"], await json_body(request))
    return json_response(service.present(credential))


@routes.delete("/credential/{id}")
async def remove(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[CREDENTIALS]
    return json_response(service.present(await service.delete(org.id, request.match_info["id"])))
