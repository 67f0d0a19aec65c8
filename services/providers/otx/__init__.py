"""The ``otx`` provider: AlienVault OTX (Open Threat Exchange), community threat reports
("pulses") naming an indicator.

``GET {OTX_URL}/indicators/{IPv4|IPv6|domain|hostname|url|file}/{indicator}/general``
with the ``X-OTX-API-KEY`` header (``OTX_API_KEY``); a domain that is not a registered
domain (a subdomain) is a ``hostname``; MD5, SHA-1 and SHA-256 are ``file``. The answer's
``pulse_info.count`` and ``pulses``, ``validation`` (whitelists) and ``false_positive``
(assessments) decide. Status codes as the official SDK handles them: 400 the indicator is
invalid, 403 the key is refused, 404 not found, 429 slow down.

Verdict (after XSOAR's OTX integration, ``calculate_dbot_score``): a ``false_positive``
assessment ``accepted`` or any ``validation`` entry (OTX whitelists it) → harmless; else at
least ``malicious_pulses`` (default 3) pulses → malicious; 1 to ``malicious_pulses`` - 1 →
suspicious; none (or not found) → undetected.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from services.providers.otx.config import SPEC, otx_settings
from shared.core.settings import Settings
from shared.lookups.indicators import hash_algorithm
from shared.lookups.provider import (
    Answer,
    HttpProvider,
    ProviderError,
    refuse_throttle_or_key,
    utc_time,
    where,
)
from shared.lookups.schemas import LookupRequest, Verdict

PULSES_KEPT = 10
_SECTION_OF_KIND = {"ipv4": "IPv4", "ipv6": "IPv6", "url": "url", "hash": "file"}


def _names(values: Any) -> list[str]:
    """Display names of a pulse's malware families or the like (strings or objects)."""
    found = []
    for value in values or []:
        if isinstance(value, dict):
            value = value.get("display_name") or value.get("id")
        if value:
            found.append(str(value))
    return found


class OtxProvider(HttpProvider):
    name = SPEC.name
    default_ttl = SPEC.default_ttl

    def __init__(self, settings: Settings) -> None:
        own = otx_settings(settings)
        self.config = own.config
        super().__init__(self.config.timeout)
        self.key = own.api_key
        self.base = own.url

    def configured(self) -> str | None:
        return None if self.key is not None else "OTX_API_KEY is not set"

    def cache_salt(self) -> str:
        return f"{self.base}|{self.config.malicious_pulses}"

    @staticmethod
    def _section(request: LookupRequest) -> str:
        if request.kind == "domain":
            return "domain" if request.indicator == request.registered_domain else "hostname"
        return _SECTION_OF_KIND[request.kind]

    async def lookup(self, request: LookupRequest) -> Answer:
        assert self.key is not None
        about: dict[str, Any] = {}
        if request.kind == "hash":
            about["algorithm"] = hash_algorithm(request.indicator) or "unknown"
        section = self._section(request)
        url = f"{self.base}/indicators/{section}/{quote(request.indicator, safe='')}/general"
        status, headers, body = await self.get_json(
            url, headers={"X-OTX-API-KEY": self.key.reveal(), "Accept": "application/json"}
        )
        origin = where(url)
        if status == 404:
            return Answer("undetected", "not in OTX", {"found": False, **about})
        refuse_throttle_or_key("OTX", status, headers, origin)
        if status == 400:
            detail = body.get("detail") if isinstance(body, dict) else None
            if detail:
                origin["message"] = str(detail)[:300]
            raise ProviderError("HTTP 400: OTX refused the indicator as invalid", data=origin)
        if status != 200 or not isinstance(body, dict):
            raise ProviderError(
                f"HTTP {status}" if status != 200 else "not an OTX answer", data=origin
            )
        return self._answer(body, about)

    def _answer(self, body: dict[str, Any], about: dict[str, Any]) -> Answer:
        raw = body.get("pulse_info")
        info: dict[str, Any] = raw if isinstance(raw, dict) else {}
        pulses = [p for p in info.get("pulses") or [] if isinstance(p, dict)]
        try:
            count = int(info.get("count") or len(pulses))
        except (TypeError, ValueError):
            count = len(pulses)
        validation = [v for v in body.get("validation") or [] if isinstance(v, dict)]
        accepted = any(
            isinstance(f, dict) and f.get("assessment") == "accepted"
            for f in body.get("false_positive") or []
        )
        families = sorted({n for p in pulses for n in _names(p.get("malware_families"))})
        adversaries = sorted({str(p["adversary"]) for p in pulses if p.get("adversary")})
        tags = sorted({str(t) for p in pulses for t in p.get("tags") or [] if t})[:30]
        data: dict[str, Any] = {
            "found": True,
            "pulse_count": count,
            "whitelisted": bool(validation) or accepted,
            "validation": [
                str(v.get("message") or v.get("name") or v.get("source") or "") for v in validation
            ],
            "malware_families": families,
            "adversaries": adversaries,
            "tags": tags,
            "pulses": [
                {
                    "id": p.get("id"),
                    "name": p.get("name"),
                    "created": utc_time(p.get("created")),
                    "modified": utc_time(p.get("modified")),
                    "tlp": p.get("TLP") or p.get("tlp"),
                    "tags": p.get("tags") or [],
                }
                for p in pulses[:PULSES_KEPT]
            ],
            "type_title": body.get("type_title"),
            "reputation": body.get("reputation"),
            **{k: body[k] for k in ("asn", "country_name") if body.get(k)},
            **about,
        }
        verdict: Verdict
        plural = "s" if count != 1 else ""
        if data["whitelisted"]:
            verdict, summary = "harmless", "whitelisted by OTX"
        elif count >= self.config.malicious_pulses:
            verdict, summary = "malicious", f"{count} pulse{plural}"
        elif count:
            verdict, summary = "suspicious", f"{count} pulse{plural}"
        else:
            verdict, summary = "undetected", "no pulses"
        if families and count:
            summary += f" ({', '.join(families[:3])})"
        return Answer(verdict, summary, data)


def build(settings: Settings) -> OtxProvider:
    return OtxProvider(settings)
