"""A loopback fake of the AlienVault OTX DirectConnect API v1 (indicator ``general``
sections).

Contract (official SDK AlienVault-OTX/OTX-Python-SDK ``OTXv2.py``, ``IndicatorTypes.py``):
``GET /api/v1/indicators/{IPv4|IPv6|domain|hostname|url|file}/{indicator}/general`` with the
``X-OTX-API-KEY`` header. The bodies served are real captures
(tests/fixtures/otx/SOURCES.md). Errors as the SDK handles them: 403 for a missing or wrong
key, 404 for an indicator it does not know, 400 for one of the wrong shape; their bodies
(``{"detail": …}``) are an assumption, not captures. A 429 is only ever injected
(``fail``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from fakes.base import Failure, RecordingFake

FIXTURES = Path(__file__).parent.parent / "fixtures" / "otx"
DEFAULT_API_KEY = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
SECTIONS = ("IPv4", "IPv6", "domain", "hostname", "url", "file")


def fixture(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return found


class FakeOtx(RecordingFake):
    """``indicators`` maps ``(section, indicator)`` to the ``general`` body to answer."""

    fixture = staticmethod(fixture)

    def __init__(
        self,
        indicators: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        fail_next: Iterable[Failure] = (),
    ) -> None:
        super().__init__(fail_next=fail_next)
        self.indicators = {k: dict(v) for k, v in (indicators or {}).items()}
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/indicators/{section}/{indicator}/general", self._general)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        return self.json_answer(status, {"detail": detail or f"Request failed ({status})"}, headers)

    async def _general(self, request: web.Request) -> web.Response:
        if (injected := await self.gate(request)) is not None:
            return injected
        if request.headers.get("X-OTX-API-KEY") != self.api_key:
            return self.json_answer(403, {"detail": "Authentication required"})
        section = request.match_info["section"]
        indicator = request.match_info["indicator"]
        if section not in SECTIONS or not indicator:
            return self.json_answer(400, {"detail": f"Invalid indicator type {section}"})
        found = self.indicators.get((section, indicator))
        if found is None:
            return self.json_answer(404, {"detail": "Not found."})
        return self.json_answer(200, found)
