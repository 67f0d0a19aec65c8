"""``lookout deadletters list|replay`` against a real bus, as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from helpers import (
    LOOKOUT,
    Receiver,
    dead_lettered,
    http_target,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    sqreen_fixture,
    wait_for,
)

from shared.core.natsserver import NatsServer


async def cli(tmp_path: Path, nats: NatsServer, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "NATS_URL": nats.url, "LOOKOUT_CONFIG": str(tmp_path / "lookout.toml")}
    proc = await asyncio.create_subprocess_exec(
        LOOKOUT,
        "deadletters",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_list_and_replay_to_the_one_target(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    other = Receiver()
    await other.start()
    receiver.default = (400, {})  # ops-http rejects everything: dead letters
    toml = http_target(receiver.url) + http_target(other.url, name="other")
    settings = make_settings(tmp_path, nats_server.url, toml)
    try:
        async with (
            running_gateway(settings) as base,
            running_sink(settings, "ops-http"),
            running_sink(settings, "other"),
        ):
            _, answer = await post_webhook(base, sqreen_fixture("v2_security_event.json"))
            first, second = answer["ids"]
            await wait_for(dead_lettered(nats_server.url, "ops-http", 2))
            await wait_for(lambda: len(other.requests) == 2)

            code, out, err = await cli(tmp_path, nats_server, "list", "ops-http")
            assert code == 0
            assert first in out
            assert second in out
            assert "HTTP 400" in out
            assert "2 dead letter(s)" in err
            code, out, _ = await cli(tmp_path, nats_server, "list", "ops-http", "--json")
            records = [json.loads(line) for line in out.splitlines()]
            assert [r["notification"]["id"] for r in records] == [first, second]

            receiver.default = (200, {})  # the target is fixed
            code, out, _ = await cli(tmp_path, nats_server, "replay", "ops-http", "--id", first)
            assert (code, f"({first})" in out) == (0, True)
            await wait_for(lambda: receiver.bodies()[-1]["id"] == first)
            code, out, _ = await cli(tmp_path, nats_server, "list", "ops-http", "--json")
            assert [json.loads(line)["notification"]["id"] for line in out.splitlines()] == [second]

            # ``replay TARGET``: every dead letter it has (as ``--all``)
            code, out, _ = await cli(tmp_path, nats_server, "replay", "ops-http")
            assert code == 0
            assert f"({second})" in out
            await wait_for(lambda: receiver.bodies()[-1]["id"] == second)
            code, out, _ = await cli(tmp_path, nats_server, "list", "ops-http", "--json")
            assert out == ""

            code, _, err = await cli(tmp_path, nats_server, "replay", "ops-http", "--id", "nope")
            assert code == 1
            assert "no dead letter" in err
            await asyncio.sleep(0.5)
        # the replays went to ops-http only; the other target saw each notification once
        assert len(other.requests) == 2
        delivered = [b["id"] for b in receiver.bodies()]
        assert delivered.count(first) == 2  # the first 400, then the replay
        # the replayed envelope is the original one, data unchanged
        assert (
            receiver.bodies()[-1]["data"] == json.loads(sqreen_fixture("v2_security_event.json"))[1]
        )
    finally:
        await other.stop()


async def test_replay_of_an_unknown_target_is_a_clear_error(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    make_settings(tmp_path, nats_server.url, "")
    (tmp_path / "lookout.toml").write_text("")
    code, _, err = await cli(tmp_path, nats_server, "replay", "ghost", "--all")
    assert code == 2
    assert "no target named 'ghost'" in err
