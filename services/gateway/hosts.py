"""The ``Host`` check that stops DNS rebinding.

A page on ``http://evil.example:8080/`` whose name the attacker re-points at 127.0.0.1 is,
for the browser, same-origin with itself: it could read the open loopback gateway's UI and
API (no tokens), and everything they show. Its requests, though, carry ``Host:
evil.example:8080``. So in **open loopback mode** (no ``LOOKOUT_API_TOKENS``) the gateway
answers only to the loopback names ``localhost``, ``127.0.0.1`` (any ``127.0.0.0/8``
address) and ``[::1]``, with any port, and to the names listed in
``LOOKOUT_ALLOWED_HOSTS``; any other ``Host`` gets **421 Misdirected Request** with the
reason. With tokens the check applies only when ``LOOKOUT_ALLOWED_HOSTS`` is set (the
tokens already stand between a rebound page and the data).

What it covers: the answers a browser can read, the web UI (pages, static files, login
and logout), the API documentation and ``/api/*``. What it leaves alone: the webhook
(``/webhooks/sqreen``) is authenticated by its signature, which a rebound page cannot make,
and its answers carry nothing to steal, so its hot path pays nothing for this;
``/healthz``, ``/readyz`` and ``/metrics`` are machine endpoints that probes and scrapers
call by address (a pod IP), with nothing but counters in them. A request without ``Host``
(HTTP/1.0) passes: browsers always send one.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from shared.core.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost"})
VARIABLE = "LOOKOUT_ALLOWED_HOSTS"
Policy = frozenset[str]
HOST_POLICY = web.AppKey("host_policy", Policy)
"""The configured names; absent from the app when no check applies."""


def policy(settings: Settings) -> Policy | None:
    """The names (besides loopback) the gateway answers to, or None: no check."""
    if settings.api_tokens and not settings.allowed_hosts:
        return None
    return frozenset(settings.allowed_hosts)


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header without its port, lower-case, no trailing dot, IPv6
    compressed and unbracketed; None when it is not a well-formed host[:port]."""
    value = header.strip().lower()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        try:
            return str(ipaddress.IPv6Address(inside))
        except ValueError:
            return None
    name, colon, port = value.partition(":")
    if (colon and not port.isdigit()) or not name:
        return None
    return name.rstrip(".") or None


def refusal(header: str | None, allowed: Policy) -> str | None:
    """Why a request with this ``Host`` header is refused, or None when it may pass."""
    if header is None:
        return None
    name = host_name(header)
    if name is not None:
        if name in LOOPBACK_NAMES or name in allowed:
            return None
        try:
            if ipaddress.ip_address(name).is_loopback:
                return None
        except ValueError:
            pass
    shown = header if len(header) <= 100 else header[:100] + "…"
    listed = ", ".join(sorted(allowed)) or "none"
    return (
        f"Host {shown!r} is not served here: lookout answers to localhost, 127.0.0.1 and "
        f"[::1] and to the names in {VARIABLE} ({listed}); a request for another name "
        "may be a DNS rebinding attack"
    )


def _refused(request: web.Request) -> str | None:
    allowed = request.config_dict.get(HOST_POLICY)
    if allowed is None:
        return None
    return refusal(request.headers.get("Host"), allowed)


def guarded(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler`` behind the ``Host`` check: 421 with the reason as text."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        reason = _refused(request)
        if reason is not None:
            return web.Response(status=421, text=reason + "\n")
        return await handler(request)

    return checked


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The ``Host`` check on ``/api/*``: 421 with ``{"error": reason}``."""
    reason = _refused(request)
    if reason is not None:
        return web.json_response({"error": reason}, status=421)
    return await handler(request)


def setup(app: web.Application, settings: Settings) -> None:
    """Store the policy on the root app (nothing when no check applies)."""
    allowed = policy(settings)
    if allowed is not None:
        app[HOST_POLICY] = allowed
