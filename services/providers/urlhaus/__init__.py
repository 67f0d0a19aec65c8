"""The ``urlhaus`` provider: abuse.ch URLhaus, the database of URLs that spread malware.

``POST {URLHAUS_URL}/url/`` (form ``url``) for a URL, ``POST {URLHAUS_URL}/host/`` (form
``host``) for a domain or an IPv4 address, with the ``Auth-Key`` header
(``ABUSECH_API_KEY``). Every lookup answer is HTTP 200 with a ``query_status``: ``ok``,
``no_results``, ``invalid_url``/``invalid_host`` (the indicator is refused), or a key
problem (``unknown_auth_key``); a refused key is HTTP 401.

Verdict: a URL that URLhaus lists as ``online`` (serving malware now) → malicious; one it
lists as offline → suspicious (it served malware; the host may be compromised still). A
host with at least one online malware URL → malicious; with only offline ones →
suspicious. Not in URLhaus → undetected. Being in URLhaus always means a malware URL was
reported and confirmed by abuse.ch; it is never a neutral listing.
"""

from __future__ import annotations

from typing import Any

from services.providers.urlhaus.config import SPEC, UrlhausConfig, urlhaus_settings
from shared.core.settings import Settings
from shared.lookups.abusech import AbuseChProvider
from shared.lookups.provider import Answer, utc_time
from shared.lookups.schemas import LookupRequest

RECENT_URLS = 10
"""How many of a host's URLs the answer keeps (URLhaus lists up to its latest 100)."""


class UrlhausProvider(AbuseChProvider[UrlhausConfig]):
    name = SPEC.name
    default_ttl = SPEC.default_ttl
    label = "URLhaus"

    def __init__(self, settings: Settings) -> None:
        super().__init__(urlhaus_settings(settings))

    async def lookup(self, request: LookupRequest) -> Answer:
        field = "url" if request.kind == "url" else "host"
        body = await self.query(f"{self.base}/{field}/", form={field: request.indicator})
        if body is None:
            return Answer("undetected", "not in URLhaus", {"found": False})
        return _url_answer(body) if field == "url" else _host_answer(body)


def _common(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "found": True,
        "urlhaus_reference": body.get("urlhaus_reference"),
        "blacklists": body.get("blacklists") or {},
    }


def _url_answer(body: dict[str, Any]) -> Answer:
    state = str(body.get("url_status") or "unknown")
    threat = str(body.get("threat") or "malware")
    signatures = sorted(
        {
            str(p["signature"])
            for p in body.get("payloads") or []
            if isinstance(p, dict) and p.get("signature")
        }
    )
    data = {
        **_common(body),
        "url_status": state,
        "threat": threat,
        "tags": body.get("tags") or [],
        "date_added": utc_time(body.get("date_added")),
        "last_online": utc_time(body.get("last_online")),
        "payload_signatures": signatures,
    }
    family = f" ({', '.join(signatures)})" if signatures else ""
    if state == "online":
        return Answer("malicious", f"{threat}, online{family}", data)
    return Answer("suspicious", f"{threat}, {state}{family}", data)


def _host_answer(body: dict[str, Any]) -> Answer:
    urls = [u for u in body.get("urls") or [] if isinstance(u, dict)]
    online = sum(1 for u in urls if u.get("url_status") == "online")
    try:
        count = int(body.get("url_count") or len(urls))
    except (TypeError, ValueError):
        count = len(urls)
    tags = sorted({str(t) for u in urls for t in u.get("tags") or [] if t})
    data = {
        **_common(body),
        "url_count": count,
        "urls_online": online,
        "firstseen": utc_time(body.get("firstseen")),
        "tags": tags,
        "urls": [
            {
                "url": u.get("url"),
                "url_status": u.get("url_status"),
                "threat": u.get("threat"),
                "date_added": utc_time(u.get("date_added")),
                "tags": u.get("tags") or [],
            }
            for u in urls[:RECENT_URLS]
        ],
    }
    summary = f"{count} malware URL{'s' if count != 1 else ''}, {online} online"
    if not count:
        return Answer("undetected", "no malware URLs", data)
    return Answer("malicious" if online else "suspicious", summary, data)


def build(settings: Settings) -> UrlhausProvider:
    return UrlhausProvider(settings)
