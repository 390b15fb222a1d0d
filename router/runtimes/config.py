"""`ROUTER_RUNTIMES_FILE`: the runtimes calls are connected to, and which calls go where
(SPEC §11, docs/runtimes.md).

```yaml
runtimes:
  - {name: a, kind: stream, url: "wss://a.example/stream"}
  - {name: oai, kind: sip, uri: "sip:proj_x@sip.api.openai.com;transport=tls"}
routes:
  - match: {assistantId: "asst-ab*"}
    runtimes: [{name: a, weight: 50}, {name: b, weight: 50}]
    sticky: caller
```

Everything is checked when the file is read (`router serve` and `router check-config`),
including that every provider a route may serve can express each of its runtimes: a
kind a provider cannot carry out is refused here, never discovered on a call.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

RuntimeKind: TypeAlias = Literal["stream", "sip", "conversation-relay"]

# The name `ROUTER_RUNTIME_URL` goes by when no route matches (or no file is given).
DEFAULT_RUNTIME: Final = "default"

# What each provider's call-control language can carry out. Vonage's NCCO and Plivo XML
# have no ConversationRelay, and a SIP edge bridges SIP and media streams, not Twilio's relay.
# TeXML's <Dial><Sip> documents no SIP headers, and a `sip` runtime learns the call's ids
# from its `x-router-*` headers only.
PROVIDER_KINDS: Final[Mapping[str, frozenset[str]]] = {
    "twilio": frozenset({"stream", "sip", "conversation-relay"}),
    "telnyx": frozenset({"stream", "conversation-relay"}),
    "vonage": frozenset({"stream", "sip"}),
    "plivo": frozenset({"stream", "sip"}),
    "sip": frozenset({"stream", "sip"}),
}
PROVIDERS: Final = tuple(PROVIDER_KINDS)
# Why a provider cannot reach a kind, where the language has the verb but not what the
# runtime needs.
WHY_NOT: Final[Mapping[tuple[str, str], str]] = {
    ("telnyx", "sip"): (
        "TeXML documents no SIP headers on <Dial><Sip>, and a sip runtime reads the "
        "call's ids from its x-router-* headers"
    ),
}

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# A SIP URI router can dial: a user part, a host, optional parameters, no headers of its
# own (router adds the `x-` headers) and nothing that would break a TwiML attribute.
_SIP_URI: Final = re.compile(r"sips?:[^@\s<>\"?]+@[^\s<>\"?;]+(;[^\s<>\"?]*)?", re.IGNORECASE)
_MAX_WEIGHT: Final = 10_000
MATCH_FIELDS: Final = ("assistantId", "squadId", "workflowId", "orgId", "provider")
_ROUTES_FOUND_KEPT: Final = 4096


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Runtime(_Strict):
    """Where calls can run: a media-stream server, a SIP-addressed agent, or a Twilio
    ConversationRelay websocket."""

    name: str
    kind: RuntimeKind
    url: str | None = None
    uri: str | None = None
    # Optional active probe: GET it; a 2xx is healthy.
    health_url: str | None = Field(default=None, alias="healthUrl")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                "a runtime name is 1-63 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit"
            )
        return value

    @field_validator("health_url")
    @classmethod
    def _health_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("healthUrl must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _address(self) -> Runtime:
        if self.kind == "sip":
            if self.url is not None or self.uri is None:
                raise ValueError(f"runtime {self.name}: a sip runtime has a `uri`, not a `url`")
            if not _SIP_URI.fullmatch(self.uri):
                raise ValueError(
                    f"runtime {self.name}: uri must be a SIP URI like "
                    "sip:agent@sip.example.com;transport=tls (no headers, no spaces)"
                )
        else:
            if self.uri is not None or self.url is None:
                raise ValueError(f"runtime {self.name}: a {self.kind} runtime has a `url`")
            if not self.url.startswith("wss://") or any(c in self.url for c in '?#"<> '):
                raise ValueError(
                    f"runtime {self.name}: url must be a wss:// URL without a query string"
                )
        return self

    @property
    def address(self) -> str:
        """The URL or SIP URI calls are sent to."""
        return str(self.uri if self.kind == "sip" else self.url)


class RouteRuntime(_Strict):
    name: str
    weight: int = Field(default=1, ge=0, le=_MAX_WEIGHT)


@dataclass(frozen=True, slots=True)
class Choices:
    """A route's runtimes as plain tuples, made once per route: the weights, the ones
    that take new calls (weight above 0), and stickiness."""

    names: tuple[str, ...]
    weights: tuple[int, ...]
    weighted: tuple[int, ...]  # indexes of the runtimes with a weight above 0
    sticky: bool

    @classmethod
    def of(cls, names: Sequence[str], weights: Sequence[int], sticky: bool) -> Choices:
        weighted = tuple(i for i, weight in enumerate(weights) if weight > 0)
        return cls(tuple(names), tuple(weights), weighted, sticky)


class Route(_Strict):
    """Calls whose target (and org, provider) match go to `runtimes`, split by weight."""

    match: dict[str, str]
    runtimes: list[RouteRuntime] = Field(min_length=1, max_length=20)
    sticky: Literal["caller"] | None = None

    @field_validator("match")
    @classmethod
    def _match(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError(f"match needs at least one of {', '.join(MATCH_FIELDS)}")
        unknown = sorted(set(value) - set(MATCH_FIELDS))
        if unknown:
            raise ValueError(f"match takes {', '.join(MATCH_FIELDS)}; not {', '.join(unknown)}")
        provider = value.get("provider")
        if provider is not None and not any(fnmatch.fnmatchcase(p, provider) for p in PROVIDERS):
            raise ValueError(f"match.provider {provider!r} names none of {', '.join(PROVIDERS)}")
        for key, pattern in value.items():
            if not pattern:
                raise ValueError(f"match.{key} is empty")
        return value

    @model_validator(mode="after")
    def _runtimes(self) -> Route:
        names = [r.name for r in self.runtimes]
        if len(set(names)) != len(names):
            raise ValueError("a route lists each runtime once")
        if not any(r.weight for r in self.runtimes):
            raise ValueError("a route needs a runtime with a weight above 0")
        return self

    @cached_property
    def choices(self) -> Choices:
        return Choices.of(
            [r.name for r in self.runtimes], [r.weight for r in self.runtimes], bool(self.sticky)
        )

    def providers(self, earlier: Sequence[Route] = ()) -> tuple[str, ...]:
        """The providers whose calls this route may serve: those its `match.provider`
        allows, less those an `earlier` route takes all of (first match wins)."""
        pattern = self.match.get("provider", "*")
        return tuple(
            p
            for p in PROVIDERS
            if fnmatch.fnmatchcase(p, pattern) and not any(r._takes_all(self, p) for r in earlier)
        )

    def _takes_all(self, later: Route, provider: str) -> bool:
        """Whether this route matches every call of `provider` that `later` matches: it
        allows the provider, and each of its other fields is `later`'s, as written."""
        if not fnmatch.fnmatchcase(provider, self.match.get("provider", "*")):
            return False
        return all(later.match.get(k) == v for k, v in self.match.items() if k != "provider")

    def matches(self, facts: Mapping[str, str | None]) -> bool:
        """Whether every field of `match` matches the call's (exactly, or as a glob)."""
        for key, pattern in self.match.items():
            value = facts.get(key)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True


class RuntimesFile(_Strict):
    runtimes: list[Runtime] = Field(default_factory=list, max_length=200)
    routes: list[Route] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> RuntimesFile:
        names = [r.name for r in self.runtimes]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"runtime {name} is defined twice")
            if name == DEFAULT_RUNTIME:
                raise ValueError(f"runtime name {DEFAULT_RUNTIME!r} is taken by ROUTER_RUNTIME_URL")
            seen.add(name)
        kinds = {r.name: r.kind for r in self.runtimes}
        for index, route in enumerate(self.routes):
            for entry in route.runtimes:
                if entry.name not in kinds:
                    raise ValueError(f"routes[{index}] names runtime {entry.name}, not defined")
                for provider in route.providers(self.routes[:index]):
                    kind = kinds[entry.name]
                    if kind not in PROVIDER_KINDS[provider]:
                        why = WHY_NOT.get((provider, kind))
                        raise ValueError(
                            f"routes[{index}]: runtime {entry.name} is a {kind} "
                            f"runtime, which {provider} calls cannot reach"
                            f"{f' ({why})' if why else ''}; restrict the route with "
                            f"match.provider (e.g. provider: twilio)"
                        )
        return self


class RuntimesFileError(ValueError):
    """The runtimes file cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Runtimes:
    """The runtimes and routes in force: the file's, plus `ROUTER_RUNTIME_URL` as the
    `default` stream runtime for calls no route matches."""

    by_name: Mapping[str, Runtime]
    routes: Sequence[Route]
    default: Runtime
    # The route found for each combination of match fields calls had: the file does not
    # change while the worker runs, and a number's calls all have the same.
    _found: dict[tuple[str | None, ...], Route | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def only_default(cls, runtime_url: str) -> Runtimes:
        default = Runtime(name=DEFAULT_RUNTIME, kind="stream", url=runtime_url)
        return cls({DEFAULT_RUNTIME: default}, (), default)

    @classmethod
    def from_file(cls, path: Path, runtime_url: str) -> Runtimes:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise RuntimesFileError(f"{path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise RuntimesFileError(f"{path}: not YAML: {exc}") from None
        return cls.from_data(data, runtime_url, source=str(path))

    @classmethod
    def from_data(cls, data: Any, runtime_url: str, *, source: str = "runtimes") -> Runtimes:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RuntimesFileError(f"{source}: expected a mapping with runtimes and routes")
        try:
            parsed = RuntimesFile.model_validate(data)
        except ValidationError as exc:
            raise RuntimesFileError(f"{source}: {_messages(exc)}") from None
        default = Runtime(name=DEFAULT_RUNTIME, kind="stream", url=runtime_url)
        by_name = {DEFAULT_RUNTIME: default, **{r.name: r for r in parsed.runtimes}}
        return cls(by_name, tuple(parsed.routes), default)

    def route_for(self, facts: Mapping[str, str | None]) -> Route | None:
        """The first route whose match fits the call; None: the default runtime."""
        key = tuple(facts.get(name) for name in MATCH_FIELDS)
        try:
            return self._found[key]
        except KeyError:
            pass
        found = next((route for route in self.routes if route.matches(facts)), None)
        if len(self._found) >= _ROUTES_FOUND_KEPT:
            self._found.clear()
        self._found[key] = found
        return found

    def describe(self) -> list[str]:
        """Lines for `router check-config`."""
        lines = [f"runtime {r.name}: {r.kind} {r.address}" for r in self.by_name.values()]
        for index, route in enumerate(self.routes):
            match = ", ".join(f"{k}={v}" for k, v in route.match.items())
            split = ", ".join(f"{r.name} ({r.weight})" for r in route.runtimes)
            sticky = "; sticky by caller" if route.sticky else ""
            lines.append(f"route {index}: {match} -> {split}{sticky}")
        lines.append(f"no route matches: {DEFAULT_RUNTIME} ({self.default.address})")
        return lines


def _messages(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
