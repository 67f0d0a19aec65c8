"""A loopback fake of the Tor Project's exit list (``TOR_EXIT_LIST_URL``): plain text at any
path, as https://check.torproject.org/exit-addresses and /torbulkexitlist serve it.

Bodies (tests/fixtures/tor, sources in its SOURCES.md): the CollecTor copy of a whole
TorDNSEL list (2018-11-02 01:02), the single record IntelOwl serves as check.torproject.org's
answer, the saved bulk list. :func:`record` writes one record in the same format as the
IntelOwl one (its fingerprint and layout, another address and time): the lists' dates are
years old, and a test needs an address that is an exit *now*. Errors are plain text
(``fail``); the 429 carries ``Retry-After`` when given.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from fakes.base import RecordingFake

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tor"
COLLECTOR = FIXTURES / "collector_exit-list_2018-11-02-01-02-01.txt"
INTELOWL = FIXTURES / "intelowl_exit-addresses_record.txt"
BULK = FIXTURES / "torbulkexitlist_snapshot_2022-08-17.txt"


def record(address: str, when: datetime | None = None) -> str:
    """The IntelOwl record (tests/fixtures/tor) for ``address``, seen exiting at ``when``
    (now)."""
    when = when or datetime.now(UTC)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S")
    lines = INTELOWL.read_text().splitlines()
    out = []
    for line in lines:
        key = line.split(" ", 1)[0]
        if key in ("Published", "LastStatus"):
            out.append(f"{key} {stamp}")
        elif key == "ExitAddress":
            out.append(f"ExitAddress {address} {stamp}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


class FakeTorList(RecordingFake):
    """Serves ``body`` (changeable while running) as ``text/plain``."""

    def __init__(self, body: str | bytes) -> None:
        super().__init__()
        self.body = body.encode() if isinstance(body, str) else body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/exit-addresses"

    @property
    def downloads(self) -> int:
        return len(self.requests)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/{tail:.*}", self._list)

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        return self.answer(status, detail or f"error {status}", headers, "text/plain")

    async def _list(self, request: web.Request) -> web.Response:
        if (injected := await self.gate(request)) is not None:
            return injected
        self.answers.append(200)
        return web.Response(body=self.body, content_type="text/plain", charset="utf-8")
