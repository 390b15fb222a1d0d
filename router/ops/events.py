"""What ops dashboards read, in one place: each event is logged and counted together
(docs/events.md lists the log fields, docs/metrics.md the metrics).

- `call.routed`: one per decided call.
- `webhook.rejected`: a provider request that failed verification (never routed).
- `webhook.unknown_number`: a call to a number no org configured (rejected unanswered).
- `webhook.challenged`: a caller asked to authenticate (SIP digest) before routing.
- `call.status`: a status callback applied to a call record.
"""

from __future__ import annotations

import time

import structlog
from prometheus_client import Counter, Histogram

from router.models.phone_numbers import AnyPhoneNumber
from router.ops.metrics import Metrics
from router.pipeline.call_records import CallRecord
from router.pipeline.decision import Decision
from router.pipeline.inbound_call import InboundCall
from router.providers.plugin import StatusEvent

log = structlog.get_logger("router.pipeline.call_records")

_caller_mode = "last4"


def set_caller_mode(mode: str) -> None:
    """How callers' numbers appear in logs: `full`, `last4` or `none` (ROUTER_LOG_CALLER)."""
    global _caller_mode  # one process-wide setting, read on every call
    _caller_mode = mode


def mask_caller(number: str | None) -> str | None:
    if number is None or _caller_mode == "full":
        return number
    if _caller_mode == "none":
        return "[hidden]"
    return "*" * max(len(number) - 4, 0) + number[-4:]


class Events:
    """Logs each event (structlog) and records it in the metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # `call.routed` goes through a logger bound once, not the module's lazy proxy,
        # which looks the logger up again on every call. structlog changes processor
        # lists in place (`capture_logs` too), so this logger sees what they see.
        self._routed_log = log.bind()
        # The children `call_routed` updates, by (provider, route, ended reason): a few
        # dozen at most (providers x routes x reasons), found once each.
        self._routed_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._runtime_children: dict[tuple[str, str], Counter] = {}
        self._lookups = {
            True: metrics.cache_lookups.labels("hit"),
            False: metrics.cache_lookups.labels("miss"),
        }

    def call_routed(
        self,
        *,
        provider: str,
        call: InboundCall,
        number: AnyPhoneNumber,
        decision: Decision,
        cache_hit: bool,
        latency_ms: float,
        replayed: bool,
        endpoint: str,
        warnings: tuple[str, ...] = (),
        runtime: str | None = None,
    ) -> None:
        facts = decision.assistant_request
        m = self.metrics
        if runtime is not None:
            self.runtime_call(provider, runtime)
        key = (provider, decision.route, decision.ended_reason or "")
        children = self._routed_children.get(key)
        if children is None:
            children = (m.calls.labels(*key), m.decision_seconds.labels(*key[:2]))
            self._routed_children[key] = children
        calls, seconds = children
        calls.inc()
        seconds.observe(latency_ms / 1000)
        if replayed:
            m.replays.labels(provider).inc()
        elif facts is not None:
            m.assistant_requests.labels(facts.outcome).inc()
            m.assistant_request_seconds.labels(facts.outcome).observe(facts.latency_ms / 1000)
        # Keywords straight into the call, not `**` a dict: a call with `**` builds and
        # copies one more dict of two dozen entries, on every call.
        routed = self._routed_log
        if warnings:
            routed = routed.bind(render_warnings=list(warnings))
        routed.info(
            "call.routed",
            provider=provider,
            endpoint=endpoint,
            call_id=call.provider_call_id,
            router_call_id=call.id,
            org_id=number.org_id,
            phone_number_id=number.id,
            to=call.to_number or call.sip_uri,
            caller=mask_caller(call.from_number),
            route=decision.route,
            target=decision.target,
            ended_reason=decision.ended_reason,
            failure_reason=decision.failure_reason,
            assistant_request_outcome=facts.outcome if facts else None,
            assistant_request_attempts=facts.attempts if facts else 0,
            assistant_request_latency_ms=facts.latency_ms if facts else None,
            assistant_request_status=facts.http_status if facts else None,
            cache_hit=cache_hit,
            replayed=replayed,
            latency_ms=round(latency_ms, 2),
            trace=list(decision.trace),
            runtime=runtime,
        )

    def slots(self, number: AnyPhoneNumber, number_in_use: int, org_in_use: int) -> None:
        """The slots in use after an admission or a release (a scope without a cap: 0)."""
        gauge = self.metrics.admission_slots
        gauge.labels("number", number.id).set(number_in_use)
        gauge.labels("org", number.org_id).set(org_in_use)

    def overflow(
        self, provider: str, call_id: str, number: AnyPhoneNumber, scope: str, cap: int | None
    ) -> None:
        """A cap turned a call away: `scope` number or org, `cap` that scope's."""
        self.metrics.admission_overflows.labels(scope).inc()
        log.info(
            "call.overflow",
            provider=provider,
            call_id=call_id,
            org_id=number.org_id,
            phone_number_id=number.id,
            scope=scope,
            max_concurrent_calls=cap,
        )

    def runtime_call(self, provider: str, runtime: str) -> None:
        key = (provider, runtime)
        child = self._runtime_children.get(key)
        if child is None:
            child = self._runtime_children[key] = self.metrics.runtime_calls.labels(*key)
        child.inc()

    def runtime_failover(
        self,
        *,
        provider: str,
        call_id: str,
        number: AnyPhoneNumber,
        runtime: str,
        to: str | None,
        decision: Decision | None = None,
    ) -> None:
        """A runtime did not take a call: it went to `to`, or (None) to the failure
        branch, whose decision is given."""
        self.metrics.runtime_failovers.labels(provider, runtime, to or "failure-branch").inc()
        if to is not None:
            self.runtime_call(provider, to)
        log.warning(
            "runtime.failover",
            provider=provider,
            call_id=call_id,
            org_id=number.org_id,
            phone_number_id=number.id,
            runtime=runtime,
            to_runtime=to,
            route=decision.route if decision is not None else None,
            ended_reason=decision.ended_reason if decision is not None else None,
            target=decision.target if decision is not None else None,
        )

    def runtime_attempt(self, runtime: str, taken: bool) -> None:
        self.metrics.runtime_attempts.labels(runtime, "taken" if taken else "refused").inc()

    def runtime_health(self, runtime: str, healthy: bool, failures: int, until: float) -> None:
        """A runtime was marked up or down (by this worker's report, or seen in Redis)."""
        self.metrics.runtime_healthy.labels(runtime).set(1 if healthy else 0)
        if healthy:
            log.info("runtime.healthy", runtime=runtime)
        else:
            log.warning(
                "runtime.unhealthy",
                runtime=runtime,
                consecutive_failures=failures,
                down_for_seconds=round(max(until - time.time(), 0.0), 1),
            )

    def lookup(self, hit: bool) -> None:
        self._lookups[hit].inc()

    def rejected(
        self, provider: str, path: str, reason: str, number: AnyPhoneNumber | None
    ) -> None:
        self.metrics.webhook_rejections.labels(provider, reason).inc()
        log.warning(
            "webhook.rejected",
            provider=provider,
            path=path,
            reason=reason,
            org_id=number.org_id if number else None,
            phone_number_id=number.id if number else None,
        )

    def challenged(self, provider: str, path: str, reason: str, number: AnyPhoneNumber) -> None:
        self.metrics.webhook_challenges.labels(provider, reason.split(":", 1)[-1]).inc()
        log.info(
            "webhook.challenged",
            provider=provider,
            path=path,
            reason=reason,
            org_id=number.org_id,
            phone_number_id=number.id,
        )

    def unknown_number(self, provider: str, path: str, key: str | None) -> None:
        self.metrics.unknown_numbers.labels(provider).inc()
        log.info("webhook.unknown_number", provider=provider, path=path, to=key)

    def call_status(self, event: StatusEvent, record: CallRecord, changed: bool) -> None:
        self.metrics.status_events.labels(event.provider, event.status).inc()
        log.info(
            "call.status",
            provider=event.provider,
            call_id=event.provider_call_id,
            org_id=record.org_id,
            phone_number_id=record.phone_number_id,
            status=event.status,
            final=event.is_final,
            duration_seconds=event.duration_seconds,
            sequence=event.sequence,
            changed=changed,
        )
