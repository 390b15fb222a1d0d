"""An inbound call as every provider's parser hands it to the decision: provider-neutral."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

# A version 4 UUID's variant digit, by the random hex digit it replaces (RFC 9562: 10xx).
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_IDS_PER_READ: Final = 256


class _CallIds:
    """Random (version 4) UUIDs as strings, drawn from `os.urandom` 256 at a time.

    What `str(uuid.uuid4())` gives, at a third of its cost and one system call per 256
    ids instead of one each: every webhook gets a new id.
    """

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0
        # A forked worker must not hand out the ids its parent drew.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._hex, self._at = "", 0

    def __call__(self) -> str:
        at = self._at
        if at == 0:
            self._hex = os.urandom(16 * _IDS_PER_READ).hex()
        self._at = (at + 32) % len(self._hex)
        h = self._hex[at : at + 32]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_new_call_id = _CallIds()


# Built on every webhook and never changed after; not `frozen`, which makes construction
# several times dearer (one `object.__setattr__` call per field).
@dataclass(slots=True)
class InboundCall:
    """One ringing call, as parsed from a provider webhook.

    `received_at` is `loop.time()` when the webhook arrived (the default event loop's
    clock is `time.monotonic()`), so `received_at + budget` is the absolute deadline the
    assistant-request client takes. `wall_time` is the same moment on the wall clock
    (epoch seconds), `created_at` as the datetime the `call` object sent to servers has.
    """

    provider: str  # the webhook's provider: twilio | telnyx | vonage | sip
    provider_call_id: str  # CallSid, call_control_id (TeXML CallSid) or Vonage uuid
    from_number: str  # the caller; may be "anonymous" or a provider's withheld form
    to_number: str | None  # the called number in E.164, None for SIP-URI calls
    received_at: float
    sip_uri: str | None = None  # the called SIP URI, for vapi / byo numbers
    account_id: str | None = None  # AccountSid, Telnyx connection, Vonage api key
    params: Mapping[str, Any] = field(default_factory=dict)  # the provider's raw fields
    id: str = field(default_factory=_new_call_id)  # router's call id (Vapi's `call.id`)
    wall_time: float = field(default_factory=time.time)

    @property
    def created_at(self) -> datetime:
        """`wall_time` as a UTC datetime: made only for the calls that need it (an
        assistant-request, a SIP edge's answer), not on every webhook."""
        return datetime.fromtimestamp(self.wall_time, UTC)

    @property
    def transport(self) -> str:
        """Vapi's `phoneCallTransport`: calls through the SIP edge are `sip`, others `pstn`."""
        return "sip" if self.provider == "sip" else "pstn"
