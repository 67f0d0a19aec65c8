"""The ``dnsbl`` provider: whether DNS blocklists list an address or a name.

Addresses are asked of the ``ip_zones`` (default Spamhaus ZEN) as ``<reversed octets or
nibbles>.<zone>``, names (a domain, a URL's host, an email's domain) of the ``name_zones``
(default Spamhaus DBL) as ``<name>.<zone>``, type A, through the lookups' one DNS client.
NXDOMAIN (or no record): not listed. Each ``127.x.y.z`` answer is a return code, read with
the zone's table (:mod:`services.providers.dnsbl.codes`, or ``codes`` of the
``[providers.dnsbl]`` table); several may come at once. Spamhaus' ``127.255.255.x`` (and
DBL's ``127.0.1.255``) answers are an error with their reason, never a listing, as is an
answer outside ``127.0.0.0/8`` (a resolver that rewrites NXDOMAIN).

With ``SPAMHAUS_DQS_KEY`` the Spamhaus zones are asked through the Data Query Service:
``<name>.<key>.zen.dq.spamhaus.net``. The key is in the query name only: results and
errors name the zone without it.

Verdict: the worst of the zones' (see ``codes``); a policy listing alone (PBL) is no finding
(``undetected``), not listed is ``undetected``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from services.providers.dnsbl.codes import ERRORS, SPAMHAUS_TABLES
from services.providers.dnsbl.config import (
    SPAMHAUS_DQS,
    SPAMHAUS_PUBLIC,
    SPEC,
    Code,
    dnsbl_settings,
)
from shared.core.settings import Settings
from shared.lookups.config import lookups
from shared.lookups.dns import DnsAnswer, Upstream, reverse_name
from shared.lookups.provider import Answer, Provider, ProviderError, is_ip
from shared.lookups.schemas import LookupRequest, Verdict

MIN_TTL, MAX_TTL, NEGATIVE_TTL = 60.0, 3600.0, 900.0
UNKNOWN_CODE = "listed (return code not documented for this zone)"


@dataclass
class ZoneResult:
    zone: str
    """As people read it: without a DQS key."""
    listed: bool = False
    codes: list[str] = field(default_factory=list)
    meanings: list[str] = field(default_factory=list)
    verdict: Verdict = "undetected"
    error: str | None = None
    ttl: float | None = None

    @property
    def summary(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        return "; ".join(self.meanings) if self.listed else "not listed"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"zone": self.zone, "listed": self.listed, "summary": self.summary}
        if self.listed:
            out.update(codes=self.codes, meanings=self.meanings, verdict=self.verdict)
        if self.error is not None:
            out["error"] = self.error
        return out


class DnsblProvider(Provider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl

    def __init__(self, settings: Settings) -> None:
        own = dnsbl_settings(settings)
        self.config = own.config
        self.key = own.dqs_key
        self.settings = lookups(settings)
        self.upstream = Upstream(self.settings)

    def configured(self) -> str | None:
        return self.upstream.missing()

    def cache_salt(self) -> str:
        c = self.config
        codes = sorted(
            (zone, sorted((k, v.meaning, v.verdict) for k, v in table.items()))
            for zone, table in c.codes.items()
        )
        dqs = "dqs" if self.key is not None else "public"
        return f"{self.upstream.describe() or 'system'}|{c.ip_zones}|{c.name_zones}|{codes}|{dqs}"

    async def close(self) -> None:
        await self.upstream.close()

    def _asked(self, zone: str) -> tuple[str, str]:
        """(the zone queried, the zone as shown): a Spamhaus zone through DQS with a key."""
        if self.key is not None and zone.endswith(SPAMHAUS_PUBLIC):
            base = zone.removesuffix(SPAMHAUS_PUBLIC)
            return f"{self.key.reveal()}.{base}{SPAMHAUS_DQS}", f"{base}{SPAMHAUS_DQS}"
        return zone, zone

    def _table(self, zone: str) -> dict[str, Code]:
        if zone in self.config.codes:
            return self.config.codes[zone]
        if zone.endswith((SPAMHAUS_PUBLIC, SPAMHAUS_DQS)):
            return SPAMHAUS_TABLES.get(zone.split(".", 1)[0], {})
        return {}

    async def lookup(self, request: LookupRequest) -> Answer:
        target = request.host or request.indicator
        if request.kind == "email" and "@" in target:
            target = target.rsplit("@", 1)[1]
        address = is_ip(target)
        zones = self.config.ip_zones if address else self.config.name_zones
        if not zones:
            what = "address" if address else "name"
            return Answer("unknown", f"no {what} zones configured", {"queried": target}, 0.0)
        if address:
            ip = ipaddress.ip_address(target)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                target = str(ip.ipv4_mapped)  # ::ffff:192.0.2.1 is listed as 192.0.2.1
        target = target.rstrip(".").lower()
        results = await asyncio.gather(
            *(self._ask(target, zone, address, request.fresh) for zone in zones)
        )
        return self._answer(target, list(results))

    async def _ask(self, target: str, zone: str, address: bool, fresh: bool) -> ZoneResult:
        asked, shown = self._asked(zone)
        result = ZoneResult(zone=shown)
        try:
            name = reverse_name(target, asked) if address else f"{target}.{asked}"
        except ValueError:
            result.error = "not an IP address"
            return result
        answer = await self.upstream.client().query(name, "A", fresh=fresh)
        if answer.void:
            result.ttl = answer.ttl
            return result
        if not answer.answered:
            result.error = self._failure(answer)
            return result
        table = self._table(shown)
        errors = [f"{code}: {ERRORS[code]}" for code in answer.records if code in ERRORS]
        errors += [
            f"{code}: answer outside 127.0.0.0/8 (a resolver rewriting NXDOMAIN?)"
            for code in answer.records
            if code not in ERRORS and not code.startswith("127.")
        ]
        if errors:
            result.error = "refused: " + "; ".join(errors)
            return result
        result.listed = True
        result.ttl = answer.ttl
        for code in sorted(answer.records, key=_code_order):
            known = table.get(code)
            result.codes.append(code)
            result.meanings.append(known.meaning if known else f"{UNKNOWN_CODE}: {code}")
        verdicts: list[Verdict] = [
            table[c].verdict if c in table else "suspicious" for c in result.codes
        ]
        result.verdict = worst(verdicts)
        return result

    def _failure(self, answer: DnsAnswer) -> str:
        if answer.timed_out:
            return f"timeout after {self.settings.dns_timeout:g} s"
        if answer.rcode == "BADNAME":
            return "the name is too long to ask"
        why = f"DNS server failure ({answer.rcode})"
        if self.key is not None:
            why += ": a DQS key not valid (or not enabled) for this zone answers REFUSED"
        return why

    def _answer(self, target: str, results: list[ZoneResult]) -> Answer:
        data: dict[str, Any] = {
            "queried": target,
            "zones": [r.as_json() for r in results],
            "listed": any(r.listed for r in results),
        }
        listed = [r for r in results if r.listed]
        failed = [r for r in results if r.error is not None]
        if failed and not any(r.verdict in ("malicious", "suspicious") for r in listed):
            reason = "; ".join(f"{r.zone}: {r.error}" for r in failed)
            raise ProviderError(reason, data={**data, "upstream": self.upstream.describe()})
        verdict = worst([r.verdict for r in listed])
        if listed and verdict == "undetected":
            data["policy_only"] = True
        if listed:
            meanings = "; ".join(m for r in listed for m in r.meanings)
            summary = f"policy listing only: {meanings}" if verdict == "undetected" else meanings
        else:
            summary = f"not listed ({', '.join(r.zone for r in results)})"
        ttls = [r.ttl for r in results if r.ttl is not None]
        ttl = min(ttls) if ttls else NEGATIVE_TTL
        if failed:
            ttl = 0.0
        return Answer(verdict, summary, data, _bounded(ttl))


def worst(verdicts: list[Verdict]) -> Verdict:
    """``malicious`` over ``suspicious`` over ``undetected`` (none: ``undetected``)."""
    for verdict in ("malicious", "suspicious"):
        if verdict in verdicts:
            return verdict
    return "undetected"


def _code_order(code: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in code.split("."))
    except ValueError:
        return (999,)


def _bounded(ttl: float) -> float:
    return 0.0 if ttl <= 0 else max(MIN_TTL, min(MAX_TTL, ttl))


def build(settings: Settings) -> DnsblProvider:
    return DnsblProvider(settings)
