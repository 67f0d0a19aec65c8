"""The IANA RDAP bootstrap registries (RFC 9224), shipped in ``data/`` and never downloaded.

``dns.json`` maps TLDs to RDAP base URLs, ``ipv4.json`` / ``ipv6.json`` map address blocks
to the regional internet registries' base URLs. A lookup answers the https base URLs for the
longest matching entry (http ones only when no https one is listed), or nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import msgspec

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Each RIR's RDAP host and its WHOIS server, for the WHOIS fallback of an address.
RIR_WHOIS = {
    "rdap.arin.net": "whois.arin.net",
    "rdap.db.ripe.net": "whois.ripe.net",
    "rdap.apnic.net": "whois.apnic.net",
    "rdap.lacnic.net": "whois.lacnic.net",
    "rdap.afrinic.net": "whois.afrinic.net",
}


def _services(name: str) -> list[tuple[list[str], list[str]]]:
    raw = resources.files(__package__).joinpath("data", name).read_bytes()
    document: Any = msgspec.json.decode(raw)
    services: list[tuple[list[str], list[str]]] = []
    for entry in document.get("services", []):
        keys, urls = entry[0], entry[1]
        https = [u for u in urls if u.startswith("https://")]
        services.append(([k.lower() for k in keys], https or list(urls)))
    return services


class Bootstrap:
    def __init__(self) -> None:
        self._tlds: dict[str, list[str]] = {}
        for keys, urls in _services("dns.json"):
            for key in keys:
                self._tlds[key.strip(".")] = urls
        blocks: list[tuple[IPNetwork, list[str]]] = []
        for name in ("ipv4.json", "ipv6.json"):
            for keys, urls in _services(name):
                blocks.extend((ipaddress.ip_network(key, strict=False), urls) for key in keys)
        # Longest prefix first: the first block that holds an address is the best one.
        blocks.sort(key=lambda block: block[0].prefixlen, reverse=True)
        self._blocks = blocks

    def domain(self, name: str) -> list[str]:
        """Base URLs for a domain name (longest matching suffix), or [] when none."""
        labels = name.lower().strip(".").split(".")
        for start in range(len(labels)):
            urls = self._tlds.get(".".join(labels[start:]))
            if urls:
                return urls
        return []

    def address(self, address: str) -> list[str]:
        ip = ipaddress.ip_address(address)
        for network, urls in self._blocks:
            if network.version == ip.version and ip in network:
                return urls
        return []

    def whois_server_for_address(self, address: str) -> str | None:
        """The WHOIS server of the RIR that RDAP bootstrap names for ``address``."""
        for url in self.address(address):
            server = RIR_WHOIS.get(urlsplit(url).hostname or "")
            if server:
                return server
        return None


@functools.cache
def bootstrap() -> Bootstrap:
    return Bootstrap()
