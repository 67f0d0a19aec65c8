"""The ``asn`` provider: which network announces an address, from Team Cymru's IP-to-ASN
mapping over DNS (https://team-cymru.com/community-services/ip-asn-mapping/).

``<reversed octets>.origin.asn.cymru.com`` (IPv4) or ``<reversed nibbles>.origin6.asn.
cymru.com`` (IPv6) TXT answers ``"ASN[ ASN…] | prefix | CC | registry | allocated"``, one
record per covering prefix (the most specific one is kept); ``AS<n>.asn.cymru.com`` TXT
answers ``"ASN | CC | registry | allocated | AS name"``. NXDOMAIN: no route announces the
address. Every query goes through the lookups' one DNS client (its servers, failover,
timeout and cache). Informational: the verdict is always ``unknown``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from services.providers.asn.config import SPEC, AsnConfig
from shared.core.settings import Settings
from shared.lookups.config import lookups, provider_config
from shared.lookups.dns import DnsAnswer, Upstream, reverse_name
from shared.lookups.provider import Answer, Provider, ProviderError
from shared.lookups.schemas import LookupRequest

MIN_TTL, MAX_TTL, NEGATIVE_TTL = 300.0, 4 * 3600.0, 3600.0


@dataclass(frozen=True)
class Origin:
    """One origin TXT record."""

    asns: tuple[int, ...]
    prefix: str
    country: str
    registry: str
    allocated: str

    @property
    def length(self) -> int:
        try:
            return ipaddress.ip_network(self.prefix, strict=False).prefixlen
        except ValueError:
            return -1


def parse_origin(text: str) -> Origin | None:
    """``"23028 | 216.90.108.0/24 | US | arin | 1998-09-25"`` (several origin ASes are
    space-separated in the first field); None for anything else."""
    fields = [part.strip() for part in text.split("|")]
    if len(fields) < 3:
        return None
    try:
        asns = tuple(int(n) for n in fields[0].split())
    except ValueError:
        return None
    if not asns:
        return None
    fields += [""] * (5 - len(fields))
    return Origin(asns, fields[1], fields[2].upper(), fields[3], fields[4])


def parse_as_name(text: str) -> str | None:
    """The AS name of ``"23028 | US | arin | 2002-01-04 | TEAMCYMRU - SAUNET"``."""
    fields = [part.strip() for part in text.split("|", 4)]
    if len(fields) < 5 or not fields[4]:
        return None
    return fields[4]


class AsnProvider(Provider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl

    def __init__(self, settings: Settings) -> None:
        self.settings = lookups(settings)
        self.config = provider_config(settings, SPEC.name, AsnConfig)
        self.upstream = Upstream(self.settings)

    def configured(self) -> str | None:
        return self.upstream.missing()

    def cache_salt(self) -> str:
        c = self.config
        zones = f"{c.origin_zone},{c.origin6_zone},{c.names_zone}"
        return f"{self.upstream.describe() or 'system'}|{zones}"

    async def close(self) -> None:
        await self.upstream.close()

    def _failure(self, answer: DnsAnswer, what: str) -> ProviderError:
        if answer.timed_out:
            reason = f"timeout after {self.settings.dns_timeout:g} s"
        elif answer.rcode == "BADNAME":
            reason = "not a name DNS can ask"
        else:
            reason = f"DNS server failure ({answer.rcode})"
        return ProviderError(f"{reason} ({what})", data={"upstream": self.upstream.describe()})

    async def lookup(self, request: LookupRequest) -> Answer:
        address = request.indicator
        try:
            version = ipaddress.ip_address(address).version
        except ValueError:
            raise ProviderError(f"not an IP address: {address}") from None
        zone = self.config.origin_zone if version == 4 else self.config.origin6_zone
        client = self.upstream.client()
        answer = await client.query(reverse_name(address, zone), "TXT", fresh=request.fresh)
        if answer.void:
            data: dict[str, Any] = {"address": address, "announced": False}
            return Answer("unknown", "not announced", data, NEGATIVE_TTL)
        if not answer.answered:
            raise self._failure(answer, f"origin of {address}")
        origins = [o for o in (parse_origin(r) for r in answer.records) if o is not None]
        if not origins:
            raise ProviderError(
                "not an origin answer: " + "; ".join(answer.records)[:200],
                data={"upstream": self.upstream.describe(), "records": answer.records},
            )
        best = max(origins, key=lambda o: o.length)
        asn = best.asns[0]
        named = await client.query(f"AS{asn}.{self.config.names_zone}", "TXT", fresh=request.fresh)
        as_name = next((n for n in map(parse_as_name, named.records) if n), None)
        data = {
            "address": address,
            "announced": True,
            "asn": asn,
            "as_name": as_name,
            "prefix": best.prefix,
            "country": best.country or None,
            "registry": best.registry or None,
            "allocated": best.allocated or None,
            "records": list(answer.records),
        }
        if len(best.asns) > 1:
            data["other_asns"] = [f"AS{n}" for n in best.asns[1:]]
        ttl = answer.ttl if answer.ttl is not None else SPEC.default_ttl
        if not named.answered:
            data["as_name_error"] = named.rcode
            ttl = MIN_TTL  # ask again for the name soon
        return Answer("unknown", summary(asn, as_name, best.country), data, _bounded(ttl))


def summary(asn: int, as_name: str | None, country: str) -> str:
    """``AS15169 GOOGLE - Google Inc., US`` (the country once, even when the name ends
    with it), ``AS64501, DE`` without a name."""
    text = f"AS{asn}"
    if as_name:
        text += f" {as_name}"
    if country and not text.endswith(f", {country}"):
        text += f", {country}"
    return text


def _bounded(ttl: float) -> float:
    return max(MIN_TTL, min(MAX_TTL, ttl))


def build(settings: Settings) -> AsnProvider:
    return AsnProvider(settings)
