"""deploy/compose.yml: two router replicas behind HAProxy, Redis 7 with AOF, healthchecks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# No stubs for jsonschema in the test extras; it is used through one call.
import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml

from . import (
    DEPLOY,
    parse_dockerfile,
    setting_env_names,
    settings_from_env,
    shutdown_seconds,
)

COMPOSE = DEPLOY / "compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?P<op>:?[-?])?(?P<rest>[^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"][name]
    return found


def duration_seconds(text: str) -> float:
    """A compose duration (`20s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def test_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    """The file validates against the Compose Specification's JSON schema (shipped offline)."""
    schemas = pytest.importorskip(
        "check_jsonschema.builtin_schemas",
        reason="check-jsonschema (it ships the compose-spec schema) is not installed",
    )
    schema = schemas.get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_two_router_replicas_only_reachable_through_the_load_balancer(
    compose: dict[str, Any],
) -> None:
    router = service(compose, "router")
    assert router["deploy"]["replicas"] >= 2
    assert "ports" not in router, "workers are reached through the load balancer only"
    assert "container_name" not in router, "a fixed name allows one replica"
    lb = service(compose, "lb")
    assert lb["depends_on"]["router"]["condition"] == "service_healthy"
    assert any(str(p).endswith(":8080") for p in lb["ports"])


def test_router_runs_the_image_command_and_grace(compose: dict[str, Any]) -> None:
    """Same command and healthcheck as the image; SIGTERM grace covers in-flight webhooks."""
    router = service(compose, "router")
    runtime = [i for i in parse_dockerfile((DEPLOY / "Dockerfile").read_text()) if i.stage == 1]
    (cmd,) = [i.exec_form() for i in runtime if i.keyword == "CMD"]
    (health,) = [i.exec_form() for i in runtime if i.keyword == "HEALTHCHECK"]
    assert router["command"] == cmd
    assert router["healthcheck"]["test"] == ["CMD", *health]
    assert router["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    defaults = settings_from_env({"ROUTER_RUNTIME_URL": "wss://runtime.example.com/stream"})
    assert duration_seconds(router["stop_grace_period"]) >= shutdown_seconds(defaults) + 5


def test_load_balancer_round_robins_over_ready_workers_with_forwarded_headers(
    compose: dict[str, Any],
) -> None:
    """HAProxy: round-robin over the router service's replicas, /readyz-checked, X-Forwarded-*."""
    lb = service(compose, "lb")
    (mount,) = [v for v in lb["volumes"] if "haproxy.cfg" in v]
    source, target, _ = mount.split(":")
    assert target == "/usr/local/etc/haproxy/haproxy.cfg"
    config = (DEPLOY / source).read_text()
    lines = {
        " ".join(line.split()) for line in config.splitlines() if not line.strip().startswith("#")
    }
    assert "balance roundrobin" in lines
    assert "option httpchk GET /readyz" in lines
    assert "http-check expect status 200" in lines
    assert any(re.fullmatch(r"server-template router- \d+ router:8080", line) for line in lines)
    assert any("resolvers docker" in line for line in lines if line.startswith("default-server"))
    for header in ("X-Forwarded-Proto", "X-Forwarded-Host"):
        assert any(line.startswith(f"http-request set-header {header} ") for line in lines)
    assert "option forwardfor" in lines
    # The worker answers within its budget (15 s at most): the LB must wait longer.
    (server_timeout,) = [line.split()[-1] for line in lines if line.startswith("timeout server ")]
    assert duration_seconds(server_timeout) > 15
    assert "bind :8080" in lines
    assert "monitor-uri /lb-healthz" in lines
    assert "/lb-healthz" in " ".join(lb["healthcheck"]["test"])


def test_redis_7_persists_with_aof(compose: dict[str, Any]) -> None:
    redis = service(compose, "redis")
    assert re.fullmatch(r"redis:7(\.\d+)*-alpine", redis["image"])
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    (volume,) = redis["volumes"]
    name, path = volume.split(":")
    assert path == "/data" and name in compose["volumes"]
    assert "PONG" in " ".join(redis["healthcheck"]["test"])


def test_every_service_is_health_checked_and_waits_on_healthy_dependencies(
    compose: dict[str, Any],
) -> None:
    for name, spec in compose["services"].items():
        assert spec.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in spec.get("depends_on", {}).items():
            assert isinstance(condition, dict), f"{name} -> {dependency} has no condition"
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"


def test_router_environment_uses_known_settings_and_required_secrets(
    compose: dict[str, Any],
) -> None:
    """Every ROUTER_* is a real setting; secrets come from deploy/.env, never a default."""
    env = service(compose, "router")["environment"]
    assert set(env) <= setting_env_names(), set(env) - setting_env_names()
    for name in (
        "ROUTER_REDIS_URL",
        "ROUTER_API_KEY",
        "ROUTER_PUBLIC_URL",
        "ROUTER_RUNTIME_URL",
        "ROUTER_SECRET_KEY",
    ):
        assert name in env, name
    for name in ("ROUTER_API_KEY", "ROUTER_SECRET_KEY"):
        match = VARIABLE.fullmatch(env[name])
        assert match and match["name"] == name and match["op"] == ":?", env[name]
    assert env["ROUTER_REDIS_URL"] == "${ROUTER_REDIS_URL:-redis://redis:6379/0}"


def env_example_names(text: str) -> set[str]:
    """Variables deploy/.env.example sets or documents (commented `# NAME=` lines)."""
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_env_example_covers_every_variable_compose_requires(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    documented = env_example_names(ENV_EXAMPLE.read_text())
    used = {m["name"] for m in VARIABLE.finditer(text)}
    required = {m["name"] for m in VARIABLE.finditer(text) if m["op"] in (None, ":?", "?")}
    assert required <= documented, required - documented
    assert documented <= used, f"documented but unused: {documented - used}"
    # The example's real values never carry a secret.
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert values["ROUTER_API_KEY"] == "" and values["ROUTER_SECRET_KEY"] == ""


def test_observability_profile_scrapes_every_replica_and_loads_the_dashboard(
    compose: dict[str, Any],
) -> None:
    prometheus = service(compose, "prometheus")
    grafana = service(compose, "grafana")
    assert prometheus["profiles"] == grafana["profiles"] == ["observability"]
    for spec in (prometheus, grafana):
        for volume in spec["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source

    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd == {"names": ["router"], "type": "A", "port": 8080, "refresh_interval": "15s"}

    provisioning = DEPLOY / "grafana" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "router.yml").read_text())
    (provider,) = providers["providers"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    dashboard = Path(mounted[provider["options"]["path"] + "/router-dashboard.json"])
    assert (DEPLOY / dashboard).is_file()
    sources = yaml.safe_load((provisioning / "datasources" / "router.yml").read_text())
    assert [s["type"] for s in sources["datasources"]] == ["prometheus"]
