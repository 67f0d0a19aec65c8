"""Baseline for the webhook-ingest benchmark: the least a verified, durable webhook needs.

A bare aiohttp handler that checks the HMAC of the body, reads the message's id (the
event id: a Sqreen sender leaves ``message_id`` null) with msgspec, and awaits one
JetStream publish with it as ``Nats-Msg-Id`` (file storage, a stream of its own with one
idle durable consumer, as the gateway's stream has a sink's), and nothing else. The gateway
is measured against this in the same run.

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

import msgspec
import nats
import uvloop
from aiohttp import web
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.bus.publish import Publisher


class _Event(msgspec.Struct):
    event_id: str | None = None


class _Message(msgspec.Struct):
    message_id: str | None = None
    message: _Event | None = None


_messages = msgspec.json.Decoder(list[_Message])


async def main(
    port: int, nats_url: str, secret: bytes, publisher_kind: str, dedup_window: float
) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    # A stream per baseline: sharing one, each would write into a stream growing twice as
    # fast as the gateway's.
    stream, subject = f"BENCH_{publisher_kind.upper()}", f"bench.{publisher_kind}"
    await js.add_stream(
        StreamConfig(
            name=stream,
            subjects=[f"{subject}.>"],
            storage=StorageType.FILE,
            duplicate_window=dedup_window,
        )
    )
    # The same bus setup as the gateway's stream: one idle durable consumer (a sink's).
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name="sink-log",
            filter_subject=f"{subject}.>",
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
        try:
            [message] = _messages.decode(body)
        except (msgspec.DecodeError, ValueError):
            return web.Response(status=400)
        msg_id = message.message_id or (message.message and message.message.event_id)
        if not msg_id:
            return web.Response(status=400)
        if publisher_kind == "lookout":
            await publisher.publish(f"{subject}.webhook", body, {"Nats-Msg-Id": msg_id}, 5.0)
        else:
            await js.publish(f"{subject}.webhook", body, headers={"Nats-Msg-Id": msg_id})
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
    parser.add_argument(
        "--dedup-window", type=float, default=3600.0, help="seconds (the gateway's default)"
    )
    args = parser.parse_args()
    uvloop.install()
    asyncio.run(main(args.port, args.nats, args.secret.encode(), args.publisher, args.dedup_window))
