"""Prometheus metrics (docs/metrics.md): one registry per app, names with units.

With `router serve --workers N` the workers share one port, so a scrape reaches one of
them: the parent sets `PROMETHEUS_MULTIPROC_DIR` and `/metrics` then aggregates every
worker's values (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Webhook answers must stay far below the providers' budgets: resolution where it matters.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 7.5, 10.0,
)  # fmt: skip
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# (method, route, status) label sets whose children `http_request` keeps: routes and
# methods are fixed, so this is far more than a worker sees; beyond it, looked up each time.
_HTTP_CHILDREN_KEPT: Final = 1024


# The methods `router_api_requests_total` names; any other is counted as `other`.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Every metric router exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._http_children: dict[tuple[str, object, int], tuple[Counter, Histogram]] = {}
        r = self.registry
        self.calls = Counter(
            "router_calls_total",
            "Decided inbound calls.",
            ["provider", "route", "ended_reason"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "router_decision_seconds",
            "Time from webhook arrival to the answer being ready.",
            ["provider", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.assistant_requests = Counter(
            "router_assistant_requests_total",
            "assistant-request exchanges by outcome (ok, timeout, transport, http-NNN, ...).",
            ["outcome"],
            registry=r,
        )
        self.assistant_request_seconds = Histogram(
            "router_assistant_request_seconds",
            "assistant-request latency, all attempts included.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.replays = Counter(
            "router_decision_replays_total",
            "Provider retries answered with an earlier decision.",
            ["provider"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "router_cache_lookups_total",
            "Number lookups by the webhook path: hit (no I/O) or miss.",
            ["result"],
            registry=r,
        )
        self.cache_invalidations = Counter(
            "router_cache_invalidations_total",
            "Invalidations applied to the number cache.",
            registry=r,
        )
        self.cache_resets = Counter(
            "router_cache_resets_total",
            "Times the cache went stale because invalidations may have been missed.",
            registry=r,
        )
        self.webhook_rejections = Counter(
            "router_webhook_rejections_total",
            "Provider requests refused (403) by signature verification.",
            ["provider", "reason"],
            registry=r,
        )
        self.webhook_challenges = Counter(
            "router_webhook_challenges_total",
            "Callers asked to authenticate (SIP digest) before their call is routed.",
            ["provider", "reason"],
            registry=r,
        )
        self.unknown_numbers = Counter(
            "router_unknown_numbers_total",
            "Calls to numbers no org configured (rejected unanswered).",
            ["provider"],
            registry=r,
        )
        self.status_events = Counter(
            "router_status_events_total",
            "Provider status callbacks by normalised status.",
            ["provider", "status"],
            registry=r,
        )
        self.api_requests = Counter(
            "router_api_requests_total",
            "HTTP requests (REST API, webhooks, health, metrics) by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.api_request_seconds = Histogram(
            "router_api_request_seconds",
            "REST API latency.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.runtime_calls = Counter(
            "router_runtime_calls_total",
            "Calls handed to a runtime (first tries and failovers), by runtime.",
            ["provider", "runtime"],
            registry=r,
        )
        self.runtime_failovers = Counter(
            "router_runtime_failovers_total",
            "Calls a runtime did not take, moved on: `to` is the next runtime, or "
            "`failure-branch` when none was left.",
            ["provider", "runtime", "to"],
            registry=r,
        )
        self.runtime_attempts = Counter(
            "router_runtime_attempts_total",
            "Calls a runtime took or refused, as its callbacks said (probes not counted).",
            ["runtime", "result"],
            registry=r,
        )
        self.runtime_healthy = Gauge(
            "router_runtime_healthy",
            "1 while new calls go to the runtime, 0 while it is marked down.",
            ["runtime"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.admission_slots = Gauge(
            "router_admission_slots",
            "Calls holding a slot under a maxConcurrentCalls cap, by scope (number, org) and id "
            "(the phone number's or the org's), as the last admission or release counted them.",
            ["scope", "id"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.admission_overflows = Counter(
            "router_admission_overflows_total",
            "Calls turned away at a cap: scope number or org.",
            ["scope"],
            registry=r,
        )
        self.inflight_webhooks = Gauge(
            "router_inflight_webhooks",
            "Provider webhooks being answered now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.store_up = Gauge(
            "router_store_up",
            "1 when the store answered its last call (and Redis pub/sub is subscribed); "
            "sampled by every worker, 0 if any live worker sees the store down.",
            registry=r,
            multiprocess_mode="livemin",
        )

    def http_request(
        self, method: str, resource: object, status: int, seconds: float | None
    ) -> None:
        """Count and time one HTTP request; `resource` is the aiohttp resource it matched
        (None when none did). The children for each (method, resource, status) are found
        once and kept: this runs for every request, webhooks included."""
        if method not in _METHODS:  # a client's word: labels stay a fixed set
            method = "other"
        key = (method, resource, status)
        children = self._http_children.get(key)
        if children is None:
            route = getattr(resource, "canonical", None) or "unmatched"
            children = (
                self.api_requests.labels(method, route, str(status)),
                self.api_request_seconds.labels(method, route),
            )
            if len(self._http_children) < _HTTP_CHILDREN_KEPT:
                self._http_children[key] = children
        count, latency = children
        count.inc()
        if seconds is not None:
            latency.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition: this app's registry, or every worker's in multiprocess mode."""
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
