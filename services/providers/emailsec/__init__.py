"""The ``emailsec`` provider: SPF and DMARC posture of a domain (an e-mail's domain), plus
whether it publishes MTA-STS and BIMI. Every query goes to ``LOOKOUT_DNS_NAMESERVERS`` when
set, else to the system resolver's nameservers (port 53), through the lookups' one DNS client
(:mod:`shared.lookups.dns`: shared UDP sockets, in-flight deduplication, failover, a TTL
cache of at most 300 s that a ``fresh`` lookup skips), one per process.

Verdict:

* ``suspicious``: the SPF record is invalid (permerror: syntax, more than 10 DNS lookups,
  more than 2 void lookups, loops, missing include targets, multiple records…), or it lets
  every sender pass (``+all``, also through an include), or there is no DMARC record, or the
  DMARC record is invalid;
* ``harmless``: the SPF record is valid and the DMARC policy that applies to the domain is
  ``quarantine`` or ``reject`` for all mail (``pct=100``);
* ``undetected`` otherwise (e.g. ``p=none``, ``pct`` below 100, no SPF record);
* ``unknown``, "domain does not exist", when the domain itself is NXDOMAIN: a name that
  does not exist sends no mail, and has no posture to judge (``data.nxdomain``).

A DNS failure (timeout, SERVFAIL) on a name the verdict depends on raises
:class:`ProviderError`, so an unreliable answer is never cached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from typing import Any

from shared.core.settings import Settings
from shared.lookups.config import lookups
from shared.lookups.dns import (
    DnsAnswer,
    DnsClient,
    Resolver,
    Upstream,
    answers,
    cancel,
    start_query,
)
from shared.lookups.provider import Answer, Provider, ProviderError
from shared.lookups.schemas import LookupRequest, Verdict

from .config import SPEC
from .dmarc import check_dmarc
from .dmarc import clear_cache as clear_dmarc_cache
from .spf import check_spf
from .spfrecord import clear_analysis_cache

__all__ = [
    "EmailSecProvider",
    "build",
    "clear_caches",
    "evaluate",
    "verdict_for",
]

ANSWER_TTL = 3600.0
NXDOMAIN_TTL = 300.0


def _normalise(domain: str) -> str:
    domain = domain.strip()
    if "@" in domain:
        domain = domain.rsplit("@", 1)[1]
    return domain.rstrip(".").lower()


def _has_record(answer: DnsAnswer, prefix: str) -> bool:
    return any(text.startswith(prefix) for text in answer.records)


async def evaluate(domain: str, client: Resolver) -> dict[str, Any]:
    """SPF, DMARC, MTA-STS and BIMI of ``domain`` (an e-mail address is reduced to its
    domain), concurrently: ``{"domain", "spf", "dmarc", "mta_sts", "bimi"}``.

    One task: DMARC; SPF runs in the caller's task, MTA-STS and BIMI are just queries
    started first (with a :class:`DnsClient`, plain futures)."""
    domain = _normalise(domain)
    mta_sts = start_query(client, f"_mta-sts.{domain}", "TXT")
    bimi = start_query(client, f"default._bimi.{domain}", "TXT")
    dmarc = asyncio.ensure_future(check_dmarc(domain, client))
    try:
        spf = await check_spf(domain, client)
        dmarc_result = await dmarc
        mta_sts_answer, bimi_answer = await answers((mta_sts, bimi))
    except BaseException:
        cancel((dmarc, mta_sts, bimi))
        raise
    return {
        "domain": domain,
        "spf": spf,
        "dmarc": dmarc_result,
        "mta_sts": _has_record(mta_sts_answer, "v=STSv1"),
        "bimi": _has_record(bimi_answer, "v=BIMI1"),
    }


def clear_caches() -> None:
    """Forget what the evaluators keep process-wide, however they got it (analysed SPF
    records by text, organisational domains by name): for benchmarks whose runs must carry
    nothing over. DNS answers are cached by the DNS client, not here."""
    clear_analysis_cache()
    clear_dmarc_cache()


def verdict_for(data: dict[str, Any]) -> Verdict:
    spf, dmarc = data["spf"], data["dmarc"]
    if spf["status"] == "permerror" or spf["pass_all"] or spf["all"] == "+all":
        return "suspicious"
    if dmarc["status"] in ("none", "permerror"):
        return "suspicious"
    if (
        spf["valid"]
        and dmarc["effective_policy"] in ("quarantine", "reject")
        and dmarc["pct"] == 100
    ):
        return "harmless"
    return "undetected"


def summary_for(data: dict[str, Any]) -> str:
    spf, dmarc = data["spf"], data["dmarc"]
    if spf["status"] == "none":
        spf_text = "no SPF"
    else:
        good = spf["valid"] and not spf["pass_all"]
        lookups = spf["dns_lookups"]
        spf_text = f"SPF {lookups} lookup{'' if lookups == 1 else 's'} {'✓' if good else '✗'}"
        if spf["pass_all"]:
            spf_text += " +all"
    if dmarc["status"] == "none":
        dmarc_text = "no DMARC"
    elif dmarc["status"] == "permerror":
        dmarc_text = "DMARC invalid"
    else:
        dmarc_text = f"p={dmarc['effective_policy']}"
        if dmarc["pct"] != 100:
            dmarc_text += f" pct={dmarc['pct']}"
    return f"{spf_text}, {dmarc_text}"


_DNS_FAILURE = re.compile(r"DNS (\w+) for (\w+ \S+)")
_RCODE_TEXT = {
    "TIMEOUT": "DNS timeout",
    "SERVFAIL": "DNS server failure (SERVFAIL)",
    "REFUSED": "DNS query refused (REFUSED)",
    "ERROR": "DNS error",
}


def _cause(reason: str) -> str:
    """``'include:x': DNS TIMEOUT for TXT x`` → ``DNS timeout for TXT x``: the cause first."""
    found = _DNS_FAILURE.search(reason)
    if found is None:
        return reason
    rcode, question = found.groups()
    return f"{_RCODE_TEXT.get(rcode, f'DNS {rcode}')} for {question}"


def _temporary_failure(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(the cause, the details) when a DNS failure makes the answer unreliable."""
    spf, dmarc = data["spf"], data["dmarc"]
    if spf["status"] == "temperror":
        reason = (spf["temperrors"] or ["DNS failure"])[0]
        return f"{_cause(reason)} (SPF)", {
            "check": "SPF",
            "domain": data["domain"],
            "detail": reason,
        }
    if dmarc["status"] == "temperror":
        reason = dmarc["errors"][0]
        detail = {"check": "DMARC", "domain": data["domain"], "detail": reason}
        return f"{_cause(reason)} (DMARC)", detail
    return None


class EmailSecProvider(Provider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl

    def __init__(self, settings: Settings) -> None:
        self.settings = lookups(settings)
        self.upstream = Upstream(self.settings)
        self.nameservers = self.upstream.nameservers

    @property
    def client(self) -> DnsClient | None:
        return self.upstream.current

    def configured(self) -> str | None:
        return self.upstream.missing()

    def cache_salt(self) -> str:
        return self.upstream.describe()

    async def open(self) -> None:
        if self.nameservers:
            self.upstream.client()

    async def close(self) -> None:
        await self.upstream.close()

    async def lookup(self, request: LookupRequest) -> Answer:
        domain = _normalise(request.host or request.indicator)
        if not domain or _is_address(domain):
            return Answer(
                "unknown",
                "address literal: no SPF or DMARC",
                {"domain": domain, "skipped": "address literal"},
                ttl=ANSWER_TTL,
            )
        client: Resolver = self.upstream.client()
        if request.fresh:
            client = self.upstream.client().fresh()  # the DNS cache skipped too
        # The name itself first (SPF asks the same question: one query, shared in flight).
        existence = start_query(client, domain, "TXT")
        try:
            data = await evaluate(domain, client)
        except BaseException:
            cancel((existence,))
            raise
        [name] = await answers((existence,))
        if name.rcode == "NXDOMAIN":
            # No such domain: no mail can come from it, and no posture to judge.
            gone = {"domain": domain, "nxdomain": True, "exists": False}
            return Answer("unknown", "domain does not exist", gone, ttl=NXDOMAIN_TTL)
        problem = _temporary_failure(data)
        if problem is not None:
            reason, detail = problem
            raise ProviderError(reason, data={"upstream": self.cache_salt(), **detail})
        return Answer(verdict_for(data), summary_for(data), data, ttl=ANSWER_TTL)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").removeprefix("IPv6:").removeprefix("ipv6:"))
    except ValueError:
        return False
    return True


def build(settings: Settings) -> EmailSecProvider:
    return EmailSecProvider(settings)
