"""A loopback fake of the abuse.ch ThreatFox API (``POST /api/v1/``, JSON queries).

Contract (https://threatfox.abuse.ch/api/, official sample abusech/ThreatFox
``threatfox_search_ioc.py``): header ``Auth-Key``; ``{"query": "search_ioc",
"search_term": …}`` and ``{"query": "search_hash", "hash": …}`` answer HTTP 200 with
``query_status`` ``ok`` and ``data`` (a list of IOCs) or ``no_result``. The ``ok`` bodies
served are the documentation's examples and a published capture
(tests/fixtures/threatfox/SOURCES.md). The ``no_result`` body, the 401 for a missing or
wrong key and the ``illegal_search_term`` / ``unknown_query`` statuses follow published
client code, not captures. A 429 is only ever injected (``fail``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from fakes.base import Failure, RecordingFake

FIXTURES = Path(__file__).parent.parent / "fixtures" / "threatfox"
DEFAULT_API_KEY = "test-abusech-key-0123456789abcdef0123456789abcd"
NO_RESULT = {"query_status": "no_result", "data": "Your search did not yield any results"}


def fixture(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return found


class FakeThreatFox(RecordingFake):
    """``iocs`` maps a search term, ``hashes`` an MD5 or SHA-256 (lower case), to the body
    to answer; anything else is ``no_result``. ``queries`` records each JSON query."""

    fixture = staticmethod(fixture)

    def __init__(
        self,
        iocs: Mapping[str, Mapping[str, Any]] | None = None,
        hashes: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        fail_next: Iterable[Failure] = (),
    ) -> None:
        super().__init__(fail_next=fail_next)
        self.iocs = {k: dict(v) for k, v in (iocs or {}).items()}
        self.hashes = {k: dict(v) for k, v in (hashes or {}).items()}
        self.api_key = api_key
        self.queries: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/", self._query)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        return self.answer(status, detail or "", headers, "text/plain")

    async def _query(self, request: web.Request) -> web.Response:
        if (injected := await self.gate(request)) is not None:
            return injected
        if request.headers.get("Auth-Key") != self.api_key:
            return self.answer(401, "Unauthorized", None, "text/plain")
        try:
            query = json.loads(await request.read())
        except ValueError:
            return self.json_answer(200, {"query_status": "unknown_query"})
        self.queries.append(query)
        if query.get("query") == "search_ioc":
            term = str(query.get("search_term") or "")
            if not term:
                return self.json_answer(200, {"query_status": "illegal_search_term"})
            return self.json_answer(200, self.iocs.get(term, NO_RESULT))
        if query.get("query") == "search_hash":
            digest = str(query.get("hash") or "").lower()
            if len(digest) not in (32, 64):
                return self.json_answer(200, {"query_status": "illegal_hash"})
            return self.json_answer(200, self.hashes.get(digest, NO_RESULT))
        return self.json_answer(200, {"query_status": "unknown_query"})
