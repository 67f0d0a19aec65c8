"""A loopback fake of the AbuseIPDB API v2 ``check`` endpoint.

It speaks the documented contract (https://docs.abuseipdb.com) closely enough that a
client written against the docs works against it unchanged:

* ``GET /api/v2/check?ipAddress=...&maxAgeInDays=...&verbose``, authenticated by the
  ``Key`` header (or, as the docs still allow, a ``key`` query parameter).
* Errors as JSON:API ``{"errors": [{"detail", "status", "source"?: {"parameter"}}]}``:
  401 for a missing or wrong key, 422 for a bad ``ipAddress`` or ``maxAgeInDays``
  (1..365, default 30), 429 once the daily limit is spent.
* Error answers are JSON only when the client asks with ``Accept: application/json``;
  otherwise, like the real service, an HTML page (``strict_accept=False`` turns that off).
* ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` on every answer; the 429 adds
  ``Retry-After`` (seconds) and ``X-RateLimit-Reset`` (epoch of the next 00:00 UTC).
* Success as ``{"data": {...}}`` with the documented fields; ``countryName`` and
  ``reports`` only in verbose mode. Unknown addresses score 0 with no reports.

Usage::

    async with FakeAbuseIpdb({"203.0.113.9": {"abuseConfidenceScore": 97}}) as abuse:
        ...  # point the client at abuse.base_url with header Key: abuse.api_key
"""

from __future__ import annotations

import html
import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from fakes.base import Failure, RecordedRequest, RecordingFake

__all__ = [
    "AUTH_FAILED",
    "DEFAULT_API_KEY",
    "INVALID_IP",
    "INVALID_MAX_AGE",
    "FakeAbuseIpdb",
    "RecordedRequest",
]

DEFAULT_API_KEY = "test-abuseipdb-key-0123456789abcdef"

AUTH_FAILED = (
    "Authentication failed. Your API key is either missing, incorrect, or revoked. "
    "Note: The APIv2 key differs from the APIv1 key."
)
INVALID_IP = (
    "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888)."
)
MISSING_IP = "The ip address field is required."
INVALID_MAX_AGE = "The max age in days must be between 1 and 365."

_DAY = 86_400

_COUNTRY_NAMES: dict[str, str] = {
    "CN": "China",
    "DE": "Germany",
    "FR": "France",
    "GB": "United Kingdom of Great Britain and Northern Ireland",
    "NL": "Netherlands",
    "RU": "Russian Federation",
    "US": "United States of America",
}


def _wants_json(request: web.Request) -> bool:
    """Whether the client's preferred ``Accept`` type is JSON (Laravel's ``wantsJson``)."""
    first = request.headers.get("Accept", "").split(",")[0].split(";")[0].strip().lower()
    return "/json" in first or "+json" in first


class FakeAbuseIpdb(RecordingFake):
    """An AbuseIPDB API v2 server on 127.0.0.1 with a free port.

    ``reports`` maps an IP address to fields of ``data`` to serve for it, overriding the
    defaults (``abuseConfidenceScore``, ``totalReports``, ``countryCode``, ``isp``,
    ``reports`` for verbose mode, ...). The dict stays live.

    Knobs (plain attributes, changeable while running):

    * ``api_key``: the key the ``Key`` header must carry.
    * ``daily_limit``: checks allowed per UTC day; the next answers 429.
    * ``fail_next``, :meth:`fail`, ``delay``, ``delay_next``: as every
      :class:`~fakes.base.RecordingFake` (a bare status gets AbuseIPDB's error for it).
    * ``strict_accept``: answer errors in HTML unless ``Accept`` prefers JSON.
    * ``requests``: every request received, as :class:`~fakes.base.RecordedRequest`, and
      ``answers``: the status of each.

    Authenticated requests count against ``daily_limit`` (422s included); rejected,
    unauthenticated and injected-failure requests do not.
    """

    def __init__(
        self,
        reports: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        daily_limit: int = 1000,
        fail_next: Iterable[Failure] = (),
        delay: float = 0.0,
        strict_accept: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(fail_next=fail_next, delay=delay, clock=clock)
        self.reports: dict[str, dict[str, Any]] = {
            ip: dict(fields) for ip, fields in (reports or {}).items()
        }
        self.api_key = api_key
        self.daily_limit = daily_limit
        self.strict_accept = strict_accept
        self._day: int | None = None
        self._used = 0

    # -------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/v2``: where ``https://api.abuseipdb.com/api/v2`` was."""
        return f"http://127.0.0.1:{self.port}/api/v2"

    @property
    def remaining(self) -> int:
        """Checks left today, as ``X-RateLimit-Remaining`` reports it."""
        self._roll_day()
        return max(0, self.daily_limit - self._used)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v2/check", self._check)
        router.add_route("*", "/{tail:.*}", self._unknown)

    def reset_quota(self) -> None:
        """Forget the checks counted against today's limit."""
        self._used = 0

    # --------------------------------------------------------------- answers

    def _roll_day(self) -> None:
        day = int(self.clock() // _DAY)
        if day != self._day:
            self._day = day
            self._used = 0

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.daily_limit),
            "X-RateLimit-Remaining": str(self.remaining),
        }

    def _error(
        self,
        request: web.Request,
        status: int,
        detail: str,
        parameter: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        all_headers = self._rate_headers()
        all_headers.update(headers or {})
        if self.strict_accept and not _wants_json(request):
            page = (
                "<!DOCTYPE html><html><head><title>AbuseIPDB</title></head>"
                f"<body><h1>Error {status}</h1><p>{html.escape(detail)}</p></body></html>"
            )
            return self.answer(status, page, all_headers, "text/html")
        error: dict[str, Any] = {"detail": detail, "status": status}
        if parameter is not None:
            error["source"] = {"parameter": parameter}
        return self.json_answer(status, {"errors": [error]}, all_headers)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        """AbuseIPDB's error for ``status`` (``detail`` as its message); a 429 is the
        daily limit's answer."""
        if status == 429:
            return self._limit_exceeded(request)
        return self._error(request, status, detail or f"Injected failure (HTTP {status}).")

    def _limit_exceeded(self, request: web.Request) -> web.Response:
        now = self.clock()
        reset = (int(now // _DAY) + 1) * _DAY
        headers = {
            "Retry-After": str(max(1, math.ceil(reset - now))),
            "X-RateLimit-Reset": str(reset),
        }
        detail = (
            f"Daily rate limit of {self.daily_limit} requests exceeded for this endpoint. "
            "See headers for additional details."
        )
        return self._error(request, 429, detail, headers=headers)

    async def _gate(self, request: web.Request) -> web.Response | None:
        """Record, delay, inject failures, authenticate and count; an answer ends it."""
        if (injected := await self.gate(request)) is not None:
            return injected
        key = request.headers.get("Key", request.query.get("key"))
        if key != self.api_key:
            return self._error(request, 401, AUTH_FAILED)
        self._roll_day()
        if self._used >= self.daily_limit:
            return self._limit_exceeded(request)
        self._used += 1
        return None

    def check_data(self, ip: str, verbose: bool = False) -> dict[str, Any]:
        """The ``data`` object served for ``ip`` (a valid address)."""
        address = ipaddress.ip_address(ip)
        public = address.is_global
        given: dict[str, Any] = {}
        for key, fields in list(self.reports.items()):
            try:
                if ipaddress.ip_address(key) == address:
                    given = fields
                    break
            except ValueError:
                continue
        data: dict[str, Any] = {
            "ipAddress": str(address),
            "isPublic": public,
            "ipVersion": address.version,
            "isWhitelisted": False,
            "abuseConfidenceScore": 0,
            "countryCode": None,
            "usageType": None if public else "Reserved",
            "isp": None,
            "domain": None,
            "hostnames": [],
            "isTor": False,
            "totalReports": 0,
            "numDistinctUsers": 0,
            "lastReportedAt": None,
        }
        data.update({k: v for k, v in given.items() if k != "reports"})
        if verbose:
            code = data.get("countryCode")
            data.setdefault("countryName", _COUNTRY_NAMES.get(code) if code else None)
            data["reports"] = list(given.get("reports", []))
        else:
            data.pop("countryName", None)
        return data

    async def _check(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        ip = request.query.get("ipAddress")
        if not ip:
            return self._error(request, 422, MISSING_IP, "ipAddress")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return self._error(request, 422, INVALID_IP, "ipAddress")
        max_age = request.query.get("maxAgeInDays", "30")
        try:
            days = int(max_age)
        except ValueError:
            days = 0
        if not 1 <= days <= 365:
            return self._error(request, 422, INVALID_MAX_AGE, "maxAgeInDays")
        verbose = "verbose" in request.query
        return self.json_answer(200, {"data": self.check_data(ip, verbose)}, self._rate_headers())

    async def _unknown(self, request: web.Request) -> web.Response:
        if (answer := await self._gate(request)) is not None:
            return answer
        return self._error(request, 404, "The requested endpoint does not exist.")
