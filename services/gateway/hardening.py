"""Gateway-wide hardening: security headers on every response and the ``/api`` rate limiter.

Headers are added in the ``on_response_prepare`` signal, not a middleware, so the webhook
hot path gets no extra await layer. A header a handler already set wins (the web UI keeps
its own Content-Security-Policy, server-sent events their ``Cache-Control: no-cache``).
"""

from __future__ import annotations

from aiohttp import hdrs, web

from services.gateway.apilimit import API_LIMITER, ClientLimiter
from services.gateway.state import SETTINGS
from shared.core.settings import Settings

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HSTS = "max-age=31536000"


class Hardened(web.Response):
    """An answer made with :data:`HEADERS` already set (:func:`hardened_json`), so
    :func:`security_headers` has nothing to add but HSTS: the webhook routes' answers, made
    per request on the gateway's hot path. Never for ``/api`` (its ``Cache-Control``)."""


_HARDENED_JSON = {**HEADERS, "Content-Type": "application/json"}


def hardened_json(status: int, body: bytes, headers: dict[str, str]) -> Hardened:
    """A JSON answer (``body`` encoded) carrying :data:`HEADERS` and ``headers``."""
    return Hardened(status=status, body=body, headers={**_HARDENED_JSON, **headers})


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    if type(response) is not Hardened:
        for name, value in HEADERS.items():
            headers.setdefault(name, value)
        if request.path.startswith("/api/"):
            headers.setdefault("Cache-Control", "no-store")  # lookup results, dead letters…
    if request.secure:  # only over TLS: HSTS on plain HTTP is meaningless
        headers.setdefault("Strict-Transport-Security", HSTS)


def setup(app: web.Application) -> None:
    """Install on the root gateway app (after ``app[SETTINGS]`` is set)."""
    settings = app[SETTINGS]
    app[API_LIMITER] = ClientLimiter(settings.api_rate, settings.api_burst)
    app.on_response_prepare.append(security_headers)


# --------------------------------------------------------------------------- body limits

FORM_MAX_BYTES = 16 * 1024
"""Largest login/logout form: a token, a nonce and a path."""


def json_limit(settings: Settings) -> int:
    """Largest JSON body on ``/api`` (``LOOKOUT_MAX_JSON_BYTES``, never above
    ``LOOKOUT_MAX_BODY_BYTES``); file uploads keep the larger ``LOOKOUT_MAX_BODY_BYTES``."""
    return min(settings.max_json_bytes, settings.max_body_bytes)


def too_large_reason(limit: int) -> str:
    """What a body over ``limit`` is refused with, on every route."""
    return f"body larger than {limit} bytes"


def too_large(limit: int) -> web.Response:
    """413 with the reason as JSON."""
    return web.json_response({"error": too_large_reason(limit)}, status=413)


def body_too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    """The 413 of a body over ``limit``; its reason is the error text the API answers (the
    ``/api`` middleware turns it into ``{"error": reason}``)."""
    return web.HTTPRequestEntityTooLarge(max_size=limit, reason=too_large_reason(limit))


def capped(request: web.Request, limit: int) -> web.Request:
    """``request`` with its body refused beyond ``limit`` bytes: at once when a
    ``Content-Length`` announces more (:func:`body_too_large`), else when reading it
    passes the limit (aiohttp's ``HTTPRequestEntityTooLarge``)."""
    refuse_encoded(request)
    length = request.content_length
    if length is not None and length > limit:
        raise body_too_large(limit)
    return request.clone(client_max_size=limit)


def encoded(request: web.Request) -> str | None:
    """Why ``request``'s body is refused for its ``Content-Encoding`` (None: plain). The
    gateway takes bodies as sent, never decompressed (``auto_decompress=False``, see
    ``app.RUNNER_OPTIONS``): a small gzip body could unpack to gigabytes on the event loop,
    and no webhook sender compresses."""
    coding = request.headers.get(hdrs.CONTENT_ENCODING)
    if coding is None or coding.strip().lower() in ("", "identity"):
        return None
    return (
        f"Content-Encoding {coding.strip()[:32]!r}: compressed request bodies are not "
        "accepted, send it uncompressed"
    )


def refuse_encoded(request: web.Request) -> None:
    """415 with :func:`encoded`'s reason for a compressed body."""
    why = encoded(request)
    if why is not None:
        raise web.HTTPUnsupportedMediaType(reason=why)


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with :func:`body_too_large` beyond ``limit`` bytes, whether
    or not a ``Content-Length`` announced it."""
    try:
        return await capped(request, limit).read()
    except web.HTTPRequestEntityTooLarge:
        raise body_too_large(limit) from None
