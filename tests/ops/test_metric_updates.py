"""`Metrics.http_request`, which keeps the children it finds: what the exposition shows."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from router.ops.metrics import Metrics


@dataclass(frozen=True)
class Resource:
    """What `http_request` reads of an aiohttp resource: its route template."""

    canonical: str


Key = tuple[str, frozenset[tuple[str, str]]]


def samples(metrics: Metrics) -> dict[Key, float]:
    """Every sample of the registry's exposition, by name and labels."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests(method: str, route: str, status: str) -> Key:
    labels = {"method": method, "route": route, "status": status}
    return "router_api_requests_total", frozenset(labels.items())


def latency(sample: str, method: str, route: str, **more: str) -> Key:
    labels = {"method": method, "route": route, **more}
    return f"router_api_request_seconds_{sample}", frozenset(labels.items())


def test_requests_count_by_route_template_and_status_and_time_in_the_latency_buckets() -> None:
    metrics = Metrics()
    voice = Resource("/twilio/voice")
    for seconds in (0.0005, 0.001, 0.001, 0.3):
        metrics.http_request("POST", voice, 200, seconds)
    metrics.http_request("POST", voice, 403, 0.002)
    metrics.http_request("GET", None, 404, 0.0001)
    got = samples(metrics)
    assert got[requests("POST", "/twilio/voice", "200")] == 4
    assert got[requests("POST", "/twilio/voice", "403")] == 1
    assert got[requests("GET", "unmatched", "404")] == 1
    assert got[latency("count", "POST", "/twilio/voice")] == 5
    assert got[latency("sum", "POST", "/twilio/voice")] == 0.0005 + 0.001 + 0.001 + 0.3 + 0.002
    # A bound counts what equals it; the buckets are cumulative.
    assert got[latency("bucket", "POST", "/twilio/voice", le="0.001")] == 3
    assert got[latency("bucket", "POST", "/twilio/voice", le="0.0025")] == 4
    assert got[latency("bucket", "POST", "/twilio/voice", le="0.25")] == 4
    assert got[latency("bucket", "POST", "/twilio/voice", le="0.5")] == 5
    assert got[latency("bucket", "POST", "/twilio/voice", le="+Inf")] == 5


def test_label_sets_beyond_those_kept_are_still_counted() -> None:
    """More (method, route, status) sets than `http_request` keeps children for: each
    request still counts under its own labels."""
    metrics = Metrics()
    routes = [Resource(f"/r/{i}") for i in range(1500)]
    for _ in range(2):
        for route in routes:
            metrics.http_request("GET", route, 200, 0.001)
    got = samples(metrics)
    assert got[requests("GET", "/r/0", "200")] == 2
    assert got[requests("GET", "/r/1499", "200")] == 2
    assert sum(v for (name, _), v in got.items() if name == "router_api_requests_total") == 3000


def test_a_method_outside_the_known_set_is_counted_as_other() -> None:
    """Methods are the client's word: any other than the known ones shares one label."""
    metrics = Metrics()
    for method in ("BREW", "PROPFIND", "X" * 40):
        metrics.http_request(method, None, 405, 0.001)
    metrics.http_request("GET", None, 404, 0.001)
    samples = {
        s.labels["method"]
        for family in metrics.registry.collect()
        if family.name == "router_api_requests"
        for s in family.samples
        if s.name == "router_api_requests_total"
    }
    assert samples == {"other", "GET"}
