"""The ``virustotal`` provider: API v3 reports for domains, IP addresses, URLs and files.

``GET {VIRUSTOTAL_URL}/domains/{domain}``, ``/ip_addresses/{ip}``, ``/urls/{id}``,
``/files/{md5|sha1|sha256}`` with the ``x-apikey`` header; a URL's id is the unpadded
URL-safe base64 of the URL. An email address is looked up by its domain. Nothing is ever
submitted for scanning (that would spend quota and disclose the indicator). A file's
report adds its type, names, size, first and last submission and threat label.

Verdict from ``last_analysis_stats``: at least ``malicious_engines`` (default 3) engines
saying malicious → malicious; any malicious or suspicious → suspicious; any harmless →
harmless; else undetected. Not known to VirusTotal → undetected.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from services.providers.virustotal.config import SPEC, virustotal_settings
from shared.core.retryafter import parse_retry_after
from shared.core.settings import Settings
from shared.lookups.indicators import hash_algorithm
from shared.lookups.provider import Answer, HttpProvider, ProviderError, Throttled, where
from shared.lookups.schemas import LookupRequest, Verdict


def url_id(url: str) -> str:
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class VirusTotalProvider(HttpProvider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl

    def __init__(self, settings: Settings) -> None:
        own = virustotal_settings(settings)
        self.config = own.config
        super().__init__(self.config.timeout)
        self.key = own.api_key
        self.base = own.url

    def configured(self) -> str | None:
        return None if self.key is not None else "VIRUSTOTAL_API_KEY is not set"

    def cache_salt(self) -> str:
        return f"{self.base}|{self.config.malicious_engines}"

    def _path(self, request: LookupRequest) -> str:
        if request.kind in ("ipv4", "ipv6"):
            return f"ip_addresses/{quote(request.indicator, safe='')}"
        if request.kind == "url":
            return f"urls/{url_id(request.indicator)}"
        if request.kind == "hash":
            return f"files/{quote(request.indicator, safe='')}"
        return f"domains/{quote(request.host or request.indicator, safe='')}"

    async def lookup(self, request: LookupRequest) -> Answer:
        assert self.key is not None
        url = f"{self.base}/{self._path(request)}"
        status, headers, body = await self.get_json(
            url, headers={"x-apikey": self.key.reveal(), "Accept": "application/json"}
        )
        origin = where(url)
        error = body.get("error", {}) if isinstance(body, dict) else {}
        code = error.get("code", "") if isinstance(error, dict) else ""
        if status == 404 or code == "NotFoundError":
            return Answer("undetected", "not in VirusTotal", {"found": False, **_about(request)})
        if status == 429:
            raise Throttled(
                f"VirusTotal {code or 'HTTP 429'}", parse_retry_after(headers.get("Retry-After"))
            )
        message = error.get("message", "") if isinstance(error, dict) else ""
        if message:
            origin["message"] = str(message)[:300]
        if status in (401, 403):
            detail = f" ({code})" if code else ""
            raise ProviderError(f"HTTP {status}: API key refused{detail}", data=origin)
        if status != 200 or not isinstance(body, dict):
            what = f"HTTP {status} {code}".strip() if status != 200 else "not a VirusTotal answer"
            raise ProviderError(what, data=origin)
        found = body.get("data")
        attributes = found.get("attributes") if isinstance(found, dict) else None
        if not isinstance(attributes, dict):
            raise ProviderError("not a VirusTotal answer: no data.attributes object", data=origin)
        for name in ("last_analysis_stats", "last_analysis_results"):
            if not isinstance(attributes.get(name) or {}, dict):
                raise ProviderError(
                    f"not a VirusTotal answer: {name} is not an object", data=origin
                )
        return self._answer(attributes, _about(request))

    def _answer(self, attributes: dict[str, Any], about: dict[str, Any]) -> Answer:
        stats = {
            k: int(v)
            for k, v in (attributes.get("last_analysis_stats") or {}).items()
            if isinstance(v, int)
        }
        malicious, suspicious = stats.get("malicious", 0), stats.get("suspicious", 0)
        verdict: Verdict
        if malicious >= self.config.malicious_engines:
            verdict = "malicious"
        elif malicious or suspicious:
            verdict = "suspicious"
        elif stats.get("harmless", 0):
            verdict = "harmless"
        else:
            verdict = "undetected"
        total = sum(stats.values())
        flagged = sorted(
            name
            for name, result in (attributes.get("last_analysis_results") or {}).items()
            if isinstance(result, dict) and result.get("category") in ("malicious", "suspicious")
        )
        data: dict[str, Any] = {
            "found": True,
            "stats": stats,
            "reputation": attributes.get("reputation"),
            "last_analysis_date": attributes.get("last_analysis_date"),
            "total_votes": attributes.get("total_votes"),
            "flagged_by": flagged,
            **about,
        }
        for extra in (
            "as_owner",
            "asn",
            "country",
            "network",
            "registrar",
            "creation_date",
            "categories",
            "last_final_url",
            "title",
            "tags",
            *_FILE_ATTRIBUTES,
        ):
            if extra in attributes:
                data[extra] = attributes[extra]
        threat = attributes.get("popular_threat_classification")
        if isinstance(threat, dict) and threat.get("suggested_threat_label"):
            data["threat_label"] = str(threat["suggested_threat_label"])
        summary = f"{malicious + suspicious}/{total} engines" if total else "not analysed"
        return Answer(verdict, summary, data)


_FILE_ATTRIBUTES = (
    "type_description",
    "meaningful_name",
    "names",
    "size",
    "first_submission_date",
    "last_submission_date",
    "md5",
    "sha1",
    "sha256",
)
"""What a file's report adds: its type, names, size, first and last seen."""


def _about(request: LookupRequest) -> dict[str, Any]:
    """What the answer says of the indicator itself: a hash's algorithm."""
    if request.kind == "hash":
        return {"algorithm": hash_algorithm(request.indicator) or "unknown"}
    return {}


def build(settings: Settings) -> VirusTotalProvider:
    return VirusTotalProvider(settings)
