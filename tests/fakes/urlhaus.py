"""A loopback fake of the abuse.ch URLhaus API v1 (``POST /v1/url/``, ``POST /v1/host/``).

Contract (https://urlhaus-api.abuse.ch/, official sample abusech/URLhaus
``lookup_url.py``): form fields ``url`` / ``host``, header ``Auth-Key``; every lookup answers
HTTP 200 with ``query_status`` ``ok`` (the record), ``no_results`` or ``invalid_url`` /
``invalid_host``. The ``ok`` bodies served are the documentation's examples
(tests/fixtures/urlhaus/SOURCES.md). The ``no_results``/``invalid_*`` bodies (only their
``query_status``) and the 401 for a missing or wrong key follow the official script and
published reports; they are not captures. A 429 is only ever injected (``fail``).

Usage::

    async with FakeUrlhaus({"sskymedia.com": FakeUrlhaus.fixture("host_ok.json")}) as fake:
        ...  # URLHAUS_URL=fake.base_url, ABUSECH_API_KEY=fake.api_key
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from fakes.base import Failure, RecordingFake

FIXTURES = Path(__file__).parent.parent / "fixtures" / "urlhaus"
DEFAULT_API_KEY = "test-abusech-key-0123456789abcdef0123456789abcd"


def fixture(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return found


class FakeUrlhaus(RecordingFake):
    """``urls`` and ``hosts`` map a URL / a host to the body to answer (``query_status``
    included); anything else is ``no_results``. A host that is not a name or an IPv4
    address (no dot) is ``invalid_host``; a URL without ``://`` is ``invalid_url``."""

    fixture = staticmethod(fixture)

    def __init__(
        self,
        urls: Mapping[str, Mapping[str, Any]] | None = None,
        hosts: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        fail_next: Iterable[Failure] = (),
    ) -> None:
        super().__init__(fail_next=fail_next)
        self.urls = {k: dict(v) for k, v in (urls or {}).items()}
        self.hosts = {k: dict(v) for k, v in (hosts or {}).items()}
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/url/", self._url)
        router.add_post("/v1/host/", self._host)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        return self.answer(status, detail or "", headers, "text/plain")

    async def _auth(self, request: web.Request) -> web.Response | None:
        if (injected := await self.gate(request)) is not None:
            return injected
        if request.headers.get("Auth-Key") != self.api_key:
            return self.json_answer(401, {"query_status": "unknown_auth_key"})
        return None

    async def _url(self, request: web.Request) -> web.Response:
        if (refused := await self._auth(request)) is not None:
            return refused
        url = str((await request.post()).get("url", ""))
        if "://" not in url:
            return self.json_answer(200, {"query_status": "invalid_url"})
        return self.json_answer(200, self.urls.get(url, {"query_status": "no_results"}))

    async def _host(self, request: web.Request) -> web.Response:
        if (refused := await self._auth(request)) is not None:
            return refused
        host = str((await request.post()).get("host", ""))
        if "." not in host:
            return self.json_answer(200, {"query_status": "invalid_host"})
        return self.json_answer(200, self.hosts.get(host, {"query_status": "no_results"}))
