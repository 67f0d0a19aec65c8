"""Process runtime shared by every service: event loop, signals, graceful stop."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from shared import logging as log

ServiceMain = Callable[[asyncio.Event], Awaitable[None]]


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
    except Exception:
        log.get().exception("service crashed")
        return 1
    return 0
