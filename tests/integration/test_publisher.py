"""Publisher on a real nats-server: what js.publish answers, and its failures told apart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from helpers import make_settings
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from services.gateway import state as gateway_state
from shared.bus.connect import connect
from shared.bus.publish import Publisher, PublishRefused
from shared.core.natsserver import NatsServer

HEADERS = {"Lookout-Schema": "notification/1"}


@contextlib.asynccontextmanager
async def stream_p(url: str) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    """A connection and a stream P taking ``p.>``."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="P", subjects=["p.>"], storage=StorageType.FILE))
        yield nc, js
    finally:
        await nc.close()


async def test_acks_carry_the_sequence_and_the_duplicate_flag(nats_server: NatsServer) -> None:
    async with stream_p(nats_server.url) as (nc, js):
        publisher = Publisher(nc)
        await publisher.start()
        acks = await asyncio.gather(
            *(
                publisher.publish(f"p.{i % 3}", b"%d" % i, {**HEADERS, "Nats-Msg-Id": str(i)}, 5)
                for i in range(50)
            )
        )
        assert sorted(a.seq for a in acks) == list(range(1, 51))
        assert {a.stream for a in acks} == {"P"}
        assert not any(a.duplicate for a in acks)
        again = await publisher.publish("p.0", b"0", {"Nats-Msg-Id": "0"}, 5)
        assert again.duplicate
        assert again.seq == acks[0].seq
        stored = await js.get_msg("P", acks[7].seq)
        assert stored.data == b"7"
        assert stored.headers is not None
        assert stored.headers["Lookout-Schema"] == "notification/1"


async def test_refusals_and_silence_are_errors_not_acks(nats_server: NatsServer) -> None:
    async with stream_p(nats_server.url) as (nc, _js):
        publisher = Publisher(nc)
        with pytest.raises(PublishRefused, match="not started"):
            await publisher.publish("p.x", b"", {}, 1)
        await publisher.start()
        # no stream takes the subject: the server's no-responders status, at once
        with pytest.raises(PublishRefused, match=r"no stream took nostream\.x"):
            await publisher.publish("nostream.x", b"x", HEADERS, 5)
        # JetStream refuses it: its error description
        with pytest.raises(PublishRefused, match="wrong last sequence"):
            await publisher.publish("p.x", b"x", {"Nats-Expected-Last-Sequence": "99"}, 5)
        # someone answers nothing: a timeout
        await nc.subscribe("silent.x")
        with pytest.raises(TimeoutError, match=r"within 0\.3s"):
            await publisher.publish("silent.x", b"x", HEADERS, 0.3)
        assert publisher._waiting == {}  # nothing left behind


async def test_publishing_goes_on_after_nats_restarts(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    nc = await connect(nats_server.url, "test-publisher")
    try:
        await gateway_state.provision(nc.jetstream(), settings)
        publisher = Publisher(nc)
        await publisher.start()
        first = await publisher.publish("notification.t.x", b"1", {"Nats-Msg-Id": "1"}, 5)
        nats_server.stop()
        nats_server.start()
        deadline = asyncio.get_running_loop().time() + 20
        while True:  # reconnecting: refusals or timeouts until the server is back
            try:
                second = await publisher.publish("notification.t.x", b"2", {"Nats-Msg-Id": "2"}, 1)
                break
            except (TimeoutError, PublishRefused, nats.errors.Error):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.2)
        assert second.seq == first.seq + 1  # the stream's data survived; the ack subscription too
    finally:
        await nc.close()
