"""Web UI sessions live in the NATS KV bucket ``ui_sessions``: every gateway replica honours
them, they survive a restart, a logout anywhere ends them everywhere, and the bucket holds
nothing that could be replayed as a cookie. Real gateways on a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
from helpers import kv_keys, make_settings, running_gateway, ui_login, wait_for

from services.gateway import state as gateway_state
from services.gateway import ui
from services.gateway.app import create_app
from shared.bus import manage
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings

TOKEN = "ui-session-test-token"
LOOKUP = {"indicators": ["example.com"], "providers": ["dns"]}


async def login(base: str) -> tuple[str, str]:
    """Log in through the form as a browser does: (the session cookie, the page's CSRF
    token)."""
    jar = aiohttp.CookieJar(unsafe=True)  # keep the cookies of 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        csrf = await ui_login(browser, base, TOKEN)
        cookie = {c.key: c.value for c in jar}[ui.SESSION_COOKIE]
    assert await page_csrf(base, cookie) == csrf  # the cookie alone is the session
    return cookie, csrf


async def request(
    base: str, method: str, path: str, cookie: str, **headers: str
) -> tuple[int, Any]:
    """One request with only the session cookie (as a browser on another replica sends it)."""
    kwargs: dict[str, Any] = {"json": LOOKUP} if method == "POST" else {}
    headers["Cookie"] = f"{ui.SESSION_COOKIE}={cookie}"
    async with (
        aiohttp.ClientSession() as client,
        client.request(
            method, f"{base}{path}", headers=headers, allow_redirects=False, **kwargs
        ) as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def page_csrf(base: str, cookie: str) -> str:
    """The CSRF token the UI page shows to this session (fails on the login page)."""
    status, page = await request(base, "GET", "/", cookie)
    assert status == 200
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found is not None, "not logged in: the login page was served"
    return found[1]


async def logout(base: str, cookie: str, csrf: str) -> None:
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            f"{base}/logout",
            data={"csrf": csrf},
            headers={"Origin": base, "Cookie": f"{ui.SESSION_COOKIE}={cookie}"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 303
        assert response.headers["Location"] == "/login"


async def bucket_entries(url: str) -> dict[str, bytes]:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(gateway_state.SESSIONS_BUCKET)
        return {key: (await kv.get(key)).value or b"" for key in await kv_keys(kv)}
    finally:
        await nc.close()


def settings_for(tmp_path: Path, nats_server: NatsServer) -> Settings:
    return make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS=TOKEN)


async def test_sessions_are_shared_by_replicas_and_survive_a_restart(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings_a = settings_for(tmp_path, nats_server)
    settings_b = settings_for(tmp_path, nats_server)  # same bus, another port
    async with running_gateway(settings_a) as base_a:
        cookie, csrf = await login(base_a)
        assert (await request(base_a, "GET", "/api/v1/notifications", cookie))[0] == 200

        async with running_gateway(settings_b) as base_b:
            # replica B knows the session A opened: reads pass, the page shows its token
            assert (await request(base_b, "GET", "/api/v1/notifications", cookie))[0] == 200
            assert await page_csrf(base_b, cookie) == csrf
            # ... and enforces its CSRF token on writes
            status, body = await request(base_b, "POST", "/api/v1/lookups", cookie)
            assert (status, "X-CSRF-Token" in body["error"]) == (403, True)
            status, body = await request(
                base_b, "POST", "/api/v1/lookups", cookie, **{"X-CSRF-Token": csrf + "x"}
            )
            assert (status, "does not match" in body["error"]) == (403, True)
            status, body = await request(
                base_b, "POST", "/api/v1/lookups", cookie, **{"X-CSRF-Token": csrf}
            )
            assert status == 202, body

        # the bucket holds a digest of the session id, never the cookie value itself
        entries = await bucket_entries(nats_server.url)
        assert list(entries) == [hashlib.sha256(cookie.encode()).hexdigest()]
        assert all(cookie not in key and cookie.encode() not in v for key, v in entries.items())
        stored = json.loads(next(iter(entries.values())))
        assert stored["csrf"] == csrf
        assert abs(stored["expires"] - (time.time() + gateway_state.SESSION_TTL)) < 60
        # expired sessions vanish by themselves: the bucket's TTL is the session lifetime
        nc = await nats.connect(nats_server.url)
        try:
            info = await nc.jetstream().stream_info(
                manage.KV_STREAM.format(bucket=gateway_state.SESSIONS_BUCKET)
            )
        finally:
            await nc.close()
        assert info.config.max_age == gateway_state.SESSION_TTL == ui.SESSION_TTL
        assert info.config.num_replicas == settings_a.stream_replicas

    # both gateways are gone; a new instance still knows the session
    async with (
        running_gateway(settings_a) as base_a,
        running_gateway(settings_b) as base_b,
    ):
        assert await page_csrf(base_a, cookie) == csrf
        assert (await request(base_b, "GET", "/api/v1/notifications", cookie))[0] == 200

        # a logout on A ends the session on B at once
        await logout(base_a, cookie, csrf)
        status, body = await request(base_b, "GET", "/api/v1/notifications", cookie)
        assert (status, body["error"]) == (
            401,
            "session expired or invalid: log in again (or use a bearer token)",
        )
        status, page = await request(base_b, "GET", "/", cookie)
        assert status == 200
        assert 'name="token"' in page  # the login page
        assert await bucket_entries(nats_server.url) == {}


@contextlib.asynccontextmanager
async def gateway_with_session_lifetime(settings: Settings, ttl: float) -> AsyncIterator[str]:
    """The real gateway app whose sessions end after ``ttl`` seconds."""
    app = create_app(settings)
    app[ui.SESSIONS].ttl = ttl
    async with running_gateway(settings, app) as base:
        yield base


async def test_an_expired_session_is_refused(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, nats_server)
    async with gateway_with_session_lifetime(settings, 1.5) as base:
        cookie, csrf = await login(base)
        assert (await request(base, "GET", "/api/v1/notifications", cookie))[0] == 200
        await asyncio.sleep(2.0)
        # still in the bucket (its TTL is the full lifetime) but past its expiry: refused
        assert len(await bucket_entries(nats_server.url)) == 1
        status, body = await request(base, "GET", "/api/v1/notifications", cookie)
        assert (status, body["error"]) == (
            401,
            "session expired or invalid: log in again (or use a bearer token)",
        )
        status, _ = await request(base, "POST", "/api/v1/lookups", cookie, **{"X-CSRF-Token": csrf})
        assert status == 401
        status, page = await request(base, "GET", "/", cookie)
        assert status == 200
        assert 'name="token"' in page  # the login page


async def test_bus_down_answers_503_and_keeps_the_session(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, nats_server)
    async with running_gateway(settings) as base:
        cookie, csrf = await login(base)
        nats_server.stop()
        try:
            for method, path in (("GET", "/api/v1/notifications"), ("GET", "/")):
                status, body = await request(base, method, path, cookie)
                assert (status, body) == (503, {"error": ui.SESSION_UNAVAILABLE}), path
            status, body = await request(
                base, "POST", "/api/v1/lookups", cookie, **{"X-CSRF-Token": csrf}
            )
            assert (status, body) == (503, {"error": ui.SESSION_UNAVAILABLE})
        finally:
            nats_server.start()

        # the bus is back: the same session, not a new login
        async def back() -> bool:
            return (await request(base, "GET", "/api/v1/notifications", cookie))[0] == 200

        await wait_for(back, within=20, every=0.2)
        assert await page_csrf(base, cookie) == csrf
