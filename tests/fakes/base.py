"""What every loopback HTTP fake shares: a server on 127.0.0.1 at a free port, the record of
every request and answer, injected failures (``fail_next``/:meth:`RecordingFake.fail`),
delays, and the rate limiters the services document.

A fake of one service subclasses :class:`RecordingFake`: it adds its routes
(:meth:`LoopbackHttpFake.routes`), starts each handler with ``await self.gate(request)``
(record, delay, an injected answer if one is queued) and answers through
:meth:`RecordingFake.answer`, so ``answers`` holds the status of every request in order.
It says how the service words an error in :meth:`RecordingFake.error_answer`, which
every injected failure uses.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self

from aiohttp import web

__all__ = [
    "Failure",
    "FixedWindow",
    "Injected",
    "LoopbackHttpFake",
    "RecordedRequest",
    "RecordingFake",
    "SlidingWindow",
    "TokenBucket",
]


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


class RecordedRequest(NamedTuple):
    """One request: method, path (with query), headers, raw body and ``at`` (the fake's
    clock when it arrived)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    at: float = 0.0


@dataclass(frozen=True)
class Injected:
    """An answer queued by :meth:`RecordingFake.fail`: ``status`` in the service's own
    error shape, ``detail`` as its message when given, ``Retry-After`` when given."""

    status: int
    retry_after: str | None = None
    detail: str | None = None


Failure = int | tuple[int, str] | tuple[int, str, Mapping[str, str]] | Injected
"""An injected answer: a status (with the service's error body for it), ``(status,
body)``, ``(status, body, headers)`` (exactly that), or :class:`Injected`."""


class RecordingFake(LoopbackHttpFake):
    """A loopback fake that records what it receives and answers and can be told to fail.

    Knobs (plain attributes, changeable while running):

    * ``fail_next``: answers to give next, one per request, before anything else (see
      :data:`Failure`); :meth:`fail` queues one in the service's own error shape;
    * ``delay``: seconds to wait before answering every request; ``delay_next``: seconds
      to wait before answering the next requests, one each (a stalled answer: the client
      times out), consumed from the front;
    * ``clock``: the clock ``at`` is read from (monotonic unless given).

    Records: ``requests`` (every request, as :class:`RecordedRequest`) and ``answers``
    (the status of each, in order).
    """

    def __init__(
        self,
        *,
        fail_next: Iterable[Failure] = (),
        delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.fail_next: list[Failure] = list(fail_next)
        self.delay = delay
        self.delay_next: list[float] = []
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.answers: list[int] = []

    def fail(
        self, status: int, *, retry_after: str | None = None, detail: str | None = None
    ) -> None:
        """Answer a coming request (after those already queued) ``status`` the way the
        service words that error, with ``detail`` as its message and ``Retry-After`` when
        given."""
        self.fail_next.append(Injected(status, retry_after, detail))

    def answer(
        self,
        status: int,
        text: str | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> web.Response:
        """A response, recorded in ``answers``."""
        self.answers.append(status)
        return web.Response(status=status, text=text, headers=headers, content_type=content_type)

    def json_answer(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """``body`` as JSON, recorded in ``answers``."""
        return RecordingFake.answer(self, status, json.dumps(body), headers, "application/json")

    def error_answer(
        self,
        request: web.Request,
        status: int,
        detail: str | None,
        headers: Mapping[str, str],
    ) -> web.Response:
        """The service's error answer for ``status`` (``detail`` as its message, or the
        service's usual one), with ``headers``: what a queued failure answers."""
        return self.answer(status, detail or f"injected failure {status}", headers)

    async def gate(self, request: web.Request) -> web.Response | None:
        """Record the request, wait, and answer a queued failure if there is one (an
        answer ends the request)."""
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                request.method, request.path_qs, dict(request.headers), body, self.clock()
            )
        )
        wait = self.delay_next.pop(0) if self.delay_next else self.delay
        if wait > 0:
            await asyncio.sleep(wait)
        if not self.fail_next:
            return None
        failure = self.fail_next.pop(0)
        if isinstance(failure, Injected):
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return self.error_answer(request, failure.status, failure.detail, headers)
        if isinstance(failure, int):
            return self.error_answer(request, failure, None, {})
        status, text = failure[0], failure[1]
        return self.injected(status, text, failure[2] if len(failure) == 3 else None)

    def injected(self, status: int, text: str, headers: Mapping[str, str] | None) -> web.Response:
        """A queued ``(status, body[, headers])``, answered as given."""
        return self.answer(status, text, headers)


class TokenBucket:
    """``burst`` requests at once, refilled at ``per_second``; ``tolerance`` seconds of
    clock jitter are forgiven (a client pacing itself to exactly the rate must pass).
    ``per_second`` ``None``: no limit."""

    def __init__(
        self,
        per_second: float | None,
        burst: int = 1,
        tolerance: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.tolerance = tolerance
        self.clock = clock
        self._tokens = float(burst)
        self._refilled: float | None = None

    def take(self) -> bool:
        """Whether one more request may pass now (it then uses a token)."""
        if self.per_second is None:
            return True
        now = self.clock()
        if self._refilled is not None:
            elapsed = now - self._refilled
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_second)
        self._refilled = now
        if self._tokens + self.tolerance * self.per_second < 1.0:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True


@dataclass(frozen=True)
class WindowState:
    allowed: bool
    remaining: int
    reset_after: float


class FixedWindow:
    """``limit`` requests per key within a window of ``seconds`` that starts with the
    key's first request and resets after it."""

    def __init__(
        self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # key → (window start, used)

    def take(self, key: str) -> WindowState:
        """Count one request of ``key``: whether it passes, what remains, when it resets."""
        now = self.clock()
        start, used = self._windows.get(key, (now, 0))
        if now >= start + self.seconds:
            start, used = now, 0
        allowed = used < self.limit
        if allowed:
            used += 1
        self._windows[key] = (start, used)
        return WindowState(allowed, self.limit - used, max(0.0, start + self.seconds - now))


class SlidingWindow:
    """At most ``limit`` requests per key within any ``seconds`` (``limit`` ``None``: no
    limit); a refused request does not count."""

    def __init__(
        self, limit: int | None, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self._times: dict[str, deque[float]] = {}

    def take(self, key: str = "") -> bool:
        if self.limit is None:
            return True
        now = self.clock()
        times = self._times.setdefault(key, deque())
        while times and now - times[0] >= self.seconds:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True

    def clear(self) -> None:
        self._times.clear()
