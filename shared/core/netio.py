"""Outbound TCP connections by host name that can be cancelled cleanly under uvloop.

uvloop's ``create_connection`` (behind ``asyncio.open_connection``) resolves a host name
with a future of its own; when the caller is cancelled meanwhile (a timeout, a shutdown),
that future still fails later (``gaierror`` without a network) and nobody retrieves its
exception: asyncio logs "Future exception was never retrieved" for each, with no service
name (``lookout run`` without internet logged 156 of them from a registry lookup provider). Here
the name is resolved with ``loop.getaddrinfo``, which cancels cleanly, and the connection
is made to the numeric addresses, which need no resolution.
"""

from __future__ import annotations

import asyncio
import socket


async def open_connection(
    host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection(host, port)``: each address of ``host`` in the resolver's
    order, the first that accepts; the last failure when none does."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    failure: OSError = OSError(f"{host}: no address")
    for _family, _kind, _proto, _name, address in infos:
        try:
            return await asyncio.open_connection(str(address[0]), port)
        except OSError as exc:
            failure = exc
    raise failure
