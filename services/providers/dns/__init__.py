"""The ``dns`` provider: A, AAAA, CNAME, MX, NS, TXT and SOA for names (a URL's host, an
email's domain), PTR for addresses. All queries go to ``LOOKOUT_DNS_NAMESERVERS`` when set,
else to the system resolver's nameservers, through the lookups' one DNS client
(:mod:`shared.lookups.dns`: its failover, per-query timeout and TTL cache, which a ``fresh``
lookup skips). DNS does not judge: the verdict is ``unknown``; the answer is cached for its
own TTL, bounded to [60 s, 1 h].
"""

from __future__ import annotations

import asyncio

from services.providers.dns.config import SPEC
from shared.core.settings import Settings
from shared.lookups.config import lookups
from shared.lookups.dns import DnsClient, Upstream, reverse_name
from shared.lookups.provider import Answer, Provider, ProviderError, is_ip
from shared.lookups.schemas import LookupRequest

NAME_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA")
MIN_TTL, MAX_TTL, NEGATIVE_TTL = 60.0, 3600.0, 300.0


class DnsProvider(Provider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl
    looks_up_private = SPEC.looks_up_private  # PTR of internal addresses is useful

    def __init__(self, settings: Settings) -> None:
        self.settings = lookups(settings)
        self.upstream = Upstream(self.settings)

    @property
    def client(self) -> DnsClient | None:
        return self.upstream.current

    def configured(self) -> str | None:
        return self.upstream.missing()

    def cache_salt(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.settings.dns_nameservers) or "system"

    async def open(self) -> None:
        if self.upstream.nameservers:
            self.upstream.client()

    async def close(self) -> None:
        await self.upstream.close()

    async def _query(
        self, name: str, rdtype: str, fresh: bool
    ) -> tuple[list[str], float | None, str | None]:
        """(records, ttl, problem); problem is ``nxdomain``, ``timeout``, ``servfail`` (an
        error rcode from every server asked, or none reachable) or ``error: …``."""
        answer = await self.upstream.client().query(name, rdtype, fresh=fresh)
        if answer.rcode == "NOERROR":
            return list(answer.records), answer.ttl if answer.records else None, None
        if answer.nxdomain:
            return [], None, "nxdomain"
        if answer.timed_out:
            return [], None, "timeout"
        if answer.rcode == "BADNAME":
            return [], None, f"error: not a name DNS can ask for {rdtype}"
        return [], None, "servfail"

    async def lookup(self, request: LookupRequest) -> Answer:
        if request.kind in ("ipv4", "ipv6") or (request.host is not None and is_ip(request.host)):
            return await self._reverse(request.host or request.indicator, request.fresh)
        host = request.host or request.indicator
        results = await asyncio.gather(*(self._query(host, t, request.fresh) for t in NAME_TYPES))
        records = {t: r for t, (r, _, _) in zip(NAME_TYPES, results, strict=True)}
        problems = {t: p for t, (_, _, p) in zip(NAME_TYPES, results, strict=True) if p}
        ttls = [ttl for _, ttl, _ in results if ttl is not None]
        if len(problems) == len(NAME_TYPES) and "nxdomain" not in problems.values():
            # not one answer: an error with its cause, never "no address records"
            causes = sorted(set(problems.values()))
            said = "; ".join(_problem_text(c, self.settings.dns_timeout) for c in causes)
            raise ProviderError(
                f"{said}: no DNS answer for {host}",
                data={"upstream": self.cache_salt(), "host": host, "failed": problems},
            )
        nxdomain = any(p == "nxdomain" for p in problems.values())
        data: dict[str, object] = {"host": host, "records": records, "nxdomain": nxdomain}
        failed = {t: p for t, p in problems.items() if p != "nxdomain"}
        if failed:
            data["failed"] = failed
        if nxdomain:
            summary, ttl = "NXDOMAIN", NEGATIVE_TTL
        else:
            summary = _summary(records)
            ttl = min(ttls) if ttls else NEGATIVE_TTL
        if failed:
            ttl = 0.0  # a partial answer is not worth remembering
            if summary == _NO_ADDRESS:  # not "none": some were not answered
                summary = f"{summary} answered; {', '.join(failed)} failed"
        return Answer("unknown", summary, data, _bounded(ttl))

    async def _reverse(self, address: str, fresh: bool) -> Answer:
        records, ttl, problem = await self._query(reverse_name(address), "PTR", fresh)
        if problem in ("timeout", "servfail") or (problem or "").startswith("error"):
            raise ProviderError(
                f"{_problem_text(problem or '', self.settings.dns_timeout)} (PTR {address})",
                data={"upstream": self.cache_salt(), "address": address},
            )
        data = {"address": address, "ptr": records, "nxdomain": problem == "nxdomain"}
        summary = f"PTR {records[0]}" if records else "no PTR"
        return Answer("unknown", summary, data, _bounded(ttl if ttl is not None else NEGATIVE_TTL))


def _problem_text(problem: str, timeout: float) -> str:
    """A failed query's cause in words."""
    if problem == "timeout":
        return f"timeout after {timeout:g} s"
    if problem == "servfail":
        return "DNS server failure (SERVFAIL or no server answered)"
    return problem.removeprefix("error: ") or "DNS error"


def _bounded(ttl: float) -> float:
    return 0.0 if ttl <= 0 else max(MIN_TTL, min(MAX_TTL, ttl))


def _summary(records: dict[str, list[str]]) -> str:
    for rdtype in ("A", "AAAA", "CNAME"):
        values = records.get(rdtype) or []
        if values:
            more = f" (+{len(values) - 1})" if len(values) > 1 else ""
            return f"{rdtype} {values[0]}{more}"
    if records.get("MX"):
        return f"MX {records['MX'][0]}"
    return _NO_ADDRESS


_NO_ADDRESS = "no address records"


def build(settings: Settings) -> DnsProvider:
    return DnsProvider(settings)
