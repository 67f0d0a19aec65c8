"""Provisioning on a real nats-server: idempotent, and it brings existing buckets up to date."""

from __future__ import annotations

from pathlib import Path

import nats
from helpers import make_settings
from nats.js.api import KeyValueConfig, StorageType

from services.gateway import state as gateway_state
from shared.bus import manage
from shared.core.natsserver import NatsServer


async def test_provisioning_twice_changes_nothing_and_keeps_data(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await gateway_state.provision(js, settings)
        kv = await js.key_value(gateway_state.SESSIONS_BUCKET)
        await kv.put("k", b"v")
        await gateway_state.provision(js, settings)
        assert (await kv.get("k")).value == b"v"
    finally:
        await nc.close()


async def test_an_existing_bucket_gets_the_new_ttl(nats_server: NatsServer, tmp_path: Path) -> None:
    """A bucket made by an older release with another lifetime is brought to this one's,
    keeping its keys (nats-py cannot update a KV bucket: its stream is updated)."""
    settings = make_settings(tmp_path, nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        old = KeyValueConfig(
            bucket=gateway_state.SESSIONS_BUCKET, ttl=60.0, storage=StorageType.FILE, replicas=1
        )
        await js.create_key_value(old)
        kv = await js.key_value(gateway_state.SESSIONS_BUCKET)
        await kv.put("kept", b"1")
        await gateway_state.provision(js, settings)
        info = await js.stream_info(manage.KV_STREAM.format(bucket=gateway_state.SESSIONS_BUCKET))
        assert info.config.max_age == gateway_state.SESSION_TTL
        assert (await kv.get("kept")).value == b"1"
    finally:
        await nc.close()
