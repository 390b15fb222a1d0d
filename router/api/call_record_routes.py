"""`GET /call/{callId}`: the call record the runtime reads (decision, transient config)."""

from __future__ import annotations

from aiohttp import web

from router.api.edge import json_response
from router.api.inputs import authenticate
from router.errors import not_found
from router.state import CALL_RECORDS

routes = web.RouteTableDef()


@routes.get("/call/{callId}")
async def find_one(request: web.Request) -> web.Response:
    org = authenticate(request)
    record = await request.app[CALL_RECORDS].get(org.id, request.match_info["callId"])
    if record is None:
        raise not_found("Call")
    return json_response(record.to_wire())
