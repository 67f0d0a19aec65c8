"""The SSRF guard on outbound targets: real nats-server, gateway, sinks and a loopback
receiver that must never be reached unless ``LOOKOUT_OUTBOUND_ALLOW`` lets it."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from fakes import LoopbackHttpFake
from helpers import (
    Receiver,
    dead_lettered,
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

from services.registry import build_target
from shared import config, schemas, ssrf
from shared.natsserver import NatsServer
from shared.targets import Delivery, PermanentError

# ------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local (cloud metadata service)"),
        ("169.254.1.1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "special-purpose (not globally routable)"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1 inside IPv6)"),
        (
            "::ffff:169.254.169.254",
            "link-local (cloud metadata service) (IPv4 169.254.169.254 inside IPv6)",
        ),
        ("2002:7f00:1::", "loopback (IPv4 127.0.0.1 inside IPv6)"),  # 6to4
        (
            "64:ff9b::a9fe:a9fe",
            "link-local (cloud metadata service) (IPv4 169.254.169.254 inside IPv6)",
        ),
    ],
)
def test_forbidden_addresses_are_classified(address: str, kind: str) -> None:
    assert ssrf.classify(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
)
def test_public_addresses_pass(address: str) -> None:
    assert ssrf.classify(ipaddress.ip_address(address)) is None
    assert ssrf.refusal("example.com", address, ()) is None


def test_allow_list_covers_the_address_and_the_ipv4_inside_ipv6() -> None:
    allow = config.load({"LOOKOUT_OUTBOUND_ALLOW": "127.0.0.0/8, 10.1.0.0/16,::1"}).outbound_allow
    assert [str(n) for n in allow] == ["127.0.0.0/8", "10.1.0.0/16", "::1/128"]
    assert ssrf.refusal("localhost", "127.0.0.1", allow) is None
    assert ssrf.refusal("localhost", "::1", allow) is None
    assert ssrf.refusal("x", "::ffff:127.0.0.1", allow) is None
    assert ssrf.refusal("x", "10.1.200.3", allow) is None
    refused = ssrf.refusal("intranet.example", "10.2.0.1", allow)
    assert refused is not None
    assert "intranet.example (10.2.0.1)" in refused
    assert "private address" in refused
    assert "LOOKOUT_OUTBOUND_ALLOW" in refused
    metadata = ssrf.refusal("169.254.169.254", "169.254.169.254", allow)
    assert metadata is not None
    assert "cloud metadata" in metadata


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "localhost", "10.0.0.0/8,,nope", "1.2.3.4/x"])
def test_a_malformed_allow_list_is_a_config_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(config.ConfigError, match="LOOKOUT_OUTBOUND_ALLOW"):
        config.load({"LOOKOUT_OUTBOUND_ALLOW": raw})


def test_no_allow_list_by_default() -> None:
    assert config.load({}).outbound_allow == ()


# ------------------------------------------------------------------ through the real sink


async def test_a_loopback_target_is_dead_lettered_and_never_reached(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, http_target(receiver.url), LOOKOUT_OUTBOUND_ALLOW=""
    )
    assert settings.outbound_allow == ()
    body = sqreen_fixture("v2_security_event.json")
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        status, answer = await post_webhook(base, body)
        assert status == 200
        await wait_for(dead_lettered(nats_server.url, "ops-http", len(answer["ids"])))
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    assert receiver.requests == []
    for letter in await dead_letters(nats_server.url, "ops-http"):
        assert letter.attempts == 1  # permanent: never retried
        assert "refused to connect to 127.0.0.1: loopback address" in letter.error
        assert "LOOKOUT_OUTBOUND_ALLOW" in letter.error


async def test_an_allow_listed_loopback_target_is_delivered(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, http_target(receiver.url), LOOKOUT_OUTBOUND_ALLOW="127.0.0.1"
    )
    body = sqreen_fixture("v2_security_event.json")
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        status, answer = await post_webhook(base, body)
        assert status == 200
        await wait_for(lambda: len(receiver.requests) == len(answer["ids"]))
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
    assert await dead_letters(nats_server.url, "ops-http") == []


async def test_a_name_that_resolves_to_loopback_is_refused(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    url = f"http://localhost:{receiver.port}/hook"
    settings = make_settings(tmp_path, nats_server.url, http_target(url), LOOKOUT_OUTBOUND_ALLOW="")
    body = sqreen_fixture("v2_security_event.json")
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        status, answer = await post_webhook(base, body)
        assert status == 200
        await wait_for(dead_lettered(nats_server.url, "ops-http", len(answer["ids"])))
    assert receiver.requests == []
    for letter in await dead_letters(nats_server.url, "ops-http"):
        assert letter.attempts == 1
        assert "refused to connect to localhost (" in letter.error
        assert "loopback address" in letter.error


# ------------------------------------------------------------------ every HTTP target type


class CatchAll(LoopbackHttpFake):
    """A loopback server that counts every request, whatever its path or method."""

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits += 1
        return web.Response(status=400, text="no")


@pytest.fixture
async def catch_all() -> AsyncIterator[CatchAll]:
    async with CatchAll() as server:
        yield server


def target_tables(base: str) -> dict[str, str]:
    return {
        "ops-http": http_target(f"{base}/hook"),
        "chat-slack": f'[[targets]]\nname = "chat-slack"\ntype = "slack"\n'
        f'webhook_url = "{base}/services/T0/B0/xyz"\n',
        "chat-teams": f'[[targets]]\nname = "chat-teams"\ntype = "teams"\n'
        f'webhook_url = "{base}/workflows/abc"\n',
        "chat-discord": f'[[targets]]\nname = "chat-discord"\ntype = "discord"\n'
        f'webhook_url = "{base}/api/webhooks/1/tok"\n',
        "pager": f'[[targets]]\nname = "pager"\ntype = "pagerduty"\n'
        f'routing_key = "{"a" * 32}"\napi_url = "{base}"\n',
        "phone": f'[[targets]]\nname = "phone"\ntype = "sms"\naccount_sid = "AC{"0" * 32}"\n'
        f'auth_token = "tok"\nsender = "+15005550006"\nto = ["+15005550001"]\n'
        f'api_url = "{base}"\n',
    }


def a_notification() -> schemas.Notification:
    message = {"message_type": "security_event", "message": {"risk_coefficient": 90}}
    return schemas.Notification(
        id="n-ssrf",
        type="security_event",
        source="sqreen",
        timestamp="2026-01-02T03:04:05.000Z",
        data=msgspec.Raw(json.dumps(message).encode()),
    )


@pytest.mark.parametrize(
    "name", ["ops-http", "chat-slack", "chat-teams", "chat-discord", "pager", "phone"]
)
async def test_every_http_target_type_is_guarded(
    tmp_path: Path, catch_all: CatchAll, name: str
) -> None:
    toml = target_tables(f"http://127.0.0.1:{catch_all.port}")[name]
    note = a_notification()
    for allow, reached in (("", False), ("127.0.0.0/8", True)):
        settings = make_settings(
            tmp_path, "nats://127.0.0.1:4222", toml, LOOKOUT_OUTBOUND_ALLOW=allow
        )
        target = build_target(settings.target(name), settings)
        await target.open()
        before = catch_all.hits
        try:
            # Refused: permanent (SMS wraps it per recipient), nothing reaches the server.
            # Allowed: the fake answers 400, permanent too, but it was reached.
            with pytest.raises(PermanentError) as caught:
                await target.deliver(Delivery(note, note.subject, 1))
            refused = "refused to connect to 127.0.0.1: loopback address" in str(caught.value)
            assert refused is not reached
            assert (catch_all.hits > before) is reached
        finally:
            await target.close()
