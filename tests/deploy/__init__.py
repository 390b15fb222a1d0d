"""Checks of deploy/: the image, compose, Kubernetes manifests and the Grafana dashboard.

Shared facts of those checks live here (this package has no conftest of its own).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BUDGET_SETTINGS = (
    "twilio_budget_seconds",
    "telnyx_budget_seconds",
    "vonage_budget_seconds",
    "plivo_budget_seconds",
    "sip_budget_seconds",
)
# Settings whose values are secrets: never in a ConfigMap or a committed compose value.
SECRET_SETTINGS = frozenset({"api_key", "secret_key", "redis_url", "sip_edge_secret"})


def setting_env_names() -> set[str]:
    """Every `ROUTER_*` variable the worker reads."""
    return {f"ROUTER_{name.upper()}" for name in Settings.model_fields}


def shutdown_seconds(settings: Settings) -> float:
    """How long `router serve` may take after SIGTERM: in-flight webhooks get their budget + 2 s."""
    return float(max(getattr(settings, name) for name in BUDGET_SETTINGS)) + 2


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings from `ROUTER_*` values as a manifest sets them (not this process's environment)."""
    values = {k.removeprefix("ROUTER_").lower(): v for k, v in env.items()}
    return Settings.model_validate(values)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword, arguments (continuations joined), its stage."""

    keyword: str
    args: str
    stage: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (CMD, ENTRYPOINT, HEALTHCHECK CMD)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[1]
        value: Any = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
        return value

    def words(self) -> list[str]:
        return shlex.split(self.args)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; comments and blank lines dropped, `\\` continuations joined."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions
