"""The operator docs stay honest: every log event, metric, `call.routed` field, setting and
provider endpoint the code defines is documented, and nothing documented is invented.

Names are read from the code itself (parsed with `ast`, or from the real app and settings),
so a new event, metric or setting fails here until docs/ describes it.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from router.app import create_app
from router.pipeline.decision import ENDED_REASONS, ROUTES
from router.providers import PROVIDERS
from router.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ROUTER = ROOT / "router"
DOCS = ROOT / "docs"
LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical"})
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
METRIC_TYPES = frozenset({"Counter", "Gauge", "Histogram"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def sources() -> list[Path]:
    return sorted(ROUTER.rglob("*.py"))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


def text(node: ast.AST | None) -> str | None:
    """The value of a string literal, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def logged_events() -> dict[str, str]:
    """Every event name router logs, with where: its `log.<level>("name", ...)` calls."""
    found: dict[str, str] = {}
    for path in sources():
        for node in ast.walk(parsed(path)):
            name: str | None = None
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and node.args
            ):
                name = text(node.args[0])
            if name is not None and EVENT_NAME.match(name):
                found.setdefault(name, where(path, node))
    return found


def call_routed_fields() -> set[str]:
    """The fields `Events.call_routed` logs: the keywords of its `log.info("call.routed",
    ...)` call and of any `.bind(...)` it makes for it, plus the keys of any dict literal
    it spreads into that call (`**extra`)."""
    fields: set[str] = set()
    for node in ast.walk(parsed(ROUTER / "ops" / "events.py")):
        if not (isinstance(node, ast.FunctionDef) and node.name == "call_routed"):
            continue
        spread: set[str] = set()
        for inner in ast.walk(node):
            if (
                isinstance(inner, ast.Call)
                and isinstance(inner.func, ast.Attribute)
                and inner.func.attr == "bind"
            ):
                fields.update(k.arg for k in inner.keywords if k.arg is not None)
            if isinstance(inner, ast.Call) and inner.args and text(inner.args[0]) == "call.routed":
                for keyword in inner.keywords:
                    if keyword.arg is not None:
                        fields.add(keyword.arg)
                    elif isinstance(keyword.value, ast.Name):
                        spread.add(keyword.value.id)
        for inner in ast.walk(node):
            if isinstance(inner, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in spread for t in inner.targets
            ):
                for dict_node in ast.walk(inner.value):
                    if isinstance(dict_node, ast.Dict):
                        fields.update(k for k in map(text, dict_node.keys) if k is not None)
    return fields


def metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every metric in router/ops/metrics.py: name -> (type, label names)."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for node in ast.walk(parsed(ROUTER / "ops" / "metrics.py")):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in METRIC_TYPES
            and node.args
            and (name := text(node.args[0])) is not None
        ):
            labels: tuple[str, ...] = ()
            label_node = node.args[2] if len(node.args) > 2 else None
            for keyword in node.keywords:
                if keyword.arg == "labelnames":
                    label_node = keyword.value
            if isinstance(label_node, ast.List | ast.Tuple):
                labels = tuple(label for label in map(text, label_node.elts) if label is not None)
            found[name] = (node.func.id, labels)
    return found


def rejection_reasons() -> set[str]:
    """Every `VerificationFailed("reason")` a provider raises."""
    reasons: set[str] = set()
    for path in sorted((ROUTER / "providers").glob("*.py")):
        for node in ast.walk(parsed(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "VerificationFailed"
                and node.args
                and (reason := text(node.args[0])) is not None
            ):
                reasons.add(reason)
    return reasons


def section(markdown: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = markdown.index(heading + "\n")
    rest = markdown[start + len(heading) + 1 :]
    stop = re.search(rf"^#{{1,{level}}} ", rest, flags=re.MULTILINE)
    return rest if stop is None else rest[: stop.start()]


# --- log events -------------------------------------------------------------------------------


def test_the_event_collector_finds_the_known_events() -> None:
    """The parser sees structlog calls, audit events and `router serve`'s own events, so an
    empty or broken collection cannot pass the tests below by accident."""
    events = logged_events()
    assert {"call.routed", "webhook.rejected", "phone_number.created", "worker.died"} <= set(events)
    assert "router.listening" in events
    assert {"redis.subscription_lost", "api.store_unavailable", "tasks.failed"} <= set(events)


def test_every_logged_event_is_documented_in_events_md() -> None:
    """Each event name router logs appears in docs/events.md."""
    page = doc("events.md")
    missing = {name: at for name, at in logged_events().items() if f"`{name}`" not in page}
    assert not missing, f"log events missing from docs/events.md: {missing}"


def test_the_events_index_lists_only_events_router_logs() -> None:
    """Every event in the index of docs/events.md is one the code logs (no stale names)."""
    index = section(doc("events.md"), "## Index")
    listed = set(re.findall(r"^\| \[`([^`]+)`\]", index, flags=re.MULTILINE))
    assert listed, "the index table of docs/events.md was not found"
    assert listed == set(logged_events())


def test_every_call_routed_field_is_described() -> None:
    """Each field `call.routed` carries has its own row in the call.routed section."""
    fields = call_routed_fields()
    assert {"route", "ended_reason", "trace", "cache_hit", "render_warnings"} <= fields
    described = section(doc("events.md"), "### `call.routed`")
    missing = sorted(f for f in fields if f"| `{f}` |" not in described)
    assert not missing, f"call.routed fields missing from docs/events.md: {missing}"


def test_every_route_and_ended_reason_is_explained() -> None:
    """The route and ended-reason vocabularies of router/pipeline/decision.py are in the
    tables of docs/events.md."""
    page = doc("events.md")
    routes = section(page, "#### Routes")
    reasons = section(page, "#### Ended reasons")
    assert [r for r in ROUTES if f"| `{r}` |" not in routes] == []
    assert [r for r in ENDED_REASONS if f"| `{r}` |" not in reasons] == []


def test_every_rejection_reason_is_documented() -> None:
    """Each reason a provider gives for a 403 is listed under `webhook.rejected`."""
    reasons = rejection_reasons()
    assert {"bad-signature", "unsigned-query", "bad-edge-secret"} <= reasons
    rejected = section(doc("events.md"), "### `webhook.rejected`")
    assert sorted(r for r in reasons if f"`{r}`" not in rejected) == []


# --- metrics ----------------------------------------------------------------------------------


def test_every_metric_and_its_labels_are_documented() -> None:
    """Each metric of router/ops/metrics.py has a row in docs/metrics.md naming its type and
    every label."""
    found = metrics()
    assert {"router_calls_total", "router_decision_seconds", "router_store_up"} <= set(found)
    rows = {
        line.split("|")[1].strip(): line
        for line in doc("metrics.md").splitlines()
        if line.startswith("| `router_")
    }
    for name, (kind, labels) in found.items():
        row = rows.get(f"`{name}`")
        assert row is not None, f"{name} has no row in docs/metrics.md"
        assert f"| {kind.lower()} |" in row, f"{name}: type {kind.lower()} not in its row"
        for label in labels:
            assert f"`{label}`" in row, f"{name}: label {label} not in its row"
    assert set(rows) == {f"`{name}`" for name in found}, "docs/metrics.md lists unknown metrics"


def test_promql_examples_parse_and_name_only_router_metrics() -> None:
    """Every PromQL block of docs/metrics.md parses and selects only series router exports."""
    parser: Any = pytest.importorskip("promql_parser")
    exported: set[str] = set()
    for name, (kind, _) in metrics().items():
        exported.add(name)
        if kind == "Histogram":
            exported.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    blocks = re.findall(r"```promql\n(.*?)```", doc("metrics.md"), flags=re.DOTALL)
    assert len(blocks) >= 6
    for block in blocks:
        selected: list[str] = []

        def visit(node: Any, selected: list[str] = selected) -> bool:
            if isinstance(node, parser.VectorSelector):
                selected.append(node.name)
            return True

        parser.walk(parser.parse(block), visit)
        assert selected, block
        assert set(selected) <= exported, block


# --- settings and endpoints -------------------------------------------------------------------


def test_every_setting_is_documented() -> None:
    """Each `ROUTER_*` variable the settings read appears in docs/ or the README."""
    files = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
    pages = "\n".join(path.read_text(encoding="utf-8") for path in files)
    variables = [f"ROUTER_{name.upper()}" for name in Settings.model_fields]
    assert "ROUTER_PUBLIC_URL" in variables
    missing = [v for v in variables if f"`{v}`" not in pages]
    assert not missing, f"settings missing from docs/ and README.md: {missing}"


def test_every_provider_endpoint_is_in_providers_md(tmp_path: Path) -> None:
    """Each provider path the real app registers, and the runtime's call-record path, is
    listed in docs/providers.md."""
    app = create_app(Settings(data_dir=tmp_path))
    paths = {
        path
        for route in app.router.routes()
        if route.resource is not None
        and (path := route.resource.canonical).split("/")[1] in {*PROVIDERS, "call"}
    }
    assert {"/twilio/voice", "/vonage/answer", "/sip/route", "/call/{callId}"} <= paths
    page = doc("providers.md")
    assert sorted(p for p in paths if f"`{p}`" not in page) == []


def test_plivo_timeout_fragments_separate_their_pairs_with_ampersands() -> None:
    """Plivo reads `#ct=2000&rt=40000` on a URL; a `,` between pairs is no separator."""
    fragments = re.findall(r"#([a-z]{2}=[0-9]+[^`\s)]*)", doc("providers.md"))
    assert fragments
    assert all(re.fullmatch(r"[a-z]{2}=[0-9]+(&[a-z]{2}=[0-9]+)*", f) for f in fragments), fragments
