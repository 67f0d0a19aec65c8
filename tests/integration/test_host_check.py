"""The ``Host`` check against DNS rebinding: the real gateway on a real nats-server, asked
with the ``Host`` headers a rebound page's requests carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import make_settings, running_gateway, sqreen_fixture, sqreen_sign

from services.gateway import hosts
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.core.natsserver import NatsServer

TOKEN = "tok-host-check-0123456789"
BROWSER_READABLE = [
    "/",
    "/notifications",
    "/static/app.css",
    "/api/docs",
    "/api/openapi.json",
    "/api/v1/notifications",
    "/api/v1/deadletters",
]


async def get(url: str, host: str | None, **headers: str) -> tuple[int, str, str]:
    """(status, content type, body) of ``GET url`` sent with ``Host: host``."""
    if host is not None:
        headers["Host"] = host
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, response.content_type, await response.text()


@pytest.mark.parametrize("path", BROWSER_READABLE)
async def test_open_mode_refuses_a_foreign_host_on_what_a_browser_can_read(
    nats_server: NatsServer, tmp_path: Path, path: str
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    assert not settings.api_tokens  # open loopback mode
    async with running_gateway(settings) as base:
        port = settings.http_port
        status, kind, body = await get(f"{base}{path}", f"rebind.attacker.example:{port}")
        assert status == 421
        assert "rebind.attacker.example" in body
        assert "DNS rebinding" in body
        if path.startswith("/api/v1/"):
            assert kind == "application/json"
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST."):
            status, _, _ = await get(f"{base}{path}", host)
            assert status == 200, (path, host)


async def test_machine_endpoints_and_the_webhook_are_not_checked(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The webhook is authenticated by its signature (and its hot path pays nothing);
    probes and scrapers call by address."""
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        foreign = "10.1.2.3:8080"
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await get(f"{base}{path}", foreign))[0] == 200
        body = sqreen_fixture("v2_security_event.json")
        headers: dict[str, Any] = {"Host": "sqreen-relay.example", "X-Sqreen-Integrity": ""}
        async with aiohttp.ClientSession() as session:
            headers["X-Sqreen-Integrity"] = sqreen_sign(body)
            async with session.post(
                f"{base}/webhooks/sqreen", data=body, headers=headers
            ) as response:
                assert response.status == 200


async def test_configured_names_are_accepted(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        LOOKOUT_ALLOWED_HOSTS="lookout.internal.example, 10.0.0.5,[2001:db8::5]",
    )
    async with running_gateway(settings) as base:
        for host in ("lookout.internal.example", "Lookout.Internal.Example:8443", "10.0.0.5:80"):
            assert (await get(f"{base}/api/v1/notifications", host))[0] == 200, host
        assert (await get(f"{base}/", "[2001:db8::5]:8080"))[0] == 200
        assert (await get(f"{base}/", "localhost:1"))[0] == 200  # loopback names always
        status, _, body = await get(f"{base}/", "other.internal.example")
        assert status == 421
        assert "lookout.internal.example" in body  # the reason lists what is accepted


async def test_token_mode_checks_only_when_configured(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    plain = make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS=TOKEN)
    async with running_gateway(plain) as base:
        status, _, _ = await get(f"{base}/api/v1/notifications", "anything.example", **auth)
        assert status == 200  # tokens guard the data; no Host list was asked for
    strict = make_settings(
        tmp_path, nats_server.url, LOOKOUT_API_TOKENS=TOKEN, LOOKOUT_ALLOWED_HOSTS="lookout.example"
    )
    async with running_gateway(strict) as base:
        status, _, _ = await get(f"{base}/api/v1/notifications", "anything.example", **auth)
        assert status == 421
        status, _, _ = await get(f"{base}/api/v1/notifications", "lookout.example", **auth)
        assert status == 200


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("localhost:8080", "localhost"),
        ("LocalHost.:8080", "localhost"),
        ("[::1]:8080", "::1"),
        ("[0:0::1]", "::1"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1", None),
        ("[::1]x", None),
        ("host:port", None),
        (":8080", None),
        ("::1", None),  # IPv6 in Host must be bracketed
    ],
)
def test_host_names(header: str, name: str | None) -> None:
    assert hosts.host_name(header) == name


def test_refusal_of_every_loopback_form_and_none_other() -> None:
    assert hosts.refusal("127.8.9.10:1", frozenset()) is None
    assert hosts.refusal(None, frozenset()) is None  # HTTP/1.0: no browser
    assert hosts.refusal("localhost.attacker.example", frozenset()) is not None
    assert hosts.refusal("127.0.0.1.nip.io", frozenset()) is not None
    assert hosts.refusal("[::ffff:127.0.0.1]", frozenset()) is not None


@pytest.mark.parametrize("raw", ["https://lookout.example", "lookout.example:8080", "a b", "x/y"])
def test_a_malformed_allowed_host_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="LOOKOUT_ALLOWED_HOSTS"):
        config.load({"LOOKOUT_ALLOWED_HOSTS": raw})


def test_allowed_hosts_are_normalised() -> None:
    loaded = config.load({"LOOKOUT_ALLOWED_HOSTS": "Lookout.Example., [2001:DB8::0:5], 10.0.0.5"})
    assert loaded.allowed_hosts == ("lookout.example", "2001:db8::5", "10.0.0.5")
    assert config.load({}).allowed_hosts == ()
