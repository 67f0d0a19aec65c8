"""A loopback fake of Shodan InternetDB (``GET /{ip}``, no key).

Bodies (tests/fixtures/internetdb, sources in its SOURCES.md): the 200 body published as
BBOT's test fixture (anonymized by BBOT: its shape is the real one), served for its own
address and, with ``ip`` changed, for the addresses given; 404 ``{"detail": "No information
available"}`` for any other address. InternetDB documents no rate limit and none of its 429
bodies was found: :meth:`FakeInternetDb.fail` (429) answers FastAPI's usual ``{"detail":
…}`` with ``Retry-After`` — that shape is FastAPI's, not a capture.

Usage::

    async with FakeInternetDb({"203.0.113.9": {"tags": ["c2"]}}) as idb:
        env["INTERNETDB_URL"] = idb.base_url
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from fakes.base import RecordingFake

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "internetdb"


def published_host() -> dict[str, Any]:
    """The published 200 body (for 1.2.3.4)."""
    body: dict[str, Any] = json.loads((FIXTURES / "bbot_fixture_200_ANONYMIZED.json").read_text())
    return body


NOT_FOUND: dict[str, Any] = json.loads((FIXTURES / "not_found_404.json").read_text())
TAGS = (FIXTURES / "tags_datapedia.txt").read_text().split()


class FakeInternetDb(RecordingFake):
    """InternetDB on 127.0.0.1. ``hosts`` maps an address to fields replacing those of the
    published body (``{}``: the published body as is, with its ``ip``)."""

    def __init__(self, hosts: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        published = published_host()
        self.hosts: dict[str, dict[str, Any]] = {published["ip"]: published}
        for address, fields in (hosts or {}).items():
            body = {**published, **fields, "ip": address}
            for field in fields:
                if field == "tags":
                    assert all(tag in TAGS for tag in fields["tags"]), fields["tags"]
            self.hosts[str(ipaddress.ip_address(address))] = body

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/{ip}", self._host)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        if status == 429 and "Retry-After" not in headers:
            headers = {**headers, "Retry-After": "30"}
        return self.json_answer(status, {"detail": detail or f"HTTP {status}"}, headers)

    async def _host(self, request: web.Request) -> web.Response:
        if (injected := await self.gate(request)) is not None:
            return injected
        try:
            address = str(ipaddress.ip_address(request.match_info["ip"]))
        except ValueError:
            detail = [{"loc": ["path", "ip"], "msg": "value is not a valid IPv4 or IPv6 address"}]
            return self.json_answer(422, {"detail": detail})
        body = self.hosts.get(address)
        if body is None:
            return self.json_answer(404, NOT_FOUND)
        return self.json_answer(200, body)
