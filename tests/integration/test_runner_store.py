"""What a provider's runner writes for a lookup, in which order, and when it acknowledges
the request (shared/lookups/runner.py, ``_store``): the answer into ``lookup_cache`` (no
ack asked: best effort), the result into the KV bucket ``lookup_results``, and only once it
is stored the result on ``lookup.result.<provider>``; the request is acknowledged after
that. When the result cannot be published (here: no stream takes ``lookup.result.>``), the
request is not acknowledged and comes back until it can be; a cache that refuses its entry
changes nothing.

A real InternetDB runner (its fake upstream, tests/fakes/internetdb.py) on a real
nats-server; requests published as the gateway publishes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
from fakes.internetdb import FakeInternetDb
from helpers import make_settings, running_task, wait_for
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from services.providers import internetdb
from shared.bus import messages
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.lookups import schemas
from shared.lookups import streams as lookup_streams
from shared.lookups.runner import ProviderRunner
from shared.lookups.schemas import LookupRequest, LookupResult

PUBLISHED = "1.2.3.4"  # the fake's published body
OTHER = "203.0.113.9"


def request(address: str) -> bytes:
    return messages.encode(LookupRequest(job_id="job1", indicator=address, kind="ipv4", fresh=True))


def kv_key(address: str) -> str:
    return LookupResult(
        job_id="job1", indicator=address, kind="ipv4", provider="internetdb", status="done"
    ).kv_key


@dataclass
class Stack:
    idb: FakeInternetDb
    settings: Settings
    nc: NATS
    js: JetStreamContext
    runner: ProviderRunner

    async def acknowledged(self, count: int) -> bool:
        """The first ``count`` requests are acknowledged and none is waiting for an ack."""
        durable = lookup_streams.provider_durable("internetdb")
        info = await self.js.consumer_info(lookup_streams.LOOKUPS, durable)
        return bool(info.ack_floor.consumer_seq >= count and info.num_ack_pending == 0)

    async def redelivered(self) -> int:
        durable = lookup_streams.provider_durable("internetdb")
        info = await self.js.consumer_info(lookup_streams.LOOKUPS, durable)
        return info.num_redelivered or 0


@contextlib.asynccontextmanager
async def running(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    """A real InternetDB runner, started (it provisions the streams and buckets)."""
    async with FakeInternetDb({OTHER: {"tags": ["c2"]}}) as idb:
        settings = make_settings(tmp_path, nats_server.url, INTERNETDB_URL=idb.base_url)
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await lookup_streams.provision(js, settings)
        runner = ProviderRunner(js, internetdb.build(settings), settings)
        try:
            async with running_task(runner.run) as task:
                await wait_for(lambda: runner.cache is not None or task.done(), within=10)
                yield Stack(idb, settings, nc, js, runner)
        finally:
            await nc.close()


async def test_stored_before_published_and_acknowledged_after_a_refused_publish_redelivers(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with running(nats_server, tmp_path) as stack:
        js = stack.js
        results = await js.key_value(lookup_streams.RESULTS_BUCKET)
        cache = await js.key_value(lookup_streams.CACHE_BUCKET)

        async def stored(key: str) -> bytes | None:
            try:
                return (await results.get(key)).value
            except KeyNotFoundError:
                return None

        seen: list[tuple[bytes, bytes | None, list[str]]] = []

        async def on_result(msg: Msg) -> None:
            # what the buckets hold when the result is published
            key = schemas.decode_lookup_result(msg.data).kv_key
            try:
                cached = await cache.keys()
            except Exception:  # no keys yet
                cached = []
            seen.append((msg.data, await stored(key), cached))

        published = await stack.nc.subscribe("lookup.result.internetdb", cb=on_result)
        await js.publish("lookup.requested.ipv4", request(PUBLISHED))
        await wait_for(lambda: len(seen) == 1)
        body, in_kv, cached = seen[0]
        assert schemas.decode_lookup_result(body).status == "done"
        assert in_kv == body  # stored before it was published
        assert [k for k in cached if k.startswith("internetdb.")]  # and the cache too
        await wait_for(lambda: stack.acknowledged(1))

        # No stream takes lookup.result.> any more: the result is stored, never
        # acknowledged, and the request comes back.
        await published.unsubscribe()
        await js.delete_stream(lookup_streams.LOOKUP_RESULTS)
        await js.publish("lookup.requested.ipv4", request(OTHER))

        async def stored_other() -> bool:
            return await stored(kv_key(OTHER)) is not None

        await wait_for(stored_other)

        async def redelivered() -> bool:
            return await stack.redelivered() >= 1

        await wait_for(redelivered, within=20)
        assert not await stack.acknowledged(2)
        assert len(stack.idb.requests) >= 3  # looked up again on each delivery

        # The stream is back: the next delivery publishes the result and acknowledges.
        await lookup_streams.provision(js, stack.settings)
        await wait_for(lambda: stack.acknowledged(2), within=20)
        last = await js.get_last_msg(lookup_streams.LOOKUP_RESULTS, "lookup.result.internetdb")
        result = schemas.decode_lookup_result(last.data or b"")
        assert (result.indicator, result.status, result.verdict) == (OTHER, "done", "malicious")


async def test_a_cache_that_refuses_writes_costs_no_second_lookup(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The cache entry is written without an ack: with the cache's stream gone, the result
    is still stored and published, the request acknowledged once, upstream asked once."""
    async with running(nats_server, tmp_path) as stack:
        js = stack.js
        await js.delete_key_value(lookup_streams.CACHE_BUCKET)
        await js.publish("lookup.requested.ipv4", request(OTHER))
        await wait_for(lambda: stack.acknowledged(1), within=10)
        results = await js.key_value(lookup_streams.RESULTS_BUCKET)
        stored = schemas.decode_lookup_result((await results.get(kv_key(OTHER))).value or b"")
        assert (stored.status, stored.verdict) == ("done", "malicious")
        await asyncio.sleep(2.5)  # a nak (delay 2 s) would have brought it back by now
        assert await stack.redelivered() == 0
        assert len(stack.idb.requests) == 1
