"""Handlers of the Phone Numbers API (seed spec operations plus the Twilio import)."""

from __future__ import annotations

import math

from aiohttp import web

from router.api.edge import json_response
from router.api.inputs import authenticate, json_body, list_query, moment
from router.state import PHONE_NUMBERS

routes = web.RouteTableDef()


@routes.post("/phone-number")
async def create(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[PHONE_NUMBERS]
    number = await service.create(org.id, await json_body(request))
    return json_response(service.present(number), status=201)


@routes.post("/phone-number/import/twilio")
async def import_twilio(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[PHONE_NUMBERS]
    number = await service.import_twilio(org.id, await json_body(request))
    return json_response(service.present(number), status=201)


@routes.get("/phone-number")
async def find_all(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[PHONE_NUMBERS]
    query, _ = list_query(request.query, paginated=False)
    numbers, _total = await service.list(org.id, query)
    return json_response([service.present(n) for n in numbers])


@routes.get("/v2/phone-number")
async def find_all_paginated(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[PHONE_NUMBERS]
    query, page = list_query(request.query, paginated=True)
    numbers, total = await service.list(org.id, query)
    total_pages = math.ceil(total / query.limit) if query.limit else 0
    metadata: dict[str, object] = {
        "itemsPerPage": query.limit,
        "totalItems": total,
        "currentPage": page,
        "totalPages": total_pages,
        "hasNextPage": page < total_pages,
        "sortOrder": "DESC" if query.descending else "ASC",
        "itemsBeyondRetention": False,
    }
    for name in ("createdAtLe", "createdAtGe"):
        value = moment(request.query, name)
        if value is not None:
            # As read, its offset made explicit (the spec's `date-time` needs one), UTC as Z.
            metadata[name] = value.isoformat().replace("+00:00", "Z")
    return json_response({"results": [service.present(n) for n in numbers], "metadata": metadata})


@routes.get("/phone-number/{id}")
async def find_one(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[PHONE_NUMBERS]
    return json_response(service.present(await service.get(org.id, request.match_info["id"])))


@routes.patch("/phone-number/{id}")
async def update(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[PHONE_NUMBERS]
    number = await service.update(org.id, request.match_info["id"], await json_body(request))
    return json_response(service.present(number))


@routes.delete("/phone-number/{id}")
async def remove(request: web.Request) -> web.Response:
    org = authenticate(request)
    service = request.app[PHONE_NUMBERS]
    return json_response(service.present(await service.delete(org.id, request.match_info["id"])))
