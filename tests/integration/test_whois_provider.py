"""The whois provider against a loopback RDAP server and a loopback WHOIS server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes.rdap import FakeRdapServer, domain_object, network_object
from fakes.whois_server import FakeWhoisServer

from services.providers.whois import WhoisProvider, build
from shared.core import settings as config
from shared.core.natsserver import free_port
from shared.lookups.provider import ProviderError
from shared.lookups.schemas import LookupRequest

WHOIS_EXAMPLE_ORG = """\
Domain Name: EXAMPLE.ORG
Registrar WHOIS Server: whois.registrar.example
Updated Date: 2023-01-02T03:04:05Z
Creation Date: 2001-02-03T04:05:06Z
Registry Expiry Date: 2031-02-03T04:05:06Z
Registrar: Whois Registrar Ltd
Domain Status: ok https://icann.org/epp#ok
Registrant Country: FR
Name Server: NS1.EXAMPLE.ORG
Name Server: NS2.EXAMPLE.ORG
"""

WHOIS_NETWORK = """\
inetnum:        203.0.113.0 - 203.0.113.255
netname:        DOC-NET-3
country:        AU
created:        2012-01-01T00:00:00Z

route:          203.0.113.0/24
origin:         AS64502
"""


def request(
    indicator: str,
    kind: str = "domain",
    *,
    host: str | None = None,
    registered_domain: str | None = None,
) -> LookupRequest:
    """A request shaped the way the gateway makes them (a domain is its own host)."""
    return LookupRequest(
        job_id="job-1",
        indicator=indicator,
        kind=kind,  # type: ignore[arg-type]
        host=host if host is not None or kind != "domain" else indicator,
        registered_domain=registered_domain,
    )


def closed_address() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
async def rdap_server() -> AsyncIterator[FakeRdapServer]:
    server = FakeRdapServer(
        {
            "example.com": domain_object("example.com"),
            "example.net": domain_object("example.net", country=None, registrar="Net Registrar"),
            "192.0.2.0/24": network_object("192.0.2.0", "192.0.2.255", cidr=("192.0.2.0", 24)),
            "2001:db8::/32": network_object(
                "2001:db8::",
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                name="EXAMPLE-V6",
                country="DE",
                origin_as=64510,
            ),
        }
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def whois_server() -> AsyncIterator[FakeWhoisServer]:
    server = FakeWhoisServer({"example.org": WHOIS_EXAMPLE_ORG, "203.0.113.5": WHOIS_NETWORK})
    await server.start()
    yield server
    await server.stop()


async def make_provider(
    tmp_path: Path,
    *,
    rdap: str | None,
    whois: str | None,
    timeout: float = 5.0,
    allow: str = "",
    referral_port: int | None = None,
) -> WhoisProvider:
    """The provider; ``allow`` is ``LOOKOUT_OUTBOUND_ALLOW``, ``referral_port`` stands for
    port 43 (the port the loopback servers that referrals name share)."""
    toml = tmp_path / "lookout.toml"
    toml.write_text(f"[providers.whois]\ntimeout = {timeout}\n")
    env = {"LOOKOUT_CONFIG": str(toml), "LOOKOUT_OUTBOUND_ALLOW": allow}
    if rdap is not None:
        env["LOOKOUT_RDAP_URL"] = rdap
    if whois is not None:
        env["LOOKOUT_WHOIS_SERVER"] = whois
    provider = build(config.load(env))
    if referral_port is not None:
        provider.referral_port = referral_port
    await provider.open()
    return provider


@pytest.fixture
async def provider(
    tmp_path: Path, rdap_server: FakeRdapServer, whois_server: FakeWhoisServer
) -> AsyncIterator[WhoisProvider]:
    p = await make_provider(tmp_path, rdap=rdap_server.url, whois=whois_server.address)
    yield p
    await p.close()


async def test_domain_via_rdap(provider: WhoisProvider, rdap_server: FakeRdapServer) -> None:
    answer = await provider.lookup(request("www.example.com", registered_domain="example.com"))
    assert answer.verdict == "unknown"
    assert answer.summary == "registered 2019-03-02, Example Registrar, Inc."
    data = answer.data
    assert data["registered"] is True
    assert data["source"] == "rdap"
    assert data["server"] == f"{rdap_server.url}/domain/example.com"
    assert data["domain"] == "example.com"
    assert data["created"] == "2019-03-02T10:00:00Z"
    assert data["updated"] == "2024-05-06T07:08:09Z"
    assert data["expires"] == "2030-03-02T10:00:00Z"
    assert data["registrar"] == "Example Registrar, Inc."
    assert data["registrant_country"] == "US"
    assert data["nameservers"] == ["ns1.example.net", "ns2.example.net"]
    assert data["abuse_email"] == "abuse@registrar.example"
    assert data["age_days"] > 365
    assert "rdap_error" not in data
    assert rdap_server.requests == ["/domain/example.com"]


async def test_url_and_email_use_the_registered_domain(
    provider: WhoisProvider, rdap_server: FakeRdapServer
) -> None:
    url = request(
        "https://login.example.net/x",
        "url",
        host="login.example.net",
        registered_domain="example.net",
    )
    email = request(
        "ceo@mail.example.com", "email", host="mail.example.com", registered_domain="example.com"
    )
    assert (await provider.lookup(url)).data["registrar"] == "Net Registrar"
    assert (await provider.lookup(email)).data["registrar"] == "Example Registrar, Inc."
    assert rdap_server.requests == ["/domain/example.net", "/domain/example.com"]


async def test_ipv4_via_rdap(provider: WhoisProvider, rdap_server: FakeRdapServer) -> None:
    answer = await provider.lookup(request("192.0.2.10", "ipv4"))
    assert answer.verdict == "unknown"
    assert answer.summary == "AS64500 EXAMPLE-NET, US"
    data = answer.data
    assert data["source"] == "rdap"
    assert data["network"] == "EXAMPLE-NET"
    assert data["handle"] == "NET-192-0-2-0-1"
    assert data["cidrs"] == ["192.0.2.0/24"]
    assert data["start_address"] == "192.0.2.0"
    assert data["end_address"] == "192.0.2.255"
    assert data["country"] == "US"
    assert data["asn"] == 64500
    assert data["organization"] == "Example Networks LLC"
    assert data["abuse_email"] == "noc@example.net"
    assert rdap_server.requests == ["/ip/192.0.2.10"]


async def test_ipv6_and_url_with_address_host(
    provider: WhoisProvider, rdap_server: FakeRdapServer
) -> None:
    answer = await provider.lookup(request("2001:db8::1", "ipv6"))
    assert answer.summary == "AS64510 EXAMPLE-V6, DE"
    assert answer.data["cidrs"] == ["2001:db8::/32"]
    url = await provider.lookup(request("http://192.0.2.7/a", "url", host="192.0.2.7"))
    assert url.data["network"] == "EXAMPLE-NET"
    assert rdap_server.requests == ["/ip/2001:db8::1", "/ip/192.0.2.7"]


async def test_young_domain_is_suspicious(
    provider: WhoisProvider, rdap_server: FakeRdapServer
) -> None:
    created = datetime.now(UTC) - timedelta(days=5, hours=1)
    rdap_server.records["fresh-login.com"] = domain_object(
        "fresh-login.com", registered=created.isoformat().replace("+00:00", "Z")
    )
    answer = await provider.lookup(request("fresh-login.com", registered_domain="fresh-login.com"))
    assert answer.verdict == "suspicious"
    assert answer.data["age_days"] == 5
    assert answer.summary == (
        f"newly registered {created:%Y-%m-%d} (5 days ago), Example Registrar, Inc."
    )


async def test_not_registered_via_rdap(
    provider: WhoisProvider, rdap_server: FakeRdapServer, whois_server: FakeWhoisServer
) -> None:
    answer = await provider.lookup(request("nosuch.com", registered_domain="nosuch.com"))
    assert answer.verdict == "unknown"
    assert answer.summary == "not registered"
    assert answer.data["registered"] is False
    assert answer.data["source"] == "rdap"
    assert answer.ttl is not None
    assert answer.ttl < provider.default_ttl
    assert whois_server.queries == []  # a 404 is an answer, not a reason to fall back


async def test_rdap_500_falls_back_to_whois(
    provider: WhoisProvider, rdap_server: FakeRdapServer, whois_server: FakeWhoisServer
) -> None:
    rdap_server.fail_status = 500
    answer = await provider.lookup(request("example.org", registered_domain="example.org"))
    assert rdap_server.requests == ["/domain/example.org"]
    assert whois_server.queries == ["example.org"]  # the configured server: no referral
    assert answer.verdict == "unknown"
    assert answer.summary == "registered 2001-02-03, Whois Registrar Ltd"
    data = answer.data
    assert data["source"] == "whois"
    assert data["server"] == whois_server.address
    assert "HTTP 500" in data["rdap_error"]
    assert data["registrant_country"] == "FR"
    assert data["nameservers"] == ["ns1.example.org", "ns2.example.org"]
    assert data["status"] == ["ok"]
    assert data["expires"] == "2031-02-03T04:05:06Z"

    missing = await provider.lookup(request("nosuch.org", registered_domain="nosuch.org"))
    assert missing.summary == "not registered"
    assert missing.data["registered"] is False
    assert missing.data["source"] == "whois"


async def test_rdap_down_falls_back_to_whois_for_addresses(
    tmp_path: Path, whois_server: FakeWhoisServer
) -> None:
    provider = await make_provider(
        tmp_path, rdap=f"http://{closed_address()}", whois=whois_server.address
    )
    try:
        answer = await provider.lookup(request("203.0.113.5", "ipv4"))
    finally:
        await provider.close()
    assert answer.summary == "AS64502 DOC-NET-3, AU"
    assert answer.data["source"] == "whois"
    assert "cannot connect" in answer.data["rdap_error"]
    assert answer.data["cidrs"] == ["203.0.113.0/24"]


async def test_tld_without_rdap_uses_whois(tmp_path: Path, whois_server: FakeWhoisServer) -> None:
    # No LOOKOUT_RDAP_URL: the shipped bootstrap has no RDAP service for .de, so no HTTP
    # request is made at all.
    whois_server.responses["example.de"] = "Domain: example.de\nNserver: ns1.example.de\n"
    provider = await make_provider(tmp_path, rdap=None, whois=whois_server.address)
    try:
        answer = await provider.lookup(request("example.de", registered_domain="example.de"))
    finally:
        await provider.close()
    assert answer.data["source"] == "whois"
    assert answer.data["rdap_error"] == "no RDAP service for .de"
    assert answer.data["nameservers"] == ["ns1.example.de"]
    assert answer.summary == "registered (no creation date)"


async def test_both_down_is_an_error_with_both_reasons(tmp_path: Path) -> None:
    whois = closed_address()
    provider = await make_provider(tmp_path, rdap=f"http://{closed_address()}", whois=whois)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as failure:
            await provider.lookup(request("example.com", registered_domain="example.com"))
    finally:
        await provider.close()
    assert time.monotonic() - started < 2.0
    # the cause first, once for both (a table cell shows it); where each was asked apart
    reason = str(failure.value)
    assert reason == "cannot connect: Connection refused (RDAP, WHOIS)"
    assert "127.0.0.1" not in reason
    rdap_attempt, whois_attempt = failure.value.data["attempts"]
    assert rdap_attempt["protocol"] == "rdap"
    assert rdap_attempt["upstream"].startswith("http://127.0.0.1:")
    assert rdap_attempt["upstream"].endswith("/domain/example.com")
    assert rdap_attempt["error"].startswith("cannot connect: ")
    assert whois_attempt["protocol"] == "whois"
    assert whois_attempt["upstream"] == whois
    assert whois_attempt["error"].startswith("cannot connect: ")


async def test_whois_answer_without_data_is_an_error(
    provider: WhoisProvider, rdap_server: FakeRdapServer, whois_server: FakeWhoisServer
) -> None:
    rdap_server.fail_status = 503
    whois_server.responses["example.org"] = "Query rate exceeded. Try again later.\n"
    with pytest.raises(ProviderError, match=r"HTTP 503.*without registration data"):
        await provider.lookup(request("example.org", registered_domain="example.org"))


async def test_slow_upstreams_are_bounded_by_the_timeout(
    tmp_path: Path, rdap_server: FakeRdapServer, whois_server: FakeWhoisServer
) -> None:
    rdap_server.delay = 30.0
    whois_server.hang = True
    provider = await make_provider(
        tmp_path, rdap=rdap_server.url, whois=whois_server.address, timeout=2.0
    )
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as failure:
            await provider.lookup(request("example.com", registered_domain="example.com"))
    finally:
        await provider.close()
    elapsed = time.monotonic() - started
    assert 0.8 < elapsed < 2.0  # within the provider timeout, so the reason is ours
    reason = str(failure.value)
    assert reason.startswith("timeout after "), reason
    assert "(RDAP)" in reason
    assert ", answer incomplete (WHOIS)" in reason
    assert [a["protocol"] for a in failure.value.data["attempts"]] == ["rdap", "whois"]
    assert whois_server.queries == ["example.com"]  # WHOIS still got its share of the time


async def test_slow_rdap_still_leaves_time_for_whois(
    tmp_path: Path, rdap_server: FakeRdapServer, whois_server: FakeWhoisServer
) -> None:
    rdap_server.delay = 30.0
    provider = await make_provider(
        tmp_path, rdap=rdap_server.url, whois=whois_server.address, timeout=2.0
    )
    try:
        answer = await provider.lookup(request("example.org", registered_domain="example.org"))
    finally:
        await provider.close()
    assert answer.data["source"] == "whois"
    assert answer.data["rdap_error"].startswith("timeout after ")
    [attempt] = answer.data["attempts"]
    assert attempt["upstream"] == f"{rdap_server.url}/domain/example.org"


async def test_cache_salt_names_the_upstreams(tmp_path: Path) -> None:
    default = build(config.load({}))
    custom = build(
        config.load(
            {
                "LOOKOUT_RDAP_URL": "http://127.0.0.1:9/rdap/",
                "LOOKOUT_WHOIS_SERVER": "127.0.0.1:4343",
            }
        )
    )
    assert default.cache_salt() == "parser=2|rdap=bootstrap|whois=referrals"
    assert custom.cache_salt() == "parser=2|rdap=http://127.0.0.1:9/rdap|whois=127.0.0.1:4343"
    assert default.name == "whois"
    assert default.default_ttl == 86400
    assert default.configured() is None


async def test_referrals_iana_registry_registrar(
    tmp_path: Path, rdap_server: FakeRdapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without LOOKOUT_WHOIS_SERVER: IANA's ``refer:`` names the registry, whose
    ``Registrar WHOIS Server:`` completes the answer (one referral, no more). The
    servers an answer names listen on one shared port, standing for port 43."""
    port = free_port()
    async with (
        FakeWhoisServer() as iana,
        FakeWhoisServer(host="127.0.0.2", port=port) as registry,
        FakeWhoisServer(host="127.0.0.3", port=port) as registrar,
        FakeWhoisServer(host="127.0.0.4", port=port) as beyond,
    ):
        iana.responses["example.org"] = (
            f"% IANA WHOIS server\n\nrefer:        {registry.address}\n\n"
            f"domain:       ORG\nwhois:        {registry.address}\n"
        )
        registry.responses["example.org"] = WHOIS_EXAMPLE_ORG.replace(
            "whois.registrar.example", registrar.address
        ).replace("Registrant Country: FR\n", "")
        registrar.responses["example.org"] = (
            f"Domain Name: example.org\nRegistrar WHOIS Server: {beyond.address}\n"
            "Registrant Country: ch\n"
        )
        monkeypatch.setattr("services.providers.whois.port43.IANA", iana.address)
        rdap_server.fail_status = 502
        provider = await make_provider(
            tmp_path, rdap=rdap_server.url, whois=None, allow="127.0.0.0/8", referral_port=port
        )
        try:
            answer = await provider.lookup(request("example.org", registered_domain="example.org"))
        finally:
            await provider.close()
    assert (iana.queries, registry.queries, registrar.queries) == (
        ["example.org"],
        ["example.org"],
        ["example.org"],
    )
    assert beyond.queries == []
    assert answer.data["server"] == registry.address
    assert answer.data["registrar"] == "Whois Registrar Ltd"
    assert answer.data["registrant_country"] == "CH"


async def test_referral_for_an_address(
    tmp_path: Path, rdap_server: FakeRdapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    async with FakeWhoisServer() as arin, FakeWhoisServer(host="127.0.0.2", port=port) as ripe:
        arin.responses["203.0.113.5"] = (
            "NetRange: 203.0.0.0 - 203.255.255.255\nNetName: APNIC-203\n"
            f"ReferralServer:  whois://{ripe.address}\n"
        )
        ripe.responses["203.0.113.5"] = WHOIS_NETWORK
        rdap_server.fail_status = 500
        provider = await make_provider(
            tmp_path, rdap=rdap_server.url, whois=None, allow="127.0.0.2", referral_port=port
        )
        monkeypatch.setattr(provider.bootstrap, "whois_server_for_address", lambda _: arin.address)
        try:
            answer = await provider.lookup(request("203.0.113.5", "ipv4"))
        finally:
            await provider.close()
    assert answer.summary == "AS64502 DOC-NET-3, AU"
    assert answer.data["server"] == ripe.address


async def test_unreachable_referral_keeps_the_registry_answer(
    tmp_path: Path, rdap_server: FakeRdapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    async with FakeWhoisServer() as iana, FakeWhoisServer(host="127.0.0.2", port=port) as registry:
        iana.responses["example.org"] = f"refer: {registry.address}\n"
        registry.responses["example.org"] = WHOIS_EXAMPLE_ORG.replace(
            "whois.registrar.example",
            f"127.0.0.3:{port}",  # nothing listens there
        )
        monkeypatch.setattr("services.providers.whois.port43.IANA", iana.address)
        rdap_server.fail_status = 500
        provider = await make_provider(
            tmp_path, rdap=rdap_server.url, whois=None, allow="127.0.0.0/8", referral_port=port
        )
        try:
            answer = await provider.lookup(request("example.org", registered_domain="example.org"))
        finally:
            await provider.close()
    assert answer.summary == "registered 2001-02-03, Whois Registrar Ltd"
    assert answer.data["registrant_country"] == "FR"
