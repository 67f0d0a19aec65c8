"""A loopback fake of the VirusTotal API v3 (domains, IP addresses, URLs and files reports).

It speaks the documented contract closely enough that a client written against
https://docs.virustotal.com works against it unchanged:

* ``GET /api/v3/domains/{domain}``, ``GET /api/v3/ip_addresses/{ip}`` and
  ``GET /api/v3/urls/{id}``, where ``id`` is either the unpadded URL-safe base64 of the
  URL (RFC 4648 section 3.2, the form clients compute) or the SHA-256 hex of the
  canonicalised URL (the form the API itself returns as ``data.id``).
* ``GET /api/v3/files/{id}`` where ``id`` is a file's MD5, SHA-1 or SHA-256 (any case): an
  object keyed by its SHA-256 is found by any of its hashes (its ``md5``/``sha1``
  attributes). :func:`file_fixture` is a real file object (tests/fixtures/virustotal/).
* Authentication by the ``x-apikey`` header: a missing header answers 401
  ``AuthenticationRequiredError``, a wrong key 401 ``WrongCredentialsError``.
* Errors as ``{"error": {"code": ..., "message": ...}}``; an unknown object answers 404
  ``NotFoundError``; an exhausted per-minute or daily quota answers 429
  ``QuotaExceededError`` (VirusTotal sends no ``Retry-After``; ``retry_after`` adds one).
* Success as ``{"data": {"id", "type", "links": {"self"}, "attributes": {...}}}``.

Usage::

    async with FakeVirusTotal({"evil.example": FakeVirusTotal.stats(malicious=5)}) as vt:
        ...  # point the client at vt.base_url with header x-apikey: vt.api_key
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from fakes.base import Failure, RecordedRequest, RecordingFake

__all__ = [
    "DEFAULT_API_KEY",
    "ENGINE_NAMES",
    "FakeVirusTotal",
    "ObjectType",
    "RecordedRequest",
    "canonical_url",
    "url_id",
    "url_sha256",
]

DEFAULT_API_KEY = "test-virustotal-key-0123456789abcdef"

ObjectType = Literal["domain", "ip_address", "url", "file"]
FIXTURES = Path(__file__).parent.parent / "fixtures" / "virustotal"


def file_fixture() -> dict[str, Any]:
    """A real file object (see tests/fixtures/virustotal/SOURCES.md): ``type``, ``id``
    (its SHA-256) and ``attributes``."""
    found: dict[str, Any] = json.loads((FIXTURES / "file_itami.json").read_text())
    return found


# Real scanner names for the first engines of a synthesised ``last_analysis_results``;
# any engines beyond these are named "Engine 21", "Engine 22", ...
ENGINE_NAMES: tuple[str, ...] = (
    "Abusix",
    "ADMINUSLabs",
    "AlienVault",
    "alphaMountain.ai",
    "Antiy-AVL",
    "BitDefender",
    "Certego",
    "CRDF",
    "Criminal IP",
    "CyRadar",
    "Emsisoft",
    "ESET",
    "Fortinet",
    "G-Data",
    "Google Safebrowsing",
    "Kaspersky",
    "Netcraft",
    "OpenPhish",
    "Phishtank",
    "Sophos",
)

# Error codes from https://docs.virustotal.com/reference/errors, by HTTP status, used for
# statuses injected with ``fail_next``.
_ERROR_CODES: dict[int, str] = {
    400: "BadRequestError",
    401: "WrongCredentialsError",
    403: "ForbiddenError",
    404: "NotFoundError",
    409: "AlreadyExistsError",
    424: "FailedDependencyError",
    429: "QuotaExceededError",
    503: "TransientError",
    504: "DeadlineExceededError",
}

_RESULT_BY_CATEGORY: dict[str, str] = {
    "malicious": "malicious",
    "suspicious": "suspicious",
    "harmless": "clean",
    "undetected": "unrated",
    "timeout": "timeout",
}

_STAT_KEYS: tuple[str, ...] = ("harmless", "malicious", "suspicious", "undetected", "timeout")

_PATH_OF_TYPE: dict[str, str] = {
    "domain": "domains",
    "ip_address": "ip_addresses",
    "url": "urls",
    "file": "files",
}
_HASH = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")

_DAY = 86_400


def url_id(url: str) -> str:
    """The URL identifier a client computes: unpadded URL-safe base64 of the URL."""
    return base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def canonical_url(url: str) -> str:
    """A light version of VirusTotal's URL canonicalisation.

    Adds ``http://`` when the scheme is missing, lower-cases scheme and host, gives an
    empty path ``/`` and drops the fragment, so ``HTTP://Example.com`` and
    ``http://example.com/`` name the same object, as they do on VirusTotal.
    """
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, "")
    )


def url_sha256(url: str) -> str:
    """The identifier VirusTotal returns for a URL: SHA-256 hex of the canonical URL."""
    return hashlib.sha256(canonical_url(url).encode()).hexdigest()


def _object_type(key: str) -> ObjectType:
    if "://" in key:
        return "url"
    if _HASH.fullmatch(key):
        return "file"
    try:
        ipaddress.ip_address(key)
    except ValueError:
        return "domain"
    return "ip_address"


def _engine_results(stats: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """``last_analysis_results`` with exactly as many engines per category as ``stats``."""
    results: dict[str, dict[str, Any]] = {}
    index = 0
    for category in ("malicious", "suspicious", "harmless", "undetected", "timeout"):
        for _ in range(int(stats.get(category, 0))):
            name = ENGINE_NAMES[index] if index < len(ENGINE_NAMES) else f"Engine {index + 1}"
            results[name] = {
                "category": category,
                "result": _RESULT_BY_CATEGORY[category],
                "method": "blacklist",
                "engine_name": name,
            }
            index += 1
    return results


class FakeVirusTotal(RecordingFake):
    """A VirusTotal API v3 server on 127.0.0.1 with a free port.

    ``objects`` maps a domain name, an IP address or a URL (anything with ``://``) to the
    attributes to serve for it; missing attributes are filled with realistic defaults
    (see :meth:`stats`). The dict stays live: tests may add or change objects at any time.

    Knobs (all plain attributes, changeable while running):

    * ``api_key``: the key the ``x-apikey`` header must carry.
    * ``quota_per_minute``: at most this many counted requests in any sliding
      ``minute_window`` seconds, else 429 ``QuotaExceededError``; ``None`` for no limit.
    * ``quota_per_day``: at most this many counted requests per UTC day, else 429.
    * ``retry_after``: a ``Retry-After`` value to add to quota answers (VirusTotal sends
      none); ``None`` leaves it out.
    * ``fail_next``, :meth:`fail`, ``delay``, ``delay_next``: as every
      :class:`~fakes.base.RecordingFake` (e.g. ``fail_next = [500, 503]``; a bare status
      gets VirusTotal's error body for it).
    * ``arrival_delays``: seconds by which the next requests, one each, reach the fake
      late (network or TLS latency of the first requests of a burst): the request is
      recorded and counted only then; consumed from the front.
    * ``requests``: every request received, as :class:`~fakes.base.RecordedRequest`, and
      ``answers``: the status of each.
    * ``arrivals``: when each request was counted (``clock()``), in arrival order: the
      times the quota windows are judged on.

    Authenticated requests count against the quotas (404s included, as on VirusTotal);
    rejected, unauthenticated and injected-failure requests do not.
    """

    url_id = staticmethod(url_id)
    url_sha256 = staticmethod(url_sha256)
    canonical_url = staticmethod(canonical_url)

    def __init__(
        self,
        objects: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        quota_per_minute: int | None = None,
        quota_per_day: int | None = None,
        retry_after: str | None = None,
        fail_next: Iterable[Failure] = (),
        delay: float = 0.0,
        minute_window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(fail_next=fail_next, delay=delay, clock=clock)
        self.objects: dict[str, dict[str, Any]] = {
            key: dict(attributes) for key, attributes in (objects or {}).items()
        }
        self.api_key = api_key
        self.quota_per_minute = quota_per_minute
        self.quota_per_day = quota_per_day
        self.retry_after = retry_after
        self.minute_window = minute_window
        self.arrival_delays: list[float] = []
        self.arrivals: list[float] = []
        self._recent: deque[float] = deque()
        self._day: int | None = None
        self._today = 0

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def stats(
        malicious: int = 0,
        suspicious: int = 0,
        harmless: int = 60,
        undetected: int = 25,
        timeout: int = 0,
        *,
        reputation: int | None = None,
        votes_harmless: int = 0,
        votes_malicious: int = 0,
        last_analysis_date: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Attributes for an object whose last analysis had these verdict counts.

        Returns ``last_analysis_stats``, a matching ``last_analysis_results`` (one entry
        per engine), ``last_analysis_date`` (an hour ago unless given), ``reputation``
        (``-10 * malicious`` unless given) and ``total_votes``; ``extra`` is merged in
        (e.g. ``registrar="..."`` or ``as_owner="..."``).
        """
        counts = {
            "harmless": harmless,
            "malicious": malicious,
            "suspicious": suspicious,
            "undetected": undetected,
            "timeout": timeout,
        }
        attributes: dict[str, Any] = {
            "last_analysis_stats": counts,
            "last_analysis_results": _engine_results(counts),
            "last_analysis_date": (
                int(time.time()) - 3600 if last_analysis_date is None else last_analysis_date
            ),
            "reputation": -10 * malicious if reputation is None else reputation,
            "total_votes": {"harmless": votes_harmless, "malicious": votes_malicious},
        }
        attributes.update(extra)
        return attributes

    def attributes_for(self, key: str) -> dict[str, Any]:
        """The attributes served for ``objects[key]``: defaults, then the given ones."""
        given = self.objects[key]
        kind = _object_type(key)
        attributes = self._type_defaults(kind, key)
        if "last_analysis_stats" in given:
            # Partial stats: the missing verdicts count 0, and the engines match them.
            counts = dict.fromkeys(_STAT_KEYS, 0)
            counts.update(given["last_analysis_stats"])
            attributes.update(self.stats(**{k: counts[k] for k in _STAT_KEYS}))
            attributes.update(given)
            attributes["last_analysis_stats"] = counts
            return attributes
        attributes.update(self.stats())
        attributes.update(given)
        return attributes

    @staticmethod
    def _type_defaults(kind: ObjectType, key: str) -> dict[str, Any]:
        now = int(time.time())
        if kind == "domain":
            return {
                "registrar": "Example Registrar, LLC",
                "creation_date": 946_684_800,
                "last_update_date": now - 30 * _DAY,
                "categories": {},
                "tld": key.rstrip(".").rsplit(".", 1)[-1].lower(),
                "tags": [],
            }
        if kind == "file":
            return {"sha256": key.lower(), "type_description": "unknown", "names": []}
        if kind == "ip_address":
            address = ipaddress.ip_address(key)
            prefix = 24 if address.version == 4 else 48
            return {
                "as_owner": "EXAMPLE-AS",
                "asn": 64496,
                "country": "US",
                "continent": "NA",
                "network": str(ipaddress.ip_network(f"{address}/{prefix}", strict=False)),
                "regional_internet_registry": "ARIN",
                "tags": [],
            }
        return {
            "url": key,
            "last_final_url": key,
            "title": "",
            "first_submission_date": now - 7 * _DAY,
            "last_submission_date": now - 3600,
            "times_submitted": 1,
            "last_http_response_code": 200,
            "categories": {},
            "tags": [],
        }

    # -------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/v3``: where ``https://www.virustotal.com/api/v3`` was."""
        return f"http://127.0.0.1:{self.port}/api/v3"

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v3/domains/{domain}", self._domain)
        router.add_get("/api/v3/ip_addresses/{ip}", self._ip_address)
        router.add_get("/api/v3/urls/{id}", self._url)
        router.add_get("/api/v3/files/{id}", self._file)
        router.add_route("*", "/{tail:.*}", self._unknown)

    def reset_quotas(self) -> None:
        """Forget the requests counted against the per-minute and daily quotas."""
        self._recent.clear()
        self._today = 0

    # --------------------------------------------------------------- handlers

    def _error(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return self.json_answer(status, {"error": {"code": code, "message": message}}, headers)

    def _quota_error(self, headers: Mapping[str, str] | None = None) -> web.Response:
        all_headers = dict(headers or {})
        if self.retry_after is not None:
            all_headers.setdefault("Retry-After", self.retry_after)
        return self._error(429, "QuotaExceededError", "Quota exceeded", all_headers or None)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        """VirusTotal's error for ``status`` (``detail`` as its message); a 429 is the
        quota answer."""
        if status == 429:
            return self._quota_error(headers)
        code = _ERROR_CODES.get(status, "InternalError" if status >= 500 else "BadRequestError")
        return self._error(status, code, detail or f"Injected failure (HTTP {status})", headers)

    async def _gate(self, request: web.Request) -> web.Response | None:
        """Record, delay, inject failures, authenticate and count; an answer ends it."""
        if self.arrival_delays:
            await asyncio.sleep(self.arrival_delays.pop(0))
        self.arrivals.append(self.clock())
        if (injected := await self.gate(request)) is not None:
            return injected
        key = request.headers.get("x-apikey")
        if key is None:
            return self._error(401, "AuthenticationRequiredError", "X-Apikey header is missing")
        if key != self.api_key:
            return self._error(401, "WrongCredentialsError", "Wrong API key")
        now = self.clock()
        day = int(now // _DAY)
        if day != self._day:
            self._day = day
            self._today = 0
        while self._recent and self._recent[0] <= now - self.minute_window:
            self._recent.popleft()
        if self.quota_per_day is not None and self._today >= self.quota_per_day:
            return self._quota_error()
        if self.quota_per_minute is not None and len(self._recent) >= self.quota_per_minute:
            return self._quota_error()
        self._recent.append(now)
        self._today += 1
        return None

    def _found(self, kind: ObjectType, ident: str, key: str) -> web.Response:
        link = f"{self.base_url}/{_PATH_OF_TYPE[kind]}/{ident}"
        data = {
            "id": ident,
            "type": kind,
            "links": {"self": link},
            "attributes": self.attributes_for(key),
        }
        return self.json_answer(200, {"data": data})

    async def _domain(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        domain = request.match_info["domain"]
        wanted = domain.lower().rstrip(".")
        for key in list(self.objects):
            if _object_type(key) == "domain" and key.lower().rstrip(".") == wanted:
                return self._found("domain", wanted, key)
        return self._error(404, "NotFoundError", f'Domain "{domain}" not found')

    async def _ip_address(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        raw = request.match_info["ip"]
        try:
            wanted = ipaddress.ip_address(raw)
        except ValueError:
            return self._error(404, "NotFoundError", f'IP address "{raw}" not found')
        for key in list(self.objects):
            if _object_type(key) == "ip_address" and ipaddress.ip_address(key) == wanted:
                return self._found("ip_address", str(wanted), key)
        return self._error(404, "NotFoundError", f'IP address "{raw}" not found')

    async def _url(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        ident = request.match_info["id"]
        decoded: str | None = None
        try:
            decoded = base64.urlsafe_b64decode(ident + "=" * (-len(ident) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = None
        wanted = canonical_url(decoded) if decoded and decoded.isprintable() else None
        for key in list(self.objects):
            if _object_type(key) != "url":
                continue
            canonical = canonical_url(key)
            digest = url_sha256(key)
            raw_digest = hashlib.sha256(key.encode()).hexdigest()
            if ident.lower() in (digest, raw_digest) or canonical == wanted:
                return self._found("url", digest, key)
        return self._error(404, "NotFoundError", f'URL "{ident}" not found')

    async def _file(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        ident = request.match_info["id"]
        wanted = ident.lower()
        for key in list(self.objects):
            if _object_type(key) != "file":
                continue
            given = self.objects[key]
            names = {
                key.lower(),
                *(str(given.get(h, "")).lower() for h in ("md5", "sha1", "sha256")),
            }
            if wanted in names:
                return self._found("file", str(given.get("sha256", key)).lower(), key)
        return self._error(404, "NotFoundError", f'File "{ident}" not found')

    async def _unknown(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        return self._error(404, "NotFoundError", f'Resource "{request.path}" not found')
