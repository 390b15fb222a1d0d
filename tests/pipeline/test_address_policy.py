"""No server-side request forgery: which addresses a server may have, as written and as resolved."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr, ValidationError

from router.models.common import Server
from router.pipeline.address_policy import AddressPolicy, GuardedResolver
from router.pipeline.assistant_request import AssistantRequestClient
from router.pipeline.decide import AssistantRequestResult
from router.settings import OrgConfig, Settings

from .helpers import LOOPBACK, Customer, make_call, make_number, respond


async def ask(client: AssistantRequestClient, url: str) -> AssistantRequestResult:
    deadline = asyncio.get_running_loop().time() + 5
    server = Server.model_validate({"url": url})
    return await client(server, make_number(), make_call(), deadline=deadline)


STRICT = AddressPolicy()  # several orgs, nothing allowed
SINGLE_ORG = AddressPolicy.for_orgs(None, 1)

# Every spelling of a forbidden address a URL may carry, and why it is forbidden.
FORBIDDEN_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://127.0.0.1./hook",
    "http://[::1]/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/hook",  # ... in hexadecimal
    "http://0177.0.0.1/hook",  # ... with an octal first part
    "http://127.1/hook",  # ... shortened
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "http://[64:ff9b::7f00:1]/hook",  # NAT64
    "http://localhost/hook",
    "http://LocalHost./hook",
    "http://api.localhost:9000/hook",
    "http://user:pw@10.0.0.8/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # shared address space (CGNAT)
    "http://[fd12::1]/hook",  # IPv6 unique-local
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[fe80::1%25eth0]/hook",
    "http://0.0.0.0/hook",
    "http://0/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://[fec0::1]/hook",
]
METADATA_URLS = [u for u in FORBIDDEN_URLS if "meta-data" in u]
LINK_LOCAL_AND_ODD = [
    "http://[fe80::1%25eth0]/hook",
    "http://0.0.0.0/hook",
    "http://0/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://[fec0::1]/hook",
]
PUBLIC_URLS = [
    "https://customer.example.com/hook",
    "http://8.8.8.8/hook",
    "http://[2001:4860:4860::8888]/hook",
    "http://[::ffff:8.8.8.8]/hook",
]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_every_spelling_of_a_forbidden_address_is_refused(url: str) -> None:
    """Loopback, private, link-local, metadata, multicast and reserved addresses, in every
    notation the system resolver reads as an address, are refused with several orgs."""
    assert STRICT.url_refusal(url) is not None


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_public_addresses_and_names_pass_as_written(url: str) -> None:
    """A public address passes; a name is left to the check on its resolved addresses."""
    assert STRICT.url_refusal(url) is None
    assert SINGLE_ORG.url_refusal(url) is None


@pytest.mark.parametrize(
    "url", [u for u in FORBIDDEN_URLS if u not in METADATA_URLS + LINK_LOCAL_AND_ODD]
)
def test_a_single_org_may_use_private_networks(url: str) -> None:
    """With one org the operator is the only tenant: loopback and private networks pass."""
    assert SINGLE_ORG.url_refusal(url) is None


@pytest.mark.parametrize("url", METADATA_URLS + LINK_LOCAL_AND_ODD)
def test_metadata_and_link_local_stay_refused_for_a_single_org(url: str) -> None:
    """Cloud metadata (AWS's IPv6 one sits in unique-local space, Alibaba's in shared
    space), link-local, unspecified, multicast and reserved addresses are never "private"."""
    assert SINGLE_ORG.url_refusal(url) is not None


def test_an_allow_list_is_exactly_what_passes() -> None:
    """Listed networks pass, metadata included when listed; nothing else private does."""
    policy = AddressPolicy.for_orgs([ip_network("10.1.0.0/16"), ip_network("169.254.169.254")], 1)
    assert policy.url_refusal("http://10.1.2.3/hook") is None
    assert policy.url_refusal("http://169.254.169.254/") is None
    assert policy.url_refusal("http://10.2.0.1/hook") is not None
    assert policy.url_refusal("http://127.0.0.1/hook") is not None
    assert policy.url_refusal("http://[fd00:ec2::254]/") is not None


def test_a_url_without_a_host_is_refused() -> None:
    assert STRICT.url_refusal("http:///hook") is not None


def test_the_setting_takes_comma_separated_networks_or_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ROUTER_SERVER_ALLOWED_NETWORKS: CIDRs or single addresses, `none` for none, blank unset."""
    monkeypatch.setenv("ROUTER_SERVER_ALLOWED_NETWORKS", "10.0.0.0/8, 127.0.0.1,::1")
    assert Settings().server_allowed_networks == (
        ip_network("10.0.0.0/8"),
        ip_network("127.0.0.1/32"),
        ip_network("::1/128"),
    )
    monkeypatch.setenv("ROUTER_SERVER_ALLOWED_NETWORKS", "none")
    assert Settings().server_allowed_networks == ()
    monkeypatch.setenv("ROUTER_SERVER_ALLOWED_NETWORKS", "")
    assert Settings().server_allowed_networks is None
    monkeypatch.setenv("ROUTER_SERVER_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ValidationError):
        Settings()


def test_the_default_follows_the_number_of_orgs(tmp_path: Path) -> None:
    """Unset: private networks pass while one org exists, not with two; `none` refuses them
    even for one org."""
    one = Settings(api_key=SecretStr("k"), data_dir=tmp_path)
    two = one.model_copy(update={"orgs": [OrgConfig(id="b", apiKeys=[SecretStr("k2")])]})
    url = "http://10.0.0.8/hook"
    assert AddressPolicy.for_settings(one).url_refusal(url) is None
    assert AddressPolicy.for_settings(two).url_refusal(url) is not None
    closed = one.model_copy(update={"server_allowed_networks": ()})
    assert AddressPolicy.for_settings(closed).url_refusal(url) is not None


def test_an_org_configured_with_a_forbidden_server_stops_the_start(tmp_path: Path) -> None:
    """An orgs-file server at a refused address is a configuration error, said at start."""
    orgs = [
        OrgConfig(id="a", apiKeys=[SecretStr("ka")]),
        OrgConfig.model_validate(
            {"id": "b", "apiKeys": ["kb"], "server": {"url": "http://169.254.169.254/"}}
        ),
    ]
    settings = Settings(orgs=orgs, data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"org b: server\.url must not point at"):
        AddressPolicy.for_settings(settings)


class FixedResolver(AbstractResolver):
    """A DNS answer chosen by the test: no name server is reachable from the suite."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        pass


async def test_a_name_that_resolves_to_a_forbidden_address_is_not_called(
    customer: Customer,
) -> None:
    """DNS rebinding: a name that passed as written but resolves to loopback is refused
    when called: outcome `blocked-address`, nothing sent, the server never reached."""
    port = customer.url.split(":")[2].split("/")[0]
    resolver = FixedResolver({"rebound.example.com": ["127.0.0.1"]})
    customer.reply(respond(json={"assistantId": "internal"}))
    async with AssistantRequestClient(resolver=resolver) as client:
        result = await ask(client, f"http://rebound.example.com:{port}/hook")
    assert (result.status, result.reason, result.body, result.http_status) == (
        "failed",
        "blocked-address",
        None,
        None,
    )
    assert resolver.asked == ["rebound.example.com"]
    assert customer.received == []


async def test_only_the_allowed_resolved_addresses_are_dialled(customer: Customer) -> None:
    """A name resolving to a refused and an allowed address is dialled at the allowed one;
    with loopback allowed, the same name reaches the server (the resolver is the one used)."""
    port = customer.url.split(":")[2].split("/")[0]
    resolver = FixedResolver({"mixed.example.com": ["169.254.169.254", "127.0.0.1"]})
    customer.reply(respond(json={"assistantId": "a1"}))
    async with AssistantRequestClient(addresses=LOOPBACK, resolver=resolver) as client:
        result = await ask(client, f"http://mixed.example.com:{port}/hook")
    assert (result.status, result.body) == ("ok", {"assistantId": "a1"})
    assert len(customer.received) == 1


async def test_a_forbidden_literal_is_not_called(customer: Customer) -> None:
    """An IP literal never reaches a resolver: the client checks it before sending."""
    async with AssistantRequestClient() as client:
        result = await ask(client, customer.url)
    assert (result.status, result.reason, result.attempts) == ("failed", "blocked-address", 0)
    assert customer.received == []


async def test_the_guard_refuses_before_any_connection() -> None:
    """The resolver itself: only allowed addresses come out; none left is an OSError that
    names no address."""
    inner = FixedResolver({"a.example": ["10.0.0.1", "93.184.216.34"], "b.example": ["::1"]})
    guard = GuardedResolver(AddressPolicy(), inner)
    assert [r["host"] for r in await guard.resolve("a.example", 80)] == ["93.184.216.34"]
    with pytest.raises(OSError, match="not allowed") as caught:
        await guard.resolve("b.example", 80)
    assert "::1" not in str(caught.value)
    assert ip_address("93.184.216.34").is_global
