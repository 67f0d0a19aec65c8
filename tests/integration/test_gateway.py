"""The webhook endpoint against a real nats-server: what is stored, what is refused."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import aiohttp
import nats
import pytest
from helpers import (
    LOOKOUT,
    SQREEN_SECRET,
    gateway_ready,
    make_settings,
    post_webhook,
    running_gateway,
    sqreen_fixture,
    sqreen_sign,
    wait_for,
)

from services.gateway import state as gateway_state
from shared.bus.messages import REQUEST_ID_HEADER, SCHEMA_HEADER
from shared.core.natsserver import NatsServer, free_port
from shared.relay import schemas, streams


async def stored(url: str) -> list[tuple[str, schemas.Notification, dict[str, str]]]:
    """Every message in the NOTIFICATIONS stream, read back through an ephemeral consumer."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(streams.NOTIFICATIONS)
        count = info.state.messages
        out = []
        for seq in range(info.state.first_seq, info.state.first_seq + count):
            msg = await js.get_msg(streams.NOTIFICATIONS, seq)
            out.append(
                (msg.subject, schemas.decode_notification(msg.data), dict(msg.headers or {}))
            )
        return out
    finally:
        await nc.close()


async def test_v2_array_is_stored_per_message(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    body = sqreen_fixture("v2_security_event.json")
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, body, **{"X-Request-Id": "req-42"})
    assert status == 200
    assert answer["accepted"] == 2
    assert answer["duplicates"] == 0
    messages = await stored(nats_server.url)
    assert [m[0] for m in messages] == ["notification.sqreen.security_event"] * 2
    assert [json.loads(bytes(m[1].data)) for m in messages] == json.loads(body)
    assert answer["ids"] == [m[1].id for m in messages]
    for _, note, headers in messages:
        assert headers["Nats-Msg-Id"] == f"sqreen:{note.id}"
        assert headers[SCHEMA_HEADER] == schemas.NOTIFICATION_SCHEMA
        assert headers[REQUEST_ID_HEADER] == "req-42"


@pytest.mark.parametrize(
    ("fixture", "subjects"),
    [
        ("v2_test.json", ["test"]),
        ("v2_incidents.json", ["account_takeover", "http_scan", "http_scan"]),
        ("v2_other.json", ["security_response", "pulse"]),
        ("v1_security_event.json", ["security_event", "security_event"]),
        ("v1_other.json", ["test", "pulse", "incident", "security_response"]),
    ],
)
async def test_every_shape_lands_on_its_subject(
    nats_server: NatsServer, tmp_path: Path, fixture: str, subjects: list[str]
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, sqreen_fixture(fixture))
    assert status == 200, answer
    got = [m[0] for m in await stored(nats_server.url)]
    assert got == [f"notification.sqreen.{s}" for s in subjects]


async def test_single_object_body(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    single = json.dumps(json.loads(sqreen_fixture("v2_test.json"))[0]).encode()
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, single)
    assert (status, answer["accepted"]) == (200, 1)
    assert [m[0] for m in await stored(nats_server.url)] == ["notification.sqreen.test"]


async def test_resent_message_is_stored_once(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    first = json.loads(sqreen_fixture("v2_security_event.json"))
    resent = [{**m, "retry_count": m["retry_count"] + 1} for m in first]
    async with running_gateway(settings) as base:
        assert (await post_webhook(base, json.dumps(first).encode()))[0] == 200
        status, answer = await post_webhook(base, json.dumps(resent).encode())
    assert status == 200
    assert answer["duplicates"] == 2
    assert len(await stored(nats_server.url)) == 2


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "missing X-Sqreen-Integrity"),
        (sqreen_sign(b"other body"), "does not match"),
        (sqreen_sign(b"x", "wrong-secret"), "does not match"),
        ("g" * 64, "not hexadecimal"),
        ("ab" * 16, "64 hex characters"),
    ],
)
async def test_bad_signature_is_401_and_stores_nothing(
    nats_server: NatsServer, tmp_path: Path, signature: str | None, reason: str
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, sqreen_fixture("v2_test.json"), signature)
    assert status == 401
    assert reason in answer["error"]
    assert await stored(nats_server.url) == []


async def test_rotated_secret(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, SQREEN_WEBHOOK_SECRET=f"retired-secret,{SQREEN_SECRET}"
    )
    body = sqreen_fixture("v2_test.json")
    async with running_gateway(settings) as base:
        assert (await post_webhook(base, body, sqreen_sign(body, "retired-secret")))[0] == 200
        assert (await post_webhook(base, body))[0] == 200
        assert (await post_webhook(base, body, sqreen_sign(body, "never-was")))[0] == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{oops", "malformed JSON"),
        (b"[]", "no messages"),
        (b'[{"foo": 1}]', "unknown shape"),
        (b'[{"message_type": "test", "message": {"id": 1}}, 7]', "message 1"),
    ],
)
async def test_bad_payload_is_400_and_stores_nothing(
    nats_server: NatsServer, tmp_path: Path, body: bytes, reason: str
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, body)
    assert status == 400
    assert reason in answer["error"]
    assert await stored(nats_server.url) == []


async def test_too_many_messages_is_400(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    body = json.dumps([{"message_type": "test", "message": {"id": i}} for i in range(1001)])
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, body.encode())
    assert status == 400
    assert "at most 1000" in answer["error"]


async def test_thousand_messages_are_accepted(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    body = json.dumps([{"message_type": "test", "message": {"id": i}} for i in range(1000)])
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, body.encode())
    assert (status, answer["accepted"]) == (200, 1000)
    assert len(await stored(nats_server.url)) == 1000


async def test_oversized_body_is_413(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_MAX_BODY_BYTES="2048")
    body = json.dumps([{"message_type": "test", "message": {"pad": "x" * 4096}}]).encode()
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, body)

        # chunked upload: no Content-Length, the limit still holds while reading
        async def chunks():  # type: ignore[no-untyped-def]
            yield body

        headers = {"X-Sqreen-Integrity": sqreen_sign(body)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}/webhooks/sqreen", data=chunks(), headers=headers) as response,
        ):
            chunked_status = response.status
            chunked_answer = await response.json()
    assert status == 413
    assert "larger than 2048" in answer["error"]
    assert chunked_status == 413
    assert "error" in chunked_answer


async def test_unavailable_bus_is_503(tmp_path: Path) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    settings = make_settings(tmp_path, dead)
    from aiohttp import web

    from services.gateway.app import create_app

    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
        status, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
        assert status == 503
        assert "retry" in answer["error"]
    finally:
        await runner.cleanup()


async def test_bus_lost_after_start_is_503_then_recovers(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    server.start()
    settings = make_settings(tmp_path, server.url)
    body = sqreen_fixture("v2_test.json")
    try:
        async with running_gateway(settings) as base:
            assert (await post_webhook(base, body))[0] == 200
            server.stop()
            status, _ = await post_webhook(base, body)
            assert status == 503
            server.start()
            from helpers import wait_for

            async def accepted() -> bool:
                return (await post_webhook(base, body))[0] == 200

            await wait_for(accepted, within=20, every=0.3)
    finally:
        server.stop()


async def test_webhooks_outlive_the_api_connection(nats_server: NatsServer, tmp_path: Path) -> None:
    """The API's reads go over their own connection: losing it (as when the server drops
    a slow consumer after a burst of reads) refuses the API and /readyz, while webhooks
    are still stored."""
    from services.gateway.app import create_app
    from services.gateway.state import BUS

    settings = make_settings(tmp_path, nats_server.url)
    app = create_app(settings)
    async with running_gateway(settings, app) as base:
        api_nc = app[BUS].api_nc
        assert api_nc is not None
        assert api_nc is not app[BUS].nc
        await api_nc.close()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api/v1/lookups/0123456789abcdef") as response:
                assert response.status == 503
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
        status, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
    assert (status, answer["accepted"]) == (200, 1)
    assert len(await stored(nats_server.url)) == 1


async def test_webhook_without_configured_secret_is_503(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url, SQREEN_WEBHOOK_SECRET="")
    async with running_gateway(settings) as base:
        status, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
    assert status == 503
    assert "SQREEN_WEBHOOK_SECRET" in answer["error"]


async def test_metrics_count_outcomes(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    body = sqreen_fixture("v2_test.json")
    async with running_gateway(settings) as base:
        await post_webhook(base, body)
        await post_webhook(base, body, "0" * 64)
        async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as r:
            text = await r.text()
    assert 'lookout_webhooks_total{outcome="accepted",source="sqreen"} 1.0' in text
    assert 'lookout_webhooks_total{outcome="unauthorized",source="sqreen"} 1.0' in text


def test_stream_settings_are_idempotent(nats_server: NatsServer, tmp_path: Path) -> None:
    import asyncio

    async def twice() -> float:
        settings = make_settings(tmp_path, nats_server.url)
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await gateway_state.provision(js, settings)
        await gateway_state.provision(js, settings)
        changed = make_settings(tmp_path, nats_server.url, LOOKOUT_DEDUP_WINDOW="60")
        await gateway_state.provision(js, changed)
        info = await js.stream_info(streams.NOTIFICATIONS)
        await nc.close()
        return float(info.config.duplicate_window or 0)

    assert asyncio.run(twice()) == pytest.approx(60.0)


async def test_notification_matching_no_target_is_stored_and_counted(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    toml = '[[targets]]\nname = "pulses"\ntype = "log"\nmatch = { types = ["pulse"] }\n'
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with running_gateway(settings) as base:
        status, _ = await post_webhook(base, sqreen_fixture("v2_test.json"))
        assert status == 200
        async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as r:
            text = await r.text()
    assert 'lookout_notifications_unrouted_total{source="sqreen"} 1.0' in text
    assert len(await stored(nats_server.url)) == 1  # stored all the same


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_accepted_webhook_is_logged_at_debug_only(
    nats_server: NatsServer, tmp_path: Path, level: str
) -> None:
    """At the default level an accepted webhook writes no line (one would cost about a
    fifth of the gateway's CPU per request, BENCHMARKS.md); a refused one does, and debug
    adds the accepted ones. A real gateway process: a level is set once, at start."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKOUT_", "NATS_"))}
    env.update(
        NATS_URL=nats_server.url,
        LOOKOUT_HTTP_PORT=str(port),
        LOOKOUT_DATA_DIR=str(tmp_path / "data"),
        LOOKOUT_LOG_LEVEL=level,
        SQREEN_WEBHOOK_SECRET=SQREEN_SECRET,
    )
    log_path = tmp_path / "gateway.log"
    body = sqreen_fixture("v2_security_event.json")
    with log_path.open("wb") as out:
        proc = subprocess.Popen([LOOKOUT, "service", "gateway"], env=env, stdout=out)
        try:
            async with aiohttp.ClientSession() as session:
                await wait_for(lambda: gateway_ready(session, base), within=30)
            status, _ = await post_webhook(base, body, **{"X-Request-Id": "req-ok"})
            assert status == 200
            status, _ = await post_webhook(base, body, "0" * 64, **{"X-Request-Id": "req-bad"})
            assert status == 401
        finally:
            proc.terminate()
            proc.wait(15)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    events = [(line["event"], line["request_id"]) for line in lines if "request_id" in line]
    accepted = [("webhook accepted", "req-ok")] if level == "debug" else []
    assert events == [*accepted, ("webhook rejected", "req-bad")]


async def test_compressed_bodies_are_refused_not_unpacked(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A gzip body is never decompressed (2.9 MB of gzip unpacked to 3 GB on the event
    loop and stalled every route): 415 with the reason, before the body is read, on the
    webhooks and the API alike; a malformed one too (it was a 500)."""
    import gzip

    settings = make_settings(tmp_path, nats_server.url)
    body = sqreen_fixture("v2_test.json")
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]", 9)
    async with running_gateway(settings) as base, aiohttp.ClientSession() as session:
        for url, data in [
            (f"{base}/webhooks/sqreen", gzip.compress(body)),
            (f"{base}/webhooks/sqreen", bomb),
            (f"{base}/webhooks/sqreen", b"not gzip at all"),
            (f"{base}/api/v1/lookups", gzip.compress(b'{"indicators": ["example.com"]}')),
            (f"{base}/api/v1/notifications", b"\x1f\x8b broken"),
        ]:
            headers = {"Content-Encoding": "gzip", "X-Sqreen-Integrity": sqreen_sign(body)}
            async with session.post(url, data=data, headers=headers) as answer:
                assert answer.status == 415, (url, answer.status)
                assert (
                    "compressed request bodies are not accepted" in (await answer.json())["error"]
                )
        # and uncompressed, all is as before
        status, answer = await post_webhook(base, body)
    assert (status, answer["accepted"]) == (200, 1)
    assert len(await stored(nats_server.url)) == 1
