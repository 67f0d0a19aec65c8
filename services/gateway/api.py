"""The ``/api`` sub-application: authentication (bearer tokens, or the web UI's session with
its CSRF token), the per-client rate limit, every error as JSON, and the routes of the
lookups, notifications, dead-letters and memory APIs (each module registers and documents its own).

Every route needs ``Authorization: Bearer <token>`` when ``LOOKOUT_API_TOKENS`` is set
(lookout refuses to listen beyond loopback without tokens).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import nats.errors
from aiohttp import hdrs, web

from services.gateway import (
    additions,
    deadletters_api,
    lookups,
    memory,
    notifications,
    silences_api,
    targets_api,
    ui,
)
from services.gateway.answers import api_error
from services.gateway.apilimit import API_LIMITER, too_many
from services.gateway.state import SETTINGS
from shared.bus import direct
from shared.core import logging as log
from shared.core.settings import Settings

_log = log.get("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Failure = tuple[int, str]


async def _authenticate(
    request: web.Request, settings: Settings
) -> tuple[str | None, Failure | None]:
    """(the authenticated client, or None; the refusal, or None when the request may pass).

    The client names the rate-limit bucket: ``token:<n>`` for the n-th API token,
    ``session:<digest>`` for a web UI session; never the secret itself."""
    if not settings.api_tokens:
        if (refused := ui.open_api_failure(request)) is not None:
            return None, (403, refused)
        return None, None
    if "Authorization" not in request.headers and ui.SESSION_COOKIE in request.cookies:
        if (failure := await ui.cookie_auth_failure(request)) is not None:
            return None, failure
        cookie = request.cookies[ui.SESSION_COOKIE].encode()
        return "session:" + hashlib.sha256(cookie).hexdigest()[:32], None
    sent = request.headers.getall(hdrs.AUTHORIZATION, [])
    if len(sent) > 1:  # a proxy reading another one than lookout would disagree on who
        return None, (401, "more than one Authorization header")
    given = sent[0] if sent else ""
    token = given[7:].strip() if given[:7].lower() == "bearer " else ""
    found = ui.token_index(settings, token)
    if found is None:
        return None, (401, "missing or invalid bearer token")
    return f"token:{found}", None


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer-token check (or the web UI's session cookie with its CSRF token), the
    per-client rate limit, and every error as JSON with a short reason.

    The rate limit is taken after authentication is *decided* but before its refusal is
    sent: an authenticated client has its own bucket (its token or session); everything
    else, refused requests included, shares the bucket of its remote address. So a flood
    of bad credentials is throttled per address and cannot create a bucket per made-up
    token, and the number of buckets is bounded anyway (see :mod:`apilimit`)."""
    settings: Settings = request.config_dict[SETTINGS]
    client, failure = await _authenticate(request, settings)
    limiter = request.config_dict.get(API_LIMITER)
    if limiter is not None and limiter.enabled:
        wait = limiter.take(client or f"ip:{request.remote}")
        if wait > 0:
            return too_many(wait)
    if failure is not None:
        refused = api_error(*failure)
        if failure[0] == 401:  # RFC 6750: the scheme a client should use
            refused.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="lookout"'
        return refused
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return api_error(exc.status, exc.reason)
    except (direct.ReadRefused, nats.errors.Error) as exc:
        # JetStream refused or did not answer: the client may retry, it did nothing wrong.
        reason = str(exc) or type(exc).__name__
        _log.warning("message bus refused an API request", path=request.path, error=reason)
        return api_error(503, f"message bus unavailable, retry later: {reason}")
    except ConnectionResetError:
        # The client went away while sending its body (an aborted upload): nothing is
        # wrong here and nobody reads the answer.
        _log.info("client disconnected before its request was read", path=request.path)
        return api_error(400, "the client disconnected before its request was read")
    except Exception:
        _log.exception("unhandled API error", path=request.path)
        return api_error(500, "internal error")


async def _stop_streams(app: web.Application) -> None:
    app[lookups.STOPPING].set()


def api_app() -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app[lookups.STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)  # before aiohttp waits for open requests
    lookups.add_routes(app)
    additions.add_routes(app)
    notifications.add_routes(app)
    deadletters_api.add_routes(app)
    memory.add_routes(app)
    targets_api.add_routes(app)
    silences_api.add_routes(app)
    return app
