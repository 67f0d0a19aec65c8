"""Nothing is lost when a sink is killed or the bus restarts in the middle of a stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import (
    LOOKOUT,
    LOOPBACK_ALLOW,
    Receiver,
    dead_letters,
    http_target,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    wait_for,
)

from shared.core.natsserver import NatsServer, free_port


def batch(start: int, count: int) -> bytes:
    return json.dumps(
        [{"message_type": "test", "message": {"id": f"n{i}"}} for i in range(start, start + count)]
    ).encode()


def start_sink(settings_env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [LOOKOUT, "service", f"sink-{name}"],
        env={**os.environ, **settings_env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
async def test_sink_killed_mid_stream_loses_nothing(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.delay = 0.02
    toml = http_target(receiver.url)
    settings = make_settings(tmp_path, nats_server.url, toml)
    env = {
        "NATS_URL": nats_server.url,
        "LOOKOUT_CONFIG": str(tmp_path / "lookout.toml"),
        "LOOKOUT_OUTBOUND_ALLOW": LOOPBACK_ALLOW,  # the receiver is on loopback
    }
    log = tmp_path / "sink.log"
    async with running_gateway(settings) as base:
        for start in range(0, 300, 50):
            status, _ = await post_webhook(base, batch(start, 50))
            assert status == 200
        first = start_sink(env, "ops-http", log)
        try:
            await wait_for(lambda: len(receiver.requests) >= 60, within=30)
            first.send_signal(signal.SIGKILL)
            first.wait()
            assert len(receiver.requests) < 300, "killed too late to prove anything"
        finally:
            first.kill()
        second = start_sink(env, "ops-http", log)
        try:
            expected = {f"n{i}" for i in range(300)}

            def all_delivered() -> bool:
                return {b["data"]["message"]["id"] for b in receiver.bodies()} >= expected

            await wait_for(all_delivered, within=60)
            await wait_for(lambda: settled(nats_server.url, "ops-http"), within=60)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
    # at-least-once: the few in flight at the kill may come twice, with the same webhook-id
    ids = [headers["webhook-id"] for headers, _ in receiver.requests]
    assert len(set(ids)) == 300
    assert len(ids) - 300 <= 16 * 2
    assert await dead_letters(nats_server.url, "ops-http") == []


@pytest.mark.slow
async def test_nats_restart_mid_stream_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    server = NatsServer(tmp_path / "nats", port=free_port())
    server.start()
    settings = make_settings(tmp_path, server.url, http_target(receiver.url))
    accepted: set[str] = set()
    try:
        async with running_gateway(settings) as base, running_sink(settings, "ops-http"):

            async def sender() -> None:
                # Like Sqreen: re-send whatever was not answered 2xx.
                for i in range(120):
                    body = batch(i, 1)
                    while True:
                        try:
                            status, answer = await post_webhook(base, body)
                        except OSError:
                            status = 0
                        if status == 200:
                            accepted.update(answer["ids"])
                            break
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(sender())
            await wait_for(lambda: len(accepted) >= 40, within=30)
            server.stop()
            await asyncio.sleep(1.0)
            server.start()
            await asyncio.wait_for(task, 90)

            def all_delivered() -> bool:
                got = {b["id"] for b in receiver.bodies()}
                return got >= accepted

            await wait_for(all_delivered, within=60)
    finally:
        server.stop()
    assert len(accepted) == 120
