"""Where router may send an org's HTTP requests: no server-side request forgery.

A `server.url` is written by an org; the network the request leaves from is the
operator's. Without a guard, an org could point its server at `127.0.0.1`, a cloud
metadata service or another host on the operator's private network, and read the answer
back through its call records. So an address is refused unless it is public, or inside a
network the operator allowed (`ROUTER_SERVER_ALLOWED_NETWORKS`).

Default: while at most one org is configured, private and loopback networks are allowed
(the operator is the only org, no trust boundary is crossed, and a customer server on the
same host or network is common); with several orgs, none are. Link-local addresses and the
cloud metadata addresses below stay refused unless the setting names them.

Checked twice: when a URL is saved, on its host as written (IP literals in every notation
`inet_aton` accepts, `localhost` and `*.localhost`; names are not resolved then), and when
it is called, on every address its host resolves to (`GuardedResolver`), so a name that
later resolves to a refused address (DNS rebinding) is refused too.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING, Final

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

if TYPE_CHECKING:
    from router.settings import Settings

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Instance metadata services (AWS, GCP, Azure and OCI at 169.254.169.254, AWS over IPv6,
# Alibaba Cloud) and Azure's host endpoint: refused even where private networks are allowed.
METADATA_NETWORKS: Final[tuple[IPNetwork, ...]] = tuple(
    ip_network(n)
    for n in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32", "168.63.129.16/32")
)
# What "private" allows by default with a single org: loopback, RFC 1918, shared address
# space (CGNAT, also used inside clusters) and IPv6 unique-local.
PRIVATE_NETWORKS: Final[tuple[IPNetwork, ...]] = tuple(
    ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "::1/128",
        "fc00::/7",
    )
)
# NAT64's well-known prefix carries an IPv4 address in its last 32 bits.
_NAT64: Final = IPv6Network("64:ff9b::/96")
REFUSED_TEXT: Final = (
    "must not point at a private, loopback, link-local, multicast, reserved or "
    "cloud metadata address"
)


class BlockedAddress(OSError):
    """Every address a server's host resolved to is refused.

    An `OSError`, so aiohttp's connector reports it as it reports any failed lookup
    (`ClientConnectorError.os_error`); its text names no address.
    """

    def __init__(self) -> None:
        super().__init__("the server's address is not allowed")


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses a server may have. The default refuses everything not public."""

    allowed: tuple[IPNetwork, ...] = ()
    private_allowed: bool = False

    @classmethod
    def for_orgs(cls, allowed: Iterable[IPNetwork] | None, org_count: int) -> AddressPolicy:
        """`allowed` as the operator set it; unset, private networks while one org exists."""
        if allowed is None:
            return cls((), private_allowed=org_count <= 1)
        return cls(tuple(allowed))

    @classmethod
    def for_settings(cls, settings: Settings) -> AddressPolicy:
        """The worker's policy. An org whose own `server` it refuses stops the start: a
        configuration error is better said once than as a failed call each time."""
        orgs = settings.all_orgs()
        policy = cls.for_orgs(settings.server_allowed_networks, len(orgs))
        for org in orgs:
            refusal = policy.url_refusal(org.server.url) if org.server and org.server.url else None
            if refusal is not None:
                raise ValueError(
                    f"org {org.id}: server.url {refusal} "
                    "(unless a network in ROUTER_SERVER_ALLOWED_NETWORKS holds it)"
                )
        return policy

    def refuses(self, address: IPAddress) -> bool:
        """Whether a request to `address` would leave the public internet's reach."""
        address = _embedded_ipv4(address)
        if any(address in network for network in self.allowed):
            return False
        if any(address in network for network in METADATA_NETWORKS):
            return True
        if self.private_allowed and any(address in network for network in PRIVATE_NETWORKS):
            return False
        return not _public(address)

    def url_refusal(self, url: str) -> str | None:
        """Why `url` may not be called, judged on its host as written (no DNS); None if
        nothing is wrong with it so far."""
        try:
            host = URL(url).host
        except ValueError:
            return "is not a valid URL"
        if not host:
            return "must name a host"
        name = host.rstrip(".").lower()
        if name == "localhost" or name.endswith(".localhost"):
            # Resolved by the system to loopback, whatever DNS says.
            addresses: list[IPAddress] = [IPv4Address("127.0.0.1"), IPv6Address("::1")]
        else:
            literal = ip_literal(name)
            addresses = [literal] if literal is not None else []
        # `localhost` passes if one of its addresses may be dialled; the resolver drops the other.
        if addresses and all(self.refuses(address) for address in addresses):
            return REFUSED_TEXT
        return None


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells, in any notation the system resolver takes as an address
    (`2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` included); None for a name."""
    try:
        return ip_address(host)
    except ValueError:
        pass
    try:
        return IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), else itself."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return IPv4Address(int(address) & 0xFFFF_FFFF)
    return address


def _public(address: IPAddress) -> bool:
    # `is_global` alone lets multicast and (IPv6) site-local addresses through.
    if isinstance(address, IPv6Address) and address.is_site_local:
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with the refused addresses taken out of every answer.

    aiohttp connects to exactly the addresses a resolver returns, so what is checked here
    is what is dialled: no second lookup for a rebinding name to change. A host with no
    allowed address fails the lookup with `BlockedAddress`.
    """

    def __init__(self, policy: AddressPolicy, resolver: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._resolver = resolver if resolver is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        allowed = [r for r in results if not self._policy.refuses(ip_address(r["host"]))]
        if not allowed:
            raise BlockedAddress
        return allowed

    async def close(self) -> None:
        await self._resolver.close()
