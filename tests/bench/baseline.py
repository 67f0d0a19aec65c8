"""Baseline for the webhook-ingest benchmark: the least a verified, durable webhook needs.

A bare aiohttp handler that checks the HMAC of the body and awaits one JetStream publish
(file storage, the same dedup header work), and nothing else. The gateway is measured
against this in the same run.

``--publisher js`` (the baseline the goal is judged on) publishes with nats-py's
``JetStreamContext.publish``; ``--publisher lookout`` with the gateway's own
``shared.bus.publish.Publisher``, so the run can also tell the gateway's overhead apart from what
its leaner publish saves.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sys
from pathlib import Path

import nats
import uvloop
from aiohttp import web
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.bus.publish import Publisher


async def main(port: int, nats_url: str, secret: bytes, publisher_kind: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name="BENCH", subjects=["bench.>"], storage=StorageType.FILE, duplicate_window=1.0
        )
    )
    # The same bus setup as the gateway's stream: one idle durable consumer (a sink's).
    await js.add_consumer(
        "BENCH",
        ConsumerConfig(
            durable_name="sink-log",
            filter_subject="bench.>",
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
        ),
    )

    publisher = Publisher(nc)
    await publisher.start()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        given = request.headers.get("X-Sqreen-Integrity", "")
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given, expected):
            return web.Response(status=401)
        msg_id = hashlib.sha256(body).hexdigest()
        if publisher_kind == "lookout":
            await publisher.publish("bench.webhook", body, {"Nats-Msg-Id": msg_id}, 5.0)
        else:
            await js.publish("bench.webhook", body, headers={"Nats-Msg-Id": msg_id})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/sqreen", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--publisher", choices=["js", "lookout"], default="js")
    args = parser.parse_args()
    uvloop.install()
    asyncio.run(main(args.port, args.nats, args.secret.encode(), args.publisher))
