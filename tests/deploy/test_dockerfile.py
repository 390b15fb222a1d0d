"""deploy/Dockerfile: a slim two-stage build, non-root, probed on /healthz, runs `router serve`.

No Docker engine is needed: the instructions are parsed and checked, the HEALTHCHECK command
runs against a real worker, and deploy/check-image-install.sh runs the install steps.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from router.app import create_app
from router.commands.cli import build_parser, cmd_serve
from router.settings import Settings
from tests.conftest import free_port

from . import DEPLOY, Instruction, parse_dockerfile

DOCKERFILE = DEPLOY / "Dockerfile"
CHECK_SCRIPT = DEPLOY / "check-image-install.sh"
BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def test_builds_in_two_stages_from_python_3_11_slim(instructions: list[Instruction]) -> None:
    """A build stage makes the wheel; the runtime stage copies the environment, no build tools."""
    base = [i for i in instructions if i.keyword == "ARG" and i.args.startswith("PYTHON_IMAGE=")]
    assert base and base[0].args.startswith("PYTHON_IMAGE=python:3.11-slim")
    froms = [i.words() for i in instructions if i.keyword == "FROM"]
    assert froms == [["${PYTHON_IMAGE}", "AS", "build"], ["${PYTHON_IMAGE}"]]

    runtime = final_stage(instructions)
    runtime_text = " ".join(i.args for i in runtime)
    for tool in ("pip wheel", "build-essential", "gcc", "apt-get install"):
        assert tool not in runtime_text, f"the runtime stage installs {tool!r}"
    copies = [i.words() for i in runtime if i.keyword == "COPY"]
    assert ["--from=build", "/opt/router", "/opt/router"] in copies


def test_runs_as_a_fixed_non_root_user(instructions: list[Instruction]) -> None:
    """USER is numeric (Kubernetes' runAsNonRoot can only verify a number) and not root."""
    user = only(final_stage(instructions), "USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert gid.isdigit() and int(gid) != 0, user
    created = " ".join(i.args for i in final_stage(instructions) if i.keyword == "RUN")
    assert f"--uid {uid}" in created and f"--gid {gid}" in created


def test_data_dir_is_a_volume_owned_by_the_user(instructions: list[Instruction]) -> None:
    runtime = final_stage(instructions)
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    assert "ROUTER_DATA_DIR=/data" in env
    assert only(runtime, "VOLUME").exec_form() == ["/data"]
    run = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert "chown router:router /data" in run


def test_exposes_8080_and_stops_on_sigterm(instructions: list[Instruction]) -> None:
    runtime = final_stage(instructions)
    assert only(runtime, "EXPOSE").args == "8080"
    assert only(runtime, "STOPSIGNAL").args == "SIGTERM"


def test_entrypoint_and_cmd_are_router_serve_on_all_interfaces(
    instructions: list[Instruction],
) -> None:
    """ENTRYPOINT + CMD parse with router's own CLI as `serve --host 0.0.0.0 --port 8080`."""
    runtime = final_stage(instructions)
    entrypoint = only(runtime, "ENTRYPOINT").exec_form()
    cmd = only(runtime, "CMD").exec_form()
    assert entrypoint == ["router"]
    args = build_parser().parse_args(cmd)
    assert args.func is cmd_serve
    assert (args.host, args.port) == ("0.0.0.0", 8080)  # noqa: S104  # the container's interface


def healthcheck_code(instructions: list[Instruction]) -> str:
    argv = only(final_stage(instructions), "HEALTHCHECK").exec_form()
    assert argv[:2] == ["python", "-c"], "slim has no curl: the check runs Python"
    assert "urllib.request" in argv[2] and "http://127.0.0.1:8080/healthz" in argv[2]
    return argv[2]


async def run_python(code: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=15)


async def test_healthcheck_passes_on_a_live_worker_and_fails_without_one(
    instructions: list[Instruction], tmp_path: Path
) -> None:
    """The HEALTHCHECK command exits 0 against a running worker and non-zero when none listens."""
    port = free_port()
    code = healthcheck_code(instructions).replace(":8080/", f":{port}/")
    server = TestServer(
        create_app(Settings(data_dir=tmp_path / "data")), host="127.0.0.1", port=port
    )
    await server.start_server()
    try:
        assert await run_python(code) == 0
    finally:
        await server.close()
    assert await run_python(code) != 0


def test_check_script_runs_the_dockerfile_install_steps(instructions: list[Instruction]) -> None:
    """deploy/check-image-install.sh copies and installs exactly as the build stage does."""
    build = [i for i in instructions if i.stage == 0]
    copied = {w for i in build if i.keyword == "COPY" for w in i.words()[:-1]}
    assert copied == {"pyproject.toml", "README.md", "router"}
    run = " ".join(i.args for i in build if i.keyword == "RUN")
    for step in (
        "pip wheel --no-deps --wheel-dir /wheels .",
        "python -m venv /opt/router",
        "/opt/router/bin/pip install /wheels/router-*.whl",
    ):
        assert step in run, step
    # router is pure Python: nothing to compile, so no compiler in the image's build
    assert "gcc" not in run

    script = CHECK_SCRIPT.read_text()
    assert 'cp "$repo/pyproject.toml" "$repo/README.md" "$work/src/"' in script
    assert 'cp -R "$repo/router" "$work/src/router"' in script
    assert '-m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" .' in script
    assert '-m venv "$work/venv"' in script
    assert '"$work/venv/bin/pip" install --quiet "${wheels[@]}"' in script
    assert '[[ "${wheels[0]}" == *-py3-none-any.whl ]]' in script
    assert os.access(CHECK_SCRIPT, os.X_OK)

    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!router/"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_image_install_steps_give_a_working_router(tmp_path: Path) -> None:
    """A fresh venv with the built wheel runs `router --help`, `check-config` and `serve`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env |= {"PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    result = subprocess.run(  # noqa: S603  # our own script, fixed argv
        [BASH, str(CHECK_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check-image-install: ok" in result.stdout
