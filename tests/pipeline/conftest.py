"""Fixtures for the routing tests: a stand-in customer server and a started client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from router.pipeline.assistant_request import AssistantRequestClient

from .helpers import LOOPBACK, Customer, Received


@pytest.fixture
async def customer() -> AsyncIterator[Customer]:
    app = web.Application()
    state = Customer(url="")

    async def hook(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        state.received.append(
            Received(
                body=await request.read(),
                headers=dict(request.headers),
                at=asyncio.get_running_loop().time(),
                peer_port=peer[1] if peer else None,
            )
        )
        index = min(len(state.received), len(state.script)) - 1
        return await state.script[index](request)

    app.router.add_post("/hook", hook)
    app.router.add_post("/elsewhere", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/hook"))
    try:
        yield state
    finally:
        # Slow handlers wait on this instead of sleeping, so teardown is immediate.
        state.release.set()
        await server.close()


@pytest.fixture
async def client() -> AsyncIterator[AssistantRequestClient]:
    async with AssistantRequestClient(addresses=LOOPBACK) as started:
        yield started
