"""The one typed settings object, read once at the edge (CLI) and passed in."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from router.models.common import Server
from router.runtimes.config import Runtimes

DEFAULT_ORG_ID = "default"


class OrgConfig(BaseModel):
    """An org: its API keys and its default `server` for assistant-request."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)
    api_keys: list[SecretStr] = Field(default_factory=list, alias="apiKeys")
    server: Server | None = None
    # HMAC-SHA256 key that signs assistant-request bodies sent to this org's servers.
    server_secret: SecretStr | None = Field(default=None, alias="serverSecret")
    # Calls the org's numbers take at once, all together (SPEC §12); None: no cap.
    max_concurrent_calls: int | None = Field(
        default=None, ge=1, le=1_000_000, alias="maxConcurrentCalls"
    )


class Settings(BaseSettings):
    """Everything the worker reads from its environment (`ROUTER_*`) or a YAML file."""

    model_config = SettingsConfigDict(
        env_prefix="ROUTER_", extra="ignore", populate_by_name=True, frozen=True
    )

    redis_url: str | None = None
    api_key: SecretStr | None = None
    public_url: str | None = None
    runtime_url: str = "wss://runtime.invalid/stream"
    data_dir: Path = Path("./data")
    secret_key: SecretStr | None = None
    orgs_file: Path | None = None
    # Runtimes and routes (SPEC §11, docs/runtimes.md); unset: every call to runtime_url.
    runtimes_file: Path | None = None
    orgs: list[OrgConfig] = Field(default_factory=list)

    # Worker processes of `router serve` (the --workers flag wins).
    workers: int = Field(default=1, ge=1, le=64)
    # Domain on which `vapi` numbers without a sipUri get one generated.
    sip_domain: str = "sip.router.local"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # A request body must arrive whole within this, else 408 and the connection closes: a
    # client trickling bytes holds a descriptor no longer. A webhook's body gets at most
    # half its provider's budget, so a late body still leaves time to decide the call.
    request_body_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    # How long an idle connection stays open, and also how long a new connection may take
    # to send its first request's headers: aiohttp starts this timer when a connection
    # opens, and it is the only in-process bound on slow headers (docs/runbook.md).
    keepalive_timeout_seconds: float = Field(default=75.0, gt=0, le=3600)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    # Caller numbers in logs: "full", "last4" (default) or "none".
    log_caller: Literal["full", "last4", "none"] = "last4"

    # Deciding inbound calls (SPEC 4-7).
    twilio_budget_seconds: float = Field(default=7.5, gt=0, le=15)
    telnyx_budget_seconds: float = Field(default=7.5, gt=0, le=15)
    vonage_budget_seconds: float = Field(default=4.0, gt=0, le=5)
    # Plivo waits up to 40 s for one answer (its read timeout) and 55 s with retries; the
    # caller hears ringing meanwhile, so router answers as soon as the others.
    plivo_budget_seconds: float = Field(default=7.5, gt=0, le=40)
    sip_budget_seconds: float = Field(default=7.5, gt=0, le=30)
    apology_message: str = "Sorry, we cannot take your call right now. Please try again later."
    # The assistant-request client of one worker: connections open to servers at once, in
    # all and to one host (0: no limit). Each call waiting on its server holds one, and
    # calls in flight = arrival rate x server latency; descriptors are the real bound
    # (docs/runbook.md, "Sizing: calls in flight").
    assistant_request_max_connections: int = Field(default=4096, ge=0)
    assistant_request_max_connections_per_host: int = Field(default=0, ge=0)
    # Networks a `server.url` may reach although private, loopback or link-local (no
    # server-side request forgery: router/pipeline/address_policy.py). Comma-separated
    # CIDRs; `none` for none. Unset: private networks while at most one org is configured,
    # none with several. Cloud metadata addresses only when a listed network holds them.
    server_allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...] | None, NoDecode] = (
        None
    )
    call_record_ttl_seconds: int = Field(default=86_400, ge=60)
    # How long an admitted call holds its slot under a `maxConcurrentCalls` cap when its
    # final status never comes (a lost callback): Twilio's longest call by default is 4 h.
    admission_slot_seconds: int = Field(default=14_400, ge=1, le=172_800)
    # The embedded store keeps call records in process: at most this many decisions and
    # as many statuses (about 1.5 KB per call with both), the oldest dropped first.
    call_records_max: int = Field(default=200_000, ge=1000)
    # Shared secret a SIP edge sends as `Authorization: Bearer ...` to `/sip/route`.
    # Unset: the SIP edge endpoint refuses every request (fail closed).
    sip_edge_secret: SecretStr | None = None
    # Set VoiceUrl/StatusCallback on Twilio numbers when they are created or updated.
    wire_provider_numbers: bool = False
    twilio_api_base_url: str | None = None
    # Deadline of one wiring exchange with Twilio's REST API (an API write waits for it).
    twilio_api_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # Redis start-up: bounded, logged retries (arq's create_pool habit).
    redis_connect_retries: int = Field(default=5, ge=0)
    redis_retry_delay_seconds: float = Field(default=1.0, ge=0)

    @field_validator(
        "public_url",
        "redis_url",
        "orgs_file",
        "runtimes_file",
        "secret_key",
        "api_key",
        "sip_edge_secret",
        "twilio_api_base_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("server_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.strip().lower() == "none":
            return ()
        parts = tuple(part.strip() for part in value.split(",") if part.strip())
        return parts or None

    @field_validator("runtime_url")
    @classmethod
    def _wss(cls, value: str) -> str:
        # Twilio and Telnyx streams take wss:// only, and parameters travel outside the URL.
        if not value.startswith("wss://") or "?" in value:
            raise ValueError("ROUTER_RUNTIME_URL must be a wss:// URL without a query string")
        return value

    def runtimes(self) -> Runtimes:
        """The runtimes file's runtimes and routes, with runtime_url as `default`; raises
        RuntimesFileError with a message that says what is wrong and where."""
        if self.runtimes_file is None:
            return Runtimes.only_default(self.runtime_url)
        return Runtimes.from_file(self.runtimes_file, self.runtime_url)

    def all_orgs(self) -> list[OrgConfig]:
        """The configured orgs: `ROUTER_API_KEY` as org `default`, the orgs file, inline orgs."""
        orgs: dict[str, OrgConfig] = {}
        if self.api_key is not None:
            orgs[DEFAULT_ORG_ID] = OrgConfig(id=DEFAULT_ORG_ID, apiKeys=[self.api_key])
        extra = list(self.orgs)
        if self.orgs_file is not None:
            extra.extend(load_orgs_file(self.orgs_file))
        for org in extra:
            known = orgs.get(org.id)
            if known is not None:
                org = org.model_copy(update={"api_keys": [*known.api_keys, *org.api_keys]})
            orgs[org.id] = org
        return list(orgs.values())


def load_orgs_file(path: Path) -> list[OrgConfig]:
    """Read `orgs:` from a YAML file (a list of OrgConfig)."""
    data = yaml.safe_load(path.read_text()) or {}
    raw = data.get("orgs", []) if isinstance(data, dict) else data
    return [OrgConfig.model_validate(item) for item in raw]


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from a YAML file (keys without the prefix), then `ROUTER_*`, then overrides.

    Environment variables win over the file, so an operator can override one value
    of a shared file per host.
    """
    file_values: dict[str, Any] = {}
    if config_file is not None:
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping of settings")
        file_values = {str(k).lower().removeprefix("router_"): v for k, v in loaded.items()}
    env = Settings()
    explicit = env.model_fields_set
    merged = {**file_values, **{k: getattr(env, k) for k in explicit}, **overrides}
    return Settings.model_validate(merged)
