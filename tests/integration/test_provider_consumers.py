"""Each provider's durable consumer is delivered only the request kinds it answers, on a
real nats-server; a consumer created with another filter (an older version's
``lookup.requested.>``, a provider that gained a kind) is brought up to date."""

from __future__ import annotations

from pathlib import Path

import nats
from helpers import make_settings
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.core.natsserver import NatsServer
from shared.lookups import catalog, streams


async def test_provider_consumers_filter_their_kinds(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await streams.provision(js, settings)
        durable = streams.provider_durable("malwarebazaar")
        info = await js.consumer_info(streams.LOOKUPS, durable)
        assert info.config.filter_subjects == ["lookup.requested.hash"]
        assert catalog.kinds("malwarebazaar") == {"hash"}
        tor = await js.consumer_info(streams.LOOKUPS, streams.provider_durable("tor"))
        assert tor.config.filter_subjects == ["lookup.requested.ipv4", "lookup.requested.ipv6"]

        # a consumer an older version created, with every request kind
        await js.delete_consumer(streams.LOOKUPS, durable)
        old = ConsumerConfig(
            durable_name=durable,
            filter_subject="lookup.requested.>",
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=60.0,
            max_deliver=-1,
            max_ack_pending=20_000,
        )
        await js.add_consumer(streams.LOOKUPS, old)
        await streams.provision(js, settings)
        info = await js.consumer_info(streams.LOOKUPS, durable)
        assert info.config.filter_subjects == ["lookup.requested.hash"]
        assert not info.config.filter_subject
    finally:
        await nc.close()
