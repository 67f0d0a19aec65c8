"""The SSRF guard on outbound targets: real nats-server, gateway, sinks and a loopback
receiver that must never be reached unless ``LOOKOUT_OUTBOUND_ALLOW`` lets it."""

from __future__ import annotations

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
from shared.core import settings as config
from shared.core import ssrf
from shared.core.errors import ConfigError
from shared.core.natsserver import NatsServer
from shared.relay import schemas
from shared.relay.config import relay
from shared.relay.target import Delivery, PermanentError

# ------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback address (127.0.0.0/8)"),
        ("127.255.0.9", "loopback address (127.0.0.0/8)"),
        ("10.1.2.3", "private address (10.0.0.0/8)"),
        ("172.16.0.1", "private address (172.16.0.0/12)"),
        ("192.168.1.1", "private address (192.168.0.0/16)"),
        ("169.254.169.254", "link-local address (cloud metadata service)"),
        ("169.254.1.1", "link-local address (169.254.0.0/16)"),
        ("0.0.0.0", "unspecified address"),
        ("224.0.0.1", "multicast address (224.0.0.0/4)"),
        ("240.0.0.1", "reserved address (240.0.0.0/4)"),
        ("100.64.0.1", "shared (carrier-grade NAT) address (100.64.0.0/10)"),
        ("::1", "loopback address"),
        ("::", "unspecified address"),
        ("fe80::1", "link-local address (fe80::/10)"),
        ("fc00::1", "unique-local address (fc00::/7)"),
        ("fd12:3456::1", "unique-local address (fc00::/7)"),
        ("ff02::1", "multicast address (ff00::/8)"),
        ("::ffff:127.0.0.1", "IPv4 127.0.0.1 inside IPv6, a loopback address (127.0.0.0/8)"),
        ("::ffff:10.0.0.1", "IPv4 10.0.0.1 inside IPv6, a private address (10.0.0.0/8)"),
        (
            "::ffff:169.254.169.254",
            "IPv4 169.254.169.254 inside IPv6, a link-local address (cloud metadata service)",
        ),
        ("2002:7f00:1::", "IPv4 127.0.0.1 inside IPv6, a loopback address (127.0.0.0/8)"),  # 6to4
        (
            "64:ff9b::a9fe:a9fe",  # NAT64, RFC 6052 well-known prefix
            "IPv4 169.254.169.254 inside IPv6, a link-local address (cloud metadata service)",
        ),
    ],
)
def test_forbidden_addresses_say_why(address: str, kind: str) -> None:
    refused = ssrf.refusal(address)
    assert refused is not None
    assert refused.startswith(f"refused to connect to {address}: {kind};")


# Every range of the IANA IPv4 and IPv6 Special-Purpose Address Registries that is not
# globally reachable (https://www.iana.org/assignments/iana-ipv4-special-registry/,
# https://www.iana.org/assignments/iana-ipv6-special-registry/), probed at a few
# addresses each; Python 3.11's is_private/is_global let the marked ones through.
SPECIAL_PURPOSE = [
    "0.0.0.1",
    "0.255.255.255",
    "10.255.255.255",
    "100.127.255.254",
    "127.0.0.2",
    "169.254.0.1",
    "172.31.255.255",
    "192.0.0.1",  # IETF protocol assignments: 192.0.0.0/24
    "192.0.0.8",
    "192.0.0.9",  # PCP anycast: refused with the rest of the /24
    "192.0.0.170",
    "192.0.0.192",  # a cloud metadata address: is_global on Python 3.11
    "192.0.0.255",
    "192.0.2.10",
    "192.88.99.1",  # deprecated 6to4 relay anycast: is_global on Python 3.11
    "192.168.255.255",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.251",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.254",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:0.0.0.0",
    "::ffff:192.0.0.192",
    "::ffff:192.88.99.1",
    "64:ff9b::c000:c0",  # NAT64 of 192.0.0.192
    "64:ff9b::a00:1",
    "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215), /96 layout: 10.0.0.1
    "64:ff9b:1:0:a:0:100:0",  # local-use NAT64, /64 layout: 10.0.0.1
    "64:ff9b:1:7f00:1::",  # local-use NAT64, /48 layout: 127.0.0.1
    "100::1",
    "100::ffff:ffff:ffff:ffff",
    "2001::1",  # Teredo
    "2001:2::1",  # benchmarking
    "2001:10::1",  # deprecated ORCHID
    "2001:db8::1",
    "2001:db8:ffff::1",
    "2002:c000:c0::",  # 6to4 of 192.0.0.192
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "3fff::1",  # documentation, RFC 9637
    "5f00::1",  # SRv6 SIDs, RFC 9602
    "fc00::1",
    "fdff:ffff::1",
    "fe80::1",
    "febf::1",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
]


@pytest.mark.parametrize("address", SPECIAL_PURPOSE)
def test_every_special_purpose_range_is_refused(address: str) -> None:
    refused = ssrf.refusal(address)
    assert refused is not None, address
    assert "LOOKOUT_OUTBOUND_ALLOW" in refused


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "192.0.1.1",  # just outside 192.0.0.0/24
        "192.31.196.1",  # AS112-v4: globally reachable by the registry
        "198.20.0.1",  # just outside 198.18.0.0/15
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "2002:808:808::",  # 6to4 of a public address
        "64:ff9b::808:808",  # NAT64 of a public address
        "64:ff9b:1::808:808",  # local-use NAT64 (/96 layout) of a public address
        "2001:4:112::1",  # AS112-v6: a globally reachable exception inside 2001::/23
        "2001:1::1",  # PCP anycast: idem
        "2001:20::1",  # ORCHIDv2: idem
        "2620:4f:8000::1",  # AS112 direct delegation
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert ssrf.refusal(address) is None
    assert ssrf.refusal(address, host="example.com") is None


def test_the_allow_list_lifts_the_special_ranges_too() -> None:
    allow = config.load({"LOOKOUT_OUTBOUND_ALLOW": "192.0.0.0/24,2001:db8::/32"}).outbound_allow
    assert ssrf.refusal("192.0.0.192", allow) is None
    assert ssrf.refusal("::ffff:192.0.0.192", allow) is None
    assert ssrf.refusal("2001:db8::5", allow) is None
    assert ssrf.refusal("192.0.2.1", allow) is not None


def test_a_malformed_address_is_refused() -> None:
    refused = ssrf.refusal("not-an-address", host="h.example")
    assert refused is not None
    assert "is not an IP address" in refused


def test_allow_list_covers_the_address_and_the_ipv4_inside_ipv6() -> None:
    allow = config.load({"LOOKOUT_OUTBOUND_ALLOW": "127.0.0.0/8, 10.1.0.0/16,::1"}).outbound_allow
    assert [str(n) for n in allow] == ["127.0.0.0/8", "10.1.0.0/16", "::1/128"]
    assert ssrf.refusal("127.0.0.1", allow, host="localhost") is None
    assert ssrf.refusal("::1", allow, host="localhost") is None
    assert ssrf.refusal("::ffff:127.0.0.1", allow, host="x") is None
    assert ssrf.refusal("10.1.200.3", allow, host="x") is None
    refused = ssrf.refusal("10.2.0.1", allow, host="intranet.example")
    assert refused is not None
    assert "intranet.example (10.2.0.1)" in refused
    assert "private address" in refused
    assert "LOOKOUT_OUTBOUND_ALLOW" in refused
    metadata = ssrf.refusal("169.254.169.254", allow, host="169.254.169.254")
    assert metadata is not None
    assert "cloud metadata" in metadata


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "localhost", "10.0.0.0/8,,nope", "1.2.3.4/x"])
def test_a_malformed_allow_list_is_a_config_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="LOOKOUT_OUTBOUND_ALLOW"):
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
        target = build_target(relay(settings).target(name), settings)
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


async def test_a_target_at_a_special_purpose_address_python_calls_global_is_refused(
    tmp_path: Path,
) -> None:
    """``192.0.0.192`` (a cloud metadata address in 192.0.0.0/24) is ``is_global`` on
    Python 3.11: the IANA table refuses it before any connection is tried."""
    toml = http_target("http://192.0.0.192:80/hook")
    settings = make_settings(tmp_path, "nats://127.0.0.1:4222", toml, LOOKOUT_OUTBOUND_ALLOW="")
    target = build_target(relay(settings).target("ops-http"), settings)
    await target.open()
    note = a_notification()
    try:
        with pytest.raises(PermanentError) as caught:
            await target.deliver(Delivery(note, note.subject, 1))
    finally:
        await target.close()
    assert "refused to connect to 192.0.0.192: IETF protocol assignment address" in str(
        caught.value
    )
