"""Scale-out on a real 3-node NATS cluster: streams with three replicas, two gateway and two
sink processes, and a NATS node and a sink replica SIGKILLed in the middle of a stream of
webhooks. The contract under test: every notification answered 2xx reaches the target, and
anything the target receives twice (at-least-once) carries the same idempotency key and body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import aiohttp
import nats
import pytest
from aiohttp import web
from cluster import NatsCluster, nats_cluster, replicas_current, stream_leader
from fakes import LoopbackHttpFake
from helpers import (
    LOOKOUT,
    LOOPBACK_ALLOW,
    SQREEN_SECRET,
    WHSEC,
    gateway_ready,
    http_target,
    make_settings,
    sqreen_sign,
    wait_for,
)
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.gateway import state as gateway_state
from shared.bus import manage
from shared.core.errors import ConfigError
from shared.core.natsserver import NatsServer, die_with_parent, free_port
from shared.lookups import streams as lookup_streams
from shared.relay import streams

TARGET = "ops-http"
STREAMS = (
    streams.NOTIFICATIONS,
    streams.DEADLETTERS,
    lookup_streams.LOOKUPS,
    lookup_streams.LOOKUP_RESULTS,
)
BUCKETS = (
    streams.STATUS_BUCKET,
    lookup_streams.JOBS_BUCKET,
    lookup_streams.RESULTS_BUCKET,
    lookup_streams.CACHE_BUCKET,
    lookup_streams.QUOTA_BUCKET,
    streams.PACE_BUCKET,
    gateway_state.SESSIONS_BUCKET,
)
CONCURRENCY = 16  # the target's default: deliveries in flight per sink process


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with nats_cluster(tmp_path / "nats") as started:
        yield started


def verify_standard_webhook(headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(WHSEC.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(part.partition(",")[2] == expected for part in headers["webhook-signature"].split())


@dataclass
class Hit:
    replica: str  # which sink process sent it (the ?replica= of its target URL)
    webhook_id: str
    body: bytes
    signed: bool


class TaggedReceiver(LoopbackHttpFake):
    """A loopback webhook target that records every POST, which sink replica sent it, and
    which deliveries are still waiting for their answer (``delay`` seconds each)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.hits: list[Hit] = []
        self.in_flight: dict[str, Counter[str]] = {}

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/hook", self._handle)

    def url(self, replica: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook?replica={replica}"

    def by(self, replica: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.replica == replica]

    def ids(self) -> set[str]:
        return {hit.webhook_id for hit in self.hits}

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {key.lower(): value for key, value in request.headers.items()}
        replica = request.query.get("replica", "?")
        webhook_id = headers["webhook-id"]
        self.hits.append(Hit(replica, webhook_id, body, verify_standard_webhook(headers, body)))
        flight = self.in_flight.setdefault(replica, Counter())
        flight[webhook_id] += 1
        try:
            await asyncio.sleep(self.delay)
        finally:
            flight[webhook_id] -= 1
            if flight[webhook_id] <= 0:
                del flight[webhook_id]
        return web.Response(text="ok")


class Services:
    """``lookout service NAME`` processes, each logging to its own file."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, label: str, service: str, **env: str) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{label}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [LOOKOUT, "service", service],
                env={**os.environ, **self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        self.processes[label] = process
        return process

    def log(self, label: str) -> str:
        return (self.log_dir / f"{label}.log").read_text(errors="replace")

    def logged(self, label: str, text: str) -> bool:
        return text in self.log(label)

    def tails(self, lines: int = 8) -> str:
        return "\n".join(
            f"--- {label}:\n" + "\n".join(self.log(label).splitlines()[-lines:])
            for label in self.processes
        )

    def kill(self, label: str) -> None:
        process = self.processes[label]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self, label: str, timeout: float = 30.0) -> int:
        process = self.processes[label]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for label in self.processes:
            self.stop(label)


async def settled(js: JetStreamContext) -> bool:
    """Nothing left to deliver to the target and nothing awaiting an acknowledgement."""
    try:
        info = await js.consumer_info(streams.NOTIFICATIONS, streams.sink_durable(TARGET))
    except Exception:  # a leader election in progress
        return False
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


@pytest.mark.slow
async def test_scale_out_survives_a_nats_node_and_a_sink_replica_dying(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    total = 500
    receiver = TaggedReceiver(delay=0.2)  # sinks lag behind, so deliveries are in flight
    await receiver.start()
    tomls = {}
    for replica in ("a", "b"):
        tomls[replica] = tmp_path / f"lookout-{replica}.toml"
        # many attempts, so the kills cannot push anything into dead letters
        toml = http_target(receiver.url(replica), name=TARGET, timeout=5, max_attempts=10)
        tomls[replica].write_text(toml)
    settings = make_settings(
        tmp_path,
        cluster.url,
        LOOKOUT_CONFIG=str(tomls["a"]),
        LOOKOUT_STREAM_REPLICAS="3",
    )
    assert settings.stream_replicas == 3
    services = Services(
        tmp_path,
        {
            "NATS_URL": cluster.url,
            "SQREEN_WEBHOOK_SECRET": SQREEN_SECRET,
            "LOOKOUT_DATA_DIR": str(tmp_path / "data"),
            "LOOKOUT_PUBLISH_TIMEOUT": "2",
            "LOOKOUT_STREAM_REPLICAS": "3",
            "LOOKOUT_LOG_LEVEL": "info",
            "LOOKOUT_OUTBOUND_ALLOW": LOOPBACK_ALLOW,  # the receiver is on loopback
        },
    )
    await cluster.wait_jetstream()
    nc = await cluster.connect()
    js = nc.jetstream(timeout=5.0)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        await gateway_state.provision(js, settings)
        gateways = []
        for label in ("gateway-1", "gateway-2"):
            port = free_port()
            services.start(
                label, "gateway", LOOKOUT_CONFIG=str(tomls["a"]), LOOKOUT_HTTP_PORT=str(port)
            )
            gateways.append(f"http://127.0.0.1:{port}")
        for replica in ("a", "b"):
            services.start(f"sink-{replica}", f"sink-{TARGET}", LOOKOUT_CONFIG=str(tomls[replica]))
        for base in gateways:
            await wait_for(partial(gateway_ready, session, base), within=45, every=0.2)
        for replica in ("a", "b"):
            await wait_for(partial(services.logged, f"sink-{replica}", "sink started"), within=45)

        # ---------------------------------------------------------------- the stream
        accepted: set[str] = set()
        retried = Counter[str]()
        unexpected: list[tuple[int, str]] = []
        accepted_at: list[float] = []
        queue = iter(range(total))
        kills_done = asyncio.Event()  # the last quarter waits for both kills: mid-stream
        started = time.monotonic()

        async def sender() -> None:
            # Like Sqreen: only a 2xx means stored; anything else is sent again.
            for i in queue:
                if i >= total * 3 // 4:
                    await kills_done.wait()
                body = json.dumps({"message_type": "test", "message": {"id": f"c{i}"}}).encode()
                headers = {"X-Sqreen-Integrity": sqreen_sign(body)}
                attempt = 0
                while True:
                    base = gateways[(i + attempt) % len(gateways)]  # alternate the gateways
                    attempt += 1
                    try:
                        async with session.post(
                            f"{base}/webhooks/sqreen", data=body, headers=headers
                        ) as response:
                            status = response.status
                            answer = await response.json(content_type=None)
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        retried[type(exc).__name__] += 1
                        await asyncio.sleep(0.1)
                        continue
                    if status == 200:
                        accepted.update(answer["ids"])
                        accepted_at.append(time.monotonic())
                        break
                    if status != 503:
                        unexpected.append((status, json.dumps(answer)))
                        return
                    retried["503"] += 1
                    await asyncio.sleep(0.1)

        senders = [asyncio.create_task(sender()) for _ in range(4)]
        try:
            # Kill sink replica a once it has done a share of the work, while deliveries of
            # it are waiting for their answer.
            def sink_a_busy() -> bool:
                flight = receiver.in_flight.get("a")
                done = len(receiver.by("a")) - (flight.total() if flight else 0)
                return len(accepted) >= total // 5 and done >= 2 * CONCURRENCY and bool(flight)

            await wait_for(sink_a_busy, within=60, every=0.01)
            in_flight_at_kill = set(receiver.in_flight["a"])
            services.kill("sink-a")
            sink_killed_at = (time.monotonic() - started, len(accepted))

            # Half way: kill the NATS server that leads the NOTIFICATIONS stream.
            await wait_for(lambda: len(accepted) >= total // 2, within=60)
            leader: list[str] = []

            async def found_leader() -> bool:
                name = await stream_leader(js, streams.NOTIFICATIONS)
                if name:
                    leader.append(name)
                return bool(name)

            await wait_for(found_leader, within=15, every=0.1)
            victim = cluster.node(leader[0])
            victim.kill()  # SIGKILL: a crash, no shutdown
            nats_killed_at = (time.monotonic() - started, len(accepted))
            kills_done.set()
            # The rest goes to a cluster that lost a server, and to the one sink left.
            await asyncio.wait_for(asyncio.gather(*senders), 90)
        finally:
            for task in senders:
                task.cancel()
        sent_in = time.monotonic() - started
        assert unexpected == [], unexpected
        assert len(accepted) == total

        # -------------------------------------------------------------- delivery
        await wait_for(lambda: receiver.ids() >= accepted, within=60, every=0.1)
        await wait_for(lambda: settled(js), within=60, every=0.2)
        delivered_in = time.monotonic() - started

        # The killed node comes back and catches up: three current replicas again.
        victim.start()  # the same ports and store directory
        for stream in (*STREAMS, *(manage.KV_STREAM.format(bucket=b) for b in BUCKETS)):
            await wait_for(partial(replicas_current, js, stream, 3), within=60, every=0.2)

        for label in ("gateway-1", "gateway-2", "sink-b"):
            assert services.stop(label) == 0, f"{label} did not stop cleanly:\n{services.tails()}"

        # ------------------------------------------------------------- the checks
        hits = receiver.hits
        ids = [hit.webhook_id for hit in hits]
        duplicates = len(ids) - len(set(ids))
        pause = max(b - a for a, b in itertools.pairwise(sorted(accepted_at)))
        report = (
            f"accepted {len(accepted)}, delivered {len(set(ids))} ids in {len(ids)} POSTs "
            f"({duplicates} duplicates; replica a {len(receiver.by('a'))}, "
            f"b {len(receiver.by('b'))}), retried POSTs {dict(retried)}; "
            f"sink a killed at {sink_killed_at[0]:.1f}s ({sink_killed_at[1]} accepted, "
            f"{len(in_flight_at_kill)} in flight), NATS leader {leader[0]} killed at "
            f"{nats_killed_at[0]:.1f}s ({nats_killed_at[1]} accepted); longest pause between "
            f"2xx {pause:.1f}s; all accepted in {sent_in:.1f}s, all delivered in "
            f"{delivered_in:.1f}s"
        )
        print(report)
        assert set(ids) == accepted, report
        assert all(hit.signed for hit in hits), "a delivery with a bad webhook-signature"
        bodies: dict[str, set[bytes]] = {}
        for hit in hits:
            bodies.setdefault(hit.webhook_id, set()).add(hit.body)
        assert all(len(b) == 1 for b in bodies.values()), "a re-delivery with another body"
        for webhook_id, body in ((i, next(iter(b))) for i, b in bodies.items()):
            assert json.loads(body)["id"] == webhook_id
        # Both replicas took their share before the kill, and what replica a had in flight
        # when it died went out again through replica b (the same webhook-id).
        assert len(receiver.by("a")) >= 2 * CONCURRENCY, report
        assert len(receiver.by("b")) >= 2 * CONCURRENCY, report
        assert in_flight_at_kill <= {hit.webhook_id for hit in receiver.by("b")}, report
        assert duplicates >= len(in_flight_at_kill) > 0, report
        # Every duplicate is a delivery in flight at one of the kills, or one whose
        # acknowledgement was lost while the consumer changed leader: a few times the
        # deliveries one process keeps in flight, never a re-send of the whole stream.
        assert duplicates <= 5 * CONCURRENCY, report

        # Stored once each (the gateways' Nats-Msg-Id dedup survived the leader change),
        # nothing dead-lettered, and everything really is replicated three times.
        info = await js.stream_info(streams.NOTIFICATIONS)
        assert info.state.messages == total, report
        assert (await js.stream_info(streams.DEADLETTERS)).state.messages == 0
        for stream in (*STREAMS, *(manage.KV_STREAM.format(bucket=b) for b in BUCKETS)):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3, stream
            assert info.cluster is not None
            assert info.cluster.leader, stream
            assert len(info.cluster.replicas or []) == 2, stream
        consumer = await js.consumer_info(streams.NOTIFICATIONS, streams.sink_durable(TARGET))
        assert consumer.cluster is not None
        assert consumer.cluster.leader
        assert len(consumer.cluster.replicas or []) == 2
    except BaseException:
        print(services.tails())  # shown with the failure
        for node in cluster.nodes:
            print(f"--- {cluster.server_name(node)}: {node.log_tail(8)}")
        raise
    finally:
        services.stop_all()
        await session.close()
        await nc.close()
        await receiver.stop()


@pytest.mark.slow
async def test_provisioning_applies_the_replica_count(cluster: NatsCluster, tmp_path: Path) -> None:
    """Every start brings existing streams, KV buckets and (through their stream) durable
    consumers to ``LOOKOUT_STREAM_REPLICAS``, up and down, keeping what they hold."""
    await cluster.wait_jetstream()
    nc = await cluster.connect()
    js = nc.jetstream(timeout=5.0)
    kv_streams = [manage.KV_STREAM.format(bucket=b) for b in BUCKETS]

    async def replica_counts() -> set[int | None]:
        return {(await js.stream_info(s)).config.num_replicas for s in (*STREAMS, *kv_streams)}

    async def consumer_followers(count: int) -> bool:
        try:
            info = await js.consumer_info(streams.NOTIFICATIONS, streams.sink_durable("log"))
        except Exception:  # a leader election in progress
            return False
        cluster = info.cluster
        return cluster is not None and bool(cluster.leader) and len(cluster.replicas or []) == count

    try:
        await gateway_state.provision(js, make_settings(tmp_path, cluster.url))
        assert await replica_counts() == {1}
        await js.publish("notification.test.kept", b'{"kept": true}')
        status = await js.key_value(streams.STATUS_BUCKET)
        await status.put("kept", b"yes")

        await gateway_state.provision(
            js, make_settings(tmp_path, cluster.url, LOOKOUT_STREAM_REPLICAS="3")
        )
        assert await replica_counts() == {3}
        for stream in (*STREAMS, *kv_streams):
            await wait_for(partial(replicas_current, js, stream, 3), within=30, every=0.2)
        await wait_for(lambda: consumer_followers(2), within=30, every=0.2)

        await gateway_state.provision(js, make_settings(tmp_path, cluster.url))
        assert await replica_counts() == {1}
        await wait_for(lambda: consumer_followers(0), within=30, every=0.2)

        assert (await js.stream_info(streams.NOTIFICATIONS)).state.messages == 1
        entry = await status.get("kept")
        assert entry.value == b"yes"
    finally:
        await nc.close()


async def test_a_stored_result_is_republished_across_the_cluster(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    """Three replicas of everything: a result put into ``lookup_results`` on one node reaches
    a core subscriber of ``lookup.result.<provider>`` on every node, and LOOKUP_RESULTS (its
    own three replicas) keeps it once; the history's durable is on the bucket's stream."""
    await cluster.wait_jetstream()
    writer = await nats.connect(cluster.urls[0])
    readers = [await nats.connect(url) for url in cluster.urls]
    try:
        js = writer.jetstream(timeout=5.0)
        settings = make_settings(tmp_path, cluster.url, LOOKOUT_STREAM_REPLICAS="3")
        await lookup_streams.provision(js, settings)
        got: list[list[bytes]] = [[] for _ in readers]
        for reader, into in zip(readers, got, strict=True):

            async def keep(msg: Msg, into: list[bytes] = into) -> None:
                into.append(msg.data)

            await reader.subscribe("lookup.result.otx", cb=keep)
            await reader.flush()
        results = await js.key_value(lookup_streams.RESULTS_BUCKET)
        await results.put("job1.0123456789abcdef0123.otx", b'{"status": "done"}')
        await wait_for(lambda: all(got), within=10)
        assert got == [[b'{"status": "done"}']] * len(readers)
        await wait_for(
            partial(replicas_current, js, lookup_streams.LOOKUP_RESULTS, 3), within=30, every=0.2
        )
        info = await js.stream_info(lookup_streams.LOOKUP_RESULTS)
        assert info.state.messages == 1
        history = await js.consumer_info(
            lookup_streams.RESULTS_STREAM, lookup_streams.HISTORY_DURABLE
        )
        assert history.num_pending == 1  # no scheduler runs here: it waits for one
    finally:
        for connection in (writer, *readers):
            await connection.close()


async def test_replicas_on_a_single_server_is_a_clear_error(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        settings = make_settings(tmp_path, nats_server.url, LOOKOUT_STREAM_REPLICAS="3")
        with pytest.raises(ConfigError, match=r"LOOKOUT_STREAM_REPLICAS.*non-clustered"):
            await gateway_state.provision(nc.jetstream(), settings)
    finally:
        await nc.close()
