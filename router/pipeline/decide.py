"""Where an inbound call goes (SPEC §5): a pure function over models.

Its only I/O is the injected `assistant_request` callable, so the same code serves the
webhooks, a dry-run command and table tests. Rules the spec leaves open, decided here:

- Ringing hooks: an empty `filters` list is the same as none (matches every caller). A hook
  whose first action is a `transfer` without `destination` (or whose `do` is empty) does
  nothing, and the next hook is tried. Router's extension filters (exact callers,
  attestation, schedules: router/models/ringing.py) match like `startsWith`, all of a
  hook's filters together; its `reject` action rejects (`call.ringing.hook-executed-reject`).
- Static targets: an empty-string `assistantId` / `squadId` / `workflowId` counts as unset.
- Server: the number's `server` when it has a `url`, else the org's when it has one.
- The response, first rule that applies (any key whose value is `null` counts as absent):
  `error`: a string with non-blank text of at most 1000 characters is spoken; any other
  value (blank, too long, a number, an object...) is unspeakable. `destination`: present
  but not a valid transfer destination is `...-returned-invalid-assistant`, since Vapi
  ignores the assistant fields whenever `destination` is present. Assistant fields: any
  present routing field or `*Overrides` of the wrong shape (ids must be non-empty strings,
  transient configs and overrides objects) is `...-returned-invalid-assistant`; otherwise the
  first of assistantId, assistant, squadId, squad, workflowId, workflow wins. Unknown keys
  are ignored.
- Ending hooks: an empty `filters` list is the same as none. A hook without `do`, or whose
  `do` is a transfer without destination, is skipped and the next matching hook tried.
  When one runs, the ended reason becomes `call.ending.hook-executed-*` and the original
  reason is kept in `failure_reason`.

The trace names each step passed, in order: `blocked`; in a hook holding an extension
filter, `hooks.ringing:filter[i.j]:<what it read>:matched|unmatched` for each filter
evaluated (j: its position in `filters`); `hooks.ringing:matched[i]` / `unmatched[i]` /
`noop[i]` (i: the position in the number's `hooks` array) then `say`, `transfer` or
`reject`; `assistantId` / `squadId` / `workflowId`; `server:number|org|none`;
`assistant-request:<ok|timeout|transport|http-NNN|non-json|not-object|too-large>`;
`response:<error|unspeakable-error|destination|invalid-destination|invalid:<key>|empty|<key>>`;
`failure:<reason>`; `hooks.ending:matched[i]|unmatched[i]|noop[i]` then `say` or `transfer`;
and one of `forward`, `speak-error`, `hang-up-silently`, `fallbackDestination`, `apology`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from pydantic import ValidationError

from router.models.common import (
    PhoneNumberCallRingingHookFilter,
    PhoneNumberHookCallEnding,
    PhoneNumberHookCallRinging,
    RingingHookFilter,
    SayPhoneNumberHookAction,
    Server,
    TransferPhoneNumberHookAction,
)
from router.models.phone_numbers import AnyPhoneNumber
from router.models.ringing import (
    AttestationHookFilter,
    CallerNumberHookFilter,
    RejectPhoneNumberHookAction,
)
from router.pipeline import decision as d
from router.pipeline.decision import (
    AssistantRequestFacts,
    Connect,
    Decision,
    FailureReason,
    Reject,
    Say,
    TargetKind,
    Transfer,
    parse_destination,
)
from router.pipeline.inbound_call import InboundCall

MAX_SPOKEN_ERROR_CHARS: Final = 1000
# Vapi's precedence among the response's routing fields.
_TARGET_FIELDS: Final[tuple[tuple[str, TargetKind, bool], ...]] = (
    ("assistantId", "assistant", True),
    ("assistant", "assistant", False),
    ("squadId", "squad", True),
    ("squad", "squad", False),
    ("workflowId", "workflow", True),
    ("workflow", "workflow", False),
)
_OVERRIDE_FIELDS: Final = ("assistantOverrides", "squadOverrides", "workflowOverrides")


@dataclass(frozen=True, slots=True)
class AssistantRequestResult:
    """What the assistant-request exchange produced; `body` is set exactly when `ok`."""

    status: Literal["ok", "failed"]
    reason: str | None = None  # timeout | transport | http-<code> | non-json | not-object | ...
    body: dict[str, Any] | None = None
    attempts: int = 0
    latency_ms: float = 0.0
    http_status: int | None = None

    @property
    def outcome(self) -> str:
        return "ok" if self.status == "ok" else (self.reason or "failed")

    def facts(self) -> AssistantRequestFacts:
        return AssistantRequestFacts(self.outcome, self.attempts, self.latency_ms, self.http_status)


class AssistantRequester(Protocol):
    """Sends the assistant-request. Must not raise: every failure is a `failed` result."""

    async def __call__(
        self, server: Server, number: AnyPhoneNumber, call: InboundCall
    ) -> AssistantRequestResult: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    """The server named an assistant, squad or workflow."""

    step: str
    connect: Connect


@dataclass(frozen=True, slots=True)
class Failure:
    """A reason for the failure branch; `outcome` is what the server's own answer asks for
    when no ending hook takes over (forward, speak its error, hang up silently)."""

    step: str | None
    reason: FailureReason
    outcome: Transfer | Say | None = None


Verdict = Accepted | Failure


async def decide(
    number: AnyPhoneNumber,
    call: InboundCall,
    *,
    org_server: Server | None,
    assistant_request: AssistantRequester,
    apology: str,
) -> Decision:
    """Decide where `call` to `number` goes, exactly in the order of SPEC §5."""
    trace: list[str] = []
    if number.status == "blocked":
        trace.append("blocked")
        return Decision(Reject(), "reject", d.BLOCKED, tuple(trace))

    # Trace indexes are positions in the number's `hooks` array, as the operator wrote it.
    for index, hook in enumerate(number.hooks or ()):
        if not isinstance(hook, PhoneNumberHookCallRinging):
            continue
        filters = hook.filters
        if filters and not (
            _explained_filters_match(hook, call, index, trace)
            if hook.explains_filters
            # Vapi's `startsWith` alone: matched and traced as always, at no extra cost.
            # union-attr: a hook without extension filters holds `startsWith` filters only.
            else all(f.matches(call.from_number) for f in filters)  # type: ignore[union-attr]
        ):
            trace.append(f"hooks.ringing:unmatched[{index}]")
            continue
        action = hook.do[0] if hook.do else None
        if isinstance(action, SayPhoneNumberHookAction):
            trace += [f"hooks.ringing:matched[{index}]", "say"]
            return Decision(Say(action.exact), "hook", d.RINGING_SAY, tuple(trace))
        if isinstance(action, TransferPhoneNumberHookAction) and action.destination is not None:
            trace += [f"hooks.ringing:matched[{index}]", "transfer"]
            outcome = Transfer.to(action.destination)
            return Decision(outcome, "hook", d.RINGING_TRANSFER, tuple(trace))
        if isinstance(action, RejectPhoneNumberHookAction):
            trace += [f"hooks.ringing:matched[{index}]", "reject"]
            return Decision(Reject(), "hook", d.RINGING_REJECT, tuple(trace))
        trace.append(f"hooks.ringing:noop[{index}]")

    static: tuple[tuple[str | None, TargetKind], ...] = (
        (number.assistant_id, "assistant"),
        (number.squad_id, "squad"),
        (number.workflow_id, "workflow"),
    )
    for target_id, kind in static:
        if target_id:
            trace.append(f"{kind}Id")
            return Decision(Connect(kind, target_id), kind, None, tuple(trace))

    facts: AssistantRequestFacts | None = None
    server = _server_for(number.server, org_server, trace)
    verdict: Verdict
    if server is None:
        verdict = Failure(None, d.NO_SERVER)
    else:
        result = await assistant_request(server, number, call)
        facts = result.facts()
        trace.append(f"assistant-request:{result.outcome}")
        verdict = classify(result)
    if verdict.step is not None:
        trace.append(verdict.step)

    if isinstance(verdict, Accepted):
        return Decision(verdict.connect, "assistant-request", None, tuple(trace), None, facts)
    trace.append(f"failure:{verdict.reason}")
    return _failure_branch(number, verdict, trace, apology, facts)


def _explained_filters_match(
    hook: PhoneNumberHookCallRinging, call: InboundCall, index: int, trace: list[str]
) -> bool:
    """Whether every filter of `hook`, which holds a router extension filter, matches
    `call`; each filter evaluated is traced, up to the first that does not match."""
    for position, ringing_filter in enumerate(hook.filters or ()):
        matched, seen = _filter_verdict(ringing_filter, call)
        verdict = "matched" if matched else "unmatched"
        trace.append(f"hooks.ringing:filter[{index}.{position}]:{seen}:{verdict}")
        if not matched:
            return False
    return True


def _filter_verdict(ringing_filter: RingingHookFilter, call: InboundCall) -> tuple[bool, str]:
    """Whether one filter matches, and what it saw, for the trace: the caller's level of
    attestation, or the schedule's state and the local time it read."""
    if isinstance(ringing_filter, PhoneNumberCallRingingHookFilter):
        return ringing_filter.matches(call.from_number), "startsWith"
    if isinstance(ringing_filter, CallerNumberHookFilter):
        return ringing_filter.matches(call.from_number), "oneOf:number"
    if isinstance(ringing_filter, AttestationHookFilter):
        level = call.attestation
        return level in ringing_filter.one_of, f"oneOf:attestation={level}"
    local = ringing_filter.local_time(call.wall_time)
    state = ringing_filter.state_at(local)
    inside = state == "open"
    seen = f"schedule:{state}@{local.isoformat(timespec='minutes')}"
    return inside == (ringing_filter.match == "inside"), seen


def _server_for(own: Server | None, org: Server | None, trace: list[str]) -> Server | None:
    if own is not None and own.url:
        trace.append("server:number")
        return own
    if org is not None and org.url:
        trace.append("server:org")
        return org
    trace.append("server:none")
    return None


def classify(result: AssistantRequestResult) -> Verdict:
    """The step-4 verdict on an assistant-request result (SPEC §5, first rule that applies)."""
    body = result.body
    if result.status != "ok" or body is None:
        return Failure(None, d.FAILED)

    error = body.get("error")
    if error is not None:
        if isinstance(error, str) and error.strip() and len(error) <= MAX_SPOKEN_ERROR_CHARS:
            return Failure("response:error", d.RETURNED_ERROR, Say(error))
        return Failure("response:unspeakable-error", d.UNSPEAKABLE_ERROR, Say(""))

    destination = body.get("destination")
    if destination is not None:
        try:
            parsed = parse_destination(destination)
        except ValidationError:
            return Failure("response:invalid-destination", d.INVALID_ASSISTANT)
        return Failure("response:destination", d.FORWARDING, Transfer.to(parsed))

    for key in (*(f for f, _, _ in _TARGET_FIELDS), *_OVERRIDE_FIELDS):
        value = body.get(key)
        if value is not None and not _well_shaped(key, value):
            return Failure(f"response:invalid:{key}", d.INVALID_ASSISTANT)
    overrides = {k: body[k] for k in _OVERRIDE_FIELDS if body.get(k) is not None}
    for key, kind, is_id in _TARGET_FIELDS:
        value = body.get(key)
        if value is None:
            continue
        if is_id:
            return Accepted(f"response:{key}", Connect(kind, value, overrides))
        return Accepted(f"response:{key}", Connect(kind, None, {key: value, **overrides}))
    return Failure("response:empty", d.NO_ASSISTANT)


def _well_shaped(key: str, value: Any) -> bool:
    if key.endswith("Id"):
        return isinstance(value, str) and bool(value.strip())
    return isinstance(value, Mapping)


def _failure_branch(
    number: AnyPhoneNumber,
    verdict: Failure,
    trace: list[str],
    apology: str,
    facts: AssistantRequestFacts | None,
) -> Decision:
    reason = verdict.reason
    for index, hook in enumerate(number.hooks or ()):
        if not isinstance(hook, PhoneNumberHookCallEnding):
            continue
        if not _ending_hook_matches(hook, reason):
            trace.append(f"hooks.ending:unmatched[{index}]")
            continue
        action = hook.do
        if isinstance(action, SayPhoneNumberHookAction):
            trace += [f"hooks.ending:matched[{index}]", "say"]
            return Decision(Say(action.exact), "hook", d.ENDING_SAY, tuple(trace), reason, facts)
        if isinstance(action, TransferPhoneNumberHookAction) and action.destination is not None:
            trace += [f"hooks.ending:matched[{index}]", "transfer"]
            return Decision(
                Transfer.to(action.destination),
                "hook",
                d.ENDING_TRANSFER,
                tuple(trace),
                reason,
                facts,
            )
        trace.append(f"hooks.ending:noop[{index}]")

    if verdict.outcome is not None:
        # The server's own answer stands: forward, speak its error, or hang up silently.
        if isinstance(verdict.outcome, Transfer):
            trace.append("forward")
            return Decision(
                verdict.outcome, "assistant-request", reason, tuple(trace), reason, facts
            )
        trace.append("speak-error" if reason == d.RETURNED_ERROR else "hang-up-silently")
        return Decision(verdict.outcome, "say", reason, tuple(trace), reason, facts)

    if number.fallback_destination is not None:
        trace.append("fallbackDestination")
        outcome = Transfer.to(number.fallback_destination)
        return Decision(outcome, "fallback", reason, tuple(trace), reason, facts)
    trace.append("apology")
    return Decision(Say(apology), "say", reason, tuple(trace), reason, facts)


def _ending_hook_matches(hook: PhoneNumberHookCallEnding, reason: FailureReason) -> bool:
    if not hook.filters:
        # Only an explicit filter may override a forwarding the server asked for.
        return reason != d.FORWARDING
    return all(reason in f.one_of for f in hook.filters)


def failure_decision(
    number: AnyPhoneNumber, reason: FailureReason, *, apology: str, step: str
) -> Decision:
    """The failure branch alone (SPEC §5 step 5), e.g. for a provider's fallback URL.

    `step` names why the branch was entered, first in the trace.
    """
    return _failure_branch(
        number, Failure(None, reason), [step, f"failure:{reason}"], apology, None
    )
