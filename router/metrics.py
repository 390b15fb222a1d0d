"""Prometheus metrics (docs/metrics.md): one registry per app, names with units.

With `router serve --workers N` the workers share one port, so a scrape reaches one of
them: the parent sets `PROMETHEUS_MULTIPROC_DIR` and `/metrics` then aggregates every
worker's values (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Final, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client import Counter as _Counter
from prometheus_client import Gauge as _Gauge
from prometheus_client import Histogram as _Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

# Webhook answers must stay far below the providers' budgets: resolution where it matters.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 7.5, 10.0,
)  # fmt: skip
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

_M = TypeVar("_M", bound=MetricWrapperBase)


def _existing_child(metric: _M, values: tuple[object, ...]) -> _M | None:
    """The child already made for exactly these (string) label values, else None.

    prometheus-client keys children by the values as strings; a value that is not one
    misses here and goes the library's full way, which converts and validates it.
    """
    # Keyed by tuples of strings; any tuple can be looked up (a non-string one just misses).
    children: dict[tuple[object, ...], _M] | None = getattr(metric, "_metrics", None)
    return None if children is None else children.get(values)


class Counter(_Counter):
    """prometheus-client's Counter, leaner on the calls the webhook path makes.

    `labels(...)` finds an existing child with one dict read (the library validates the
    values and takes a lock on every call), and `inc()` on a child goes straight to its
    value once the library's checks are known to pass. Values and exposition are the
    library's own; every other case takes the library's path.
    """

    _ready = False  # set once the library made this metric's values: it is observable

    def _metric_init(self) -> None:
        super()._metric_init()
        self._ready = True

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Counter:
        if not labelkwargs and (child := _existing_child(self, labelvalues)) is not None:
            return child
        return super().labels(*labelvalues, **labelkwargs)

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        if self._ready and amount >= 0 and not exemplar:
            self._value.inc(amount)
        else:
            super().inc(amount, exemplar)


class Histogram(_Histogram):
    """prometheus-client's Histogram, leaner on `labels(...)` and `observe()` (see Counter):
    the bucket is found by bisection, as the library's loop finds it."""

    _ready = False

    def _metric_init(self) -> None:
        super()._metric_init()
        self._ready = True

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Histogram:
        if not labelkwargs and (child := _existing_child(self, labelvalues)) is not None:
            return child
        return super().labels(*labelvalues, **labelkwargs)

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if self._ready and not exemplar and amount == amount:  # NaN: the library's way
            self._sum.inc(amount)
            # The first bucket whose upper bound is >= amount; the last one is +Inf.
            self._buckets[bisect_left(self._upper_bounds, amount)].inc(1)
        else:
            super().observe(amount, exemplar)


class Gauge(_Gauge):
    """prometheus-client's Gauge whose `inc()` / `dec()` go straight to the value once the
    library's checks are known to pass (see Counter)."""

    _ready = False

    def _metric_init(self) -> None:
        super()._metric_init()
        self._ready = True

    def inc(self, amount: float = 1) -> None:
        if self._ready and not self._is_most_recent:
            self._value.inc(amount)
        else:
            super().inc(amount)

    def dec(self, amount: float = 1) -> None:
        if self._ready and not self._is_most_recent:
            self._value.inc(-amount)
        else:
            super().dec(amount)


class Metrics:
    """Every metric router exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
            "REST API requests by route template and status code.",
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

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition: this app's registry, or every worker's in multiprocess mode."""
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
