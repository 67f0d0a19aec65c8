"""A loopback endpoint for Apprise's ``json://`` service: it records what the real Apprise
library POSTs (``{"version": "1.0", "title", "message", "attachments", "type"}``, as
captured in ``tests/fixtures/apprise/``) and answers with a status alone, which is all
Apprise reads of the answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from fakes.base import RecordingFake


class AppriseJsonFake(RecordingFake):
    """``POST /<any path>``: 200 with an empty body, unless a failure is queued."""

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/{path:.*}", self._post)

    def url(self, path: str = "lookout", query: str = "") -> str:
        """The Apprise URL of this endpoint (``json://127.0.0.1:<port>/<path>``)."""
        return f"json://127.0.0.1:{self.port}/{path}" + (f"?{query}" if query else "")

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]

    async def _post(self, request: web.Request) -> web.Response:
        injected = await self.gate(request)
        if injected is not None:
            return injected
        return self.answer(200, "")

    def error_answer(
        self, request: web.Request, status: int, detail: str | None, headers: Mapping[str, str]
    ) -> web.Response:
        return self.answer(status, detail or "Internal server error.", headers)
