"""Reads of the API make nothing on the bus (issue 12, item 6), and the bus refusing work is
a 503 with its reason, on ``/readyz`` and on every read.

Before, every ``GET /api/v1/lookups/{id}``, ``GET /api/v1/notifications/{id}`` and
``/events`` stream made a KV watch, an ordered consumer that outlived the request for its
inactive threshold (300 s): enough reads filled the stream's consumer cap, after which every
read answered 500 while ``/readyz`` said 200. Reads are now direct gets and core NATS
subscriptions (shared/bus/direct.py): the number of consumers must not move, however many reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from dnsserver import ZoneServer
from helpers import (
    SHOP_ZONE,
    Receiver,
    api,
    http_target,
    jetstream,
    make_settings,
    post_webhook,
    running_gateway,
    running_provider,
    running_sink,
    sqreen_fixture,
    wait_for,
    wait_job,
)
from nats.js import JetStreamContext

from services.gateway import state as gateway_state
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.lookups import streams as lookup_streams
from shared.relay import streams

READ_STREAMS = (
    "KV_lookup_jobs",
    "KV_lookup_results",
    "KV_delivery_status",
    streams.DEADLETTERS,
)

PROVISIONED = {"KV_lookup_results": {lookup_streams.HISTORY_DURABLE}}
"""The history's indexer reads the results bucket's stream through its durable."""


async def consumers(js: JetStreamContext) -> dict[str, int]:
    """Consumers per stream, every stream of the bus."""
    return {info.config.name or "": info.state.consumer_count for info in await js.streams_info()}


@contextlib.asynccontextmanager
async def read_stack(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> AsyncIterator[tuple[Settings, str, str, str, str]]:
    """The gateway, the dns provider (against a loopback DNS server) and an http sink;
    yields the settings, the gateway's base URL, a notification id with a delivery
    recorded, a complete lookup job and one that stays pending (its provider never runs)."""
    async with contextlib.AsyncExitStack() as stack:
        dns = stack.enter_context(ZoneServer(SHOP_ZONE))
        settings = make_settings(
            tmp_path,
            nats_server.url,
            http_target(receiver.url),
            LOOKOUT_DNS_NAMESERVERS=dns.nameserver,
            LOOKOUT_API_RATE="0",  # a client polling as fast as it can
        )
        base = await stack.enter_async_context(running_gateway(settings))
        await stack.enter_async_context(running_provider(settings, "dns"))
        await stack.enter_async_context(running_sink(settings, "ops-http"))
        _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
        [note_id] = answer["ids"]

        async def delivered() -> bool:
            code, found = await api("GET", f"{base}/api/v1/notifications/{note_id}")
            return code == 200 and found["targets"]["ops-http"]["state"] == "delivered"

        await wait_for(delivered, within=20)
        lookups = f"{base}/api/v1/lookups"
        body = {"indicators": ["shop-example.com", "billing@shop-example.com"]}
        code, done = await api("POST", lookups, json={**body, "providers": ["dns"]})
        assert code == 202, done
        await wait_job(base, done["id"])
        code, waiting = await api("POST", lookups, json={**body, "providers": ["whois"]})
        assert code == 202, waiting
        yield settings, base, note_id, done["id"], waiting["id"]


async def _read(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


async def _events(session: aiohttp.ClientSession, url: str, until_done: bool) -> int:
    """Open an event stream: read it to ``event: done``, or close it once it began."""
    async with session.get(url) as response:
        if response.status != 200:
            await response.read()
            return response.status
        assert response.content_type == "text/event-stream"
        if until_done:
            text = b""
            while b"event: done" not in text:
                chunk = await response.content.readany()
                assert chunk, f"stream ended before done: {text[-300:]!r}"
                text += chunk
                assert b"HTTP/1.1" not in text
        return response.status


async def test_reads_make_no_consumers(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    async with (
        read_stack(nats_server, tmp_path, receiver) as (_, base, note_id, done_id, waiting_id),
        jetstream(nats_server.url) as js,
        aiohttp.ClientSession() as session,
    ):
        before = await consumers(js)
        api_base = f"{base}/api/v1"
        reads = (
            [_read(session, f"{api_base}/notifications/{note_id}") for _ in range(600)]
            + [_read(session, f"{api_base}/lookups/{done_id}") for _ in range(400)]
            + [_read(session, f"{api_base}/lookups/{waiting_id}") for _ in range(200)]
            + [_read(session, f"{api_base}/lookups/{done_id}.csv") for _ in range(100)]
            + [_events(session, f"{api_base}/lookups/{done_id}/events", True) for _ in range(150)]
            + [
                _events(session, f"{api_base}/lookups/{waiting_id}/events", False)
                for _ in range(150)
            ]
        )
        random.Random(12).shuffle(reads)
        statuses: Counter[int] = Counter()
        for start in range(0, len(reads), 8):  # eight clients at a time
            statuses.update(await asyncio.gather(*reads[start : start + 8]))
        assert statuses == Counter({200: 1600})
        after = await consumers(js)
        assert after == before, "reads made consumers"
        for stream in READ_STREAMS:  # only the durables lookout provisions, none of a read
            names = {info.name for info in await js.consumers_info(stream)}
            assert names <= PROVISIONED.get(stream, set()), (stream, names)
        assert await _read(session, f"{base}/readyz") == 200

        # A lookup done afterwards is seen complete as soon as its provider answered.
        code, job = await api(
            "POST", f"{api_base}/lookups", json={"indicators": ["1.1.1.1"], "providers": ["dns"]}
        )
        assert code == 202
        assert await _events(session, f"{api_base}/lookups/{job['id']}/events", True) == 200
        assert (await api("GET", f"{api_base}/lookups/{job['id']}"))[1]["complete"] is True


async def test_read_endpoints_under_load_answer_no_5xx(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    """A bounded loopback load: 64 clients, 2,000 requests over every read endpoint and
    ``/events`` (a functional test: no timing is asserted)."""
    async with (
        read_stack(nats_server, tmp_path, receiver) as (_, base, note_id, done_id, waiting_id),
        jetstream(nats_server.url) as js,
    ):
        before = await consumers(js)
        api_base = f"{base}/api/v1"
        urls = [
            f"{api_base}/lookups/{done_id}",
            f"{api_base}/lookups/{waiting_id}",
            f"{api_base}/lookups/{done_id}.csv",
            f"{api_base}/notifications/{note_id}",
            f"{api_base}/notifications",
            f"{api_base}/deadletters",
            f"{api_base}/deadletters/ops-http",
            f"{base}/readyz",
        ]
        work: asyncio.Queue[int] = asyncio.Queue()
        for i in range(2000):
            work.put_nowait(i)
        statuses: Counter[int] = Counter()

        async def client(session: aiohttp.ClientSession) -> None:
            while not work.empty():
                i = work.get_nowait()
                if i % 10 == 0:
                    status = await _events(session, f"{api_base}/lookups/{done_id}/events", True)
                elif i % 10 == 1:
                    url = f"{api_base}/lookups/{waiting_id}/events"
                    status = await _events(session, url, False)
                else:
                    status = await _read(session, urls[i % len(urls)])
                statuses[status] += 1

        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(client(session) for _ in range(64)))
        assert sum(statuses.values()) == 2000
        assert statuses == Counter({200: 2000}), statuses
        assert await consumers(js) == before


async def test_a_bus_that_refuses_reads_is_503_with_the_reason(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """When JetStream stops serving a stream the gateway reads (here: its direct gets
    turned off, as on a stream made by hand or restored from an old backup), ``/readyz``
    says so and every read answers 503 with the reason: never a 500, never a 200 event
    stream with an error inside."""
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_RATE="0")
    async with running_gateway(settings) as base, jetstream(nats_server.url) as js:
        code, job = await api(
            "POST", f"{base}/api/v1/lookups", json={"indicators": ["shop-example.com"]}
        )
        assert code == 202
        lookup = f"{base}/api/v1/lookups/{job['id']}"
        note = f"{base}/api/v1/notifications/some-id"
        assert (await api("GET", lookup))[0] == 200
        assert (await api("GET", note))[0] == 404

        async def direct_gets(stream: str, allowed: bool) -> None:
            config = (await js.stream_info(stream)).config
            config.allow_direct = allowed
            await js.update_stream(config)

        for stream, urls in (
            ("KV_lookup_results", [lookup, f"{lookup}.csv", f"{lookup}/events"]),
            ("KV_lookup_jobs", [lookup, f"{lookup}/events"]),
            ("KV_delivery_status", [note, f"{base}/api/v1/notifications"]),
        ):
            await direct_gets(stream, False)
            try:
                code, body = await api("GET", f"{base}/readyz")
                assert code == 503
                assert stream in body["error"]
                for url in urls:
                    code, body = await api("GET", url)
                    assert code == 503, (url, code, body)
                    assert isinstance(body, dict), body
                    assert stream in body["error"]
            finally:
                await direct_gets(stream, True)
            assert (await api("GET", f"{base}/readyz"))[0] == 200
            assert (await api("GET", lookup))[0] == 200


async def test_existing_buckets_are_brought_to_direct_gets(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Buckets made by a lookout from before direct reads (no ``allow_direct``) are
    changed in place when a service provisions them, their data kept."""
    settings = make_settings(tmp_path, nats_server.url)
    async with jetstream(nats_server.url, settings) as js:
        kv = await js.key_value(lookup_streams.JOBS_BUCKET)
        await kv.put("old", b"{}")
        for stream in READ_STREAMS:
            config = (await js.stream_info(stream)).config
            config.allow_direct = False
            await js.update_stream(config)
        await gateway_state.provision(js, settings)
        for stream in READ_STREAMS:
            assert (await js.stream_info(stream)).config.allow_direct is True
        assert (await kv.get("old")).value == b"{}"


def _job_indicators(found: dict[str, Any]) -> list[str]:
    return [i["value"] for i in found["indicators"]]


async def test_a_job_with_20000_rejected_items_is_stored(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Item 8: 1 valid and 20,000 invalid items (a job record of about 310 KB before) is a
    202; the answer and the stored job list the first 100 rejected items and count all."""
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_RATE="0")
    items = ["shop-example.com"] + [f"bad item {i}" for i in range(20_000)]
    async with running_gateway(settings) as base:
        code, answer = await api("POST", f"{base}/api/v1/lookups", json={"indicators": items})
        assert code == 202, answer
        assert answer["rejected_total"] == 20_000
        assert len(answer["rejected"]) == 100
        assert answer["rejected"][0] == {
            "item": "bad item 0",
            "reason": "contains whitespace: give one indicator per item",
        }
        code, found = await api("GET", f"{base}/api/v1/lookups/{answer['id']}")
        assert code == 200
        assert _job_indicators(found) == ["shop-example.com"]
        assert (len(found["rejected"]), found["rejected_total"]) == (100, 20_000)
        code, refused = await api("POST", f"{base}/api/v1/lookups", json={"indicators": items[1:]})
        assert code == 400
        assert (len(refused["rejected"]), refused["rejected_total"]) == (100, 20_000)


async def test_a_job_of_10000_long_urls_reads_back_whole(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Item 8: LOOKOUT_MAX_INDICATORS (10,000) URLs of about 300 characters, 3 MB of job
    where NATS carries at most 1 MB a message: stored in parts, read back whole and in
    order, by the JSON, CSV and event-stream reads."""
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_RATE="0")
    urls = [f"https://files.example.com/{i:05d}/{'x' * 260}/report.pdf" for i in range(10_000)]
    form = aiohttp.FormData()
    form.add_field("file", "\n".join(urls).encode(), filename="urls.txt")
    form.add_field("providers", "dns")
    async with running_gateway(settings) as base:
        code, answer = await api("POST", f"{base}/api/v1/lookups", data=form)
        assert code == 202, answer
        assert _job_indicators(answer) == urls
        job = f"{base}/api/v1/lookups/{answer['id']}"
        code, found = await api("GET", job)
        assert code == 200
        assert _job_indicators(found) == urls
        assert len(found["results"]) == 10_000
        code, text = await api("GET", f"{job}.csv")
        assert code == 200
        assert [line.split(",")[0] for line in text.splitlines()[1:]] == urls
        async with aiohttp.ClientSession() as session, session.get(f"{job}/events") as response:
            assert response.status == 200
