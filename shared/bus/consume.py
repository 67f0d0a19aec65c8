"""The bounded, concurrent pull loop every JetStream worker uses (sinks and providers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext


async def consume(
    sub: JetStreamContext.PullSubscription,
    handle: Callable[[Msg], Coroutine[Any, Any, None]],
    *,
    concurrency: int,
    stop: asyncio.Event,
    log: Any,
    drain_timeout: float,
) -> None:
    """Fetch messages while ``stop`` is unset and handle each in its own task, never more
    than ``concurrency`` at once (fetches ask only for as many as there are free slots, so
    nothing waits unacknowledged in this process). On stop, waits up to ``drain_timeout``
    for the handlers in flight, which ack or nak their messages."""
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("handler failed", error=str(task.exception()))

    try:
        while not stop.is_set():
            await slots.acquire()
            free = slots._value + 1
            try:
                msgs = await sub.fetch(batch=free, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
                msgs = []
            except Exception as exc:  # disconnected, reconnecting: wait and go on
                log.warning("fetch failed", error=str(exc) or type(exc).__name__)
                msgs = []
                await asyncio.sleep(0.5)
            if not msgs:
                slots.release()
                continue
            for index, msg in enumerate(msgs):
                if index > 0:
                    await slots.acquire()
                task = asyncio.create_task(handle(msg))
                tasks.add(task)
                task.add_done_callback(done)
    finally:
        if tasks:
            await asyncio.wait(tasks, timeout=drain_timeout)
