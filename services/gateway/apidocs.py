"""The API documents, assembled: OpenAPI 3.1 for the gateway's HTTP API and AsyncAPI 3.0
for the NATS side.

- ``GET /api/openapi.json`` serves the OpenAPI document and ``GET /api/docs`` a page that
  renders it (plain HTML, CSS and JavaScript from ``static/apidocs.*``: no CDN, no inline
  script or style, so it works under ``Content-Security-Policy: default-src 'self'``). Both
  are public: they are routes of the main application, outside the ``/api`` sub-application
  and its bearer-token middleware.
- ``python -m services.gateway.apidocs asyncapi > docs/asyncapi.json`` writes the AsyncAPI
  document of the subjects (:mod:`services.gateway.asyncapi`; checked in, a test fails when
  it is stale); ``python -m services.gateway.apidocs openapi`` prints the OpenAPI document.

Nothing of an operation is written here: each route module documents its operations
beside its handlers (its ``DOCS``, a :class:`services.gateway.apispec.Operations`), and
:func:`openapi` puts together the modules of :data:`ROUTE_MODULES`, in that order (the
order of the document's tags and paths). Here are only what the whole document says once:
its introduction, the security schemes, and this module's own route.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec
from aiohttp import web

from services.gateway import (  # additions: documented with the lookups (lookups.DOCS)
    additions,  # noqa: F401
    deadletters_api,
    hooks,
    hosts,
    lookups,
    memory,
    notifications,
    ops,
    silences_api,
    targets_api,
    ui,
    webhook,
)
from services.gateway.apispec import (
    API_VERSION,
    JSON,
    Operations,
    error_schemas,
    json_content,
)
from services.gateway.asyncapi import asyncapi, asyncapi_text

__all__ = ["asyncapi", "asyncapi_text", "openapi", "openapi_bytes", "setup"]

OPENAPI_PATH: Final = "/api/openapi.json"
DOCS_PATH: Final = "/api/docs"
STATIC: Final = Path(__file__).parent / "static"
_ASSETS: Final = {"apidocs.js": "text/javascript", "apidocs.css": "text/css"}
_DOCS_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
"""The docs page's own policy; the headers every answer gets come from hardening.HEADERS."""

DOCS = Operations("documentation", "These documents (public).")
ROUTE_MODULES: Final[tuple[Operations, ...]] = (
    webhook.DOCS,
    hooks.DOCS,
    lookups.DOCS,
    notifications.DOCS,
    deadletters_api.DOCS,
    memory.DOCS,
    targets_api.DOCS,
    silences_api.DOCS,
    ops.DOCS,
    DOCS,
)
"""Every route module's operations: a module that serves a documented route is listed here
(``tests/integration/test_openapi.py`` finds a route of the app that no module documents)."""

_INTRO = """\
lookout's HTTP surface (the gateway): the Sqreen webhook, the host-lookups and notifications
REST API, and health, readiness and metrics endpoints.

**Authentication.** Every `/api/v1/*` operation needs `Authorization: Bearer <token>` when
`LOOKOUT_API_TOKENS` is set (lookout refuses to listen beyond loopback without tokens); a
missing or wrong token gets 401. The web UI's pages use a session cookie instead (opened by
logging in with a token at `/login`); a state-changing request with that cookie must carry
its `X-CSRF-Token`. The webhook is authenticated by its signature instead.
The API documents themselves, `GET /api/openapi.json` and the page `GET /api/docs`, are
public: no token is needed to read them.

**Host check.** Without API tokens (loopback only), or when `LOOKOUT_ALLOWED_HOSTS` is set,
`/api/*`, the API documents and the web UI answer only to a `Host` that is a loopback name
(`localhost`, `127.0.0.1`, `[::1]`, any port) or listed in `LOOKOUT_ALLOWED_HOSTS`; any other
gets 421 with the reason (DNS rebinding). The webhook, `/healthz`, `/readyz` and `/metrics`
are not checked.

**Errors** are JSON, `{"error": "<reason>"}`, sometimes with details (per-item reasons).

The NATS subjects behind this API are described by the AsyncAPI document `docs/asyncapi.json`.
"""


def _security_schemes() -> JSON:
    return {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "One of the tokens in `LOOKOUT_API_TOKENS`. Enforced on `/api/v1/*` "
                "only when tokens are configured."
            ),
        },
        "sessionCookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": ui.SESSION_COOKIE,
            "description": (
                "The web UI's session, opened by logging in at `/login` with an API "
                f"token; a state-changing request also needs `{ui.CSRF_HEADER}`."
            ),
        },
    }


def openapi() -> JSON:
    """The OpenAPI 3.1 document of the gateway's HTTP API, from every route module's
    operations (a new copy each call)."""
    paths: dict[str, JSON] = {}
    components = error_schemas()
    for module in ROUTE_MODULES:
        for path, methods in module.paths.items():
            documented = paths.setdefault(path, {})
            twice = sorted(set(documented) & set(methods))
            if twice:  # pragma: no cover - a mistake in a route module, caught at once
                raise ValueError(f"{path}: {', '.join(twice)} documented by two modules")
            documented.update(methods)
        components.update(module.schemas())
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "lookout gateway",
                "version": API_VERSION,
                "summary": "Host lookups and a durable security-alert relay, on NATS JetStream.",
                "description": _INTRO,
                "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            },
            "servers": [{"url": "/", "description": "this gateway"}],
            "tags": [{"name": m.tag, "description": m.description} for m in ROUTE_MODULES],
            "paths": paths,
            "components": {"schemas": components, "securitySchemes": _security_schemes()},
        }
    )


# ---------------------------------------------------------------------------------- serving


@functools.cache
def openapi_bytes() -> bytes:
    return msgspec.json.encode(openapi())


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@DOCS.get(
    OPENAPI_PATH,
    DOCS.public(
        "openapi",
        "This document",
        f"The OpenAPI document (public, no token). `{DOCS_PATH}` renders it.",
        {
            "200": {
                "description": "OpenAPI 3.1 document.",
                "content": json_content({"type": "object"}),
            }
        },
    ),
)
async def openapi_json(_request: web.Request) -> web.Response:
    return web.Response(
        body=openapi_bytes(),
        content_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )


async def docs_page(_request: web.Request) -> web.Response:
    return web.Response(
        body=_static("apidocs.html"),
        content_type="text/html",
        charset="utf-8",
        headers=_DOCS_HEADERS,
    )


async def docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _ASSETS.get(name)
    if content_type is None:  # pragma: no cover - the route's pattern allows only these
        raise web.HTTPNotFound()
    return web.Response(
        body=_static(name), content_type=content_type, charset="utf-8", headers=_DOCS_HEADERS
    )


def setup(app: web.Application) -> None:
    """Serve the documents from the main application: call it before the ``/api/``
    sub-application is added, so they are public (no bearer-token middleware)."""
    app.router.add_get(OPENAPI_PATH, hosts.guarded(openapi_json))
    app.router.add_get(DOCS_PATH, hosts.guarded(docs_page))
    app.router.add_get(DOCS_PATH + r"/{name:apidocs\.(?:js|css)}", hosts.guarded(docs_asset))


def main(argv: Sequence[str]) -> int:
    usage = "usage: python -m services.gateway.apidocs {openapi|asyncapi}\n"
    if len(argv) != 1 or argv[0] not in ("openapi", "asyncapi"):
        sys.stderr.write(usage)
        return 2
    if argv[0] == "asyncapi":
        sys.stdout.write(asyncapi_text())
    else:
        sys.stdout.write(json.dumps(openapi(), indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
