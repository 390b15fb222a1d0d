"""Provider plug-ins, by the name used in webhook paths, logs and metrics.

Adding a provider: one module implementing `Provider`, and one entry below.
"""

from __future__ import annotations

from typing import Final

from router.providers.plivo import PlivoProvider
from router.providers.plugin import (
    MalformedWebhook,
    Provider,
    RenderContext,
    Rendered,
    StatusEvent,
    VerificationFailed,
    WebhookRequest,
)
from router.providers.sip import SipProvider
from router.providers.telnyx import TelnyxProvider
from router.providers.twilio import TwilioProvider
from router.providers.vonage import VonageProvider

PROVIDERS: Final[dict[str, Provider]] = {
    provider.name: provider
    for provider in (
        TwilioProvider(),
        TelnyxProvider(),
        VonageProvider(),
        PlivoProvider(),
        SipProvider(),
    )
}

__all__ = [
    "PROVIDERS",
    "MalformedWebhook",
    "Provider",
    "RenderContext",
    "Rendered",
    "StatusEvent",
    "VerificationFailed",
    "WebhookRequest",
]
