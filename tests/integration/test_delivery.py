"""Sinks against a real nats-server and a loopback receiver."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
import nats
import pytest
from helpers import (
    WHSEC,
    Receiver,
    dead_letters,
    http_target,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    sqreen_fixture,
    wait_for,
)
from standardwebhooks import Webhook

from shared.bus import messages
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.relay import schemas, streams


async def test_signed_webhook_in_signed_envelope_out(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    body = sqreen_fixture("v2_security_event.json")
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        status, answer = await post_webhook(base, body)
        assert status == 200
        await wait_for(lambda: len(receiver.requests) == 2)
    originals = json.loads(body)
    verifier = Webhook(WHSEC)
    by_id = {}
    for headers, raw in receiver.requests:
        lowered = {k.lower(): v for k, v in headers.items()}
        # the reference Standard Webhooks implementation accepts the signature
        envelope = verifier.verify(raw, lowered)
        assert lowered["webhook-id"] == envelope["id"]
        assert abs(int(lowered["webhook-timestamp"]) - time.time()) < 60
        assert lowered["content-type"] == "application/json"
        assert set(envelope) == {"id", "type", "source", "timestamp", "data"}
        by_id[envelope["id"]] = envelope
    assert sorted(by_id) == sorted(answer["ids"])
    for original, note_id in zip(originals, answer["ids"], strict=True):
        envelope = by_id[note_id]
        assert envelope["data"] == original  # the original message, unchanged
        assert envelope["type"] == "security_event"
        assert envelope["source"] == "sqreen"
    # and a tampered body is refused by the same reference verifier
    headers, raw = receiver.requests[0]
    with pytest.raises(Exception, match="No matching signature"):
        verifier.verify(
            raw.replace(b"sqreen", b"sqreeN"), {k.lower(): v for k, v in headers.items()}
        )


async def test_failing_target_then_recovering_is_delivered_once(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script = [(503, {}), (500, {}), (429, {})]
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        status, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
        assert status == 200
        await wait_for(lambda: len(receiver.requests) == 4)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    # four attempts, the same webhook-id each time, one success, nothing dead-lettered
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert ids == set(answer["ids"])
    assert await dead_letters(nats_server.url, "ops-http") == []


async def test_retry_after_is_honoured(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script = [(429, {"Retry-After": "2"})]
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        await post_webhook(base, sqreen_fixture("v2_test.json"))
        await wait_for(lambda: len(receiver.requests) == 1)
        first = time.monotonic()
        await wait_for(lambda: len(receiver.requests) == 2)
        waited = time.monotonic() - first
    # backoff alone would retry after 0.2 s; the target asked for 2 s
    assert waited >= 1.8


async def test_a_huge_retry_after_pauses_the_sink_at_most_max_retry_after(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    """The runner's pacer (every target's, here one with ``per_second``) caps a
    429's "Retry-After: one week" at ``retry.max_retry_after``, like the retry delay."""
    receiver.script = [(429, {"Retry-After": str(7 * 86400)})]
    toml = f"""
[[targets]]
name = "ops-http"
type = "http"
url = "{receiver.url}"
secret = "{WHSEC}"
timeout = 2
per_second = 50
[targets.retry]
max_attempts = 4
initial_backoff = 0.2
max_backoff = 1
jitter = 0
max_retry_after = 1
"""
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        await post_webhook(base, sqreen_fixture("v2_test.json"))
        await wait_for(lambda: len(receiver.requests) == 1)
        first = time.monotonic()
        # uncapped, the pacer would hold every send for the next hour: never sent again
        await wait_for(lambda: len(receiver.requests) == 2, within=10)
        waited = time.monotonic() - first
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    assert 0.8 <= waited < 5
    assert await dead_letters(nats_server.url, "ops-http") == []


async def test_permanent_failure_goes_to_dead_letter(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = (400, {})
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))

        async def dead() -> bool:
            return len(await dead_letters(nats_server.url, "ops-http")) == 1

        await wait_for(dead)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    assert len(receiver.requests) == 1  # never retried
    [record] = await dead_letters(nats_server.url, "ops-http")
    assert record.target == "ops-http"
    assert record.subject == "notification.sqreen.test"
    assert "HTTP 400" in record.error
    assert record.attempts == 1
    assert record.notification is not None
    assert record.notification.id == answer["ids"][0]


async def test_attempts_are_bounded_then_dead_letter(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = (502, {})
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        await post_webhook(base, sqreen_fixture("v2_test.json"))

        async def dead() -> bool:
            return len(await dead_letters(nats_server.url, "ops-http")) == 1

        await wait_for(dead, within=20)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    assert len(receiver.requests) == 4
    [record] = await dead_letters(nats_server.url, "ops-http")
    assert record.attempts == 4
    assert "HTTP 502" in record.error


async def test_unreachable_target_retries_then_dead_letters(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    from shared.core.natsserver import free_port

    url = f"http://127.0.0.1:{free_port()}/nobody"
    settings = make_settings(tmp_path, nats_server.url, http_target(url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        await post_webhook(base, sqreen_fixture("v2_test.json"))

        async def dead() -> bool:
            return len(await dead_letters(nats_server.url, "ops-http")) == 1

        await wait_for(dead, within=20)
    [record] = await dead_letters(nats_server.url, "ops-http")
    assert "Connect" in record.error


async def test_invalid_message_on_the_bus_is_dead_lettered_not_blocking(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_sink(settings, "ops-http"):
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await wait_for(lambda: _consumer_exists(js, "ops-http"))
        await js.publish("notification.other.alert", b"not json at all")
        good = schemas.Notification(
            id="n-1",
            type="alert",
            source="other",
            timestamp=messages.utc_now(),
            data=msgspec.Raw(b'{"risk": 10}'),
        )
        await js.publish(good.subject, messages.encode(good))
        await nc.close()
        await wait_for(lambda: len(receiver.requests) == 1)

        async def dead() -> bool:
            return len(await dead_letters(nats_server.url, "ops-http")) == 1

        await wait_for(dead)
    [record] = await dead_letters(nats_server.url, "ops-http")
    assert record.notification is None
    assert record.raw == "not json at all"
    assert "not a valid notification" in record.error
    assert receiver.bodies()[0]["id"] == "n-1"


async def _consumer_exists(js: nats.js.JetStreamContext, target: str) -> bool:
    try:
        await js.consumer_info(streams.NOTIFICATIONS, streams.sink_durable(target))
    except Exception:
        return False
    return True


async def test_route_filter_and_independent_targets(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    other = Receiver()
    await other.start()
    toml = http_target(receiver.url, "match = { min_risk = 50 }", name="urgent") + http_target(
        other.url, name="everything"
    )
    settings: Settings = make_settings(tmp_path, nats_server.url, toml)
    try:
        async with (
            running_gateway(settings) as base,
            running_sink(settings, "urgent"),
            running_sink(settings, "everything"),
        ):
            await post_webhook(base, sqreen_fixture("v2_security_event.json"))  # risks 30, 80
            await post_webhook(base, sqreen_fixture("v2_test.json"))  # risk 42
            await wait_for(lambda: len(other.requests) == 3)
            await wait_for(lambda: settled(nats_server.url, "urgent"))
        assert [b["data"]["message"]["risk_coefficient"] for b in receiver.bodies()] == [80]
    finally:
        await other.stop()


async def test_a_delivery_waiting_longer_than_ack_wait_is_not_redelivered(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    """The second of two notifications waits ~12.5 s in the sink for its send slot (one
    send per 12.5 s), longer than the consumer's ack wait (10 s): the sink tells JetStream
    it is in progress meanwhile, so JetStream never redelivers it (a redelivery would be
    a second attempt it never made)."""
    settings = make_settings(
        tmp_path, nats_server.url, http_target(receiver.url, "per_second = 0.08", timeout=2)
    )
    assert streams.ack_wait_for(2) == 10
    body = json.dumps(
        [{"message_type": "test", "message": {"id": f"w{i}"}} for i in range(2)]
    ).encode()
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        await post_webhook(base, body)
        await wait_for(lambda: len(receiver.requests) == 2, within=25, every=0.2)
        await wait_for(lambda: settled(nats_server.url, "ops-http"), within=5)
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().consumer_info(
            streams.NOTIFICATIONS, streams.sink_durable("ops-http")
        )
    finally:
        await nc.close()
    # every delivery to the consumer, redeliveries included: one per notification
    assert info.delivered.consumer_seq == 2
    assert len(receiver.requests) == 2


async def test_slow_target_does_not_delay_another(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    slow = Receiver()
    slow.delay = 3.0
    await slow.start()
    # the slow target answers in 3 s, within its timeout: slow, not failing (with the
    # default 2 s every attempt timed out, retries arrived on top of the first 20 and the
    # count could pass 20 between two looks)
    toml = http_target(slow.url, name="slow", timeout=5) + http_target(receiver.url, name="fast")
    settings = make_settings(tmp_path, nats_server.url, toml)
    try:
        async with (
            running_gateway(settings) as base,
            running_sink(settings, "slow"),
            running_sink(settings, "fast"),
        ):
            body = json.dumps(
                [{"message_type": "test", "message": {"id": f"m{i}"}} for i in range(20)]
            ).encode()
            started = time.monotonic()
            await post_webhook(base, body)
            await wait_for(lambda: len(receiver.requests) == 20)
            fast_done = time.monotonic() - started
            await wait_for(lambda: len(slow.requests) >= 20)
        assert fast_done < 3.0  # the fast target never waited for the slow one
        assert len(slow.requests) == 20  # and the slow one got each once
    finally:
        await slow.stop()
