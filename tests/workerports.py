"""Test servers get ports no one else is handed, and that the kernel never hands out itself.

``shared.core.natsserver.free_port()`` asks the kernel for a free port and closes it; the
caller binds it a moment later (a nats-server, a ``lookout run`` a few seconds later). Two
things could take the port in that moment:

- another pytest-xdist worker handed the same port: so each worker only hands out the ports
  whose half (``port >> 1``) falls to it modulo the number of workers;
- the kernel itself, as the local port of any outgoing connection (a client connecting to
  nats-server, an HTTP client): the kernel's "free port" lies in its ephemeral range
  (``/proc/sys/net/ipv4/ip_local_port_range``, 32768 to 60999 by default), the same range it
  picks those local ports from. A cluster test once had a node's route port, and another a
  gateway's port, taken that way ("address already in use"). So the ports here come from
  below that range (10000 up to it), where the kernel never picks one on its own, chosen at
  random (two suites running at once rarely meet) and checked free for TCP and UDP (the
  DNS test servers bind both).

Imported by ``tests/conftest.py`` before anything imports ``free_port`` by name.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

from shared.core import natsserver

_kernel_free_port = natsserver.free_port
LOWEST = 10_000


def share() -> tuple[int, int] | None:
    """``(index, count)`` of this xdist worker, or ``None`` outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1")
    if not worker.startswith("gw") or count < 2:
        return None
    return int(worker.removeprefix("gw")), count


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the ephemeral range, of this worker's share under xdist."""
    index, count = share() or (0, 1)
    highest = ephemeral_start() - 1
    if highest - LOWEST < 1000 * count:  # an unusual range: the kernel's free port, shared
        for _ in range(10_000):
            port = _kernel_free_port(host)
            if (port >> 1) % count == index:
                return port
    else:
        for _ in range(10_000):
            port = random.randint(LOWEST, highest)
            if (port >> 1) % count == index and _bindable(host, port):
                return port
    raise natsserver.NatsServerError(f"no free port of worker {index} of {count} on {host}")


natsserver.free_port = free_port
