"""What a provider's runner writes for a lookup, in which order, and when it acknowledges
the request (shared/lookups/runner.py, ``_store``): the result into the KV bucket
``lookup_results`` and the answer into ``lookup_cache``, and only once both are stored the
result on ``lookup.result.<provider>``; the request is acknowledged after that. When the
result cannot be published (here: no stream takes ``lookup.result.>``), the request is
not acknowledged and comes back until it can be.

A real InternetDB runner (its fake upstream, tests/fakes/internetdb.py) on a real
nats-server; requests published as the gateway publishes them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from fakes.internetdb import FakeInternetDb
from helpers import make_settings, wait_for
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from services.providers import internetdb
from shared.bus import messages
from shared.core.natsserver import NatsServer
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


async def test_stored_before_published_and_acknowledged_after_a_refused_publish_redelivers(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeInternetDb({OTHER: {"tags": ["c2"]}}) as idb:
        settings = make_settings(tmp_path, nats_server.url, INTERNETDB_URL=idb.base_url)
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await lookup_streams.provision(js, settings)
        results = await js.key_value(lookup_streams.RESULTS_BUCKET)
        cache = await js.key_value(lookup_streams.CACHE_BUCKET)
        durable = lookup_streams.provider_durable("internetdb")

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

        stop = asyncio.Event()
        runner = ProviderRunner(js, internetdb.build(settings), settings)
        task = asyncio.create_task(runner.run(stop))
        try:
            published = await nc.subscribe("lookup.result.internetdb", cb=on_result)
            await js.publish("lookup.requested.ipv4", request(PUBLISHED))
            await wait_for(lambda: len(seen) == 1)
            body, in_kv, cached = seen[0]
            assert schemas.decode_lookup_result(body).status == "done"
            assert in_kv == body  # stored before it was published
            assert [k for k in cached if k.startswith("internetdb.")]  # and the cache too

            async def acknowledged(count: int) -> bool:
                info = await js.consumer_info(lookup_streams.LOOKUPS, durable)
                return info.ack_floor.consumer_seq >= count and info.num_ack_pending == 0

            await wait_for(lambda: acknowledged(1))

            # No stream takes lookup.result.> any more: the result is stored, never
            # acknowledged, and the request comes back.
            await published.unsubscribe()
            await js.delete_stream(lookup_streams.LOOKUP_RESULTS)
            await js.publish("lookup.requested.ipv4", request(OTHER))

            async def stored_other() -> bool:
                return await stored(kv_key(OTHER)) is not None

            await wait_for(stored_other)

            async def redelivered() -> bool:
                info = await js.consumer_info(lookup_streams.LOOKUPS, durable)
                return (info.num_redelivered or 0) >= 1

            await wait_for(redelivered, within=20)
            assert not await acknowledged(2)
            assert len(idb.requests) >= 3  # looked up again on each delivery

            # The stream is back: the next delivery publishes the result and acknowledges.
            await lookup_streams.provision(js, settings)
            await wait_for(lambda: acknowledged(2), within=20)
            last = await js.get_last_msg(lookup_streams.LOOKUP_RESULTS, "lookup.result.internetdb")
            result = schemas.decode_lookup_result(last.data or b"")
            assert (result.indicator, result.status, result.verdict) == (
                OTHER,
                "done",
                "malicious",
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await nc.close()
