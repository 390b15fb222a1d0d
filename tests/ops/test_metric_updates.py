"""router's metric classes update exactly as prometheus-client's own: same exposition."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as LibraryCounter
from prometheus_client import Gauge as LibraryGauge
from prometheus_client import Histogram as LibraryHistogram

from router.ops.metrics import LATENCY_BUCKETS, Counter, Gauge, Histogram

# Bounds themselves, between bounds, below the first, above the last finite one, +Inf.
AMOUNTS = (0.0, 0.0005, 0.001, 0.0011, 0.0025, 0.3, 4.0, 7.5, 9.99, 10.0, 11.0, math.inf)


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition without `_created` lines (creation times differ)."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_histogram_buckets_match_the_library_for_every_kind_of_amount() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = Histogram("h_seconds", "h", ["route"], registry=ours, buckets=LATENCY_BUCKETS)
    lib = LibraryHistogram("h_seconds", "h", ["route"], registry=theirs, buckets=LATENCY_BUCKETS)
    for amount in AMOUNTS:
        mine.labels("a").observe(amount)
        lib.labels("a").observe(amount)
    mine.labels("b").observe(math.nan)
    lib.labels("b").observe(math.nan)
    assert exposition(ours) == exposition(theirs)


def test_counter_and_gauge_match_the_library() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counters = (
        Counter("c_total", "c", ["k"], registry=ours),
        LibraryCounter("c_total", "c", ["k"], registry=theirs),
    )
    gauges = (Gauge("g", "g", registry=ours), LibraryGauge("g", "g", registry=theirs))
    for counter in counters:
        counter.labels("x").inc()
        counter.labels("x").inc(2.5)
        counter.labels("y").inc(0)
    for gauge in gauges:
        gauge.inc()
        gauge.inc(3)
        gauge.dec()
        gauge.dec(0.5)
    assert exposition(ours) == exposition(theirs)


def test_misuse_still_fails_as_the_library_says() -> None:
    registry = CollectorRegistry()
    counter = Counter("c_total", "c", ["k"], registry=registry)
    histogram = Histogram("h_seconds", "h", ["k"], registry=registry)
    gauge = Gauge("g", "g", ["k"], registry=registry)
    with pytest.raises(ValueError, match="missing label values"):
        counter.inc()  # a labelled parent has no value of its own
    with pytest.raises(ValueError, match="missing label values"):
        histogram.observe(1.0)
    with pytest.raises(ValueError, match="missing label values"):
        gauge.inc()
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("x").inc(-1)
