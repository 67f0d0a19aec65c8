"""The test suite's ports (tests/workerports.py) stay out of the kernel's ephemeral range."""

from __future__ import annotations

import socket

import workerports

from shared.core.natsserver import free_port


def test_free_ports_lie_below_the_ephemeral_range_in_this_workers_share() -> None:
    start = workerports.ephemeral_start()
    index, count = workerports.share() or (0, 1)
    ports = [free_port() for _ in range(50)]
    assert all(workerports.LOWEST <= p < start for p in ports), ports
    assert all((p >> 1) % count == index for p in ports)
    assert len(set(ports)) > 40  # chosen at random, not one port over and over
    with socket.socket() as sock:  # and free: a server can listen on one
        sock.bind(("127.0.0.1", ports[0]))
        sock.listen()


def test_a_port_in_use_counts_as_taken() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        busy = sock.getsockname()[1]
        assert not workerports._bindable("127.0.0.1", busy)
