"""What `decide` returns: an outcome, the route and ended reason for logs, and a trace.

Decisions are stored in the call record and replayed when a provider retries a
webhook, so every type here round-trips through JSON (`to_dict` / `from_dict`).

Routes (the `route` field of `call.routed`, SPEC §9), one per path of SPEC §5:

- `reject`: the number is `blocked`.
- `hook`: a `call.ringing` hook (its `say`, `transfer` or `reject`), or a `call.ending`
  hook in the failure branch, ran.
- `assistant` / `squad` / `workflow`: the number's own `assistantId` / `squadId` / `workflowId`.
- `assistant-request`: the server's answer was followed: a connect, or its `destination`
  (transfer) when no `call.ending` hook overrides the forwarding.
- `fallback`: the failure branch transferred to `fallbackDestination`.
- `say`: the failure branch spoke and hung up: the apology, the server's own `error`,
  or nothing at all for an unspeakable error.
- `overflow`: the number or its org was at its `maxConcurrentCalls`: the call went to
  `overflowDestination`, or heard the apology (router extension, SPEC §12).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, get_args

from pydantic import TypeAdapter

from router.models.common import (
    CustomMessage,
    EndedReasonFilterValue,
    TransferDestination,
    TransferDestinationNumber,
    TransferDestinationSip,
)

NO_SERVER: Final = "call-start-error-neither-assistant-nor-server-set"
FAILED: Final = "assistant-request-failed"
RETURNED_ERROR: Final = "assistant-request-returned-error"
UNSPEAKABLE_ERROR: Final = "assistant-request-returned-unspeakable-error"
INVALID_ASSISTANT: Final = "assistant-request-returned-invalid-assistant"
NO_ASSISTANT: Final = "assistant-request-returned-no-assistant"
FORWARDING: Final = "assistant-request-returned-forwarding-phone-number"
RINGING_SAY: Final = "call.ringing.hook-executed-say"
RINGING_TRANSFER: Final = "call.ringing.hook-executed-transfer"
# Router extension: a `call.ringing` hook's `{"type": "reject"}` (SPEC §12).
RINGING_REJECT: Final = "call.ringing.hook-executed-reject"
ENDING_SAY: Final = "call.ending.hook-executed-say"
ENDING_TRANSFER: Final = "call.ending.hook-executed-transfer"
# Router extension: Vapi has no reason for a blocked number, ops still want one to filter on.
BLOCKED: Final = "phone-number-blocked"
# Router extension (SPEC §12): the number or its org had as many calls as it takes at once.
AT_CAPACITY: Final = "max-concurrent-calls-reached"

# The reasons that send a call to the failure branch (SPEC §5 step 5).
# Router extension: no runtime took the call (SPEC §11).
RUNTIME_UNAVAILABLE: Final = "runtime-unavailable"
FailureReason: TypeAlias = Literal[
    "call-start-error-neither-assistant-nor-server-set",
    "runtime-unavailable",
    EndedReasonFilterValue,
]
EndedReason: TypeAlias = Literal[
    FailureReason,
    "call.ringing.hook-executed-say",
    "call.ringing.hook-executed-transfer",
    "call.ringing.hook-executed-reject",
    "call.ending.hook-executed-say",
    "call.ending.hook-executed-transfer",
    "phone-number-blocked",
    "max-concurrent-calls-reached",
]
ENDED_REASONS: Final[tuple[str, ...]] = get_args(EndedReason)
Route: TypeAlias = Literal[
    "hook",
    "assistant",
    "squad",
    "workflow",
    "assistant-request",
    "fallback",
    "say",
    "reject",
    "overflow",
]
ROUTES: Final[tuple[str, ...]] = get_args(Route)
TargetKind: TypeAlias = Literal["assistant", "squad", "workflow"]

DEFAULT_TRANSFER_MESSAGE: Final = "Transferring the call now"

Destination: TypeAlias = TransferDestinationNumber | TransferDestinationSip
_DESTINATION: TypeAdapter[Destination] = TypeAdapter(TransferDestination)


def parse_destination(data: Any) -> Destination:
    """A transfer destination from its wire form; raises pydantic's ValidationError."""
    return _DESTINATION.validate_python(data)


def transfer_message(destination: Destination) -> str:
    """What is spoken before a transfer: absent → the default, `""` → silence."""
    message = destination.message
    if message is None:
        return DEFAULT_TRANSFER_MESSAGE
    if isinstance(message, CustomMessage):
        return message.text()
    return message


@dataclass(frozen=True, slots=True)
class Connect:
    """Connect the caller to the runtime, running an assistant, squad or workflow.

    `target_id` is None for a transient target; `config` then holds the server's
    `assistant` / `squad` / `workflow` object. `config` also holds any `*Overrides`.
    """

    target: TargetKind
    target_id: str | None
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transfer:
    """Speak `message` (nothing when empty), then transfer to `destination`."""

    destination: Destination
    message: str

    @classmethod
    def to(cls, destination: Destination) -> Transfer:
        return cls(destination, transfer_message(destination))


@dataclass(frozen=True, slots=True)
class Say:
    """Speak `text` and hang up; an empty text hangs up without speaking."""

    text: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Do not answer the call (not billed where the provider allows)."""


Outcome: TypeAlias = Connect | Transfer | Say | Reject


@dataclass(frozen=True, slots=True)
class AssistantRequestFacts:
    """How the assistant-request went, for the `call.routed` log event."""

    outcome: str  # "ok" or the failure: timeout | transport | http-<code> | non-json | ...
    attempts: int
    latency_ms: float
    http_status: int | None


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a call goes and why."""

    outcome: Outcome
    route: Route
    ended_reason: EndedReason | None  # None exactly when the call reaches an assistant
    trace: tuple[str, ...]
    # The step-4 reason that entered the failure branch; differs from `ended_reason`
    # when a call.ending hook ran.
    failure_reason: FailureReason | None = None
    assistant_request: AssistantRequestFacts | None = None

    @property
    def target(self) -> str | None:
        """A short name of where the call went: target id, number or SIP URI."""
        outcome = self.outcome
        if isinstance(outcome, Connect):
            return outcome.target_id
        if isinstance(outcome, Transfer):
            dest = outcome.destination
            return dest.number if isinstance(dest, TransferDestinationNumber) else dest.sip_uri
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (camelCase, like the rest of the wire)."""
        facts = self.assistant_request
        return {
            "outcome": _outcome_to_dict(self.outcome),
            "route": self.route,
            "endedReason": self.ended_reason,
            "failureReason": self.failure_reason,
            "trace": list(self.trace),
            "assistantRequest": None
            if facts is None
            else {
                "outcome": facts.outcome,
                "attempts": facts.attempts,
                "latencyMs": facts.latency_ms,
                "httpStatus": facts.http_status,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """The inverse of `to_dict`; raises ValueError on a document it did not write."""
        route = data["route"]
        ended = data.get("endedReason")
        failure = data.get("failureReason")
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}")
        if ended is not None and ended not in ENDED_REASONS:
            raise ValueError(f"unknown ended reason {ended!r}")
        if failure is not None and failure not in get_args(FailureReason):
            raise ValueError(f"unknown failure reason {failure!r}")
        raw_facts = data.get("assistantRequest")
        facts = (
            None
            if raw_facts is None
            else AssistantRequestFacts(
                outcome=str(raw_facts["outcome"]),
                attempts=int(raw_facts["attempts"]),
                latency_ms=float(raw_facts["latencyMs"]),
                http_status=raw_facts.get("httpStatus"),
            )
        )
        return cls(
            outcome=_outcome_from_dict(data["outcome"]),
            route=route,
            ended_reason=ended,
            trace=tuple(str(step) for step in data["trace"]),
            failure_reason=failure,
            assistant_request=facts,
        )


def _outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Connect):
        return {
            "kind": "connect",
            "target": outcome.target,
            "targetId": outcome.target_id,
            "config": dict(outcome.config),
        }
    if isinstance(outcome, Transfer):
        return {
            "kind": "transfer",
            "destination": outcome.destination.wire(),
            "message": outcome.message,
        }
    if isinstance(outcome, Say):
        return {"kind": "say", "text": outcome.text}
    return {"kind": "reject"}


def _outcome_from_dict(data: Mapping[str, Any]) -> Outcome:
    kind = data.get("kind")
    if kind == "connect":
        target = data["target"]
        if target not in get_args(TargetKind):
            raise ValueError(f"unknown connect target {target!r}")
        return Connect(target=target, target_id=data.get("targetId"), config=data["config"])
    if kind == "transfer":
        # The stored message is kept as resolved: a replay speaks exactly what the first did.
        return Transfer(parse_destination(data["destination"]), str(data["message"]))
    if kind == "say":
        return Say(str(data["text"]))
    if kind == "reject":
        return Reject()
    raise ValueError(f"unknown outcome kind {kind!r}")
