"""The ``abuseipdb`` provider: API v2 ``/check`` for IP addresses.

``GET {ABUSEIPDB_URL}/check?ipAddress=…&maxAgeInDays=…`` with the ``Key`` header. Verdict
by configurable thresholds on ``abuseConfidenceScore``: ≥ ``malicious_score`` (75) →
malicious, ≥ ``suspicious_score`` (25) → suspicious; a whitelisted address → harmless; no
report at all → undetected; otherwise harmless.
"""

from __future__ import annotations

from typing import Any

from services.providers.abuseipdb.config import SPEC, abuseipdb_settings
from shared.core.retryafter import parse_retry_after
from shared.core.settings import Settings
from shared.lookups.provider import Answer, HttpProvider, ProviderError, Throttled, where
from shared.lookups.schemas import LookupRequest, Verdict

FIELDS = (
    "abuseConfidenceScore",
    "totalReports",
    "numDistinctUsers",
    "lastReportedAt",
    "isp",
    "usageType",
    "countryCode",
    "domain",
    "hostnames",
    "isTor",
    "isWhitelisted",
    "isPublic",
)


class AbuseIpdbProvider(HttpProvider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl

    def __init__(self, settings: Settings) -> None:
        own = abuseipdb_settings(settings)
        self.config = own.config
        super().__init__(self.config.timeout)
        self.key = own.api_key
        self.base = own.url

    def configured(self) -> str | None:
        return None if self.key is not None else "ABUSEIPDB_API_KEY is not set"

    def cache_salt(self) -> str:
        c = self.config
        return f"{self.base}|{c.max_age_days}|{c.suspicious_score}|{c.malicious_score}"

    async def lookup(self, request: LookupRequest) -> Answer:
        assert self.key is not None
        status, headers, body = await self.get_json(
            f"{self.base}/check",
            headers={"Key": self.key.reveal(), "Accept": "application/json"},
            params={"ipAddress": request.indicator, "maxAgeInDays": str(self.config.max_age_days)},
        )
        detail = _detail(body)
        if status == 429:
            raise Throttled(
                f"AbuseIPDB: {detail or 'rate limited'}",
                parse_retry_after(headers.get("Retry-After")),
            )
        origin = where(f"{self.base}/check")
        if status in (401, 403):
            more = f": {detail}" if detail else ""
            raise ProviderError(f"HTTP {status}: API key refused{more}", data=origin)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            more = f": {detail}" if detail else ""
            what = f"HTTP {status}" if status != 200 else "not an AbuseIPDB answer"
            raise ProviderError(f"{what}{more}", data=origin)
        report = body["data"]
        for name in ("abuseConfidenceScore", "totalReports"):
            if not isinstance(report.get(name) or 0, int):
                raise ProviderError(f"not an AbuseIPDB answer: {name} is not a number", data=origin)
        return self._answer(report, headers.get("X-RateLimit-Remaining"))

    def _answer(self, report: dict[str, Any], remaining: str | None) -> Answer:
        score = int(report.get("abuseConfidenceScore") or 0)
        reports = int(report.get("totalReports") or 0)
        verdict: Verdict
        if score >= self.config.malicious_score:
            verdict = "malicious"
        elif score >= self.config.suspicious_score:
            verdict = "suspicious"
        elif report.get("isWhitelisted"):
            verdict = "harmless"
        elif reports == 0:
            verdict = "undetected"
        else:
            verdict = "harmless"
        data = {field: report.get(field) for field in FIELDS if field in report}
        if remaining is not None and remaining.isdigit():
            data["quota_remaining"] = int(remaining)
        summary = f"score {score}, {reports} report{'s' if reports != 1 else ''}"
        if report.get("isTor"):
            summary += ", Tor"
        return Answer(verdict, summary, data)


def _detail(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            return str(first.get("detail", ""))
    return ""


def build(settings: Settings) -> AbuseIpdbProvider:
    return AbuseIpdbProvider(settings)
