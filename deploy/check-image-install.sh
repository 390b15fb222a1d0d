#!/usr/bin/env bash
# Runs deploy/Dockerfile's install steps without a Docker engine, and the image's commands:
#
#   1. copy what the Dockerfile COPYs (pyproject.toml, README.md, router/) to a scratch dir;
#   2. build the router wheel there (`pip wheel --no-deps`), as the build stage does: one
#      pure-Python wheel (py3-none-any), nothing compiled;
#   3. a fresh virtual environment (no site packages of this machine), the wheel installed
#      into it with its dependencies, as the build stage does for /opt/router;
#   4. from that environment: `router --help`, `router check-config`,
#      then `router serve` on the embedded store, probed with the image's HEALTHCHECK
#      command, /readyz, /openapi.json (package data) and /metrics, stopped with SIGTERM
#      (exit 0 expected).
#
# Usage: deploy/check-image-install.sh            (PYTHON=python3.11 to choose the interpreter)
# Needs the package index (dependencies are downloaded, or taken from pip's cache).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/router-image-check.XXXXXX")"
server_pid=""

cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf 'check-image-install: %s\n' "$*"; }
fail() { printf 'check-image-install: FAILED: %s\n' "$*" >&2; exit 1; }

# Nothing of this shell's configuration reaches the image's commands.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(ROUTER_|PYTHONPATH$|PROMETHEUS_MULTIPROC_DIR$)' || true)
export PIP_DISABLE_PIP_VERSION_CHECK=1

step "sources as the Dockerfile copies them"
mkdir -p "$work/src"
cp "$repo/pyproject.toml" "$repo/README.md" "$work/src/"
cp -R "$repo/router" "$work/src/router"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
# A build that reads a file outside this list fails here, as it would in `docker build`.

step "pip wheel --no-deps"
(cd "$work/src" && "$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" .)
wheels=("$work"/wheels/router-*.whl)
[[ -f "${wheels[0]}" ]] || fail "no router wheel was built"
[[ "${wheels[0]}" == *-py3-none-any.whl ]] || fail "the router wheel is not pure Python: ${wheels[0]##*/}"

step "fresh virtual environment, wheel installed with its dependencies"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "${wheels[@]}"
export PATH="$work/venv/bin:$PATH"

cd "$work"  # never the repository: the import must come from the installed wheel
installed="$(python -c 'import router, os; print(os.path.dirname(router.__file__))')"
[[ "$installed" == "$work/venv/"* ]] || fail "router imported from $installed, not the venv"

step "router --help"
router --help >"$work/help.txt" || fail "router --help exited non-zero"
for command in serve check-config; do
    grep -q "$command" "$work/help.txt" || fail "router --help does not list $command"
done

step "router check-config"
ROUTER_API_KEY=check-key ROUTER_DATA_DIR="$work/data" router check-config >"$work/config.txt" \
    || fail "router check-config exited non-zero: $(cat "$work/config.txt")"
grep -q "orgs: default" "$work/config.txt" || fail "check-config did not read ROUTER_API_KEY"

step "router serve, probed as the image probes it"
port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ROUTER_API_KEY=check-key ROUTER_DATA_DIR="$work/data" ROUTER_LOG_FORMAT=json \
    router serve --host 127.0.0.1 --port "$port" >"$work/serve.log" 2>&1 &
server_pid=$!

# The Dockerfile's HEALTHCHECK, with this run's port.
healthcheck="import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=2)"
for _ in $(seq 100); do
    python -c "$healthcheck" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || fail "router serve exited: $(cat "$work/serve.log")"
    sleep 0.1
done
python -c "$healthcheck" || fail "/healthz never answered: $(cat "$work/serve.log")"

python - "$port" <<'PY' || fail "the running worker did not answer as expected"
import json
import sys
import urllib.request

base = f"http://127.0.0.1:{sys.argv[1]}"
with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
    assert json.load(response)["status"] == "ready"
with urllib.request.urlopen(f"{base}/openapi.json", timeout=5) as response:
    assert "paths" in json.load(response)
with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
    assert b"router_store_up" in response.read()
PY

step "SIGTERM"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[[ "$status" -eq 0 ]] || fail "router serve exited $status after SIGTERM: $(cat "$work/serve.log")"

step "ok"
