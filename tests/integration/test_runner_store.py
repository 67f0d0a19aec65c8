"""What a provider's runner writes for a lookup, in which order, and when it acknowledges
the request (shared/lookups/runner.py, ``_store``): the answer into ``lookup_cache`` (no
ack asked: best effort), then the result into the KV bucket ``lookup_results``, which
nats-server publishes again on ``lookup.result.<provider>`` once stored (LOOKUP_RESULTS
keeps that copy); the request is acknowledged after the result is stored. When it cannot
be stored, the request is not acknowledged and comes back until it can be; a cache that
refuses its entry changes nothing.

A real InternetDB runner (its fake upstream, tests/fakes/internetdb.py) on a real
nats-server; requests published as the gateway publishes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from fakes.internetdb import FakeInternetDb
from helpers import make_settings, running_task, wait_for
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig
from nats.js.errors import KeyNotFoundError, NotFoundError

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


async def test_stored_then_published_by_the_server_then_acknowledged(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The runner writes the result once, into ``lookup_results``; nats-server publishes it
    on ``lookup.result.<provider>`` (the bucket's RePublish) only once stored, and
    LOOKUP_RESULTS keeps that one copy."""
    async with running(nats_server, tmp_path) as stack:
        js = stack.js
        results = await js.key_value(lookup_streams.RESULTS_BUCKET)
        cache = await js.key_value(lookup_streams.CACHE_BUCKET)
        seen: list[tuple[bytes, bytes | None, list[str], dict[str, str]]] = []

        async def on_result(msg: Msg) -> None:
            # what the buckets hold when the result is published
            key = schemas.decode_lookup_result(msg.data).kv_key
            try:
                in_kv = (await results.get(key)).value
            except KeyNotFoundError:
                in_kv = None
            try:
                cached = await cache.keys()
            except Exception:  # no keys yet
                cached = []
            seen.append((msg.data, in_kv, cached, dict(msg.headers or {})))

        await stack.nc.subscribe("lookup.result.internetdb", cb=on_result)
        await js.publish("lookup.requested.ipv4", request(PUBLISHED))
        await wait_for(lambda: len(seen) == 1)
        body, in_kv, cached, headers = seen[0]
        assert schemas.decode_lookup_result(body).status == "done"
        assert in_kv == body  # stored before it was published
        assert [k for k in cached if k.startswith("internetdb.")]  # and the cache too
        assert headers[messages.SCHEMA_HEADER] == schemas.LOOKUP_RESULT_SCHEMA
        assert headers["Nats-Subject"] == f"$KV.lookup_results.{kv_key(PUBLISHED)}"
        await wait_for(lambda: stack.acknowledged(1))
        info = await js.stream_info(lookup_streams.LOOKUP_RESULTS)
        assert info.state.messages == 1  # one copy: the runner published nothing itself
        last = await js.get_last_msg(lookup_streams.LOOKUP_RESULTS, "lookup.result.internetdb")
        assert last.data == body
        assert len(seen) == 1


async def test_a_result_the_bucket_refuses_is_not_acknowledged_and_comes_back(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """With the results bucket's stream gone the result cannot be stored: the request is
    never acknowledged and comes back until it can be, then is stored, republished and
    acknowledged."""
    async with running(nats_server, tmp_path) as stack:
        js = stack.js
        await js.delete_stream(lookup_streams.RESULTS_STREAM)
        await js.publish("lookup.requested.ipv4", request(OTHER))

        async def redelivered() -> bool:
            return await stack.redelivered() >= 1

        await wait_for(redelivered, within=20)
        assert not await stack.acknowledged(1)
        assert len(stack.idb.requests) >= 2  # looked up again on each delivery

        await lookup_streams.provision(js, stack.settings)  # the bucket is back
        await wait_for(lambda: stack.acknowledged(1), within=20)
        results = await js.key_value(lookup_streams.RESULTS_BUCKET)
        stored = schemas.decode_lookup_result((await results.get(kv_key(OTHER))).value or b"")
        assert (stored.status, stored.verdict) == ("done", "malicious")
        last = await js.get_last_msg(lookup_streams.LOOKUP_RESULTS, "lookup.result.internetdb")
        assert schemas.decode_lookup_result(last.data or b"").indicator == OTHER


async def test_provisioning_brings_a_bucket_and_the_indexer_of_a_release_before(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Made by a release before the RePublish: the bucket gets it, and the indexer's durable
    moves from LOOKUP_RESULTS to the bucket's stream."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        settings = make_settings(tmp_path, nats_server.url)
        await js.create_key_value(KeyValueConfig(bucket=lookup_streams.RESULTS_BUCKET))
        await js.add_stream(name=lookup_streams.LOOKUP_RESULTS, subjects=["lookup.result.>"])
        await js.add_consumer(
            lookup_streams.LOOKUP_RESULTS,
            ConsumerConfig(
                durable_name=lookup_streams.HISTORY_DURABLE, ack_policy=AckPolicy.EXPLICIT
            ),
        )
        await lookup_streams.provision(js, settings)
        info = await js.stream_info(lookup_streams.RESULTS_STREAM)
        assert info.config.republish is not None
        assert info.config.republish.dest == "lookup.result.{{wildcard(3)}}"
        with pytest.raises(NotFoundError):
            await js.consumer_info(lookup_streams.LOOKUP_RESULTS, lookup_streams.HISTORY_DURABLE)
        moved = await js.consumer_info(
            lookup_streams.RESULTS_STREAM, lookup_streams.HISTORY_DURABLE
        )
        assert moved.config.filter_subject == "$KV.lookup_results.>"
        results = await js.key_value(lookup_streams.RESULTS_BUCKET)
        await results.put("job1.abc.internetdb", b"{}")
        copy = await js.get_last_msg(lookup_streams.LOOKUP_RESULTS, "lookup.result.internetdb")
        assert copy.data == b"{}"
        await lookup_streams.provision(js, settings)  # again: nothing left to change
    finally:
        await nc.close()


async def test_a_cache_that_refuses_writes_costs_no_second_lookup(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The cache entry is written without an ack: with the cache's stream gone, the result
    is still stored, the request acknowledged once, upstream asked once."""
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
