"""The ``internetdb`` provider: what Shodan's InternetDB saw of an address.

``GET {INTERNETDB_URL}/{ip}`` (no key) answers ``{"ip", "ports", "hostnames", "cpes",
"tags", "vulns"}``, or 404 ``{"detail": "No information available"}``.

Verdict: a tag of ``malicious_tags`` (``c2``, ``compromised``, ``doublepulsar``,
``malware``) → ``malicious``. Open ports, host names, CPEs, CVEs (inferred from software
versions) and the other tags (``cloud``, ``vpn``, ``self-signed``, ``scanner``…) are
information about an exposed host, not a finding: ``undetected``, with a summary such as
``3 ports, 2 CVEs``. No data → ``undetected`` "no data".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from services.providers.internetdb.config import SPEC, internetdb_settings
from shared.core.retryafter import parse_retry_after
from shared.core.settings import Settings
from shared.lookups.provider import Answer, HttpProvider, ProviderError, Throttled, where
from shared.lookups.schemas import LookupRequest

LISTS = ("ports", "hostnames", "cpes", "tags", "vulns")


class InternetDbProvider(HttpProvider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl

    def __init__(self, settings: Settings) -> None:
        own = internetdb_settings(settings)
        self.config = own.config
        super().__init__(self.config.timeout)
        self.base = own.url

    def cache_salt(self) -> str:
        return f"{self.base}|{','.join(sorted(self.config.malicious_tags))}"

    async def lookup(self, request: LookupRequest) -> Answer:
        url = f"{self.base}/{quote(request.indicator, safe=':.')}"
        status, headers, body = await self.get_json(url, headers={"Accept": "application/json"})
        detail = _detail(body)
        if status == 429:
            raise Throttled(
                f"InternetDB: {detail or 'rate limited'}",
                parse_retry_after(headers.get("Retry-After")),
            )
        if status == 404:
            return Answer(
                "undetected", "no data", {"found": False, "detail": detail or "not found"}
            )
        origin = where(self.base)
        if status != 200 or not isinstance(body, dict) or "ports" not in body:
            what = f"HTTP {status}" if status != 200 else "not an InternetDB answer"
            raise ProviderError(f"{what}: {detail}" if detail else what, data=origin)
        return self._answer(body)

    def _answer(self, body: dict[str, Any]) -> Answer:
        data: dict[str, Any] = {"found": True}
        for key in LISTS:
            value = body.get(key)
            data[key] = list(value) if isinstance(value, list) else []
        tags = [str(t) for t in data["tags"]]
        bad = [t for t in tags if t in self.config.malicious_tags]
        parts = [_count(len(data["ports"]), "port")]
        if data["vulns"]:
            parts.append(_count(len(data["vulns"]), "CVE"))
        if bad:
            data["malicious_tags"] = ", ".join(bad)
            return Answer("malicious", f"tagged {', '.join(bad)}; " + ", ".join(parts), data)
        if tags:
            parts.append(f"tags: {', '.join(tags)}")
        return Answer("undetected", ", ".join(parts), data)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            return str(detail[0].get("msg", ""))  # FastAPI's validation errors
    return ""


def build(settings: Settings) -> InternetDbProvider:
    return InternetDbProvider(settings)
