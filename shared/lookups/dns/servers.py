"""Which DNS servers the lookups ask, and the one client a provider process asks them
through (:class:`Upstream`)."""

from __future__ import annotations

import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from shared.lookups.config import LookupsConfig
from shared.lookups.dns.client import DnsClient

__all__ = ["NO_SERVER", "Upstream", "nameservers", "reverse_name", "system_nameservers"]

NO_SERVER = "no DNS server: set LOOKOUT_DNS_NAMESERVERS"
"""Why a provider that asks DNS is not configured when no server is known."""


def system_nameservers() -> list[tuple[str, int]]:
    """The system resolver's nameservers (``/etc/resolv.conf``), port 53; none if it has
    no configuration."""
    try:
        resolver = dns.resolver.Resolver()
    except (dns.resolver.NoResolverConfiguration, OSError):
        return []
    return [(str(server), 53) for server in resolver.nameservers]


def nameservers(config: LookupsConfig) -> list[tuple[str, int]]:
    """``LOOKOUT_DNS_NAMESERVERS`` in its order, else the system resolver's."""
    return list(config.dns_nameservers) or system_nameservers()


def reverse_name(address: str, zone: str | None = None) -> str:
    """The name of an address' PTR records (``4.3.2.1.in-addr.arpa``, nibbles under
    ``ip6.arpa``), or the same labels under ``zone`` (``4.3.2.1.<zone>``, as zones that list
    addresses are asked), without the final dot. Raises ``ValueError`` for a non-address."""
    try:
        if zone is None:
            name = dns.reversename.from_address(address)
        else:
            origin = dns.name.from_text(zone)
            name = dns.reversename.from_address(address, v4_origin=origin, v6_origin=origin)
    except (dns.exception.SyntaxError, ValueError) as exc:
        raise ValueError(f"not an IP address: {address!r}") from exc
    return name.to_text(omit_final_dot=True)


class Upstream:
    """The DNS servers of the lookups' configuration and the :class:`DnsClient` asking them,
    opened on first use and kept for the life of the provider (its cache with it)."""

    def __init__(self, config: LookupsConfig) -> None:
        self.nameservers = nameservers(config)
        self.timeout = config.dns_timeout
        self._client: DnsClient | None = None

    def missing(self) -> str | None:
        """Why no DNS can be asked, None when it can."""
        return None if self.nameservers else NO_SERVER

    def describe(self) -> str:
        """``host:port,host:port`` of the servers asked."""
        return ",".join(f"{host}:{port}" for host, port in self.nameservers)

    @property
    def current(self) -> DnsClient | None:
        """The client, if one is open."""
        return self._client

    def client(self) -> DnsClient:
        """The client, opened now if need be."""
        if self._client is None or self._client.closed:
            self._client = DnsClient(self.nameservers, self.timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
