"""Helpers for the tests: signing, settings, polling, a loopback webhook receiver,
the gateway and a sink running in the test's own event loop against a real bus, and the
full lookup stack (gateway and providers against loopback upstreams)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from aiohttp import web
from dnsserver import ZoneServer
from fakes.abuseipdb import FakeAbuseIpdb
from fakes.dnszones import cymru_zone, spamhaus_zone
from fakes.internetdb import FakeInternetDb
from fakes.malwarebazaar import FakeMalwareBazaar
from fakes.otx import FakeOtx
from fakes.rdap import FakeRdapServer, domain_object, network_object
from fakes.threatfox import FakeThreatFox
from fakes.torlist import FakeTorList, record
from fakes.urlhaus import FakeUrlhaus
from fakes.virustotal import FakeVirusTotal
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from services import registry
from services.gateway import state as gateway_state
from shared.bus import messages
from shared.core import settings as config
from shared.core.natsserver import NatsServer, free_port
from shared.relay import schemas, streams

FIXTURES = Path(__file__).parent / "fixtures"
SQREEN_SECRET = "test-sqreen-secret-0123456789"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LOOKOUT = str(Path(sys.executable).parent / "lookout")  # the installed command
# The fake services the targets reach listen on loopback (see shared.core.ssrf).
LOOPBACK_ALLOW = "127.0.0.0/8,::1"


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

# Free text naming the three indicators of the lookup stack: a mail address with a good
# posture, a look-alike login URL flagged by engines, and a Tor exit with a bad reputation.
LOOKUP_TEXT = """Reported by the helpdesk: mail from billing[at]shop-example[.]com linking to
hxxps://login-shop-example[.]com/verify and a beacon to 185.220.101[.]50."""
EMAIL = "billing@shop-example.com"
LOGIN = "https://login-shop-example.com/verify"
IP = "185.220.101.50"
# A malware sample MalwareBazaar knows (its documentation's get_info example).
SAMPLE_SHA256 = "094fd325049b8a9cf6d3e5ef2a6d4cc6a567d7d49c35f8bb8dd9e3c6acf3d78d"


def reputation_zone() -> str:
    """Team Cymru's and Spamhaus' zones as documented (tests/fakes/dnszones.py), with the
    lookup stack's indicators in them: the Tor exit's network (an origin answer in Team
    Cymru's format, AS64501 as in :func:`rdap_records`), the exit in XBL, the look-alike
    login domain in DBL as phishing."""
    origin = "64501 | 185.220.101.0/24 | DE | ripencc | 2017-06-01"
    name = "64501 | DE | ripencc | 2017-06-01 | TOR-EXIT-NET - Example Exit Network, DE"
    return (
        cymru_zone()
        + f'50.101.220.185.origin.asn.cymru.com. IN TXT "{origin}"\n'
        + f'AS64501.asn.cymru.com. IN TXT "{name}"\n'
        + spamhaus_zone(listed={IP: "127.0.0.4", "login-shop-example.com": "127.0.1.4"})
    )


def sqreen_fixture(name: str) -> bytes:
    return (FIXTURES / "sqreen" / name).read_bytes()


def sqreen_sign(body: bytes, secret: str = SQREEN_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def run_lookout(
    env: Mapping[str, str], *args: str, stdin: bytes = b""
) -> tuple[int, str, str]:
    """``lookout *args`` with exactly ``env`` as its environment: its exit status, standard
    output and standard error (at most 60 s)."""
    proc = await asyncio.create_subprocess_exec(
        LOOKOUT,
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


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
        "LOOKOUT_OUTBOUND_ALLOW": LOOPBACK_ALLOW,
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
    from services.gateway.app import RUNNER_OPTIONS, create_app

    runner = web.AppRunner(app if app is not None else create_app(settings), **RUNNER_OPTIONS)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    base = f"http://{settings.http_host}:{settings.http_port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_for(lambda: gateway_ready(session, base))
        yield base
    finally:
        await runner.cleanup()


async def gateway_ready(session: aiohttp.ClientSession, base: str) -> bool:
    """Whether the gateway at ``base`` answers ``/readyz`` with 200 (not while it starts)."""
    try:
        async with session.get(f"{base}/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


@contextlib.asynccontextmanager
async def running_task(
    main: Callable[[asyncio.Event], Awaitable[None]],
) -> AsyncIterator[asyncio.Task[None]]:
    """``main(stop)`` as a task in this event loop for the block; then ``stop`` is set and
    the task awaited (30 s at most)."""
    stop = asyncio.Event()
    task = asyncio.create_task(main(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def running_service(settings: config.Settings, name: str) -> AsyncIterator[None]:
    """One service (e.g. ``sink-ops-http``, ``provider-dns``) as a task in this event loop:
    the real runner, target or provider, on the real bus."""
    from services.registry import service_main

    async with running_task(service_main(settings, name)):
        yield


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


async def provider_job(
    settings: config.Settings, provider: str, indicators: list[str], within: float = 20.0
) -> dict[str, dict[str, Any]]:
    """A gateway and ``provider``'s worker on the bus: a job of ``indicators`` asked of that
    provider only, waited for; its results by indicator."""
    async with running_gateway(settings) as base, running_provider(settings, provider):
        status, created = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"indicators": indicators, "providers": [provider]},
        )
        assert status == 202, created
        job = await wait_job(base, created["id"], within=within)
    return {r["indicator"]: r for r in job["results"]}


def http_target(
    url: str,
    extra: str = "",
    name: str = "ops-http",
    *,
    timeout: float = 2,
    max_attempts: int = 4,
) -> str:
    """A TOML ``[[targets]]`` table for an http target with small retry settings."""
    return f"""
[[targets]]
name = "{name}"
type = "http"
url = "{url}"
secret = "{WHSEC}"
timeout = {timeout}
retry = {{ max_attempts = {max_attempts}, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }}
{extra}
"""


async def dead_letters(url: str, target: str) -> list[schemas.DeadLetter]:
    """Every dead letter of ``target`` in the DEADLETTERS stream."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(streams.DEADLETTERS)
        out = []
        for seq in range(info.state.first_seq, info.state.first_seq + info.state.messages):
            msg = await js.get_msg(streams.DEADLETTERS, seq)
            if msg.subject == f"deadletter.{target}" and msg.data is not None:
                out.append(schemas.decode_deadletter(msg.data))
        return out
    finally:
        await nc.close()


def dead_lettered(url: str, target: str, count: int = 1) -> Callable[[], Awaitable[bool]]:
    """For :func:`wait_for`: whether ``target`` has exactly ``count`` dead letters."""

    async def check() -> bool:
        return len(await dead_letters(url, target)) == count

    return check


async def pending(url: str, target: str) -> tuple[int, int]:
    """(messages not yet delivered, messages delivered but not yet acknowledged)."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(
            streams.NOTIFICATIONS, streams.sink_durable(target)
        )
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
            await gateway_state.provision(js, settings)
        yield js
    finally:
        await nc.close()


async def kv_keys(kv: KeyValue) -> list[str]:
    """The keys of a KV bucket; none when it is empty."""
    try:
        return await kv.keys()
    except NoKeysError:
        return []


async def publish_alerts(
    js: JetStreamContext,
    n: int,
    prefix: str = "scan",
    data: Callable[[int], dict[str, Any]] | None = None,
) -> list[str]:
    """``n`` alerts from a non-Sqreen source, as any NATS publisher would send them, with
    the ids ``<prefix>-<i>``; ``data(i)`` is the message of the i-th. Returns the ids."""
    ids = []
    for i in range(n):
        message = data(i) if data is not None else {"risk": 50, "description": f"probe {i}"}
        note = schemas.Notification(
            id=f"{prefix}-{i}",
            type="http_scan",
            source="scanner",
            timestamp=f"2026-11-21T10:00:{i % 60:02d}Z",
            data=msgspec.Raw(msgspec.json.encode(message)),
        )
        await js.publish(note.subject, messages.encode(note), headers={"Nats-Msg-Id": note.msg_id})
        ids.append(note.id)
    return ids


async def login_nonce(session: aiohttp.ClientSession, base: str) -> str:
    """The form token of the login page ``session`` is shown (it sets the login cookie)."""
    async with session.get(f"{base}/login") as response:
        nonce = re.search(r'name="csrf" value="([^"]+)"', await response.text())
    assert nonce is not None
    return nonce[1]


async def ui_login(session: aiohttp.ClientSession, base: str, token: str, next: str = "/") -> str:
    """Log in through the web UI's form as a browser does (``session`` must keep the cookies
    of 127.0.0.1); returns the CSRF token of the page ``next`` it is sent on to."""
    async with session.post(
        f"{base}/login",
        data={"token": token, "csrf": await login_nonce(session, base), "next": next},
        headers={"Origin": base},
        allow_redirects=False,
    ) as response:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == next
    async with session.get(f"{base}{next}") as response:
        assert response.status == 200
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', await response.text())
    assert csrf is not None, "not logged in: the login page was served"
    return csrf[1]


def rdap_records() -> dict[str, Any]:
    """The RDAP side of the lookup stack: an established shop domain, a three-day-old
    look-alike, and the Tor exit's network."""
    young = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "shop-example.com": domain_object("shop-example.com", registrar="Good Registrar"),
        "login-shop-example.com": domain_object("login-shop-example.com", registered=young),
        "185.220.101.0/24": network_object(
            "185.220.101.0", "185.220.101.255", name="TOR-EXIT-NET", country="DE", origin_as=64501
        ),
    }


@contextlib.asynccontextmanager
async def lookup_stack(
    nats_server: NatsServer,
    tmp_path: Path,
    providers: tuple[str, ...] = registry.PROVIDERS,
    zone: str = SHOP_ZONE,
    rdap: dict[str, Any] | None = None,
    toml: str = "[providers.virustotal.quota]\nper_minute = 100\n",
    **env: str,
) -> AsyncIterator[str]:
    """The gateway and provider services on the bus, against loopback DNS (``zone``, with
    :func:`reputation_zone`), RDAP (``rdap``, else :func:`rdap_records`), VirusTotal,
    AbuseIPDB, URLhaus (the login URL, online), ThreatFox (the address, a C2), MalwareBazaar
    (:data:`SAMPLE_SHA256`), OTX (the address, 2 pulses), InternetDB and the Tor exit list
    (the stack's address an exit), with the settings file ``toml``; yields the gateway's
    base URL once the exit list is in the bus."""
    async with contextlib.AsyncExitStack() as stack:
        dns = stack.enter_context(ZoneServer(zone + reputation_zone()))
        whois = await stack.enter_async_context(
            FakeRdapServer(rdap if rdap is not None else rdap_records())
        )
        vt = await stack.enter_async_context(
            FakeVirusTotal(
                {
                    "shop-example.com": FakeVirusTotal.stats(harmless=70, undetected=15),
                    LOGIN: FakeVirusTotal.stats(malicious=9, harmless=40),
                    IP: FakeVirusTotal.stats(malicious=2, harmless=50),
                }
            )
        )
        abuse = await stack.enter_async_context(
            FakeAbuseIpdb({IP: {"abuseConfidenceScore": 100, "totalReports": 812, "isTor": True}})
        )
        urlhaus = await stack.enter_async_context(
            FakeUrlhaus(urls={LOGIN: {**FakeUrlhaus.fixture("url_ok.json"), "url": LOGIN}})
        )
        c2 = FakeThreatFox.fixture("search_ioc_docs.json")
        c2["data"] = [{**c2["data"][0], "ioc": f"{IP}:443"}]
        threatfox = await stack.enter_async_context(FakeThreatFox(iocs={IP: c2}))
        bazaar = await stack.enter_async_context(
            FakeMalwareBazaar(FakeMalwareBazaar.fixture("get_info_ok.json")["data"])
        )
        otx = await stack.enter_async_context(
            FakeOtx({("IPv4", IP): {**FakeOtx.fixture("ipv4_general.json"), "indicator": IP}})
        )
        idb = await stack.enter_async_context(
            FakeInternetDb({IP: {"tags": ["tor", "self-signed"], "vulns": []}})
        )
        tor = await stack.enter_async_context(FakeTorList(record(IP)))
        settings = make_settings(
            tmp_path,
            nats_server.url,
            toml,
            **{  # env may replace any of these (LOOKOUT_RDAP_URL: an unreachable one…)
                "LOOKOUT_DNS_NAMESERVERS": dns.nameserver,
                "LOOKOUT_RDAP_URL": whois.url,
                "VIRUSTOTAL_API_KEY": vt.api_key,
                "VIRUSTOTAL_URL": vt.base_url,
                "ABUSEIPDB_API_KEY": abuse.api_key,
                "ABUSEIPDB_URL": abuse.base_url,
                "ABUSECH_API_KEY": urlhaus.api_key,
                "URLHAUS_URL": urlhaus.base_url,
                "THREATFOX_URL": threatfox.base_url,
                "MALWAREBAZAAR_URL": bazaar.base_url,
                "OTX_API_KEY": otx.api_key,
                "OTX_URL": otx.base_url,
                "INTERNETDB_URL": idb.base_url,
                "TOR_EXIT_LIST_URL": tor.url,
                **env,
            },
        )
        base = await stack.enter_async_context(running_gateway(settings))
        for name in providers:
            await stack.enter_async_context(running_provider(settings, name))
        if "tor" in providers:  # its exit list in the bus before the first lookup
            await wait_for(lambda: tor_list_loaded(nats_server.url))
        yield base


async def tor_list_loaded(url: str) -> bool:
    """Whether the tor provider's exit list is in the bus (its first download done)."""
    from services.providers.tor import store

    async with jetstream(url) as js:
        try:
            kv = await js.key_value(store.BUCKET)
        except BucketNotFoundError:
            return False
        return await store.meta(kv) is not None
