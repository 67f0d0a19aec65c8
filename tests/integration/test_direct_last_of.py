"""``direct.Reader.last_of``: the newest message of many subjects in one direct get
(``multi_last``) on a real nats-server, continued past a page's byte limit."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import KeyValueConfig

from shared.bus import direct
from shared.core.natsserver import NatsServer


async def test_the_newest_of_each_subject_in_one_read(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(KeyValueConfig(bucket="lastof", direct=True))
        await kv.put("a", b"a1")
        await kv.put("b", b"b1")
        await kv.put("a", b"a2")
        await kv.put("c", b"c1")
        await kv.delete("c")
        # 300 values of 8 KiB: 2.4 MB, more than one page (PAGE_BYTES) holds
        big = {f"big{i}": bytes([65 + i % 26]) * 8192 for i in range(300)}
        for key, value in big.items():
            await kv.put(key, value)
        reader = direct.Reader(nc, timeout=5.0)
        await reader.start()
        stream = direct.kv_stream("lastof")

        def subject(key: str) -> str:
            return direct.kv_subject("lastof", key)

        found = await reader.last_of(stream, [subject(k) for k in ("a", "b", "c", "zz", "a")])
        assert set(found) == {subject("a"), subject("b"), subject("c")}
        assert found[subject("a")].data == b"a2"
        assert found[subject("b")].data == b"b1"
        assert found[subject("c")].removed
        assert await reader.last_of(stream, [subject("nothing"), subject("here")]) == {}
        assert await reader.last_of(stream, []) == {}

        keys = list(big)
        found = await reader.last_of(stream, [subject(k) for k in keys])
        assert {k: found[subject(k)].data for k in keys} == big

        with pytest.raises(ValueError, match="at most 1024"):
            await reader.last_of(stream, [subject(f"k{i}") for i in range(1025)])
    finally:
        await nc.close()


async def test_many_large_reads_at_once_keep_the_connection(nats_server: NatsServer) -> None:
    """200 reads of 1 MB asked at once: the server would queue every reply for the one
    connection, past its 64 MB limit for a slow consumer, and drop it (then every read of
    the gateway failed). The reader keeps few reads outstanding, so all of them succeed."""
    nc = await nats.connect(nats_server.url)
    dropped: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        dropped.append(exc)

    watcher = await nats.connect(nats_server.url, error_cb=on_error)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(KeyValueConfig(bucket="many", direct=True))
        for i in range(64):  # 64 values of 16 KiB: 1 MB a read
            await kv.put(f"k{i}", bytes([65 + i % 26]) * 16384)
        reader = direct.Reader(watcher, timeout=30.0)
        await reader.start()
        stream, subjects = direct.kv_stream("many"), direct.kv_subject("many", ">")
        reads = await asyncio.gather(*(reader.scan(stream, subjects) for _ in range(200)))
        assert all(len(found) == 64 for found in reads)
        assert watcher.is_connected
        assert dropped == []
    finally:
        await watcher.close()
        await nc.close()
