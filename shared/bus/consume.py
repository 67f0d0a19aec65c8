"""The bounded, concurrent pull loop every JetStream worker uses (sinks and providers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

PULL_EXPIRES = 1.0
"""Seconds a pull request waits on the server for its messages (then it ends with a
``408`` status and the loop asks again)."""
PULL_GRACE = 1.0
"""Seconds past a request's expiry after which the loop stops waiting for the server's end
of it (a reconnect lost it) and asks again."""
_STATUS = "Status"
_HEARTBEAT = "100"
_ENDED = ("404", "408")  # no messages (no_wait), request expired: the ordinary ends


async def consume(
    sub: JetStreamContext.PullSubscription,
    handle: Callable[[Msg], Coroutine[Any, Any, None]],
    *,
    concurrency: int,
    stop: asyncio.Event,
    log: Any,
    drain_timeout: float,
) -> None:
    """Pull messages while ``stop`` is unset and handle each in its own task, never more
    than ``concurrency`` at once. On stop, waits up to ``drain_timeout`` for the handlers
    in flight, which ack or nak their messages.

    One pull request is outstanding at a time, asking for as many messages as there are
    free slots (so nothing waits unacknowledged in this process): the server sends each
    as soon as it is stored, and the loop hands it to a handler at once. A new request
    goes out when this one is used up or ends (expired, ``PULL_EXPIRES``), so a steady
    trickle costs one request per ``concurrency`` messages, not one per message (the
    client's ``fetch`` waits for each batch to end before handing any message over, and
    a handler free again at once meant a request for every message).

    The loop owns the subscription's end: when it returns, ``sub`` is unsubscribed and
    any message the server sent that no handler took was handed back (``nak``)."""
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    # The pull subscription's own inbox and request subject: the client's ``fetch`` is
    # built on the same two, but only returns a batch once it is complete.
    inbox = sub._sub
    request_subject: str = sub._nms
    reply: str = sub._deliver
    nc = sub._nc
    # Read straight from the subscription's queue: the client's ``next_msg`` makes two
    # tasks and a uuid per message to apply its timeout.
    queue: asyncio.Queue[Msg] = inbox._pending_queue
    asked = 0  # messages the outstanding request may still bring (0: none outstanding)
    given_up_at = 0.0  # when the loop stops waiting for the request's end

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("handler failed", error=str(task.exception()))

    try:
        while not stop.is_set():
            if asked == 0:
                await slots.acquire()  # ask only once a slot is free
                free = slots._value + 1
                slots.release()
                request = {"batch": free, "expires": int(PULL_EXPIRES * 1e9)}
                try:
                    await nc.publish(request_subject, json.dumps(request).encode(), reply)
                except Exception as exc:  # disconnected, reconnecting: wait and go on
                    log.warning("fetch failed", error=str(exc) or type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                asked = free
                given_up_at = time.monotonic() + PULL_EXPIRES + PULL_GRACE
            try:
                msg = queue.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    async with asyncio.timeout(
                        max(min(given_up_at - time.monotonic(), 1.0), 0.001)
                    ):
                        msg = await queue.get()
                except TimeoutError:
                    if time.monotonic() >= given_up_at:
                        asked = 0
                    continue
            inbox._pending_size -= len(msg.data)  # as the client's next_msg keeps count
            status = (msg.headers or {}).get(_STATUS)
            if status is not None:
                if status == _HEARTBEAT:
                    continue
                asked = 0  # the request ended
                if status not in _ENDED:  # 409 (consumer deleted, leader changed…)
                    description = (msg.headers or {}).get("Description", "")
                    log.warning("fetch failed", error=f"{status} {description}".strip())
                    await asyncio.sleep(0.5)
                continue
            asked = max(asked - 1, 0)
            await slots.acquire()  # free unless a request the loop gave up on delivers
            if stop.is_set():  # stopped while it waited for a slot: not started, handed back
                slots.release()
                with contextlib.suppress(Exception):
                    await msg.nak()
                break
            task = asyncio.create_task(handle(msg))
            tasks.add(task)
            task.add_done_callback(done)
    finally:
        await _hand_back_unread(inbox, log)
        if tasks:
            await asyncio.wait(tasks, timeout=drain_timeout)


async def _hand_back_unread(inbox: Any, log: Any) -> None:
    """End the subscription, then hand back at once what the server had sent that no
    handler took: redelivered now (to another replica, or on the next start) rather than
    after the consumer's ack wait. The server skips a pull request nobody listens to any
    more, so nothing is sent after the unsubscribe."""
    with contextlib.suppress(Exception):  # the connection may be closed already
        await inbox.unsubscribe()
    handed_back = 0
    while inbox.pending_msgs:
        try:
            msg = inbox._pending_queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        if msg.headers and _STATUS in msg.headers:
            continue  # the request's own status, not a message
        with contextlib.suppress(Exception):
            await msg.nak()
            handed_back += 1
    if handed_back:
        log.info("stopping: unhandled messages handed back", count=handed_back)
