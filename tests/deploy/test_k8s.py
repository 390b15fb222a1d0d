"""deploy/k8s/: valid against the Kubernetes schemas, and wired the way router works.

The schemas come with the `kubernetes-validate` package (offline). The probes are checked
against a real worker on a real Redis: with Redis gone and nothing cached the readiness path
turns 503 while the liveness path stays 200 (a restart would not bring Redis back).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from router.app import create_app
from router.commands.cli import build_parser, cmd_serve
from tests.conftest import RedisServer

from . import (
    DEPLOY,
    SECRET_SETTINGS,
    parse_dockerfile,
    setting_env_names,
    settings_from_env,
    shutdown_seconds,
)

K8S = DEPLOY / "k8s"
# The oldest and a recent Kubernetes minor the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
# Seconds beyond preStop + shutdown before the kubelet's SIGKILL.
GRACE_MARGIN_SECONDS = 5

Manifest = dict[str, Any]


def load_manifests() -> list[tuple[Path, Manifest]]:
    manifests = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                manifests.append((path, doc))
    return manifests


MANIFESTS = load_manifests()


def one(kind: str, name: str | None = None) -> Manifest:
    found = [
        doc
        for _, doc in MANIFESTS
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container() -> Manifest:
    containers: list[Manifest] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("path", "manifest"),
    MANIFESTS,
    ids=[f"{p.name}:{m['kind']}" for p, m in MANIFESTS],
)
def test_manifest_matches_the_kubernetes_schema(
    path: Path, manifest: Manifest, version: str
) -> None:
    """Strict schemas: an unknown or misspelt field fails, not only a wrong type."""
    validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate (offline Kubernetes schemas) is not installed",
    )
    try:
        validate.validate(manifest, version, strict=True)
    except validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{path.name} {manifest['kind']} at {where}: {exc.message}")


def test_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    (image,) = kustomization["images"]
    assert container()["image"].split(":")[0] == image["name"]


def test_deployment_runs_router_serve_replicated_and_spread() -> None:
    deployment = one("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    args = build_parser().parse_args(container()["args"])
    assert args.func is cmd_serve
    assert (args.host, args.port) == ("0.0.0.0", 8080)  # noqa: S104  # the pod's own interface
    assert container()["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    resources = container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


def test_pod_labels_and_scrape_annotations() -> None:
    """Pods carry app=router (the dashboard's Loki selector) and Prometheus' scrape annotations."""
    template = one("Deployment")["spec"]["template"]
    assert template["metadata"]["labels"]["app"] == "router"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container()["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_pod_runs_non_root_on_a_read_only_root_with_a_writable_tmp() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    runtime = [i for i in parse_dockerfile((DEPLOY / "Dockerfile").read_text()) if i.stage == 1]
    (user,) = [i.args for i in runtime if i.keyword == "USER"]
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    (tmp,) = [m for m in container()["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume
    # A Service named `router` would otherwise inject ROUTER_SERVICE_HOST, ROUTER_PORT, ...
    assert pod["enableServiceLinks"] is False


def test_termination_grace_covers_prestop_and_the_longest_budget() -> None:
    """The kubelet waits preStop (endpoint removal), then router's shutdown, then a margin."""
    pod = one("Deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 3, "endpoint removal needs a few seconds to reach every proxy"
    settings = settings_from_env(one("ConfigMap", "router-config")["data"])
    needed = pre_stop + shutdown_seconds(settings) + GRACE_MARGIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_probes_use_health_and_readiness_endpoints() -> None:
    probes = {
        name: container()[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["httpGet"]["port"] == "http"
    # Start-up may take the Redis connect retries: let it, before liveness applies.
    startup = probes["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


async def test_probe_paths_answer_as_the_probes_expect(
    redis_factory: Callable[[], RedisServer], tmp_path: Path
) -> None:
    """Every probe path is 200 on a live worker; Redis gone, nothing cached: readiness 503."""
    redis = redis_factory()
    # The runtimes ConfigMap as the pod sees it, mounted at ROUTER_RUNTIMES_FILE.
    mounted = tmp_path / "runtimes.yaml"
    mounted.write_text(one("ConfigMap", "router-runtimes")["data"]["runtimes.yaml"])
    env = dict(one("ConfigMap", "router-config")["data"]) | {
        "ROUTER_REDIS_URL": redis.url,
        "ROUTER_RUNTIMES_FILE": str(mounted),
    }
    settings = settings_from_env(env).model_copy(
        update={"redis_connect_retries": 0, "data_dir": tmp_path}
    )
    paths = {
        name: container()[name]["httpGet"]["path"]
        for name in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            for path in paths.values():
                async with session.get(server.make_url(path)) as response:
                    assert response.status == 200, path
            redis.kill()
            async with session.get(server.make_url(paths["readinessProbe"])) as response:
                assert response.status == 503
            async with session.get(server.make_url(paths["livenessProbe"])) as response:
                assert response.status == 200
    finally:
        await server.close()


def test_config_and_secret_hold_known_settings_in_the_right_place() -> None:
    config = one("ConfigMap", "router-config")
    secret = one("Secret")
    env_from = container()["envFrom"]
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in env_from
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in env_from

    known = setting_env_names()
    config_keys = set(config["data"])
    secret_keys = set(secret["stringData"])
    assert config_keys <= known, config_keys - known
    assert secret_keys <= known, secret_keys - known
    secret_names = {f"ROUTER_{name.upper()}" for name in SECRET_SETTINGS}
    assert not config_keys & secret_names, "secrets belong in the Secret"
    assert {"ROUTER_API_KEY", "ROUTER_SECRET_KEY", "ROUTER_REDIS_URL"} <= secret_keys
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())
    # The ConfigMap's values are valid settings (bounds, wss:// runtime URL, ...).
    settings_from_env(config["data"])


def test_service_hpa_and_pdb_select_the_deployment_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()

    service = one("Service")
    assert service["spec"]["selector"] == selector
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == container()["ports"][0]["name"]

    hpa = one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container()["resources"]["requests"], "CPU utilisation needs a CPU request"

    pdb = one("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector


def test_the_runtimes_file_is_mounted_where_its_setting_points() -> None:
    """The `router-runtimes` ConfigMap's runtimes.yaml is what ROUTER_RUNTIMES_FILE names in
    the pod, and is a file router accepts."""
    import yaml

    from router.runtimes.config import Runtimes

    settings = one("ConfigMap", "router-config")["data"]
    path = settings["ROUTER_RUNTIMES_FILE"]
    spec = one("Deployment")["spec"]["template"]["spec"]
    [volume] = [
        v for v in spec["volumes"] if v.get("configMap", {}).get("name") == "router-runtimes"
    ]
    [mount] = [m for m in container()["volumeMounts"] if m["name"] == volume["name"]]
    assert path == f"{mount['mountPath']}/runtimes.yaml" and mount["readOnly"] is True
    content = one("ConfigMap", "router-runtimes")["data"]["runtimes.yaml"]
    runtimes = Runtimes.from_data(yaml.safe_load(content), settings["ROUTER_RUNTIME_URL"])
    assert list(runtimes.by_name) == ["default"]
