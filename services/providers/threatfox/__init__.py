"""The ``threatfox`` provider: abuse.ch ThreatFox, indicators of compromise shared by the
community (C2 addresses, payload URLs, the hashes of their samples).

``POST {THREATFOX_URL}/`` with a JSON body and the ``Auth-Key`` header
(``ABUSECH_API_KEY``): ``{"query": "search_ioc", "search_term": <indicator>}`` for an
address, a domain or a URL, ``{"query": "search_hash", "hash": <md5|sha256>}`` for a hash
(ThreatFox does not search SHA-1: such a hash answers ``unknown`` without a request).
Answers are HTTP 200 with ``query_status`` ``ok`` (``data``: the IOCs) or ``no_result``;
a refused key is HTTP 401. ThreatFox stores an address as ``ip:port``, so the IOCs kept
for an IPv4 are those whose address part is it; for a domain, those naming it (as a
domain or as a URL's host); for a URL, that URL.

Verdict: an IOC with ``confidence_level`` ≥ ``malicious_confidence`` (default 50) →
malicious; IOCs of lower confidence only → suspicious; none → undetected. An entry in
ThreatFox is always a reported indicator of compromise, never a neutral listing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from services.providers.threatfox.config import SPEC, ThreatFoxConfig, threatfox_settings
from shared.core.settings import Settings
from shared.lookups.abusech import AbuseChProvider
from shared.lookups.indicators import hash_algorithm
from shared.lookups.provider import Answer, utc_time
from shared.lookups.schemas import LookupRequest, Verdict

IOCS_KEPT = 10


def _host(ioc: str) -> str:
    if "://" in ioc:
        return (urlsplit(ioc).hostname or "").lower()
    return ioc.rsplit(":", 1)[0].lower() if ioc.count(":") == 1 else ioc.lower()


def _matches(request: LookupRequest, ioc: str) -> bool:
    if request.kind == "url":
        return ioc == request.indicator
    return _host(ioc) == request.indicator


class ThreatFoxProvider(AbuseChProvider[ThreatFoxConfig]):
    name = SPEC.name
    default_ttl = SPEC.default_ttl
    label = "ThreatFox"
    not_found = ("no_result", "no_results")

    def __init__(self, settings: Settings) -> None:
        super().__init__(threatfox_settings(settings))

    def cache_salt(self) -> str:
        return f"{self.base}|{self.config.malicious_confidence}"

    async def lookup(self, request: LookupRequest) -> Answer:
        about: dict[str, Any] = {}
        if request.kind == "hash":
            algorithm = hash_algorithm(request.indicator) or "unknown"
            about["algorithm"] = algorithm
            if algorithm not in ("md5", "sha256"):
                return Answer("unknown", "ThreatFox searches MD5 and SHA-256 only", about)
            query: dict[str, str] = {"query": "search_hash", "hash": request.indicator}
        else:
            query = {"query": "search_ioc", "search_term": request.indicator}
        body = await self.query(f"{self.base}/", json=query)
        if body is None:
            return Answer("undetected", "not in ThreatFox", {"found": False, **about})
        iocs = [i for i in body.get("data") or [] if isinstance(i, dict)]
        if request.kind != "hash":
            iocs = [i for i in iocs if _matches(request, str(i.get("ioc", "")))]
        if not iocs:
            return Answer("undetected", "not in ThreatFox", {"found": False, **about})
        return self._answer(iocs, about)

    def _answer(self, iocs: list[dict[str, Any]], about: dict[str, Any]) -> Answer:
        def confidence(ioc: dict[str, Any]) -> int:
            try:
                return int(ioc.get("confidence_level") or 0)
            except (TypeError, ValueError):
                return 0

        top = max(confidence(i) for i in iocs)
        malware = sorted({str(i["malware_printable"]) for i in iocs if i.get("malware_printable")})
        threats = sorted({str(i["threat_type"]) for i in iocs if i.get("threat_type")})
        firsts = [t for i in iocs if (t := utc_time(i.get("first_seen")))]
        lasts = [t for i in iocs if (t := utc_time(i.get("last_seen")))]
        data: dict[str, Any] = {
            "found": True,
            "count": len(iocs),
            "confidence": top,
            "malware": malware,
            "threat_types": threats,
            "first_seen": min(firsts) if firsts else None,
            "last_seen": max(lasts or firsts) if (lasts or firsts) else None,
            "iocs": [
                {
                    "id": i.get("id"),
                    "ioc": i.get("ioc"),
                    "ioc_type": i.get("ioc_type"),
                    "threat_type": i.get("threat_type"),
                    "malware_printable": i.get("malware_printable"),
                    "confidence_level": confidence(i),
                    "first_seen": utc_time(i.get("first_seen")),
                    "tags": i.get("tags") or [],
                    "reference": i.get("reference"),
                }
                for i in iocs[:IOCS_KEPT]
            ],
            **about,
        }
        names = ", ".join(malware) or "unknown malware"
        threat = f" ({', '.join(threats)})" if threats else ""
        verdict: Verdict = "malicious" if top >= self.config.malicious_confidence else "suspicious"
        return Answer(verdict, f"{names}{threat}, confidence {top}%", data)


def build(settings: Settings) -> ThreatFoxProvider:
    return ThreatFoxProvider(settings)
