"""``direct.Reader.last_of``: the newest message of many subjects in one direct get
(``multi_last``) on a real nats-server, continued past a page's byte limit."""

from __future__ import annotations

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
