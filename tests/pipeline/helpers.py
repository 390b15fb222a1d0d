"""Builders shared by the routing tests: numbers, calls, the customer server's state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any

from aiohttp import web

from router.models.phone_numbers import RECORD_MODELS, AnyPhoneNumber
from router.pipeline.address_policy import AddressPolicy
from router.pipeline.inbound_call import InboundCall

TWILIO_AUTH_TOKEN = "twilio-auth-token-that-must-not-leak"
SIP_PASSWORD = "sip-password-that-must-not-leak-0"
CALLER = "+14155550123"
# The stand-in customer server listens on loopback, which the client refuses by default.
LOOPBACK = AddressPolicy((ip_network("127.0.0.0/8"),))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_number(**wire: Any) -> AnyPhoneNumber:
    """A stored Twilio number (or another provider's, given `provider=`) from wire fields."""
    provider = wire.get("provider", "twilio")
    base: dict[str, Any] = {
        "id": "pn-1",
        "orgId": "org-1",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "provider": provider,
    }
    if provider == "twilio":
        base |= {
            "number": "+14155550100",
            "twilioAccountSid": "AC123",
            "twilioAuthToken": TWILIO_AUTH_TOKEN,
        }
    elif provider == "vapi":
        base |= {
            "sipUri": "sip:support@example.com",
            "authentication": {"username": "u" * 20, "password": SIP_PASSWORD},
        }
    return RECORD_MODELS[provider].model_validate(base | wire)


def make_call(**fields: Any) -> InboundCall:
    """A ringing Twilio call from CALLER to the number."""
    base: dict[str, Any] = {
        "provider": "twilio",
        "provider_call_id": "CA123",
        "from_number": CALLER,
        "to_number": "+14155550100",
        "received_at": 0.0,
        "account_id": "AC123",
    }
    return InboundCall(**(base | fields))


@dataclass
class Received:
    """One request the customer's server got."""

    body: bytes
    headers: dict[str, str]
    at: float  # loop.time() on arrival
    peer_port: int | None


@dataclass
class Customer:
    """A real local aiohttp app playing the customer's server.

    `script` answers the attempts in order; the last entry answers any further ones.
    """

    url: str
    script: list[Handler] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def reply(self, *handlers: Handler) -> None:
        self.script = list(handlers)


def respond(status: int = 200, *, json: Any = None, body: bytes | None = None) -> Handler:
    """A handler answering with a fixed status and JSON (or raw) body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if body is not None:
            return web.Response(status=status, body=body)
        if json is None:
            return web.Response(status=status)
        return web.json_response(json, status=status)

    return handler
