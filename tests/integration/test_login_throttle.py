"""``POST /login`` is throttled: per client with exponential backoff, and globally. The
real gateway on a real nats-server (sessions live in its KV bucket); clients on several
loopback source addresses (127.0.0.2, 127.0.0.3…) stand for different machines."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from helpers import login_nonce, make_settings, running_gateway

from services.gateway import loginlimit
from services.gateway.app import create_app
from services.gateway.loginlimit import LOGIN_THROTTLE
from shared.core.natsserver import NatsServer

TOKEN = "tok-right-0123456789"


@contextlib.asynccontextmanager
async def gateway(
    nats_server: NatsServer, tmp_path: Path, throttle: loginlimit.LoginThrottle
) -> AsyncIterator[str]:
    """The real gateway with ``throttle`` (the production one, with a lockout long enough
    that a slow test machine still sees it; the limits are the module's constants)."""
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS=TOKEN)
    app = create_app(settings)
    app[LOGIN_THROTTLE] = throttle
    async with running_gateway(settings, app) as url:
        yield url


def browser(source: str = "127.0.0.1") -> aiohttp.ClientSession:
    """A cookie-keeping client connecting from the loopback address ``source``."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(source, 0)),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )


async def attempt(session: aiohttp.ClientSession, base: str, token: str, nonce: str) -> int:
    """One login form post; its status (303 logged in, 401 wrong, 429 locked out)."""
    async with session.post(
        f"{base}/login",
        data={"token": token, "csrf": nonce, "next": "/"},
        headers={"Origin": base},
        allow_redirects=False,
    ) as response:
        if response.status == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert "Too many failed logins" in await response.text()
        return response.status


async def retry_after(session: aiohttp.ClientSession, base: str, token: str, nonce: str) -> int:
    async with session.post(
        f"{base}/login",
        data={"token": token, "csrf": nonce, "next": "/"},
        headers={"Origin": base},
        allow_redirects=False,
    ) as response:
        assert response.status == 429
        return int(response.headers["Retry-After"])


async def test_a_burst_of_wrong_tokens_locks_the_client_out_even_for_the_right_one(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    throttle = loginlimit.LoginThrottle(base_lockout=3.0)
    async with gateway(nats_server, tmp_path, throttle) as base, browser() as session:
        nonce = await login_nonce(session, base)
        statuses = await asyncio.gather(
            *(attempt(session, base, f"guess-{n}", nonce) for n in range(40))
        )
        # the first few are judged (401), then the client is locked out: 429, not judged
        assert statuses.count(401) == loginlimit.FREE_FAILURES
        assert statuses.count(429) == 40 - loginlimit.FREE_FAILURES
        # the right token during the lockout is refused too: guessing cannot be confirmed
        wait = await retry_after(session, base, TOKEN, nonce)
        assert 1 <= wait <= 3
        # a different client is not concerned
        async with browser("127.0.0.2") as other:
            assert await attempt(other, base, TOKEN, await login_nonce(other, base)) == 303
        # after the backoff the right token works, and the slate is clean again
        await asyncio.sleep(wait + 0.1)
        assert await attempt(session, base, TOKEN, nonce) == 303
        async with session.get(f"{base}/") as page:
            assert 'name="csrf-token"' in await page.text()


async def test_failed_logins_from_many_clients_are_capped_globally(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Each client stays under its own limit; together they exhaust the global one, and
    then a login from anywhere, right token included, waits."""
    burst = loginlimit.GLOBAL_BURST
    per_client = loginlimit.FREE_FAILURES - 1
    clients = math.ceil((burst + 4) / per_client)
    throttle = loginlimit.LoginThrottle(global_rate=0.5)  # a token every 2 s
    async with (
        gateway(nats_server, tmp_path, throttle) as base,
        contextlib.AsyncExitStack() as stack,
    ):
        sessions = [
            await stack.enter_async_context(browser(f"127.0.0.{10 + n}")) for n in range(clients)
        ]
        newcomer = await stack.enter_async_context(browser("127.0.0.99"))
        nonces = [await login_nonce(s, base) for s in [*sessions, newcomer]]
        statuses = await asyncio.gather(
            *(
                attempt(s, base, f"guess-{n}", nonce)
                for s, nonce in zip(sessions, nonces, strict=False)
                for n in range(per_client)
            )
        )
        # the burst's failures are judged; the one that finds the bucket empty starts
        # the global lockout, and what comes after it waits
        assert statuses.count(401) >= burst + 1
        assert 429 in statuses
        wait = await retry_after(newcomer, base, TOKEN, nonces[-1])
        await asyncio.sleep(wait + 0.1)
        assert await attempt(newcomer, base, TOKEN, nonces[-1]) == 303


def test_clients_are_keyed_by_address_and_ipv6_by_its_64() -> None:
    assert loginlimit.client_of("192.0.2.7") == "192.0.2.7"
    assert loginlimit.client_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert loginlimit.client_of("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert loginlimit.client_of("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert loginlimit.client_of(None) == "unknown"


def test_the_lockout_is_capped_and_forgotten_after_success() -> None:
    throttle = loginlimit.LoginThrottle(global_rate=1000, global_burst=1000)
    now = 1000.0
    lockouts = [throttle.failed("c", now) for _ in range(30)]
    assert lockouts[: loginlimit.FREE_FAILURES - 1] == [0.0] * (loginlimit.FREE_FAILURES - 1)
    assert lockouts[loginlimit.FREE_FAILURES - 1 : loginlimit.FREE_FAILURES + 2] == [1, 2, 4]
    assert max(lockouts) == loginlimit.MAX_LOCKOUT
    assert throttle.check("c", now) == loginlimit.MAX_LOCKOUT
    throttle.succeeded("c")
    assert throttle.check("c", now) == 0
    # memory is bounded
    small = loginlimit.LoginThrottle(max_clients=3, global_rate=1000, global_burst=1000)
    for n in range(10):
        small.failed(f"c{n}", now)
    assert len(small) <= 3
