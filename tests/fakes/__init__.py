"""Loopback servers that speak the contracts of the services lookout talks to."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web


class LoopbackHttpFake:
    """An aiohttp app on 127.0.0.1 at a port the OS picks: ``start``/``stop`` or
    ``async with``, and ``port`` once started. Subclasses add their routes in
    :meth:`routes`; ``client_max_size`` bounds the request bodies the app reads."""

    client_max_size = 1024**2

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=self.client_max_size)
        self.routes(app.router)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
