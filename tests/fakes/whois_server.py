"""A real WHOIS server (RFC 3912) on loopback for the test suite (asyncio streams).

Reads one query line, answers the text registered in ``responses`` for it (else a
Verisign-style ``No match for "QUERY".``) and closes the connection::

    server = FakeWhoisServer({"example.com": "Domain Name: EXAMPLE.COM\\n..."})
    await server.start()
    env["LOOKOUT_WHOIS_SERVER"] = server.address   # "127.0.0.1:PORT"
    ...
    assert server.queries == ["example.com"]
    await server.stop()

``host``/``port`` choose where it listens (default 127.0.0.1 and a port the OS picks):
several servers on one port at 127.0.0.2, 127.0.0.3… stand for referral targets that all
listen on "port 43".

Knobs: ``hang`` (accept, read the query, never answer until ``stop()``) and ``delay``
(seconds before answering).
"""

from __future__ import annotations

import asyncio
import contextlib


class FakeWhoisServer:
    def __init__(
        self, responses: dict[str, str] | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.responses: dict[str, str] = dict(responses or {})
        self.queries: list[str] = []
        self.hang = False
        self.delay = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = asyncio.Event()
        self._host = host
        self._port = port

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._stopping.set()
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def __aenter__(self) -> FakeWhoisServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _pause(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            query = line.decode("utf-8", "replace").strip()
            self.queries.append(query)
            if self.hang:
                await self._pause(None)
                return
            if self.delay > 0:
                await self._pause(self.delay)
            answer = self.responses.get(query)
            if answer is None:
                answer = f'No match for "{query.upper()}".\r\n'
            writer.write(answer.replace("\r\n", "\n").replace("\n", "\r\n").encode())
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
