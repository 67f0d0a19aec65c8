"""The pull loop every JetStream worker uses (shared/bus/consume.py), on a real nats-server:
it pulls messages in batches (issue 15, item 7: not one pull request per message), never
runs more handlers than its concurrency, never holds a message it has no slot for, and
loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import pytest
import structlog
from helpers import wait_for
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from shared.bus import consume as consume_module
from shared.bus.consume import consume
from shared.core.natsserver import NatsServer

STREAM = "CONSUME"
DURABLE = "worker"


@contextlib.asynccontextmanager
async def bus(url: str) -> AsyncIterator[tuple[JetStreamContext, list[bytes]]]:
    """A stream with one durable pull consumer; yields the publisher's JetStream context
    and the pull requests the consumer receives, as the server sees them."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=STREAM, subjects=["consume.>"])
        await js.add_consumer(
            STREAM,
            ConsumerConfig(
                durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000
            ),
        )
        requests: list[bytes] = []

        async def seen(msg: Msg) -> None:
            requests.append(msg.data)

        await nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{DURABLE}", cb=seen)
        await nc.flush()
        yield js, requests
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def consuming(
    url: str, handle: Callable[[Msg], Awaitable[None]], concurrency: int
) -> AsyncIterator[asyncio.Event]:
    nc: NATS = await nats.connect(url)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        sub = await nc.jetstream().pull_subscribe_bind(durable=DURABLE, stream=STREAM)

        async def run(msg: Msg) -> None:
            await handle(msg)

        task = asyncio.create_task(
            consume(
                sub,
                run,
                concurrency=concurrency,
                stop=stop,
                log=structlog.get_logger(),
                drain_timeout=5.0,
            )
        )
        yield stop
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 10)
        await nc.close()


async def pending(js: JetStreamContext) -> tuple[int, int]:
    """(messages not yet delivered, delivered and not yet acknowledged)."""
    info = await js.consumer_info(STREAM, DURABLE)
    return info.num_pending or 0, info.num_ack_pending or 0


async def test_a_trickle_is_pulled_in_batches(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages that arrive one at a time, each handled before the next is stored (a
    steady rate the worker keeps up with), cost one pull request per batch of
    ``concurrency``, not one each: before, every message took its own request."""
    # requests live longer than the test, so none is renewed for having expired
    monkeypatch.setattr(consume_module, "PULL_EXPIRES", 60.0)
    handled: list[bytes] = []
    async with bus(nats_server.url) as (js, requests):

        async def handle(msg: Msg) -> None:
            handled.append(msg.data)
            await msg.ack()

        async with consuming(nats_server.url, handle, concurrency=8):
            await wait_for(lambda: len(requests) >= 1)
            for i in range(40):
                await js.publish("consume.one", str(i).encode())
                await wait_for(lambda i=i: len(handled) == i + 1)  # type: ignore[misc]
            asked = len(requests)
        assert handled == [str(i).encode() for i in range(40)]
        # 40 messages in batches of 8 (7 when the last handler has not yet released its
        # slot as the loop asks again): 5 or 6 requests, and the next one, waiting
        assert asked <= 8, f"{asked} pull requests for 40 messages"
        await wait_for(lambda: _settled(js))


async def _settled(js: JetStreamContext) -> bool:
    return await pending(js) == (0, 0)


async def test_never_more_handlers_than_slots_nor_messages_without_one(
    nats_server: NatsServer,
) -> None:
    """With every slot busy, nothing more is delivered to the process (the consumer holds
    it, so another replica could take it); once the handlers finish, every message is
    handled exactly once and acknowledged."""
    release = asyncio.Event()
    running = 0
    most = 0
    handled: list[bytes] = []

    async def handle(msg: Msg) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await release.wait()
            handled.append(msg.data)
            await msg.ack()
        finally:
            running -= 1

    async with bus(nats_server.url) as (js, _requests):
        for i in range(30):
            await js.publish("consume.many", str(i).encode())
        async with consuming(nats_server.url, handle, concurrency=4):
            await wait_for(lambda: running == 4)
            await asyncio.sleep(0.3)  # a loop that over-asked would have been sent more
            assert await pending(js) == (26, 4)
            release.set()
            await wait_for(lambda: len(handled) == 30)
        assert most == 4
        assert sorted(handled) == sorted(str(i).encode() for i in range(30))
        await wait_for(lambda: _settled(js))


async def next_start_takes(url: str, expected: list[bytes], within: float = 15.0) -> None:
    """A new loop on the consumer is handed ``expected`` (and acknowledges it) within
    ``within`` seconds."""
    seen: list[bytes] = []

    async def again(msg: Msg) -> None:
        seen.append(msg.data)
        await msg.ack()

    async with consuming(url, again, concurrency=1):
        await wait_for(lambda: seen == expected, within=within)


async def test_stopping_waits_for_the_handlers_in_flight(nats_server: NatsServer) -> None:
    """Stop ends the loop; a handler already running finishes (and acknowledges) first,
    and what was not delivered stays on the consumer for the next start."""
    started = asyncio.Event()
    finished: list[bytes] = []

    async def handle(msg: Msg) -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.append(msg.data)
        await msg.ack()

    async with bus(nats_server.url) as (js, _requests):
        await js.publish("consume.one", b"first")
        async with consuming(nats_server.url, handle, concurrency=1) as stop:
            await asyncio.wait_for(started.wait(), 10)
            stop.set()
        assert finished == [b"first"]
        await js.publish("consume.one", b"second")
        await next_start_takes(nats_server.url, [b"second"])


async def test_a_stopped_loop_takes_no_more_messages_while_handlers_finish(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop, while a handler still runs and the loop's pull request still has room: a
    message stored meanwhile is not sent to the stopping process (where nothing would
    handle it and it would wait out the consumer's 30 s ack wait) but stays on the
    consumer, and the next start gets it at once."""
    # the request outlives the stop (as one made just before a stop does, for up to 1 s)
    monkeypatch.setattr(consume_module, "PULL_EXPIRES", 60.0)
    started = asyncio.Event()
    handled: list[bytes] = []

    async def slow(msg: Msg) -> None:
        started.set()
        await asyncio.sleep(2.5)
        handled.append(msg.data)
        await msg.ack()

    async with bus(nats_server.url) as (js, _requests):
        await js.publish("consume.one", b"first")
        async with consuming(nats_server.url, slow, concurrency=2) as stop:
            await asyncio.wait_for(started.wait(), 10)
            stop.set()
            await asyncio.sleep(1.2)  # the loop has ended; its handler has not
            await js.publish("consume.one", b"second")
        assert handled == [b"first"]
        await next_start_takes(nats_server.url, [b"second"], within=5)
        assert await pending(js) == (0, 0)
