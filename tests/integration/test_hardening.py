"""Gateway hardening on the real gateway and bus: the per-client ``/api`` rate limit,
security headers on every response, and body size limits on every POST route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from helpers import api, make_settings, post_webhook, running_gateway, sqreen_sign, ui_login

from services.gateway.apilimit import ClientLimiter
from services.gateway.hardening import FORM_MAX_BYTES
from shared.core.natsserver import NatsServer

# ------------------------------------------------------------------ rate limit


def test_bucket_refills_and_memory_stays_bounded() -> None:
    limiter = ClientLimiter(rate=2.0, burst=3, max_clients=100)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", now=0.0) == pytest.approx(0.5)
    assert limiter.take("b", now=0.0) == 0.0  # another client has its own bucket
    assert limiter.take("a", now=0.5) == 0.0  # one token back after 1/rate seconds
    for i in range(1000):
        limiter.take(f"ip:{i}", now=1.0)
    assert len(limiter) <= 100
    limiter.take("late", now=10.0)  # everyone else idle long enough to be full again
    assert len(limiter) == 1
    assert not ClientLimiter(rate=0.0, burst=1).enabled


async def test_a_burst_over_the_limit_gets_429_and_others_are_unaffected(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        LOOKOUT_API_TOKENS="tok-one,tok-two",
        LOOKOUT_API_RATE="2",
        LOOKOUT_API_BURST="5",
    )
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/deadletters"
        answers = [await api("GET", url, "tok-one") for _ in range(7)]
        assert [status for status, _ in answers[:5]] == [200] * 5
        status, body = answers[5]
        assert status == 429
        assert "rate limit" in body["error"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers={"Authorization": "Bearer tok-one"}) as response,
        ):
            assert response.status == 429
            retry_after = response.headers["Retry-After"]
            assert retry_after.isdigit()
            assert int(retry_after) >= 1
        # another client (the other token) still has its whole burst
        assert [(await api("GET", url, "tok-two"))[0] for _ in range(5)] == [200] * 5
        # health and the webhook are never limited
        async with aiohttp.ClientSession() as session:
            for _ in range(10):
                async with session.get(f"{base}/healthz") as response:
                    assert response.status == 200
        for _ in range(8):
            status, _ = await post_webhook(base, b"[]", signature="bad")
            assert status == 401
        await asyncio.sleep(1.1)  # two tokens back
        assert (await api("GET", url, "tok-one"))[0] == 200


async def test_bad_credentials_are_limited_per_address(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        LOOKOUT_API_TOKENS="tok",
        LOOKOUT_API_RATE="1",
        LOOKOUT_API_BURST="3",
    )
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/deadletters"
        statuses = [(await api("GET", url, f"guess-{i}"))[0] for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429]  # a new made-up token is no new bucket
        assert (await api("GET", url, "tok"))[0] == 200  # the real client is not starved


async def test_zero_rate_disables_the_limit(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_RATE="0", LOOKOUT_API_BURST="1")
    async with running_gateway(settings) as base:
        url = f"{base}/api/v1/deadletters"
        assert {(await api("GET", url))[0] for _ in range(5)} == {200}


# ------------------------------------------------------------------ security headers

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}


async def test_security_headers_on_every_response(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base, aiohttp.ClientSession() as session:
        seen = {}
        for method, path, data in [
            ("GET", "/healthz", None),
            ("GET", "/api/v1/deadletters", None),
            ("GET", "/api/v1/lookups/0123456789abcdef", None),  # 404 JSON
            ("POST", "/webhooks/sqreen", b"[]"),  # 401: no signature
            ("GET", "/", None),
            ("GET", "/login", None),
            ("GET", "/static/app.css", None),
            ("GET", "/static/nothing.css", None),  # 404 of the UI
            ("GET", "/api/docs", None),
            ("GET", "/api/docs/apidocs.js", None),
            ("GET", "/nowhere", None),
        ]:
            async with session.request(method, f"{base}{path}", data=data) as response:
                await response.read()
                seen[path] = (response.status, response.headers)
        body = b'[{"message_type":"test","message":{"event_id":"hardened-1"}}]'
        async with session.post(
            f"{base}/webhooks/sqreen", data=body, headers={"X-Sqreen-Integrity": sqreen_sign(body)}
        ) as response:
            await response.read()
            seen["/webhooks/sqreen (200)"] = (response.status, response.headers)
        assert seen["/webhooks/sqreen (200)"][0] == 200
        assert seen["/webhooks/sqreen (200)"][1]["Content-Type"] == "application/json"
        etag = seen["/static/app.css"][1]["ETag"]
        async with session.get(
            f"{base}/static/app.css", headers={"If-None-Match": etag}
        ) as response:
            seen["/static/app.css (304)"] = (response.status, response.headers)
        assert seen["/static/app.css (304)"][0] == 304
        assert seen["/static/nothing.css"][0] == 404
        assert seen["/webhooks/sqreen"][0] == 401
        assert seen["/api/v1/lookups/0123456789abcdef"][0] == 404
        for path, (_, headers) in seen.items():
            for name, value in COMMON.items():
                assert headers.get(name) == value, (path, name)
            assert "Strict-Transport-Security" not in headers, path  # plain HTTP
        for path in ("/api/v1/deadletters", "/api/v1/lookups/0123456789abcdef"):
            assert seen[path][1]["Cache-Control"] == "no-store"
        # the UI keeps its own Content-Security-Policy
        assert "default-src 'self'" in seen["/"][1]["Content-Security-Policy"]


# ------------------------------------------------------------------ body size limits


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, chunked: bool, **headers: str
) -> tuple[int, str, dict[str, object]]:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    data = chunks() if chunked else body
    async with session.post(url, data=data, headers=headers, allow_redirects=False) as response:
        payload = await response.json() if response.content_type == "application/json" else {}
        return response.status, response.content_type, payload


@pytest.mark.parametrize("chunked", [False, True])
async def test_every_post_route_answers_413_json(
    nats_server: NatsServer, tmp_path: Path, chunked: bool
) -> None:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        LOOKOUT_API_TOKENS="tok",
        LOOKOUT_MAX_JSON_BYTES="4096",
        LOOKOUT_MAX_BODY_BYTES="65536",
    )
    auth = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    big_json = b'{"text": "' + b"a.com " * 2000 + b'"}'  # 12 kB: over the JSON cap only
    jar = aiohttp.CookieJar(unsafe=True)  # keep the login cookies of 127.0.0.1
    async with (
        running_gateway(settings) as base,
        aiohttp.ClientSession(cookie_jar=jar) as session,
    ):
        for path in (
            "/api/v1/lookups",
            "/api/v1/notifications",
            "/api/v1/deadletters/log/replay",
        ):
            status, kind, body = await _post(session, f"{base}{path}", big_json, chunked, **auth)
            assert (status, kind) == (413, "application/json"), path
            assert body["error"] == "body larger than 4096 bytes", path
        # a file upload of the same size is under its own, larger cap
        form = aiohttp.FormData()
        form.add_field("file", b"example.com\n" * 1000, filename="hosts.txt")
        async with session.post(
            f"{base}/api/v1/lookups", data=form, headers={"Authorization": "Bearer tok"}
        ) as response:
            assert response.status == 202, await response.text()
        # the webhook keeps LOOKOUT_MAX_BODY_BYTES
        huge = b"[" + b" " * 70_000 + b"]"
        status, kind, body = await _post(
            session,
            f"{base}/webhooks/sqreen",
            huge,
            chunked,
            **{"X-Sqreen-Integrity": sqreen_sign(huge)},
        )
        assert (status, kind) == (413, "application/json")
        assert "larger than 65536" in str(body["error"])
        # the login and logout forms: a few fields, 16 KiB at most
        big_form = b"token=" + b"x" * (FORM_MAX_BYTES + 1)
        form_headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": base}
        status, kind, body = await _post(
            session, f"{base}/login", big_form, chunked, **form_headers
        )
        assert (status, kind) == (413, "application/json")
        assert body["error"] == f"body larger than {FORM_MAX_BYTES} bytes"
        await ui_login(session, base, "tok")
        status, kind, body = await _post(
            session, f"{base}/logout", big_form, chunked, **form_headers
        )
        assert (status, kind) == (413, "application/json")
        assert body["error"] == f"body larger than {FORM_MAX_BYTES} bytes"
