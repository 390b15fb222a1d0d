"""The inbound pipeline, provider-neutral:

    webhook → verify → parse → look up (cache) → decide → render → log `call.routed`

Every answer leaves inside the provider's budget: the assistant-request is given the
budget less a render margin, and a hard timeout behind it turns whatever is still
pending into the failure branch. A provider retry of a call id that took an
assistant-request replays the stored decision, on any worker, also while the first
attempt is still deciding (a per-call lock in Redis, a future within the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog

from router.manage.orgs import Orgs
from router.manage.secrecy import SecretKeyError
from router.models.credentials import AnyCredential
from router.models.phone_numbers import AnyPhoneNumber
from router.ops.events import Events
from router.pipeline import decision as reasons
from router.pipeline.admission import Admission, MemoryAdmission, overflow_decision
from router.pipeline.assistant_request import AssistantRequestClient, public_number
from router.pipeline.call_records import (
    CallOwnedElsewhere,
    CallRecord,
    CallRecords,
    ExpiringTable,
    StatusUpdate,
)
from router.pipeline.decide import AssistantRequestResult, decide, failure_decision
from router.pipeline.decision import Connect, Decision, Reject, Say, Transfer
from router.pipeline.inbound_call import InboundCall
from router.pipeline.number_cache import CredentialCache, NumberCache
from router.providers.plugin import (
    AttemptResult,
    Provider,
    RenderContext,
    Rendered,
    RuntimeCallbacks,
    StatusEvent,
    origin,
)
from router.runtimes.attempts import Attempt, only, planned
from router.runtimes.choice import plan
from router.runtimes.config import DEFAULT_RUNTIME, Runtimes
from router.runtimes.health import MemoryRuntimeHealth, RuntimeHealth
from router.settings import Settings
from router.store.interface import StoreUnavailable
from router.tasks import BackgroundTasks

log = structlog.get_logger("router.pipeline.inbound")

# Time kept back from the budget to render and send the answer.
RENDER_MARGIN_SECONDS: Final = 0.2
# The most a runtime callback waits on the store for one note (and health report): a
# stuck store costs the caller no more than this before the answer goes out.
NOTE_SECONDS: Final = 1.0
# The most an admission (or a release) waits on the store; then the call is admitted.
ADMISSION_SECONDS: Final = 1.0
# This worker's own copy of the runtime notes: long enough for a stream to fail and its
# action to follow, few enough to stay small.
NOTES_HERE_SECONDS: Final = 600.0
NOTES_HERE_KEPT: Final = 20_000
# How often a retry waiting for another worker's decision looks for it.
POLL_SECONDS: Final = 0.025
STATUS_FORWARD_TIMEOUT_SECONDS: Final = 5.0
# Numbers whose fixed decision (no hooks, no assistant-request) is kept, per worker.
FIXED_DECISIONS_KEPT: Final = 4096
# The field of a runtimes route's `match` a connect's target is matched on.
_MATCH_FIELD: Final = {"assistant": "assistantId", "squad": "squadId", "workflow": "workflowId"}


class _Probe:
    """An assistant-request stand-in that only notes it was needed: static decisions
    never call it, so they are made with no I/O at all."""

    called = False

    async def __call__(self, *_: Any) -> AssistantRequestResult:
        self.called = True
        return AssistantRequestResult("failed", "probe")


async def _timed_out(*_: Any) -> AssistantRequestResult:
    return AssistantRequestResult("failed", "timeout")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decided call: the decision and how it was reached, for the log."""

    decision: Decision
    replayed: bool = False


class Inbound:
    """Runs the pipeline for every provider; one per app."""

    def __init__(
        self,
        *,
        settings: Settings,
        orgs: Orgs,
        numbers: NumberCache[AnyPhoneNumber],
        credentials: CredentialCache[AnyCredential],
        records: CallRecords,
        requests: AssistantRequestClient,
        tasks: BackgroundTasks,
        events: Events,
        runtimes: Runtimes | None = None,
        health: RuntimeHealth | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.settings = settings
        self.runtimes = runtimes or settings.runtimes()
        self.health = health or MemoryRuntimeHealth()
        self.admission = admission or MemoryAdmission(settings.admission_slot_seconds)
        self.orgs = orgs
        self.numbers = numbers
        self.credentials = credentials
        self.records = records
        self.requests = requests
        self.tasks = tasks
        self.events = events
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        # The app's event loop, while the app runs (set by its cleanup context).
        self.loop: asyncio.AbstractEventLoop | None = None
        # By number id: the number object a fixed decision was made for, and the outcome.
        self._fixed: dict[str, tuple[AnyPhoneNumber, Outcome]] = {}
        # This worker's copy of the runtime notes it wrote, for when the store is away.
        self._notes_here: ExpiringTable[tuple[str, str], frozenset[str]] = ExpiringTable(
            NOTES_HERE_SECONDS, NOTES_HERE_KEPT
        )

    # --- the steps ----------------------------------------------------------------------------

    def loop_time(self) -> float:
        """The running loop's clock, which deadlines are on. The loop is noted when the app
        starts: asking asyncio for it costs a system call (getpid) in Python 3.11."""
        return (self.loop or asyncio.get_running_loop()).time()

    def cached_number(self, key: str | None) -> tuple[bool, AnyPhoneNumber | None]:
        """`(True, number)` when no I/O is needed: a warm cache entry (a hit), or no key
        to look up (the provider's request names no number); else `(False, None)`, and
        `lookup` must read the store."""
        if key is None:
            return True, None
        cached, number = self.numbers.peek(key)
        if cached:
            self.events.lookup(True)
        return cached, number

    async def lookup(
        self, provider: Provider, keys: Sequence[str]
    ) -> tuple[AnyPhoneNumber | None, bool]:
        """The number the first of `keys` names (a key, then an older form of it), read
        through the cache, and whether the cache answered. Every read shares one timeout,
        so the answer stays inside the provider's budget however many keys are tried, and
        a read that fails ends the search: a store that is down is not asked again."""
        hits = self.numbers.hits
        number: AnyPhoneNumber | None = None
        timeout = min(2.0, provider.budget_seconds(self.settings) / 3)
        try:
            async with asyncio.timeout(timeout):
                number = await self.numbers.get_first(keys)
        except (StoreUnavailable, TimeoutError):
            log.warning("webhook.lookup_failed", provider=provider.name, lookup_key=keys[0])
            return None, False
        except SecretKeyError as exc:
            # A stored number router cannot read (e.g. secrets under another ROUTER_SECRET_KEY).
            log.error(
                "webhook.number_unreadable",
                provider=provider.name,
                lookup_key=keys[0],
                detail=str(exc),
            )
            return None, False
        hit = self.numbers.hits > hits
        self.events.lookup(hit)
        return number, hit

    def cached_credentials(self, number: AnyPhoneNumber) -> Sequence[AnyCredential] | None:
        """The number's org's credentials when the cache holds them fresh (no I/O), else None."""
        return self.credentials.peek(number.org_id)

    async def credentials_of(self, number: AnyPhoneNumber) -> Sequence[AnyCredential]:
        """The number's org's credentials, read through the cache. Without the store,
        verification uses what the number holds, or fails closed: none."""
        with contextlib.suppress(StoreUnavailable):
            return await self.credentials.for_org(number.org_id)
        return ()

    def fixed(self, number: AnyPhoneNumber) -> Outcome | None:
        """The decision of a number whose calls all go one way (no hooks, no
        assistant-request), once it was made for this number object; else None."""
        kept = self._fixed.get(number.id)
        if kept is not None and kept[0] is number:
            return kept[1]  # shared by every call: outcomes are never changed
        return None

    async def decide(
        self, provider: Provider, number: AnyPhoneNumber, call: InboundCall
    ) -> Outcome:
        """The decision for `call`, inside the provider's budget."""
        fixed = self.fixed(number)
        if fixed is not None:
            return fixed
        probe = _Probe()
        decision = await self._decide(number, call, probe)
        if not probe.called:
            if not number.hooks:
                # Without hooks, nothing but the number decides (blocked, or its static
                # target): the same decision for every call until the number changes,
                # which gives the cache a new number object. Decisions are immutable.
                if len(self._fixed) >= FIXED_DECISIONS_KEPT:
                    self._fixed.clear()
                self._fixed[number.id] = (number, Outcome(decision))
            return Outcome(decision)
        deadline = call.received_at + provider.budget_seconds(self.settings)
        return await self._coordinated(number, call, deadline)

    def fallback(self, number: AnyPhoneNumber) -> Decision:
        """The provider's fallback URL: straight to the failure branch, no assistant-request
        (a blocked number stays rejected)."""
        if number.status == "blocked":
            return Decision(Reject(), "reject", reasons.BLOCKED, ("fallback-url", "blocked"))
        return failure_decision(
            number, reasons.FAILED, apology=self.settings.apology_message, step="fallback-url"
        )

    def apology(self) -> Decision:
        """What a call gets when router itself failed: the apology, then hang up."""
        return Decision(Say(self.settings.apology_message), "say", reasons.FAILED, ("error",))

    # --- admission (SPEC §12) ------------------------------------------------------------

    def capped(self, number: AnyPhoneNumber) -> bool:
        """Whether the number or its org has a cap (no I/O: asked on every call)."""
        return self.caps(number) != (None, None)

    def caps(self, number: AnyPhoneNumber) -> tuple[int | None, int | None]:
        """The number's and its org's `maxConcurrentCalls` (None: no cap)."""
        org = self.orgs.get(number.org_id)
        return number.max_concurrent_calls, org.max_concurrent_calls if org else None

    async def admit(
        self, provider: Provider, number: AnyPhoneNumber, call: InboundCall, outcome: Outcome
    ) -> Outcome:
        """A call router connects or transfers takes a slot of its number and org when they
        have caps; at a cap it goes to the overflow decision instead. A store that cannot
        count within its bound admits the call: a cap is not worth a dropped call."""
        number_cap, org_cap = self.caps(number)
        if (number_cap is None and org_cap is None) or not isinstance(
            outcome.decision.outcome, Connect | Transfer
        ):
            return outcome
        call_id = call.provider_call_id
        # Inside the provider's budget, whatever the decision took of it already.
        deadline = call.received_at + provider.budget_seconds(self.settings)
        limit = min(deadline - RENDER_MARGIN_SECONDS, self.loop_time() + ADMISSION_SECONDS)
        try:
            async with asyncio.timeout_at(limit):
                slots = await self.admission.admit(
                    number.org_id, number.id, call_id, number_cap=number_cap, org_cap=org_cap
                )
        except (StoreUnavailable, TimeoutError):
            log.warning("admission.unavailable", call_id=call_id, phone_number_id=number.id)
            return outcome
        self.events.slots(number, slots.number_in_use, slots.org_in_use)
        if slots.verdict == "admitted":
            return outcome
        scope, cap = ("number", number_cap) if slots.verdict == "number-full" else ("org", org_cap)
        self.events.overflow(provider.name, call_id, number, scope, cap)
        decision = overflow_decision(
            number,
            slots.verdict,
            self.settings.apology_message,
            facts=outcome.decision.assistant_request,
        )
        return Outcome(decision)

    async def _give_back(self, number: AnyPhoneNumber, call_id: str) -> None:
        """The call ended: its slots go back (under caps only)."""
        if not self.capped(number):
            return
        try:
            async with asyncio.timeout(ADMISSION_SECONDS):
                in_number, in_org = await self.admission.release(number.org_id, number.id, call_id)
        except (StoreUnavailable, TimeoutError):
            log.warning("admission.release_failed", call_id=call_id, phone_number_id=number.id)
            return  # the slot expires on its own
        self.events.slots(number, in_number, in_org)

    def attempt(
        self, provider: Provider, decision: Decision, call: InboundCall, number: AnyPhoneNumber
    ) -> Attempt | None:
        """The runtime a connected call goes to first, and the ones after it; None for
        a decision that connects nothing. Local only: no I/O (health is a snapshot)."""
        outcome = decision.outcome
        if not isinstance(outcome, Connect):
            return None
        runtimes = self.runtimes
        # An attribute, not `isinstance` of the runtime-checkable protocol: that checks
        # every member of the protocol, some microseconds on every call.
        named = getattr(provider, "callbacks_name_the_call", False)
        call_id = call.provider_call_id if named else None
        if not runtimes.routes and call_id is None:
            return only(DEFAULT_RUNTIME, call.to_number)
        if not runtimes.routes:
            return planned(runtimes, (DEFAULT_RUNTIME,), call.to_number, call_id)
        facts = {
            _MATCH_FIELD[outcome.target]: outcome.target_id,
            "orgId": number.org_id,
            "provider": provider.name,
        }
        order = plan(runtimes, facts, call.from_number, self.health)
        return planned(runtimes, order, call.to_number, call_id)

    def render(
        self,
        provider: Provider,
        decision: Decision,
        call: InboundCall,
        number: AnyPhoneNumber,
        attempt: Attempt | None = None,
        request_url: str = "",
    ) -> Rendered:
        """The provider's document; a connect goes to `attempt`'s runtime, with the
        callbacks that tell router whether it took the call where the provider has them.
        `request_url` is the webhook's signed URL: without `ROUTER_PUBLIC_URL`, its scheme
        and host are where a provider that needs absolute callback URLs is pointed."""
        runtime = None if attempt is None else self.runtimes.by_name.get(attempt.runtime)
        callbacks = ""
        if attempt is not None and "connect" in provider.endpoints:
            callbacks = attempt.query()
        public_base = self.settings.public_url or ""
        ctx = RenderContext(
            runtime_url=self.settings.runtime_url,
            call_id=call.provider_call_id,
            public_base=public_base,
            runtime=runtime,
            callbacks=callbacks,
            request_base="" if public_base or not callbacks else origin(request_url),
        )
        return provider.render(decision, call, number, ctx)

    # --- runtime callbacks --------------------------------------------------------------------

    async def stream_event(
        self, number: AnyPhoneNumber, call_id: str, runtime: str, event: str
    ) -> None:
        """A stream's status callback, noted for its `<Connect>` action: `started` is the
        runtime taking the call (and a health success), `error` is it failing (the action
        that follows moves the call on)."""
        if event == "stopped":
            return
        deadline = self.loop_time() + NOTE_SECONDS * 2
        first = await self._noted(number, call_id, f"{runtime}:{event}", deadline)
        if first and event == "started":
            await self._report(runtime, taken=True, deadline=deadline)

    async def after_attempt(
        self,
        provider: Provider,
        number: AnyPhoneNumber,
        call: InboundCall,
        attempt: Attempt,
        result: AttemptResult,
        request_url: str = "",
    ) -> Rendered:
        """The answer to a runtime's `connect` callback: hang up after a conversation (or a
        caller who left); when the runtime did not take the call, the next runtime of the
        attempt, else the failure branch with `runtime-unavailable`."""
        assert isinstance(provider, RuntimeCallbacks)
        call_id = call.provider_call_id
        # Notes and health reports get a bounded share of the provider's budget; the rest
        # is the decision's, which keeps its own deadline.
        deadline = call.received_at + NOTE_SECONDS * 2
        if result == "ask-stream":
            result = await self._stream_result(number, call_id, attempt.runtime, deadline)
        if result in ("gone", "pending"):
            return provider.finished()
        # A repeated callback (or a second event of the same leg) is reported once.
        note = f"{attempt.runtime}:{'started' if result == 'taken' else 'failed'}"
        first = await self._noted(number, call_id, note, deadline)
        if first:
            await self._report(attempt.runtime, taken=result == "taken", deadline=deadline)
        if result == "taken":
            return provider.finished()
        decision = (await self.decide(provider, number, call)).decision
        following = attempt.following(
            self.runtimes, {name: self.health.healthy(name) for name in attempt.next}
        )
        if following is not None and isinstance(decision.outcome, Connect):
            then, to = decision, following.runtime
        else:
            then, to = (
                failure_decision(
                    number,
                    reasons.RUNTIME_UNAVAILABLE,
                    apology=self.settings.apology_message,
                    step=f"runtime-unavailable:{attempt.runtime}",
                ),
                None,
            )
        if first:  # a repeated callback gets the same answer, logged and counted once
            self.events.runtime_failover(
                provider=provider.name,
                call_id=call_id,
                number=number,
                runtime=attempt.runtime,
                to=to,
                decision=None if to is not None else then,
            )
        return self.render(
            provider, then, call, number, following if to is not None else None, request_url
        )

    async def _stream_result(
        self, number: AnyPhoneNumber, call_id: str, runtime: str, deadline: float
    ) -> AttemptResult:
        """Whether the stream of `runtime` took the call, as its status callbacks noted: it
        started and reported no error (SPEC §11: an action with no `stream-started`, or
        after a `stream-error`, is a runtime that did not take the call; one that broke
        off mid-conversation moves the caller on too). When the store cannot say, this
        worker's own notes do (a call's callbacks often reach one worker); when neither
        can, only a seen error counts: a conversation that took place is never followed
        by a fallback on a guess."""
        started, error = f"{runtime}:started", f"{runtime}:error"
        try:
            async with asyncio.timeout_at(min(deadline, self.loop_time() + NOTE_SECONDS)):
                notes = await self.records.runtime_notes(number.org_id, call_id)
        except (StoreUnavailable, TimeoutError):
            log.warning("runtime.notes_unreadable", call_id=call_id)
            notes = self._notes_here.get((number.org_id, call_id)) or frozenset()
            return "refused" if error in notes else "taken"
        return "taken" if started in notes and error not in notes else "refused"

    async def _noted(
        self, number: AnyPhoneNumber, call_id: str, note: str, deadline: float
    ) -> bool:
        """Note it (here too); whether it is new (also when it could not be noted: counted
        rather than lost)."""
        key = (number.org_id, call_id)
        self._notes_here.put(key, (self._notes_here.get(key) or frozenset()) | {note})
        try:
            async with asyncio.timeout_at(min(deadline, self.loop_time() + NOTE_SECONDS)):
                return await self.records.note_runtime(number.org_id, call_id, note)
        except (StoreUnavailable, TimeoutError):
            log.warning("runtime.note_failed", call_id=call_id, note=note)
            return True

    async def _report(self, runtime: str, *, taken: bool, deadline: float) -> None:
        self.events.runtime_attempt(runtime, taken)
        try:
            async with asyncio.timeout_at(max(deadline, self.loop_time() + 0.05)):
                await self.health.report(runtime, taken)
        except TimeoutError:
            log.warning("runtime.health_unshared", runtime=runtime, error="timeout")

    # --- deciding once per call id ------------------------------------------------------------

    async def _decide(self, number: AnyPhoneNumber, call: InboundCall, requester: Any) -> Decision:
        return await decide(
            number,
            call,
            org_server=self.orgs.server(number.org_id),
            assistant_request=requester,
            apology=self.settings.apology_message,
        )

    async def _coordinated(
        self, number: AnyPhoneNumber, call: InboundCall, deadline: float
    ) -> Outcome:
        call_id = call.provider_call_id
        hard_stop = deadline - RENDER_MARGIN_SECONDS / 2
        # Scoped to the number: a call id alone must not join another number's decision.
        inflight_key = f"{number.id}:{call_id}"
        pending = self._inflight.get(inflight_key)
        if pending is not None:
            try:
                async with asyncio.timeout_at(hard_stop):
                    first = await asyncio.shield(pending)
                return Outcome(first.decision, replayed=True)
            except TimeoutError:
                return Outcome(await self._decide(number, call, _timed_out))
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[inflight_key] = future
        try:
            try:
                async with asyncio.timeout_at(hard_stop):
                    outcome = await self._once(number, call, deadline - RENDER_MARGIN_SECONDS)
            except TimeoutError:
                outcome = Outcome(await self._decide(number, call, _timed_out))
            except Exception:
                log.exception("inbound.decide_failed", call_id=call_id)
                outcome = Outcome(self._failure(number, "internal-error"))
            future.set_result(outcome)
            return outcome
        finally:
            if not future.done():
                future.set_result(Outcome(self.apology()))
            self._inflight.pop(inflight_key, None)

    async def _once(self, number: AnyPhoneNumber, call: InboundCall, deadline: float) -> Outcome:
        """Replay a decision any worker made for this call id, or make it under a lock."""
        call_id = call.provider_call_id
        budget_ms = int(max(deadline - asyncio.get_running_loop().time(), 0.0) * 1000)
        requester = self.requests.bind(
            deadline=deadline,
            org_id=number.org_id,
            secret=self.orgs.server_secret(number.org_id),
        )
        try:
            while True:
                record = await self.records.get(number.org_id, call_id)
                if record is not None and record.decision is not None:
                    if record.phone_number_id != number.id:
                        # Another number's call id (a forged or colliding request): its
                        # decision is not ours to replay, nor ours to overwrite.
                        log.warning("inbound.call_id_of_another_number", call_id=call_id)
                        return Outcome(
                            self._unrecorded(number, await self._decide(number, call, requester))
                        )
                    return Outcome(Decision.from_dict(record.decision), replayed=True)
                if await self.records.claim(number.org_id, call_id, budget_ms):
                    break
                await asyncio.sleep(POLL_SECONDS)  # another worker is deciding this call
        except StoreUnavailable as exc:
            # Availability first: decide without coordination rather than drop the call.
            log.warning("inbound.records_unavailable", call_id=call_id, detail=exc.detail)
            return Outcome(self._unrecorded(number, await self._decide(number, call, requester)))
        try:
            decision = await self._decide(number, call, requester)
            await self.records.put(self._record(number, call, decision))
        except StoreUnavailable as exc:
            log.warning("inbound.record_not_written", call_id=call_id, detail=exc.detail)
            decision = self._unrecorded(number, decision)
        finally:
            self.tasks.spawn(self._release(number.org_id, call_id), name=f"release:{call_id}")
        return Outcome(decision)

    def _unrecorded(self, number: AnyPhoneNumber, decision: Decision) -> Decision:
        """A decision whose call record was not written. A transient assistant, squad or
        workflow lives only in that record, so the runtime would find nothing: such a call
        takes the failure branch instead (fallbackDestination, hooks or the apology)."""
        outcome = decision.outcome
        if isinstance(outcome, Connect) and outcome.target_id is None:
            return self._failure(number, "record-not-written")
        return decision

    def _failure(self, number: AnyPhoneNumber, step: str) -> Decision:
        return failure_decision(
            number, reasons.FAILED, apology=self.settings.apology_message, step=step
        )

    async def _release(self, org_id: str, call_id: str) -> None:
        with contextlib.suppress(StoreUnavailable):  # the lock expires on its own
            await self.records.release(org_id, call_id)

    @staticmethod
    def _record(number: AnyPhoneNumber, call: InboundCall, decision: Decision) -> CallRecord:
        return CallRecord(
            call_id=call.provider_call_id,
            provider=call.provider,
            org_id=number.org_id,
            phone_number_id=number.id,
            router_call_id=call.id,
            from_number=call.from_number,
            to=call.to_number or call.sip_uri,
            decision=decision.to_dict(),
        )

    # --- status callbacks ---------------------------------------------------------------------

    async def status(self, number: AnyPhoneNumber, event: StatusEvent) -> CallRecord | None:
        """Update the call record; forward `ringing` / `ended` to the server, off the
        answer path."""
        base = CallRecord(
            call_id=event.provider_call_id,
            provider=event.provider,
            org_id=number.org_id,
            phone_number_id=number.id,
            router_call_id=event.provider_call_id,
            from_number=event.from_number or str(event.params.get("From", "")),
            to=number.number,
            decision=None,
        )
        update = StatusUpdate(event.status, event.is_final, event.sequence, event.duration_seconds)
        try:
            record, changed = await self.records.update_status(base, update)
        except CallOwnedElsewhere:
            log.warning(
                "call.status_ignored",
                call_id=event.provider_call_id,
                phone_number_id=number.id,
                reason="call id of another number",
            )
            return None
        except StoreUnavailable as exc:
            log.warning(
                "call.status_not_recorded", call_id=event.provider_call_id, detail=exc.detail
            )
            if event.is_final:  # the slots are another store's business: give them back
                await self._give_back(number, event.provider_call_id)
            return None
        if event.is_final:  # a call of this number (another number's is refused above)
            await self._give_back(number, event.provider_call_id)
        self.events.call_status(event, record, changed)
        forward = "ended" if event.is_final else ("ringing" if event.status == "ringing" else None)
        server = number.server if number.server and number.server.url else None
        server = server or self.orgs.server(number.org_id)
        if changed and forward is not None and server is not None and server.url:
            message = {
                "type": "status-update",
                "status": forward,
                "timestamp": int(time.time() * 1000),
                "call": {
                    "id": record.router_call_id,
                    "orgId": number.org_id,
                    "type": "inboundPhoneCall",
                    "phoneCallProvider": number.provider,
                    "phoneCallProviderId": event.provider_call_id,
                    "phoneNumberId": number.id,
                    "status": forward,
                    "providerStatus": event.status,
                    "durationSeconds": record.duration_seconds,
                },
                "phoneNumber": public_number(number),
                "customer": {"number": record.from_number},
            }
            self.tasks.spawn(
                self.requests.notify(
                    server,
                    message,
                    timeout_seconds=STATUS_FORWARD_TIMEOUT_SECONDS,
                    secret=self.orgs.server_secret(number.org_id),
                ),
                name=f"status-update:{event.provider_call_id}",
            )
        return record
