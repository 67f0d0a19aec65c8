"""Prometheus metrics of every service, scraped over HTTP from the real ``/metrics``
endpoints after real scenarios (real nats-server, gateway, sinks, providers, loopback
upstreams), and the request id followed from the webhook to the target."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats.errors
import pytest
from aiohttp import web
from fakes.virustotal import FakeVirusTotal
from helpers import (
    Receiver,
    api,
    dead_lettered,
    http_target,
    jetstream,
    make_settings,
    post_webhook,
    running_gateway,
    running_provider,
    running_sink,
    settled,
    sqreen_fixture,
    wait_for,
    wait_job,
)
from prometheus_client.parser import text_string_to_metric_families

from services.supervisor import _child_envs
from shared.bus import messages
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.core.metrics import metrics_server
from shared.core.natsserver import NatsServer, free_port
from shared.core.settings import Settings
from shared.lookups import streams as lookup_streams
from shared.relay import streams
from shared.relay.metrics import SinkMetrics

VT_KEY = "vt-test-key-0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    """Every sample of a ``/metrics`` page, parsed by prometheus-client's own parser."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# ----------------------------------------------------------------------------- gateway


async def test_gateway_counts_webhooks_publishes_and_api_requests(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_MAX_BODY_BYTES="2048")
    good = sqreen_fixture("v2_test.json")
    malformed = b'[{"message_type": '
    async with running_gateway(settings) as base:
        assert (await post_webhook(base, good))[0] == 200
        assert (await post_webhook(base, good))[0] == 200  # stored once: a duplicate
        assert (await post_webhook(base, good, "0" * 64))[0] == 401
        assert (await post_webhook(base, malformed))[0] == 400
        big = b"[" + b" " * 4096 + b"]"
        assert (await post_webhook(base, big))[0] == 413
        missing = "0123456789abcdef0123"
        assert (await api("GET", f"{base}/api/v1/lookups/{missing}"))[0] == 404
        assert (await api("POST", f"{base}/api/v1/lookups", json={"indicators": []}))[0] == 400
        status, job = await api("POST", f"{base}/api/v1/lookups", json={"indicators": ["1.1.1.1"]})
        assert status == 202
        assert (await api("GET", f"{base}/api/v1/lookups/{job['id']}"))[0] == 200
        samples = await scrape(f"{base}/metrics")
    sqreen = {"source": "sqreen"}
    assert value(samples, "lookout_webhooks_received_total", **sqreen) == 5
    assert value(samples, "lookout_webhooks_verified_total", **sqreen) == 3
    for reason in ("bad_signature", "malformed", "too_large"):
        assert value(samples, "lookout_webhooks_rejected_total", reason=reason, **sqreen) == 1
    assert value(samples, "lookout_webhooks_total", outcome="accepted", **sqreen) == 2
    stream = {"stream": "NOTIFICATIONS"}
    assert value(samples, "lookout_publishes_total", outcome="stored", **stream) == 1
    assert value(samples, "lookout_publishes_total", outcome="duplicate", **stream) == 1
    assert value(samples, "lookout_webhook_publish_seconds_count") == 2
    job_route = {"route": "/api/v1/lookups/{id}", "method": "GET"}
    create = {"route": "/api/v1/lookups", "method": "POST"}
    assert value(samples, "lookout_api_requests_total", status="404", **job_route) == 1
    assert value(samples, "lookout_api_requests_total", status="200", **job_route) == 1
    assert value(samples, "lookout_api_requests_total", status="400", **create) == 1
    assert value(samples, "lookout_api_requests_total", status="202", **create) == 1
    assert value(samples, "lookout_api_request_seconds_count", **job_route) == 2
    assert value(samples, "lookout_api_request_seconds_count", **create) == 2
    # the webhook route is not an API request
    assert not any(
        "webhooks" in dict(labels).get("route", "")
        for name, labels in samples
        if name.startswith("lookout_api_")
    )


async def test_gateway_counts_bus_unavailable(tmp_path: Path) -> None:
    from services.gateway.app import create_app

    settings = make_settings(tmp_path, f"nats://127.0.0.1:{free_port()}")
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    base = f"http://{settings.http_host}:{settings.http_port}"
    try:
        status, _ = await post_webhook(base, sqreen_fixture("v2_test.json"))
        samples = await scrape(f"{base}/metrics")
    finally:
        await runner.cleanup()
    assert status == 503
    assert (
        value(samples, "lookout_webhooks_rejected_total", source="sqreen", reason="bus_unavailable")
        == 1
    )
    assert value(samples, "lookout_webhooks_verified_total", source="sqreen") == 1


async def test_posted_notifications_count_like_webhooks_and_carry_the_request_id(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """POST /api/v1/notifications shares the webhook's accounting: lookout_publishes by
    outcome, a warning and lookout_notifications_unrouted for what no route takes (once,
    not again for the duplicate), and the request id on the stored message."""
    toml = '[[targets]]\nname = "pulses"\ntype = "log"\nmatch = { types = ["pulse"] }\n'
    settings = make_settings(tmp_path, nats_server.url, toml)
    alert = {"id": "ids-1", "type": "port_scan", "source": "suricata", "data": {"risk": 70}}
    async with running_gateway(settings) as base:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.post(
                    f"{base}/api/v1/notifications", json=alert, headers={"X-Request-Id": "req-42"}
                ) as response:
                    assert response.status == 202
                    assert response.headers["X-Request-Id"] == "req-42"
            async with session.post(  # refusals answer the request id too
                f"{base}/api/v1/notifications", json={"type": "x"}, headers={"X-Request-Id": "r-7"}
            ) as response:
                assert response.status == 400
                assert response.headers["X-Request-Id"] == "r-7"
        samples = await scrape(f"{base}/metrics")
    stream = {"stream": "NOTIFICATIONS"}
    assert value(samples, "lookout_publishes_total", outcome="stored", **stream) == 1
    assert value(samples, "lookout_publishes_total", outcome="duplicate", **stream) == 1
    assert value(samples, "lookout_notifications_unrouted_total", source="suricata") == 1
    async with jetstream(nats_server.url) as js:
        msg = await js.get_msg(streams.NOTIFICATIONS, 1)
    assert msg.headers is not None
    assert msg.headers[messages.REQUEST_ID_HEADER] == "req-42"


# ----------------------------------------------------------------------------- sinks


async def test_delivery_metrics_and_request_id_end_to_end(
    nats_server: NatsServer,
    tmp_path: Path,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    settings = make_settings(
        tmp_path, nats_server.url, http_target(receiver.url), LOOKOUT_METRICS_PORT=str(port)
    )
    body = sqreen_fixture("v2_test.json")
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        status, _ = await post_webhook(base, body, **{"X-Request-Id": "abc"})
        assert status == 200
        await wait_for(lambda: len(receiver.requests) == 1)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    target = {"target": "ops-http"}
    assert value(samples, "lookout_deliveries_total", outcome="delivered", **target) == 1
    assert value(samples, "lookout_deliveries_total", outcome="retrying", **target) == 0
    assert value(samples, "lookout_delivery_attempts_total", **target) == 1
    assert value(samples, "lookout_delivery_seconds_count", **target) == 1
    assert value(samples, "lookout_delivery_end_to_end_seconds_count", **target) == 1
    e2e = value(samples, "lookout_delivery_end_to_end_seconds_sum", **target)
    assert e2e is not None
    assert 0 <= e2e < 15
    assert value(samples, "lookout_dead_letters_total", **target) == 0
    # the request id reaches the target...
    headers, _ = receiver.requests[0]
    assert {k.lower(): v for k, v in headers.items()}.get("x-request-id") == "abc", headers
    # ...and the sink's "delivered" line
    delivered = [line for line in capsys.readouterr().out.splitlines() if "delivered" in line]
    assert delivered, "the sink's log lines were not captured"
    assert any("request_id" in line and "abc" in line for line in delivered), delivered


async def test_failing_target_retries_then_dead_letters(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = (500, {})
    port = free_port()
    settings = make_settings(
        tmp_path, nats_server.url, http_target(receiver.url), LOOKOUT_METRICS_PORT=str(port)
    )
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        assert (await post_webhook(base, sqreen_fixture("v2_test.json")))[0] == 200
        await wait_for(dead_lettered(nats_server.url, "ops-http"), within=20)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    target = {"target": "ops-http"}
    # max_attempts = 4: three retries, then the dead letter
    assert value(samples, "lookout_delivery_attempts_total", **target) == 4
    assert value(samples, "lookout_deliveries_total", outcome="retrying", **target) == 3
    assert value(samples, "lookout_deliveries_total", outcome="dead", **target) == 1
    assert value(samples, "lookout_deliveries_total", outcome="delivered", **target) == 0
    assert value(samples, "lookout_dead_letters_total", **target) == 1
    assert value(samples, "lookout_delivery_seconds_count", **target) == 4
    assert value(samples, "lookout_delivery_end_to_end_seconds_count", **target) == 0


async def test_digest_and_skipped_are_counted(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    port = free_port()
    extra = 'group_window = 1.0\ngroup_by = ["source", "type"]\n'
    toml = http_target(receiver.url, extra + 'match = { types = ["security_event"] }\n')
    settings = make_settings(tmp_path, nats_server.url, toml, LOOKOUT_METRICS_PORT=str(port))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        assert (await post_webhook(base, sqreen_fixture("v2_security_event.json")))[0] == 200
        assert (await post_webhook(base, sqreen_fixture("v2_test.json")))[0] == 200
        await wait_for(lambda: len(receiver.requests) == 1)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    assert receiver.bodies()[0]["type"] == "digest"
    target = {"target": "ops-http"}
    assert value(samples, "lookout_digests_sent_total", **target) == 1
    assert value(samples, "lookout_deliveries_total", outcome="delivered", **target) == 2
    assert value(samples, "lookout_deliveries_total", outcome="skipped", **target) == 1
    assert value(samples, "lookout_delivery_attempts_total", **target) == 1
    assert value(samples, "lookout_delivery_end_to_end_seconds_count", **target) == 2


# ----------------------------------------------------------------------------- providers


async def submit(base: str, indicators: list[str]) -> str:
    status, body = await api(
        "POST",
        f"{base}/api/v1/lookups",
        json={"indicators": indicators, "providers": ["virustotal"]},
    )
    assert status == 202, body
    return str(body["id"])


async def test_provider_counts_cache_upstream_and_daily_quota(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    names = ["a.example.com", "b.example.com", "c.example.com", "d.example.com"]
    port = free_port()
    async with FakeVirusTotal({n: FakeVirusTotal.stats() for n in names}, api_key=VT_KEY) as vt:
        settings = make_settings(
            tmp_path,
            nats_server.url,
            "[providers.virustotal.quota]\nper_minute = 100\nper_day = 3\n",
            VIRUSTOTAL_API_KEY=VT_KEY,
            VIRUSTOTAL_URL=vt.base_url,
            LOOKOUT_METRICS_PORT=str(port),
        )
        async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
            await wait_job(base, await submit(base, names[:1]))
            job = await wait_job(base, await submit(base, names[:1]))  # from the cache
            assert job["results"][0]["cached"] is True
            job = await wait_job(base, await submit(base, names[1:]))
            assert sorted(r["status"] for r in job["results"]) == [
                "done",
                "done",
                "quota_exhausted",
            ]
            samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    assert len(vt.requests) == 3
    vt_ = {"provider": "virustotal"}
    assert value(samples, "lookout_provider_lookups_total", outcome="done", **vt_) == 4
    assert value(samples, "lookout_provider_lookups_total", outcome="quota_exhausted", **vt_) == 1
    assert value(samples, "lookout_provider_cache_hits_total", **vt_) == 1
    assert value(samples, "lookout_provider_cache_misses_total", **vt_) == 4
    assert value(samples, "lookout_provider_upstream_seconds_count", **vt_) == 3
    assert value(samples, "lookout_provider_quota_remaining", window="day", **vt_) == 0
    minute = value(samples, "lookout_provider_quota_remaining", window="minute", **vt_)
    assert minute is not None
    assert 96 <= minute <= 98  # 3 grants, or 4 when the day ran out after its minute slot


async def test_provider_counts_rate_limit_waits_and_not_configured(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    names = ["w1.example.com", "w2.example.com"]
    port = free_port()
    async with FakeVirusTotal({n: FakeVirusTotal.stats() for n in names}, api_key=VT_KEY) as vt:
        settings = make_settings(
            tmp_path,
            nats_server.url,
            "[providers.virustotal.quota]\nper_minute = 1\n",
            VIRUSTOTAL_API_KEY=VT_KEY,
            VIRUSTOTAL_URL=vt.base_url,
            LOOKOUT_METRICS_PORT=str(port),
        )
        async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
            job_id = await submit(base, names)

            async def one_queued() -> bool:
                _, job = await api("GET", f"{base}/api/v1/lookups/{job_id}")
                return sorted(r["status"] for r in job["results"]) == ["done", "queued"]

            await wait_for(one_queued)
            samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    vt_ = {"provider": "virustotal"}
    assert value(samples, "lookout_provider_ratelimit_waits_total", **vt_) == 1
    waited = value(samples, "lookout_provider_ratelimit_wait_seconds_total", **vt_)
    assert waited is not None
    assert 30 < waited <= 61  # the grant leaves the window in ~60 s
    assert value(samples, "lookout_provider_lookups_total", outcome="queued", **vt_) == 1
    assert value(samples, "lookout_provider_quota_remaining", window="minute", **vt_) == 0

    # and without a key: not_configured, no upstream call, no cache lookup
    port = free_port()
    bare = make_settings(tmp_path, nats_server.url, LOOKOUT_METRICS_PORT=str(port))
    async with running_gateway(bare) as base, running_provider(bare, "virustotal"):
        await wait_job(base, await submit(base, ["x.example.com"]))
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(samples, "lookout_provider_lookups_total", outcome="not_configured", **vt_) == 1
    assert value(samples, "lookout_provider_upstream_seconds_count", **vt_) == 0


# ----------------------------------------------------------------------------- listeners


async def test_metrics_server_on_a_free_port_and_none_when_unset() -> None:
    metrics = SinkMetrics("t")
    metrics.delivered.inc(3)
    async with metrics_server(metrics.registry, "127.0.0.1", 0, "sink-t") as port:
        assert port
        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(samples, "lookout_deliveries_total", target="t", outcome="delivered") == 3
    with pytest.raises(aiohttp.ClientConnectionError):  # closed after the block
        await scrape(f"http://127.0.0.1:{port}/metrics")
    async with metrics_server(metrics.registry, "127.0.0.1", None, "sink-t") as none:
        assert none is None


def test_metrics_settings_are_validated() -> None:
    assert config.load({}).metrics_port is None
    loaded = config.load({"LOOKOUT_METRICS_PORT": "9100", "LOOKOUT_METRICS_HOST": "0.0.0.0"})
    assert (loaded.metrics_host, loaded.metrics_port) == ("0.0.0.0", 9100)
    assert config.load({"LOOKOUT_METRICS_PORT": "0"}).metrics_port == 0
    assert config.load({"LOOKOUT_METRICS_HOST": "metrics.local"}).metrics_host == "metrics.local"
    for bad in ("-1", "65536", "http", "9100/metrics"):
        with pytest.raises(ConfigError, match="LOOKOUT_METRICS_PORT"):
            config.load({"LOOKOUT_METRICS_PORT": bad})
    for bad in ("not a host", "a_b!", "http://x"):
        with pytest.raises(ConfigError, match="LOOKOUT_METRICS_HOST"):
            config.load({"LOOKOUT_METRICS_HOST": bad})


def test_run_gives_each_worker_the_next_metrics_port() -> None:
    toml_free = config.load({"LOOKOUT_METRICS_PORT": "9100"})
    envs = dict(_child_envs(toml_free, {"LOOKOUT_METRICS_PORT": "9100", "X": "1"}))
    assert "LOOKOUT_METRICS_PORT" not in envs["gateway"]
    workers = [name for name in envs if name != "gateway"]
    assert [envs[n]["LOOKOUT_METRICS_PORT"] for n in workers] == [
        str(9100 + i) for i in range(1, len(workers) + 1)
    ]
    assert all(envs[n]["X"] == "1" for n in envs)
    # 0: every worker picks a free port of its own
    zero = dict(_child_envs(config.load({"LOOKOUT_METRICS_PORT": "0"}), {}))
    assert {zero[n]["LOOKOUT_METRICS_PORT"] for n in workers} == {"0"}
    # unset: nobody listens
    unset = dict(_child_envs(config.load({}), {}))
    assert all("LOOKOUT_METRICS_PORT" not in env for env in unset.values())
    with pytest.raises(ConfigError, match="65535"):
        _child_envs(config.load({"LOOKOUT_METRICS_PORT": "65534"}), {})


async def probe(url: str) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return answer.status, await answer.json()


async def answers(url: str, status: int) -> bool:
    """Whether ``url`` answers ``status`` now (no while nothing listens there yet)."""
    with contextlib.suppress(aiohttp.ClientError):
        return (await probe(url))[0] == status
    return False


@contextlib.asynccontextmanager
async def dns_worker(tmp_path: Path) -> AsyncIterator[tuple[NatsServer, str]]:
    """The dns provider with its metrics listener, on a nats-server of its own (to stop
    and start), once ready and consuming (its pull request waiting: past its start, which
    a bus stopped under it fails): the server and the listener's base URL."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    port = free_port()
    settings = make_settings(tmp_path, server.url, LOOKOUT_METRICS_PORT=str(port))
    base = f"http://127.0.0.1:{port}"

    async def consuming() -> bool:
        async with jetstream(server.url) as js:
            with contextlib.suppress(nats.errors.Error):
                durable = lookup_streams.provider_durable("dns")
                info = await js.consumer_info(lookup_streams.LOOKUPS, durable)
                return bool(info.num_waiting)
            return False

    try:
        async with running_gateway(settings), running_provider(settings, "dns"):
            await wait_for(lambda: answers(f"{base}/readyz", 200), within=20)
            await wait_for(consuming, within=20)
            yield server, base
    finally:
        server.stop()


async def test_a_workers_probes_say_whether_it_can_work(tmp_path: Path) -> None:
    """A worker's listener also answers ``/healthz`` (alive: for a liveness probe) and
    ``/readyz`` (connected to NATS: for a readiness probe), as the gateway does."""
    async with dns_worker(tmp_path) as (server, base):
        assert await probe(f"{base}/healthz") == (200, {"status": "ok"})
        server.stop()
        await wait_for(lambda: answers(f"{base}/readyz", 503), within=20)
        _, body = await probe(f"{base}/readyz")
        assert "NATS" in body["error"]
        assert (await probe(f"{base}/healthz"))[0] == 200  # alive: no restart for it
        server.start()
        await wait_for(lambda: answers(f"{base}/readyz", 200), within=30)


async def test_every_replica_tells_the_shared_quota_and_pause_as_they_are(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A replica that did no lookup itself still tells what the others spent, and the
    pause an upstream's 429 put on all of them: read from the shared store at scrape."""
    names = ["a.example.com", "b.example.com", "c.example.com"]
    one, two = free_port(), free_port()
    vt_ = {"provider": "virustotal"}
    async with FakeVirusTotal({n: FakeVirusTotal.stats() for n in names}, api_key=VT_KEY) as vt:

        def replica(port: int) -> Settings:
            return make_settings(
                tmp_path,
                nats_server.url,
                "[providers.virustotal.quota]\nper_minute = 100\nper_day = 10\n",
                VIRUSTOTAL_API_KEY=VT_KEY,
                VIRUSTOTAL_URL=vt.base_url,
                LOOKOUT_METRICS_PORT=str(port),
            )

        first = replica(one)
        async with running_gateway(first) as base:
            async with running_provider(first, "virustotal"):
                await wait_job(base, await submit(base, names[:2]))
                vt.retry_after, vt.fail_next = "300", [429]
                await submit(base, names[2:])
                await wait_for(lambda: bool(vt.answers) and vt.answers[-1] == 429)
            async with running_provider(replica(two), "virustotal"):  # never looked up
                samples: Samples = {}

                async def told() -> bool:  # once listening, with its runner started
                    nonlocal samples
                    with contextlib.suppress(aiohttp.ClientError):
                        samples = await scrape(f"http://127.0.0.1:{two}/metrics")
                    day = value(samples, "lookout_provider_quota_remaining", window="day", **vt_)
                    return day is not None  # set by the read at scrape (the pause gauge
                    # exists from the start, 0 until then)

                await wait_for(told, within=20)
    assert value(samples, "lookout_provider_quota_remaining", window="day", **vt_) == 7
    paused = value(samples, "lookout_provider_paused_until", **vt_)
    assert paused is not None
    assert paused > time.time() + 200


async def test_a_worker_stopped_while_nats_is_away_exits_cleanly(tmp_path: Path) -> None:
    """Stopped during an outage (its connection reconnecting, nothing to drain): it says
    so and exits; it crashed with a traceback (ConnectionReconnectingError)."""
    async with dns_worker(tmp_path) as (server, base):
        server.stop()
        await wait_for(lambda: answers(f"{base}/readyz", 503), within=20)
    # the block ended: the provider's task stopped without raising
