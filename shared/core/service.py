"""Process runtime shared by every service: event loop, signals, graceful stop."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

from shared.core import logging as log
from shared.core.errors import ConfigError

ServiceMain = Callable[[asyncio.Event], Awaitable[None]]

EXIT_CANNOT_START = 2
"""Exit status of a service that cannot start as configured (a configuration error, or its
port taken): restarting it changes nothing, so ``lookout run`` stops instead."""


class CannotStart(Exception):
    """A service cannot start for a reason its operator must fix (its port is taken…):
    one line on stderr, exit status :data:`EXIT_CANNOT_START`, no traceback."""


def cannot_listen(
    host: str, port: int, exc: OSError, setting: str, in_use: str | None = None
) -> CannotStart:
    """The one-line refusal for a listener that cannot bind ``host:port``; ``in_use`` is
    the advice when the port is taken (default: set ``setting`` to a free port)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # asyncio's own message repeats the address: the errno's text alone, where there is one
    if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
        reason = exc.strerror or str(exc)
    else:
        reason = os.strerror(exc.errno)
    reason = reason.lower()
    if exc.errno == errno.EADDRINUSE:
        hint = in_use or f"set {setting} to a free port"
        return CannotStart(f"cannot listen on {where}: {reason} by another program ({hint})")
    return CannotStart(f"cannot listen on {where}: {reason} (check {setting} and the host)")


def check_port(host: str, port: int, setting: str, in_use: str | None = None) -> None:
    """Raise :class:`CannotStart` unless a listener could bind ``host:port`` now: bound the
    way asyncio's ``create_server`` binds (every address of ``host``, ``SO_REUSEADDR``, IPv6
    only on IPv6 sockets), then released. Port 0 (any free port) always can."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise cannot_listen(host, port, exc, setting, in_use) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in set(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this machine does not have: asyncio skips it too
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise cannot_listen(host, port, exc, setting, in_use) from None
    finally:
        for sock in sockets:
            sock.close()


def run(service: str, level: str, main: ServiceMain) -> int:
    """Run ``main(stop)`` until it returns; SIGINT/SIGTERM set ``stop`` for a clean exit."""
    log.setup(service, level)
    if sys.platform != "win32":
        import uvloop

        uvloop.install()

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    except CannotStart as exc:
        print(f"lookout: {service}: {exc}", file=sys.stderr, flush=True)
        return EXIT_CANNOT_START
    except ConfigError as exc:  # found once the service builds its parts
        print(f"lookout: {service}: configuration error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CANNOT_START
    except Exception:
        log.get().exception("service crashed")
        return 1
    return 0
