"""A step repeated in the background until stopped (a refresher, a poller).

Stopping cancels the task and waits for it only briefly: a cancellation that lands inside a
library call may come back as that library's own error (nats-py's request timeouts), which a
step that survives its failures then swallows. The loop therefore also ends on a flag, so a
stop never hangs and the task never outlives it by more than one step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

STOP_GRACE = 2.0
"""Seconds :meth:`Repeating.stop` waits for the task to end."""


class Repeating:
    """``step()`` every ``every()`` seconds (after waiting first when ``wait_first``) from
    :meth:`start` until :meth:`stop`. ``step`` handles its own failures: one that raises
    ends the loop."""

    def __init__(
        self,
        step: Callable[[], Awaitable[object]],
        every: Callable[[], float],
        *,
        wait_first: bool = False,
    ) -> None:
        self._step = step
        self._every = every
        self._wait_first = wait_first
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopped = False
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        if self._wait_first:
            await asyncio.sleep(self._every())
        while not self._stopped:
            await self._step()
            if self._stopped:
                return
            await asyncio.sleep(self._every())

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_GRACE)
