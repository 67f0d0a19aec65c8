"""A target's send rate (``per_second``) and its pause after a 429 hold across every replica
of its sink (KV bucket ``sink_pace``): a real nats-server, two sink replicas (each its own
NATS connection, target and runner, as two ``lookout service sink-<name>`` would be), and
the loopback Twilio and Slack fakes, which stamp every request with its arrival time.

The sink runner paces every target (the only pacing path): the SMS target (several
recipients per notification) and the Slack target (a chat webhook) are both checked."""

from __future__ import annotations

import asyncio
import bisect
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from fakes.slack import FakeSlack
from fakes.twilio import FakeTwilio
from helpers import (
    Receiver,
    dead_letters,
    http_target,
    jetstream,
    kv_keys,
    make_settings,
    publish_alerts,
    running_sink,
    settled,
    wait_for,
)
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from services.gateway import state as gateway_state
from services.registry import build_target
from shared.bus import manage
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.relay import status, streams
from shared.relay.config import relay
from shared.relay.pacing import Pacer
from shared.relay.runner import SinkRunner
from shared.relay.target import Paced

SMS = "oncall-sms"
SLACK = "soc-slack"
RETRY = "retry = { max_attempts = 10, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }"


@dataclass
class Upstream:
    """One fake service and the sink target that sends to it."""

    target: str
    fake: FakeTwilio | FakeSlack

    def toml(self, per_second: float, concurrency: int) -> str:
        common = f"per_second = {per_second}\nconcurrency = {concurrency}\ntimeout = 2\n{RETRY}\n"
        if isinstance(self.fake, FakeTwilio):
            return f"""
[[targets]]
name = "{self.target}"
type = "sms"
account_sid = "{self.fake.account_sid}"
auth_token = "{self.fake.auth_token}"
sender = "+15005550006"
to = ["+14155550101"]
api_url = "{self.fake.api_url}"
{common}"""
        return f"""
[[targets]]
name = "{self.target}"
type = "slack"
webhook_url = "{self.fake.webhook_url}"
{common}"""

    def arrivals(self) -> list[float]:
        """When each request reached the fake (monotonic clock), accepted or not."""
        return [request.at for request in self.fake.requests]

    def delivered(self) -> int:
        return len(self.fake.messages)

    def answer_429(self, retry_after: str) -> None:
        """Answer the next request 429 with ``Retry-After``."""
        if isinstance(self.fake, FakeTwilio):
            self.fake.retry_after = retry_after
            self.fake.fail_next = [429]
        else:
            self.fake.fail_next = [(429, "rate_limited", {"Retry-After": retry_after})]


@pytest.fixture(params=["sms", "slack"])
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    fake: FakeTwilio | FakeSlack = FakeTwilio() if request.param == "sms" else FakeSlack()
    async with fake:
        yield Upstream(SMS if request.param == "sms" else SLACK, fake)


@asynccontextmanager
async def replicas(
    settings: Settings, name: str, count: int = 2
) -> AsyncIterator[list[SinkRunner]]:
    """``count`` replicas of the sink of target ``name``, each with its own connection,
    target and runner; stopped (and their deliveries in flight settled) on the way out."""
    config = relay(settings).target(name)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    runners: list[SinkRunner] = []
    async with AsyncExitStack() as stack:
        for _ in range(count):
            nc = await nats.connect(settings.effective_nats_url)
            stack.push_async_callback(nc.close)
            runner = SinkRunner(nc, build_target(config, settings), config, settings)
            runners.append(runner)
            tasks.append(asyncio.create_task(runner.run(stop)))
        try:
            # Every replica is pulling before anything is published (a loaded machine may
            # start one late, and the other would then take every message).
            async with jetstream(settings.effective_nats_url) as js:

                async def all_pulling() -> bool:
                    durable = streams.sink_durable(name)
                    try:
                        info = await js.consumer_info(streams.NOTIFICATIONS, durable)
                    except Exception:
                        return False
                    return (info.num_waiting or 0) >= count

                await wait_for(all_pulling, within=30)
            yield runners
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)


def delivered_by(runner: SinkRunner) -> float:
    value = runner.metrics.registry.get_sample_value(
        "lookout_deliveries_total", {"target": runner.config.name, "outcome": "delivered"}
    )
    return value or 0.0


def busiest_second(times: list[float]) -> int:
    """The most sends any 1-second window holds."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered))


async def pace_keys(url: str) -> list[str]:
    async with jetstream(url) as js:
        return sorted(await kv_keys(await js.key_value(streams.PACE_BUCKET)))


async def pace_key_set(url: str, key: str) -> bool:
    return key in await pace_keys(url)


async def test_two_replicas_share_the_send_rate(
    nats_server: NatsServer, tmp_path: Path, upstream: Upstream
) -> None:
    # Two deliveries in flight per replica, so that both replicas take part.
    settings = make_settings(tmp_path, nats_server.url, upstream.toml(5, concurrency=2))
    async with jetstream(nats_server.url, settings) as js:
        async with replicas(settings, upstream.target) as (a, b):
            await publish_alerts(js, 20, "rate")
            await wait_for(lambda: upstream.delivered() == 20, within=20)
        assert await settled(nats_server.url, upstream.target)
    assert delivered_by(a) > 0, "both replicas should have sent"
    assert delivered_by(b) > 0, "both replicas should have sent"
    times = upstream.arrivals()
    assert len(times) == 20  # never refused: the fakes have no rate limit here, nor 429s
    # 5 per second across both replicas (each alone would send 5 per second: 10 together).
    # Arrivals, not slots: a 1-s window holds 6 sends 0.2 s apart (both ends), and one that
    # left its slot late beside one on time adds another (7 once, on a loaded machine).
    assert busiest_second(times) <= 5 + 2, sorted(t - min(times) for t in times)
    assert max(times) - min(times) >= 19 / 5 - 0.3
    assert await pace_keys(nats_server.url) == [f"{upstream.target}.next"]


async def test_a_429_to_one_replica_pauses_the_other(
    nats_server: NatsServer, tmp_path: Path, upstream: Upstream
) -> None:
    # One delivery in flight per replica: while the replica told 429 holds one back,
    # the next goes to the other replica, which must wait out the same pause.
    settings = make_settings(tmp_path, nats_server.url, upstream.toml(50, concurrency=1))
    upstream.answer_429("2")
    async with jetstream(nats_server.url, settings) as js:
        async with replicas(settings, upstream.target) as (a, b):
            await publish_alerts(js, 1, "first")
            await wait_for(lambda: len(upstream.arrivals()) == 1)
            told_429 = upstream.arrivals()[0]
            # The 429 is answered and the pause recorded (a send another replica makes
            # while the 429 is still on its way cannot know of it, with or without KV).
            await wait_for(lambda: pace_key_set(nats_server.url, f"{upstream.target}.pause"))
            await publish_alerts(js, 4, "more")
            await wait_for(lambda: upstream.delivered() == 5, within=20)
        assert await settled(nats_server.url, upstream.target)
    assert delivered_by(a) > 0, "both replicas should have sent"
    assert delivered_by(b) > 0, "both replicas should have sent"
    later = upstream.arrivals()[1:]
    assert len(later) == 5  # the one told 429, retried, and the four others
    assert min(later) - told_429 >= 2.0 - 0.1, [t - told_429 for t in later]
    assert await dead_letters(nats_server.url, upstream.target) == []


async def test_an_unreachable_pace_store_hands_deliveries_back_and_loses_none(
    nats_server: NatsServer,
    tmp_path: Path,
    upstream: Upstream,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path, nats_server.url, upstream.toml(20, concurrency=4))
    async with jetstream(nats_server.url, settings) as js:
        async with replicas(settings, upstream.target, count=1) as (runner,):
            await publish_alerts(js, 1, "before")
            await wait_for(lambda: upstream.delivered() == 1)

            await js.delete_key_value(streams.PACE_BUCKET)  # the sink's pacing store is gone

            def retrying() -> float:
                value = runner.metrics.registry.get_sample_value(
                    "lookout_deliveries_total", {"target": upstream.target, "outcome": "retrying"}
                )
                return value or 0.0

            await publish_alerts(js, 3, "during")
            await wait_for(lambda: retrying() >= 6)  # each of the three told to wait twice
            assert upstream.delivered() == 1  # nothing sent without a slot
            assert len(upstream.arrivals()) == 1

            await gateway_state.provision(js, settings)  # the store is back
            await wait_for(lambda: upstream.delivered() == 4, within=20)
        assert await settled(nats_server.url, upstream.target)
    assert await dead_letters(nats_server.url, upstream.target) == []
    lines = capsys.readouterr().out.splitlines()
    # Logged once, not once per message (the retries name the reason, in other words).
    assert sum("deliveries wait, unsent, until it answers" in line for line in lines) == 1
    assert sum("shared pacing store reachable again" in line for line in lines) == 1


async def test_waiting_for_a_send_slot_is_no_delivery_attempt(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A backlog whose send slots lie further ahead than a sink claims them (5 s before,
    10 s now), on two replicas, with ``max_attempts = 2``: the attempt number is
    JetStream's delivery count, which handing a delivery back to JetStream would raise, so
    waiting for a slot must keep the delivery in the sink. Every notification is sent once,
    at its first attempt, and none is dead-lettered."""
    async with FakeSlack() as fake:
        await _backlog_is_sent_at_first_attempts(nats_server, tmp_path, Upstream(SLACK, fake))


async def _backlog_is_sent_at_first_attempts(
    nats_server: NatsServer, tmp_path: Path, upstream: Upstream
) -> None:
    toml = upstream.toml(4, concurrency=32).replace("max_attempts = 10", "max_attempts = 2")
    settings = make_settings(tmp_path, nats_server.url, toml)
    records: list[status.DeliveryStatus] = []

    async def record(msg: Msg) -> None:
        records.append(status.decode(msg.data))

    watcher = await nats.connect(nats_server.url)
    await watcher.subscribe(f"$KV.{streams.STATUS_BUCKET}.>", cb=record)
    try:
        async with jetstream(nats_server.url, settings) as js:
            async with replicas(settings, upstream.target):
                ids = await publish_alerts(js, 56, "backlog")  # 14 s at 4 per second
                await wait_for(lambda: upstream.delivered() == 56, within=60)
            assert await settled(nats_server.url, upstream.target)
        await watcher.flush()
    finally:
        await watcher.close()
    assert await dead_letters(nats_server.url, upstream.target) == []
    assert len(upstream.arrivals()) == 56  # each sent once
    delivered = {r.notification_id: r.attempts for r in records if r.state == "delivered"}
    assert delivered == dict.fromkeys(ids, 1)
    # Paced: at 4 per second, 56 sends span at least 13 s, however late each one leaves
    # its slot (a busy machine bunches the arrivals of a backlog into one second: 7 of them
    # once, in a whole-suite run; the per-second count is test_two_replicas_share_the_send_rate's)
    arrived = upstream.arrivals()
    assert max(arrived) - min(arrived) >= 12.5


async def test_a_stopping_sink_hands_its_waiting_deliveries_back(
    nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A delivery waiting in the sink for a pause to end goes back to JetStream when the
    sink stops (due when the pause ends), rather than being sent later by a sink that was
    told to stop; the next sink delivers it, and nothing is dead-lettered."""
    async with FakeSlack(fail_next=[(429, "rate_limited", {"Retry-After": "11"})]) as fake:
        upstream = Upstream(SLACK, fake)
        settings = make_settings(tmp_path, nats_server.url, upstream.toml(0, concurrency=4))
        async with jetstream(nats_server.url, settings) as js:
            async with replicas(settings, SLACK, count=1) as (runner,):
                await publish_alerts(js, 1, "told-429")
                await wait_for(lambda: len(upstream.arrivals()) == 1)
                told_429 = upstream.arrivals()[0]
                await asyncio.sleep(0.3)  # the pause is set
                await publish_alerts(js, 1, "waiting")

                def retrying() -> float:
                    value = runner.metrics.registry.get_sample_value(
                        "lookout_deliveries_total", {"target": SLACK, "outcome": "retrying"}
                    )
                    return value or 0.0

                await wait_for(lambda: retrying() >= 2)  # the 429, and the one waiting
            stopped = capsys.readouterr().out
            [handed_back] = [
                line for line in stopped.splitlines() if "delivery handed back" in line
            ]
            # key=value on a terminal, JSON otherwise (structlog is set up once per process)
            assert re.search(r'notification_id(=|": ")waiting-0', handed_back), handed_back
            assert "unexpected error" not in stopped
            # Past the pause's end, the stopped sink has sent nothing more.
            await asyncio.sleep(max(0.0, told_429 + 11.5 - time.monotonic()))
            assert upstream.arrivals() == [told_429]
            async with replicas(settings, SLACK, count=1):
                await wait_for(lambda: upstream.delivered() == 2, within=20)
            assert await settled(nats_server.url, SLACK)
    assert fake.answers == [429, 200, 200]
    assert await dead_letters(nats_server.url, SLACK) == []


async def test_a_target_without_a_rate_never_touches_the_pace_store(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with jetstream(nats_server.url, settings) as js:
        async with running_sink(settings, "ops-http"):
            await publish_alerts(js, 5, "free")
            await wait_for(lambda: len(receiver.requests) == 5)
        info = await js.stream_info(manage.KV_STREAM.format(bucket=streams.PACE_BUCKET))
    assert info.state.messages == 0
    assert await pace_keys(nats_server.url) == []


async def test_per_second_0_lifts_the_default_limit_and_never_touches_the_store(
    upstream: Upstream, nats_server: NatsServer, tmp_path: Path
) -> None:
    """Slack and SMS default to 1 per second; ``per_second = 0`` means no limit at all."""
    settings = make_settings(tmp_path, nats_server.url, upstream.toml(0, 8))
    assert relay(settings).target(upstream.target).send_rate is None
    async with jetstream(nats_server.url, settings) as js:
        async with replicas(settings, upstream.target, count=1):
            started = time.monotonic()
            await publish_alerts(js, 12, "unpaced")
            await wait_for(lambda: upstream.delivered() == 12)
            # 12 sends at the default of 1 per second would take 11 s or more
            assert time.monotonic() - started < 8
        info = await js.stream_info(manage.KV_STREAM.format(bucket=streams.PACE_BUCKET))
    assert info.state.messages == 0


# ------------------------------------------------------- two pacers on one bucket


@asynccontextmanager
async def pace_bucket(url: str, settings: Settings) -> AsyncIterator[KeyValue]:
    async with jetstream(url, settings) as js:
        yield await js.key_value(streams.PACE_BUCKET)


async def test_a_pause_holds_a_slot_taken_before_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with pace_bucket(nats_server.url, make_settings(tmp_path, nats_server.url)) as kv:
        a, b = Pacer("svc", 1.0, max_wait=10), Pacer("svc", 1.0, max_wait=10)
        a.share(kv, "t")
        b.share(kv, "t")
        await a.turn()  # the slot of now
        started = time.time()
        waiting = asyncio.create_task(b.turn())  # the next one, a second later
        await asyncio.sleep(0.3)
        a.pause(3.0)  # told 429 while b waits for the slot it took before
        await waiting
        assert time.time() - started >= 3.3 - 0.1


async def test_a_slot_beyond_max_wait_is_handed_back_untaken(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with pace_bucket(nats_server.url, make_settings(tmp_path, nats_server.url)) as kv:
        a, b = Pacer("svc", 1.0, max_wait=0.5), Pacer("svc", 1.0, max_wait=0.5)
        a.share(kv, "t")
        b.share(kv, "t")
        await a.turn()
        before = await kv.get("t.next")
        with pytest.raises(Paced) as caught:
            await b.turn()  # the next free slot is a second away
        assert caught.value.retry_after is not None
        assert 0.5 < caught.value.retry_after <= 1.0
        assert "every send slot of the next 0.5s is taken" in str(caught.value)
        after = await kv.get("t.next")
        assert after.revision == before.revision  # nothing taken
