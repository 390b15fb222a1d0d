"""An inbound call as every provider's parser hands it to the decision: provider-neutral."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from router.models.ringing import Attestation

# Reads a provider's STIR/SHAKEN fields out of a call's `params`.
AttestationReader = Callable[[Mapping[str, Any]], Attestation]


def _new_call_id() -> str:
    """router's id for a call (Vapi's `call.id`): a random UUID."""
    return str(uuid.uuid4())


# Built on every webhook and never changed after; not `frozen`, which would set each
# field through `object.__setattr__` on every construction.
@dataclass(slots=True)
class InboundCall:
    """One ringing call, as parsed from a provider webhook.

    `received_at` is the running loop's `loop.time()` when the webhook arrived, the clock
    asyncio's timeouts use, so `received_at + budget` is the absolute deadline the
    assistant-request client takes. `wall_time` is the same moment on the wall clock
    (epoch seconds), `created_at` as the datetime the `call` object sent to servers has.
    """

    provider: str  # the webhook's provider: twilio | telnyx | vonage | plivo | sip
    provider_call_id: str  # CallSid, call_control_id (TeXML CallSid) or Vonage uuid
    from_number: str  # the caller; may be "anonymous" or a provider's withheld form
    to_number: str | None  # the called number in E.164, None for SIP-URI calls
    received_at: float
    sip_uri: str | None = None  # the called SIP URI, for vapi / byo numbers
    account_id: str | None = None  # AccountSid, Telnyx connection, Vonage api key
    params: Mapping[str, Any] = field(default_factory=dict)  # the provider's raw fields
    id: str = field(default_factory=_new_call_id)  # router's call id (Vapi's `call.id`)
    wall_time: float = field(default_factory=time.time)
    # How the provider reports STIR/SHAKEN, set by its parse; None: it reports nothing.
    # Read only when a filter asks (`attestation`), so other calls pay nothing for it.
    attestation_reader: AttestationReader | None = None

    @property
    def attestation(self) -> Attestation:
        """The STIR/SHAKEN level the provider reports: A, B, C, failed, or none."""
        read = self.attestation_reader
        return "none" if read is None else read(self.params)

    @property
    def created_at(self) -> datetime:
        """`wall_time` as a UTC datetime: made only for the calls that need it (an
        assistant-request, a SIP edge's answer), not on every webhook."""
        return datetime.fromtimestamp(self.wall_time, UTC)

    @property
    def transport(self) -> str:
        """Vapi's `phoneCallTransport`: calls through the SIP edge are `sip`, others `pstn`."""
        return "sip" if self.provider == "sip" else "pstn"
