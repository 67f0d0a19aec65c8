"""The WHOIS protocol (RFC 3912): connect to TCP port 43, send the query and CR LF, read the
answer until the server closes the connection. Every step is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib

from services.providers.whois.record import Unavailable
from shared.core import netio
from shared.lookups.provider import os_error_text

PORT = 43
MAX_ANSWER = 1024 * 1024
CONNECT_TIMEOUT = 5.0
IANA = "whois.iana.org"

# Servers that answer better to a decorated query (only when asking the real registries;
# a configured LOOKOUT_WHOIS_SERVER always gets the plain query).
QUERY_FORMATS = {
    "whois.verisign-grs.com": "domain {}",  # not also every name server called like it
    "whois.jprs.jp": "{}/e",  # English field names
}


def split_server(server: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` → (host, port)."""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else PORT
    host, sep, port = server.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return server, PORT


def join_server(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def ask(
    host: str, port: int, query: str, deadline: float, *, connect_to: str | None = None
) -> str:
    """The answer of ``host:port`` to ``query``, read before ``deadline`` (loop time).

    ``connect_to``: the address to connect to instead of resolving ``host`` again (an
    address the caller resolved and checked, e.g. with :func:`shared.core.ssrf.refusal`).

    Raise :class:`Unavailable` with the cause alone (``cannot connect: Connection
    refused``, ``timeout after 2 s``…) when the server cannot be reached, closes without
    answering or does not finish in time: the caller knows whom it asked.
    """
    loop = asyncio.get_running_loop()
    remaining = deadline - loop.time()
    if remaining <= 0:
        raise Unavailable("no time left to ask")
    connect_timeout = min(CONNECT_TIMEOUT, remaining)
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await netio.open_connection(connect_to or host, port)
    except TimeoutError:
        raise Unavailable(f"cannot connect: timeout after {connect_timeout:.2g} s") from None
    except OSError as exc:
        raise Unavailable(f"cannot connect: {os_error_text(exc)}") from None
    allowed = deadline - loop.time()
    try:
        async with asyncio.timeout_at(deadline):
            writer.write(f"{query}\r\n".encode())
            await writer.drain()
            answer = bytearray()
            while chunk := await reader.read(65536):
                answer.extend(chunk)
                if len(answer) > MAX_ANSWER:
                    break  # enough: a WHOIS answer is a few kB
    except TimeoutError:
        raise Unavailable(f"timeout after {allowed:.2g} s, answer incomplete") from None
    except OSError as exc:
        raise Unavailable(f"connection failed: {os_error_text(exc)}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    text = _decode(bytes(answer)).strip()
    if not text:
        raise Unavailable("empty answer")
    return text


def decorated(server: str, query: str) -> str:
    return QUERY_FORMATS.get(server.lower(), "{}").format(query)
