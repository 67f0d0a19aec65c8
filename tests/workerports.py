"""Each pytest-xdist worker hands out its own share of the free ports.

``shared.core.natsserver.free_port()`` asks the kernel for a free port and closes it; the
caller binds it a moment later (a nats-server, a ``lookout run`` a few seconds later). With
several workers, two of them could be handed the same port in that moment and one server
would then fail to start. Under xdist, this worker's ``free_port()`` only returns the ports
whose half (``port >> 1``: the kernel prefers odd ports there) falls to it modulo the number
of workers, so no two workers are ever handed the same port. One process (no xdist, or
``-n 0``) keeps the function as it is.

Imported by ``tests/conftest.py`` before anything imports ``free_port`` by name.
"""

from __future__ import annotations

import os

from shared.core import natsserver

_kernel_free_port = natsserver.free_port


def share() -> tuple[int, int] | None:
    """``(index, count)`` of this xdist worker, or ``None`` outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1")
    if not worker.startswith("gw") or count < 2:
        return None
    return int(worker.removeprefix("gw")), count


def free_port(host: str = "127.0.0.1") -> int:
    """A free port of this worker's share (any free port outside xdist)."""
    mine = share()
    if mine is None:
        return _kernel_free_port(host)
    index, count = mine
    for _ in range(10_000):
        port = _kernel_free_port(host)
        if (port >> 1) % count == index:
            return port
    raise natsserver.NatsServerError(f"no free port of worker {index} of {count} on {host}")


natsserver.free_port = free_port
