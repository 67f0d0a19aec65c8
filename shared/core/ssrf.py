"""SSRF guard for every outbound connection whose address lookout does not choose itself:
the targets that reach a service over HTTP and the referrals a lookup provider follows.

A target's URL comes from configuration, but the address it reaches comes from DNS at the
moment of sending. :class:`GuardedConnector` checks the addresses the connector is about to
connect to, **after** resolution (so a name that resolves, or later rebinds, to 127.0.0.1
is caught, and so is an IP literal in the URL), and drops every address :func:`refusal`
refuses, unless it lies in ``LOOKOUT_OUTBOUND_ALLOW``. When no address is left the request
fails with :class:`RefusedDestination` (or the subclass the caller names: the relay's is a
permanent delivery failure, so the notification is dead-lettered with the reason, never
retried), and nothing reaches the forbidden address.

What is refused: every range of the IANA special-purpose address registries that is not
globally reachable, written out below (:data:`IPV4_SPECIAL`, :data:`IPV6_SPECIAL`), on top
of Python's own ``is_private``/``is_global``/``is_reserved``… checks, which differ between
Python versions (3.11 lets ``192.0.0.192``, a cloud metadata address, through):

- IANA IPv4 Special-Purpose Address Registry,
  https://www.iana.org/assignments/iana-ipv4-special-registry/ (RFC 6890, updated by
  RFC 8190), plus multicast ``224.0.0.0/4`` (IANA IPv4 Multicast Address Space Registry);
- IANA IPv6 Special-Purpose Address Registry,
  https://www.iana.org/assignments/iana-ipv6-special-registry/ (RFC 6890, RFC 8190),
  plus multicast ``ff00::/8`` (IANA IPv6 Multicast Address Space Registry) and the
  deprecated site-local ``fec0::/10`` (RFC 3879).

The registry's "globally reachable" entries inside a refused block stay reachable (the
anycast and AS112 addresses inside ``2001::/23``), except inside ``192.0.0.0/24``, which
is refused whole: it is where some clouds put their metadata service (``192.0.0.192``).
An IPv6 address that stands for an IPv4 one (IPv4-mapped ``::ffff:0:0/96``, NAT64
``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``) is judged by that IPv4
address.

Redirects are never followed by the targets (``allow_redirects=False``), so a public
endpoint cannot bounce a delivery inwards either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import ResolveResult

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_VARIABLE = "LOOKOUT_OUTBOUND_ALLOW"
METADATA_ADDRESS = ipaddress.IPv4Address("169.254.169.254")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

IPV4_SPECIAL: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), '"this network"'),  # RFC 791; 0.0.0.0/32 is "this host"
    (_V4("10.0.0.0/8"), "private"),  # RFC 1918
    (_V4("100.64.0.0/10"), "shared (carrier-grade NAT)"),  # RFC 6598
    (_V4("127.0.0.0/8"), "loopback"),  # RFC 1122
    (_V4("169.254.0.0/16"), "link-local"),  # RFC 3927
    (_V4("172.16.0.0/12"), "private"),  # RFC 1918
    # RFC 6890: IETF protocol assignments (DS-Lite, NAT64 discovery…); refused whole,
    # the PCP and TURN anycast addresses 192.0.0.9 and 192.0.0.10 included: clouds use
    # addresses in it for their metadata service (192.0.0.192).
    (_V4("192.0.0.0/24"), "IETF protocol assignment"),
    (_V4("192.0.2.0/24"), "documentation (TEST-NET-1)"),  # RFC 5737
    (_V4("192.88.99.0/24"), "6to4 relay anycast (deprecated)"),  # RFC 7526
    (_V4("192.168.0.0/16"), "private"),  # RFC 1918
    (_V4("198.18.0.0/15"), "benchmarking"),  # RFC 2544
    (_V4("198.51.100.0/24"), "documentation (TEST-NET-2)"),  # RFC 5737
    (_V4("203.0.113.0/24"), "documentation (TEST-NET-3)"),  # RFC 5737
    (_V4("224.0.0.0/4"), "multicast"),  # RFC 5771
    (_V4("255.255.255.255/32"), "limited broadcast"),  # RFC 919, before 240.0.0.0/4
    (_V4("240.0.0.0/4"), "reserved"),  # RFC 1112
)
"""IPv4 ranges lookout never connects to (unless ``LOOKOUT_OUTBOUND_ALLOW`` says so)."""

IPV6_SPECIAL: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),  # RFC 4291
    (_V6("::1/128"), "loopback"),  # RFC 4291
    (_V6("::/96"), "IPv4-compatible (deprecated)"),  # RFC 4291
    (_V6("100::/64"), "discard-only"),  # RFC 6666
    (_V6("2001::/23"), "IETF protocol assignment"),  # RFC 2928; Teredo 2001::/32 included
    (_V6("2001:db8::/32"), "documentation"),  # RFC 3849
    (_V6("3fff::/20"), "documentation"),  # RFC 9637
    (_V6("5f00::/16"), "segment routing (SRv6) SID"),  # RFC 9602
    (_V6("fc00::/7"), "unique-local"),  # RFC 4193
    (_V6("fe80::/10"), "link-local"),  # RFC 4291
    (_V6("fec0::/10"), "site-local (deprecated)"),  # RFC 3879
    (_V6("ff00::/8"), "multicast"),  # RFC 4291
)
"""IPv6 ranges lookout never connects to; the translation prefixes (``::ffff:0:0/96``,
``64:ff9b::/96``, ``64:ff9b:1::/48``, ``2002::/16``) are judged by the IPv4 inside."""

IPV6_GLOBAL_EXCEPTIONS: tuple[ipaddress.IPv6Network, ...] = (
    _V6("2001:1::1/128"),  # Port Control Protocol anycast, RFC 7723
    _V6("2001:1::2/128"),  # TURN anycast, RFC 8155
    _V6("2001:1::3/128"),  # DNS-SD service registration protocol anycast, RFC 9665
    _V6("2001:3::/32"),  # AMT, RFC 7450
    _V6("2001:4:112::/48"),  # AS112-v6, RFC 7535
    _V6("2001:20::/28"),  # ORCHIDv2, RFC 7343
    _V6("2001:30::/28"),  # drone remote ID entity tags, RFC 9374
)
"""Blocks inside ``2001::/23`` that the IPv6 registry marks globally reachable."""

_MAPPED = _V6("::ffff:0:0/96")  # RFC 4291
_NAT64 = _V6("64:ff9b::/96")  # RFC 6052, the well-known prefix: always the /96 layout
_NAT64_LOCAL = _V6("64:ff9b:1::/48")  # RFC 8215: a local prefix of any length ≥ /48
_SIXTOFOUR = _V6("2002::/16")  # RFC 3056


class RefusedDestination(Exception):
    """The host resolves only to addresses lookout must not connect to."""


def _bits(value: int, start: int, end: int) -> int:
    """Bits ``start``..``end`` (exclusive, counted from the left) of a 128-bit value."""
    return (value >> (128 - end)) & ((1 << (end - start)) - 1)


def _rfc6052(value: int, prefix: int) -> ipaddress.IPv4Address | None:
    """The IPv4 address embedded after a ``prefix``-bit NAT64 prefix (RFC 6052 section
    2.2: bits 64 to 71 skipped and zero, the suffix after the IPv4 address zero), or None
    when the address does not have that layout."""
    if prefix == 96:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    head = 64 - prefix  # IPv4 bits before the reserved octet
    tail_end = 72 + 32 - head
    if _bits(value, 64, 72) or _bits(value, tail_end, 128):
        return None
    high = _bits(value, prefix, 64)
    low = _bits(value, 72, tail_end)
    return ipaddress.IPv4Address((high << (32 - head)) | low)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 address(es) an IPv6 one stands for, or None when it stands for none.

    A local-use NAT64 address (``64:ff9b:1::/48``) may follow any of the RFC 6052
    layouts that fit its prefix (/48, /56, /64, /96): every one it can be read with counts.
    """
    if address in _MAPPED:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address in _SIXTOFOUR:
        return [ipaddress.IPv4Address(_bits(int(address), 16, 48))]
    if address in _NAT64_LOCAL:
        value = int(address)
        found = (_rfc6052(value, prefix) for prefix in (48, 56, 64, 96))
        return [embedded for embedded in found if embedded is not None]
    return None


def _stdlib_kind(address: Address) -> str | None:
    """What Python's ipaddress says against ``address`` (the checks the table tops up)."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local (deprecated)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "special-purpose (not globally routable)"
    return None


def _kind(address: Address) -> str | None:
    """Why lookout must not connect to ``address`` itself (e.g. ``"loopback address
    (127.0.0.0/8)"``), or None. Translation prefixes are judged by :func:`refusal`."""
    if address == METADATA_ADDRESS:
        return "link-local address (cloud metadata service)"
    if address == ipaddress.IPv4Address(0):
        return "unspecified address"
    if isinstance(address, ipaddress.IPv4Address):
        for network4, label in IPV4_SPECIAL:
            if address in network4:
                return f"{label} address ({network4})"
    else:
        if any(address in network for network in IPV6_GLOBAL_EXCEPTIONS):
            return None  # globally reachable by the registry, whatever Python says
        for network6, label in IPV6_SPECIAL:
            if address in network6:
                where = "" if network6.prefixlen == 128 else f" ({network6})"
                return f"{label} address{where}"
    stdlib = _stdlib_kind(address)
    return None if stdlib is None else f"{stdlib} address"


def _in(address: Address, allow: Iterable[Network]) -> bool:
    return any(address.version == network.version and address in network for network in allow)


def refusal(
    address: str | Address, allow: Sequence[Network] = (), *, host: str | None = None
) -> str | None:
    """Why lookout refuses to connect to ``address`` (resolved from ``host``, when given),
    or None when it may: every address of the IANA special-purpose registries that is not
    globally reachable, and whatever Python's ``ipaddress`` deems private or reserved, is
    refused unless it (or the IPv4 address an IPv6 one stands for) lies in ``allow``
    (``LOOKOUT_OUTBOUND_ALLOW``). The one check for every outbound connection."""
    shown = str(address) if host is None or host == str(address) else f"{host} ({address})"
    try:
        parsed = address if not isinstance(address, str) else ipaddress.ip_address(address)
    except ValueError:
        return f"refused to connect to {shown}: {str(address)!r} is not an IP address"
    if _in(parsed, allow):
        return None
    kind: str | None
    if isinstance(parsed, ipaddress.IPv6Address) and (inner := _embedded_ipv4(parsed)):
        kind = None
        for embedded in inner:
            if not _in(embedded, allow) and (embedded_kind := _kind(embedded)) is not None:
                kind = f"IPv4 {embedded} inside IPv6, a {embedded_kind}"
                break
    else:
        kind = _kind(parsed)
    if kind is None:
        return None
    return (
        f"refused to connect to {shown}: {kind}; "
        f"allow it with {ALLOW_VARIABLE} if this destination is meant to be internal"
    )


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that only connects to addresses :func:`refusal` lets through.

    The check sits on the connector's resolution step, which every connection passes
    through: host names (whatever DNS answers this time) and IP literals alike."""

    def __init__(
        self,
        allow: Sequence[Network] = (),
        refused: Callable[[str], RefusedDestination] = RefusedDestination,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.allow = tuple(allow)
        self.refused = refused

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[ResolveResult]:
        resolved = await super()._resolve_host(host, port, traces=traces)
        permitted: list[ResolveResult] = []
        reasons: list[str] = []
        for result in resolved:
            reason = refusal(result["host"], self.allow, host=host)
            if reason is None:
                permitted.append(result)
            else:
                reasons.append(reason)
        if not permitted:
            raise self.refused(reasons[0] if reasons else f"{host} did not resolve")
        return permitted


def session(
    allow: Sequence[Network],
    timeout: float,
    headers: dict[str, str] | None = None,
    refused: Callable[[str], RefusedDestination] = RefusedDestination,
) -> aiohttp.ClientSession:
    """An HTTP session: guarded connector (raising ``refused`` for a forbidden destination),
    total ``timeout``, ``headers``."""
    return aiohttp.ClientSession(
        connector=GuardedConnector(allow, refused),
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers=headers,
    )
