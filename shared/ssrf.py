"""SSRF guard for every outbound HTTP target (http, Slack, Teams, Discord, PagerDuty, SMS).

A target's URL comes from configuration, but the address it reaches comes from DNS at the
moment of sending. :class:`GuardedConnector` checks the addresses the connector is about to
connect to, **after** resolution (so a name that resolves, or later rebinds, to 127.0.0.1
is caught, and so is an IP literal in the URL), and drops every address that is private,
loopback, link-local (the cloud metadata service 169.254.169.254 included), unique-local,
multicast, unspecified, reserved or otherwise not globally routable, unless it lies in
``LOOKOUT_OUTBOUND_ALLOW``. When no address is left the request fails with
:class:`RefusedDestination`, a :class:`~shared.targets.PermanentError`: the notification is
dead-lettered with the reason, never retried, and nothing reaches the forbidden address.

Redirects are never followed by the targets (``allow_redirects=False``), so a public
endpoint cannot bounce a delivery inwards either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import ResolveResult

from shared.targets import PermanentError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_VARIABLE = "LOOKOUT_OUTBOUND_ALLOW"
METADATA_ADDRESS = ipaddress.IPv4Address("169.254.169.254")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class RefusedDestination(PermanentError):
    """The target's host resolves only to addresses lookout must not connect to."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped (``::ffff:a.b.c.d``),
    6to4 (``2002::/16``) or NAT64 (``64:ff9b::/96``)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def classify(address: Address) -> str | None:
    """Why lookout must not connect to ``address`` (e.g. ``"loopback"``), or ``None`` when
    it is a public, globally routable address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = classify(embedded)
            return f"{inner} (IPv4 {embedded} inside IPv6)" if inner else None
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address == METADATA_ADDRESS:
        return "link-local (cloud metadata service)"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address):
        if address in ipaddress.IPv6Network("fc00::/7"):
            return "unique-local"
        if address.is_site_local:
            return "site-local"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "special-purpose (not globally routable)"
    return None


def allowed(address: Address, allow: Iterable[Network]) -> bool:
    """``address`` (or the IPv4 address inside it) lies in one of the ``allow`` networks."""
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in allow
    )


def refusal(host: str, address: str, allow: Sequence[Network]) -> str | None:
    """The reason lookout refuses to connect to ``address`` (resolved from ``host``), or
    ``None`` when it may."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"refused to connect to {host}: {address!r} is not an IP address"
    if allowed(parsed, allow):
        return None
    kind = classify(parsed)
    if kind is None:
        return None
    shown = host if host == address else f"{host} ({address})"
    return (
        f"refused to connect to {shown}: {kind} address "
        f"(allow it with {ALLOW_VARIABLE} if this target is meant to be internal)"
    )


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that only connects to addresses :func:`refusal` lets through.

    The check sits on the connector's resolution step, which every connection passes
    through: host names (whatever DNS answers this time) and IP literals alike."""

    def __init__(self, allow: Sequence[Network] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow = tuple(allow)

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[ResolveResult]:
        resolved = await super()._resolve_host(host, port, traces=traces)
        permitted: list[ResolveResult] = []
        reasons: list[str] = []
        for result in resolved:
            reason = refusal(host, result["host"], self.allow)
            if reason is None:
                permitted.append(result)
            else:
                reasons.append(reason)
        if not permitted:
            raise RefusedDestination(reasons[0] if reasons else f"{host} did not resolve")
        return permitted


def session(
    allow: Sequence[Network],
    timeout: float,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientSession:
    """An HTTP session for a target: guarded connector, total ``timeout``, ``headers``."""
    return aiohttp.ClientSession(
        connector=GuardedConnector(allow),
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers=headers,
    )
