"""deploy/grafana/router-dashboard.json: loads, and reads only what router exports.

Every PromQL expression is parsed (promql-parser) and each metric and label it names must be
in router's own `/metrics` exposition; the Loki queries may only use fields that a real
`call.routed` event carries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from router.models.phone_numbers import RECORD_MODELS
from router.ops.events import Events, set_caller_mode
from router.ops.metrics import Metrics
from router.pipeline.decision import FAILED, AssistantRequestFacts, Decision, Say
from router.pipeline.inbound_call import InboundCall

from . import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "router-dashboard.json"
PROMETHEUS_UID = "${datasource}"
LOKI_UID = "${loki}"
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})
# Grafana's variables, as a query reaches Prometheus or Loki.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$provider": ".*",
}
CALLER = "+14155550123"

Panel = dict[str, Any]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[Panel]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(dashboard: dict[str, Any], uid: str) -> list[dict[str, Any]]:
    return [
        target
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target["datasource"]["uid"] == uid
    ]


def exported() -> dict[str, set[str]]:
    """Sample name -> label names, from the exposition of an app's metrics with every child."""
    metrics = Metrics()
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        # prometheus-client keeps label names on this attribute only; a labelled metric has
        # no samples until a child exists, so make one of each.
        names = metric._labelnames
        child = metric.labels(*names) if names else metric
        for method in ("set", "inc", "observe"):
            if hasattr(child, method):
                getattr(child, method)(1)
                break
    text = generate_latest(metrics.registry).decode()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def promql(expr: str) -> Any:
    parser = pytest.importorskip(
        "promql_parser", reason="promql-parser (to parse the dashboard's PromQL) is not installed"
    )
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return parser.parse(expr)


def selectors(expr: Any) -> list[Any]:
    parser = pytest.importorskip("promql_parser")
    found: list[Any] = []

    def visit(node: Any) -> bool:
        if isinstance(node, parser.VectorSelector):
            found.append(node)
        return True

    parser.walk(expr, visit)
    return found


def aggregations(expr: Any) -> list[Any]:
    parser = pytest.importorskip("promql_parser")
    found: list[Any] = []

    def visit(node: Any) -> bool:
        if isinstance(node, parser.AggregateExpr):
            found.append(node)
        return True

    parser.walk(expr, visit)
    return found


def prometheus_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for t in targets(dashboard, PROMETHEUS_UID)]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query" and variable["datasource"]["uid"] == PROMETHEUS_UID:
            match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            queries.append(f"count by ({match[2]}) ({match[1]})")
    return queries


def test_loads_as_a_modern_dashboard_with_datasource_variables(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["loki"]["type"] == "datasource"
    assert variables["loki"]["query"] == "loki"


def test_every_panel_uses_a_datasource_variable(dashboard: dict[str, Any]) -> None:
    """No hard-wired datasource uid: the dashboard imports into any Grafana."""
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert panel["targets"], panel["title"]
        kind = panel["datasource"]["type"]
        uid = {"prometheus": PROMETHEUS_UID, "loki": LOKI_UID}[kind]
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_promql_names_only_exported_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    """Each selector's metric is in /metrics; each matcher and `by` label is one it carries."""
    samples = exported()
    for query in prometheus_queries(dashboard):
        expr = promql(query)
        for selector in selectors(expr):
            assert selector.name in samples, f"{selector.name} is not exported ({query})"
            for matcher in selector.matchers.matchers:
                assert matcher.name in samples[selector.name], f"{matcher.name} in {query}"
        for aggregation in aggregations(expr):
            if aggregation.modifier is None:
                continue
            available = set(TARGET_LABELS)
            for selector in selectors(aggregation.expr):
                available |= samples[selector.name]
            missing = set(aggregation.modifier.labels) - available
            assert not missing, f"{missing} in {query}"


def test_every_metric_router_exports_has_a_panel(dashboard: dict[str, Any]) -> None:
    """A metric added to router/ops/metrics.py gets a panel here too."""
    used = {s.name for query in prometheus_queries(dashboard) for s in selectors(promql(query))}
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exported()}
    unused = {f for f in families if not any(re.sub(r"_(total|bucket)$", "", u) == f for u in used)}
    assert not unused, f"no panel reads {sorted(unused)}"


def test_histogram_quantiles_aggregate_buckets_by_le(dashboard: dict[str, Any]) -> None:
    for query in prometheus_queries(dashboard):
        if "histogram_quantile" not in query:
            continue
        for selector in selectors(promql(query)):
            assert selector.name.endswith("_bucket"), query
        for aggregation in aggregations(promql(query)):
            assert "le" in aggregation.modifier.labels, query


def call_routed_event() -> dict[str, Any]:
    """A real `call.routed` event: a call whose assistant-request failed."""
    number = RECORD_MODELS["twilio"].model_validate(
        {
            "id": "pn-1",
            "orgId": "org-1",
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
            "provider": "twilio",
            "number": "+14155550100",
            "twilioAccountSid": "AC123",
            "twilioAuthToken": "token-that-never-reaches-a-log",
        }
    )
    call = InboundCall(
        provider="twilio",
        provider_call_id="CA123",
        from_number=CALLER,
        to_number="+14155550100",
        received_at=0.0,
    )
    decision = Decision(
        outcome=Say("Sorry"),
        route="say",
        ended_reason=FAILED,
        trace=("assistant-request: timeout",),
        failure_reason=FAILED,
        assistant_request=AssistantRequestFacts("timeout", 2, 7000.0, None),
    )
    set_caller_mode("last4")  # the default; another test's app may have set a different one
    with structlog.testing.capture_logs() as logs:
        Events(Metrics()).call_routed(
            provider="twilio",
            call=call,
            number=number,
            decision=decision,
            cache_hit=True,
            latency_ms=7012.5,
            replayed=False,
            endpoint="voice",
        )
    (event,) = [e for e in logs if e["event"] == "call.routed"]
    return dict(event)


def loki_fields(target: dict[str, Any], transformations: list[dict[str, Any]]) -> set[str]:
    """The log fields a Loki query and its panel's transformations refer to."""
    expr = target["expr"]
    pipeline = expr.split("}", 1)[1]
    fields = set(re.findall(r"\|\s*(\w+)\s*(?:=~|!~|!=|=)", pipeline))
    fields |= set(re.findall(r"\{\{\s*\.(\w+)\s*\}\}", pipeline))
    for by in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        fields |= {label.strip() for label in by.split(",")}
    for transformation in transformations:
        if transformation["id"] == "organize":
            fields |= set(transformation["options"].get("includeByName", {}))
    return fields - {"__error__", "Time"}


def test_loki_panels_read_call_routed_fields_with_the_caller_masked(
    dashboard: dict[str, Any],
) -> None:
    event = call_routed_event()
    assert event["caller"] != CALLER and event["caller"].endswith(CALLER[-4:])
    loki_panels = [p for p in panels(dashboard) if p["datasource"]["uid"] == LOKI_UID]
    assert loki_panels
    titles = {p["title"] for p in loki_panels}
    assert any(p["type"] == "table" for p in loki_panels), titles
    for panel in loki_panels:
        for target in panel["targets"]:
            expr = target["expr"]
            assert '{app="router"} | json' in expr, expr
            assert '| event="call.routed"' in expr, expr
            fields = loki_fields(target, panel.get("transformations", []))
            missing = fields - set(event)
            assert not missing, f"{panel['title']}: {sorted(missing)} not in call.routed"
    failures = [p for p in loki_panels if p["type"] == "table" and "caller" in json.dumps(p)]
    assert failures, "a table of failed calls shows the (masked) caller"
    for panel in failures:
        assert '| ended_reason!=""' in panel["targets"][0]["expr"]
