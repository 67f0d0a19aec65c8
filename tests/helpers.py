"""Helpers for the tests: signing, settings, polling, a loopback webhook receiver,
and the gateway and a sink running in the test's own event loop against a real bus."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import nats
from aiohttp import web
from nats.js import JetStreamContext

from shared import bus, config, schemas
from shared.natsserver import free_port

FIXTURES = Path(__file__).parent / "fixtures"
SQREEN_SECRET = "test-sqreen-secret-0123456789"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# A mail domain with SPF and DMARC, the provider its SPF includes, and a look-alike login
# domain with "+all": the DNS side of the lookup tests and the browser tests.
SHOP_ZONE = """
$ORIGIN shop-example.com.
$TTL 600
@        IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@        IN NS  ns1
@        IN A   192.0.2.10
@        IN MX  10 mail
@        IN TXT "v=spf1 mx include:_spf.mailer-example.net -all"
mail     IN A   192.0.2.25
_dmarc   IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@shop-example.com"
$ORIGIN mailer-example.net.
@        IN SOA ns1 hostmaster 1 7200 3600 1209600 300
_spf     IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
$ORIGIN login-shop-example.com.
@        IN SOA ns1 hostmaster 1 7200 3600 1209600 300
@        IN A   185.220.101.50
@        IN TXT "v=spf1 +all"
"""


def sqreen_fixture(name: str) -> bytes:
    return (FIXTURES / "sqreen" / name).read_bytes()


def sqreen_sign(body: bytes, secret: str = SQREEN_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], within: float = 15.0, every: float = 0.05
) -> None:
    """Poll ``predicate`` until true; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)


def make_settings(
    tmp_path: Path,
    nats_url: str,
    toml: str | None = None,
    **env: str,
) -> config.Settings:
    values = {
        "NATS_URL": nats_url,
        "SQREEN_WEBHOOK_SECRET": SQREEN_SECRET,
        "LOOKOUT_HTTP_PORT": str(free_port()),
        "LOOKOUT_DATA_DIR": str(tmp_path / "data"),
        "LOOKOUT_PUBLISH_TIMEOUT": "2",
        # The fake services the targets reach listen on loopback (see shared.ssrf).
        "LOOKOUT_OUTBOUND_ALLOW": "127.0.0.0/8,::1",
        **env,
    }
    if toml is not None:
        path = tmp_path / "lookout.toml"
        path.write_text(toml)
        values["LOOKOUT_CONFIG"] = str(path)
    return config.load(values)


class Receiver:
    """A loopback HTTP server that records what it receives and answers as told."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.default = (200, {})
        self.delay = 0.0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        status, headers = self.script.pop(0) if self.script else self.default
        return web.Response(status=status, text="ok" if status < 300 else "nope", headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def running_gateway(
    settings: config.Settings, app: web.Application | None = None
) -> AsyncIterator[str]:
    """The real gateway app (``app``, else one made from ``settings``) on a real port;
    yields its base URL once it is ready."""
    from services.gateway.app import create_app

    runner = web.AppRunner(app if app is not None else create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    base = f"http://{settings.http_host}:{settings.http_port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                async with session.get(f"{base}/readyz") as response:
                    return response.status == 200

            await wait_for(ready)
        yield base
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_service(settings: config.Settings, name: str) -> AsyncIterator[None]:
    """One service (e.g. ``sink-ops-http``, ``provider-dns``) as a task in this event loop:
    the real runner, target or provider, on the real bus."""
    from services.registry import service_main

    stop = asyncio.Event()
    task = asyncio.create_task(service_main(settings, name)(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def running_sink(settings: config.Settings, name: str) -> AbstractAsyncContextManager[None]:
    return running_service(settings, f"sink-{name}")


def running_provider(settings: config.Settings, name: str) -> AbstractAsyncContextManager[None]:
    return running_service(settings, f"provider-{name}")


async def post_webhook(
    base: str, body: bytes, signature: str | None = "sign", **headers: str
) -> tuple[int, dict[str, Any]]:
    all_headers = dict(headers)
    if signature == "sign":
        all_headers["X-Sqreen-Integrity"] = sqreen_sign(body)
    elif signature is not None:
        all_headers["X-Sqreen-Integrity"] = signature
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/webhooks/sqreen", data=body, headers=all_headers) as response,
    ):
        return response.status, await response.json()


async def api(method: str, url: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def wait_job(base: str, job_id: str, within: float = 20.0, token: str | None = None) -> Any:
    """Poll a lookup job until nothing is pending; return its JSON."""
    result: dict[str, Any] = {}

    async def complete() -> bool:
        nonlocal result
        status, result = await api("GET", f"{base}/api/v1/lookups/{job_id}", token)
        return status == 200 and bool(result["complete"])

    await wait_for(complete, within=within, every=0.1)
    return result


def http_target(url: str, extra: str = "", name: str = "ops-http") -> str:
    """A TOML ``[[targets]]`` table for an http target with small retry settings."""
    return f"""
[[targets]]
name = "{name}"
type = "http"
url = "{url}"
secret = "{WHSEC}"
timeout = 2
retry = {{ max_attempts = 4, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }}
{extra}
"""


async def dead_letters(url: str, target: str) -> list[schemas.DeadLetter]:
    """Every dead letter of ``target`` in the DEADLETTERS stream."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(bus.DEADLETTERS)
        out = []
        for seq in range(info.state.first_seq, info.state.first_seq + info.state.messages):
            msg = await js.get_msg(bus.DEADLETTERS, seq)
            if msg.subject == f"deadletter.{target}" and msg.data is not None:
                out.append(schemas.decode_deadletter(msg.data))
        return out
    finally:
        await nc.close()


async def pending(url: str, target: str) -> tuple[int, int]:
    """(messages not yet delivered, messages delivered but not yet acknowledged)."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(bus.NOTIFICATIONS, bus.sink_durable(target))
        return info.num_pending, info.num_ack_pending
    finally:
        await nc.close()


async def settled(url: str, *targets: str) -> bool:
    """Nothing left to deliver and nothing awaiting an acknowledgement, for each target."""
    for target in targets:
        if await pending(url, target) != (0, 0):
            return False
    return True


@contextlib.asynccontextmanager
async def jetstream(
    url: str, settings: config.Settings | None = None
) -> AsyncIterator[JetStreamContext]:
    """A JetStream context; with ``settings``, everything provisioned first (as a sink does
    on start), so nothing published races the sink's durable consumer."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        if settings is not None:
            await bus.provision(js, settings)
        yield js
    finally:
        await nc.close()
