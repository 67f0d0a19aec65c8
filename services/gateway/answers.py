"""What the ``/api`` handlers answer with: JSON bodies and errors, the bus (or a 503), and
the ``?limit=`` of the list endpoints. A refusal raised here (an ``HTTPException``) is
turned into ``{"error": reason}`` by the ``/api`` middleware."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.gateway import hardening
from services.gateway.state import BUS, SETTINGS, Bus
from shared.bus.direct import Reader
from shared.bus.publish import Publisher
from shared.core import jsondata, requestid

_json = msgspec.json.Encoder()


def api_json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=_json.encode(body), content_type="application/json", headers=headers
    )


def api_error(status: int, reason: str, **extra: Any) -> web.Response:
    return api_json(status, {"error": reason, **extra})


T = TypeVar("T")


async def json_input(request: web.Request, shape: type[T], usage: str) -> T | web.Response:
    """The request's JSON body decoded as ``shape`` (refused with 413 beyond the API's
    JSON limit), or the 400 to answer: ``usage`` and what was wrong."""
    limit = hardening.json_limit(request.config_dict[SETTINGS])
    try:
        return msgspec.json.decode(await hardening.read_capped(request, limit), type=shape)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return api_error(400, f"{usage}: {exc}")
    except RecursionError:  # a field of any JSON (a list item) nested deeper than Python goes
        return api_error(400, f"{usage}: {jsondata.depth_reason()}")


def with_request_id(
    handler: Callable[[web.Request, str], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler(request, request_id)`` as an aiohttp handler whose every answer, refusals
    included, carries the request id (``X-Request-Id``: the client's when sane, else new)."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        request_id = requestid.from_headers(request.headers)
        try:
            response = await handler(request, request_id)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = api_error(exc.status, exc.reason)
        response.headers[requestid.HTTP_HEADER] = request_id
        return response

    return handle


def _usable(request: web.Request, publishing: bool = False) -> Bus:
    """The gateway's bus; 503 while the connection asked for (the API's, or with
    ``publishing`` the webhooks') is not usable (connected and provisioned, which implies
    its JetStream context, reader and publisher are made)."""
    the_bus = request.config_dict[BUS]
    if not (the_bus.publishing if publishing else the_bus.usable):
        raise web.HTTPServiceUnavailable(reason="message bus unavailable, retry later")
    return the_bus


def bus_js(request: web.Request) -> JetStreamContext:
    """The gateway's JetStream context; 503 while the bus is not usable."""
    js = _usable(request).js
    assert js is not None  # made before the bus is usable
    return js


def bus_publisher(request: web.Request) -> Publisher:
    """The gateway's publisher of notifications (the webhooks' connection); 503 while that
    connection is not usable."""
    publisher = _usable(request, publishing=True).publisher
    assert publisher is not None  # made before the bus is usable
    return publisher


def bus_nc(request: web.Request) -> NATS:
    """The API's NATS connection; 503 while the bus is not usable."""
    nc = _usable(request).api_nc
    assert nc is not None  # made before the bus is usable
    return nc


def bus_reader(request: web.Request) -> Reader:
    """The gateway's reader of streams and buckets; 503 while the bus is not usable."""
    reader = _usable(request).reader
    assert reader is not None  # made before the bus is usable
    return reader


def query_limit(request: web.Request, default: int, maximum: int) -> int:
    """``?limit=`` from 1 to ``maximum`` (``default`` when absent); 400 otherwise, as the
    OpenAPI document says: refused, never clamped."""
    try:
        limit = int(request.query.get("limit", str(default)))
    except ValueError:
        raise web.HTTPBadRequest(reason="limit must be a number") from None
    if not 1 <= limit <= maximum:
        raise web.HTTPBadRequest(reason=f"limit must be from 1 to {maximum}")
    return limit
