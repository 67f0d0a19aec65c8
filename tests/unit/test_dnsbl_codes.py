"""The dnsbl provider against Spamhaus' documented answers (return codes, error codes, test
points), served by the loopback DNS server (tests/fixtures/dnsbl, tests/fakes/dnszones.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from dnsserver import ZoneServer
from fakes.dnszones import (
    dbl_name,
    error_address,
    error_name,
    spamhaus_codes,
    spamhaus_errors,
    spamhaus_zone,
    zen_address,
)

from services.providers.dnsbl import DnsblProvider, build
from services.providers.dnsbl.codes import DBL, ERRORS, ZEN
from shared.core.errors import ConfigError
from shared.core.settings import load
from shared.lookups.provider import ProviderError
from shared.lookups.schemas import LookupRequest

DQS_KEY = "abcdefghijklmnopqrstuvwxyz"  # 26 characters, as Spamhaus issues them


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    zones = ("zen.spamhaus.org", "dbl.spamhaus.org")
    dqs = (f"{DQS_KEY}.zen.dq.spamhaus.net", f"{DQS_KEY}.dbl.dq.spamhaus.net")
    with ZoneServer(spamhaus_zone(zones) + spamhaus_zone(dqs)) as zone_server:
        yield zone_server


def settings_for(
    server: ZoneServer, toml: str = "", tmp: Path | None = None, **env: str
) -> dict[str, str]:
    values = {"LOOKOUT_DNS_NAMESERVERS": server.nameserver, "LOOKOUT_DNS_TIMEOUT": "0.5", **env}
    if toml and tmp is not None:
        path = tmp / "lookout.toml"
        path.write_text(toml)
        values["LOOKOUT_CONFIG"] = str(path)
    return values


@pytest.fixture
async def provider(server: ZoneServer) -> AsyncIterator[DnsblProvider]:
    dnsbl = build(load(settings_for(server)))
    yield dnsbl
    await dnsbl.close()


def request(value: str, kind: str | None = None) -> LookupRequest:
    if kind is None:
        kind = "ipv6" if ":" in value else "ipv4" if value.replace(".", "").isdigit() else "domain"
    host = value
    if kind == "email":
        host = value.split("@", 1)[1]
    elif kind == "url":
        host = value.split("/")[2]
    return LookupRequest(job_id="job", indicator=value, kind=kind, host=host)  # type: ignore[arg-type]


def test_the_code_tables_match_the_documentation() -> None:
    documented = spamhaus_codes()
    assert set(documented["zen"]) <= set(ZEN)
    assert set(documented["dbl"]) == set(DBL)
    for code, meaning in documented["zen"].items():
        assert ZEN[code].meaning.startswith(meaning.split(" ")[0]), code
    assert set(spamhaus_errors()) == set(ERRORS)


async def test_the_rfc5782_test_point(provider: DnsblProvider) -> None:
    answer = await provider.lookup(request("127.0.0.2"))
    assert answer.verdict == "malicious"  # SBL among the three codes
    zone = answer.data["zones"][0]
    assert zone["codes"] == ["127.0.0.2", "127.0.0.4", "127.0.0.10"]
    assert answer.data["listed"] is True
    clean = await provider.lookup(request("127.0.0.1"))
    assert (clean.verdict, clean.summary) == ("undetected", "not listed (zen.spamhaus.org)")
    assert clean.data["listed"] is False


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("127.0.0.2", "malicious"),
        ("127.0.0.3", "malicious"),
        ("127.0.0.9", "malicious"),
        ("127.0.0.30", "malicious"),
        ("127.0.0.4", "suspicious"),
        ("127.0.0.10", "undetected"),
        ("127.0.0.11", "undetected"),
    ],
)
async def test_zen_codes(provider: DnsblProvider, code: str, verdict: str) -> None:
    answer = await provider.lookup(request(zen_address(code)))
    assert answer.verdict == verdict
    assert answer.data["zones"][0]["codes"] == [code]
    if verdict == "undetected":  # PBL alone: a policy listing, not a finding
        assert answer.data["policy_only"] is True
        assert answer.summary.startswith("policy listing only: PBL")


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("127.0.1.2", "malicious"),
        ("127.0.1.4", "malicious"),
        ("127.0.1.5", "malicious"),
        ("127.0.1.6", "malicious"),
        ("127.0.1.102", "suspicious"),
        ("127.0.1.103", "suspicious"),
        ("127.0.1.104", "suspicious"),
        ("127.0.1.105", "suspicious"),
        ("127.0.1.106", "suspicious"),
    ],
)
async def test_dbl_codes(provider: DnsblProvider, code: str, verdict: str) -> None:
    answer = await provider.lookup(request(dbl_name(code)))
    assert answer.verdict == verdict
    assert answer.summary == DBL[code].meaning


async def test_names_of_urls_and_emails(provider: DnsblProvider, server: ZoneServer) -> None:
    assert (await provider.lookup(request("dbltest.com"))).verdict == "malicious"
    url = await provider.lookup(request("https://dbltest.com/login?x=1", "url"))
    assert (url.verdict, url.data["queried"]) == ("malicious", "dbltest.com")
    mail = await provider.lookup(request("billing@dbltest.com", "email"))
    assert mail.verdict == "malicious"
    clean = await provider.lookup(request("example.com"))
    assert (clean.verdict, clean.summary) == ("undetected", "not listed (dbl.spamhaus.org)")
    assert ("example.com.dbl.spamhaus.org", "A") in server.queries
    url_ip = await provider.lookup(request(f"http://{zen_address('127.0.0.2')}/x", "url"))
    assert url_ip.verdict == "malicious"  # a URL's address is asked of the address zones


@pytest.mark.parametrize("code", list(ERRORS))
async def test_error_codes_are_errors_never_listings(provider: DnsblProvider, code: str) -> None:
    for value in (error_address(code), error_name(code)):
        with pytest.raises(ProviderError) as raised:
            await provider.lookup(request(value))
        assert ERRORS[code] in str(raised.value)
        assert str(raised.value).startswith(
            ("zen.spamhaus.org: refused", "dbl.spamhaus.org: refused")
        )
        assert raised.value.data["listed"] is False


async def test_public_resolver_refusal_reads_plainly(provider: DnsblProvider) -> None:
    with pytest.raises(ProviderError, match="query via a public/open resolver"):
        await provider.lookup(request(error_address("127.255.255.254")))


async def test_an_answer_outside_loopback_is_not_a_listing(tmp_path: Path) -> None:
    zone = (
        spamhaus_zone()
        + "$ORIGIN hijack.test.\n@ IN SOA ns1 h 1 1 1 1 1\n"
        + "example.com.hijack.test. IN A 198.51.100.80\n"
    )
    with ZoneServer(zone) as hijacking:
        dnsbl = build(
            load(
                settings_for(
                    hijacking, '[providers.dnsbl]\nname_zones = ["hijack.test"]\n', tmp_path
                )
            )
        )
        try:
            with pytest.raises(ProviderError, match=r"outside 127\.0\.0\.0/8"):
                await dnsbl.lookup(request("example.com"))
        finally:
            await dnsbl.close()


async def test_dqs_key_asks_the_query_service_and_stays_secret(server: ZoneServer) -> None:
    dnsbl = build(load(settings_for(server, SPAMHAUS_DQS_KEY=DQS_KEY)))
    try:
        answer = await dnsbl.lookup(request(zen_address("127.0.0.3")))
        assert answer.verdict == "malicious"
        assert answer.data["zones"][0]["zone"] == "zen.dq.spamhaus.net"
        assert DQS_KEY not in repr(answer.data) + answer.summary
        asked = f"3.2.0.192.{DQS_KEY}.zen.dq.spamhaus.net"
        assert (asked, "A") in server.queries
        assert (await dnsbl.lookup(request("dbltest.com"))).verdict == "malicious"
        server.refuse_names = {f"example.org.{DQS_KEY}.dbl.dq.spamhaus.net"}
        with pytest.raises(ProviderError) as raised:
            await dnsbl.lookup(request("example.org"))
        assert "DQS key not valid" in str(raised.value)
        assert DQS_KEY not in str(raised.value) + repr(raised.value.data)
    finally:
        server.refuse_names = set()
        await dnsbl.close()


def test_dqs_key_from_a_file(server: ZoneServer, tmp_path: Path) -> None:
    path = tmp_path / "dqs"
    path.write_text(DQS_KEY + "\n")
    dnsbl = build(load(settings_for(server, SPAMHAUS_DQS_KEY_FILE=str(path))))
    assert dnsbl.key is not None
    assert dnsbl.key.reveal() == DQS_KEY
    with pytest.raises(ConfigError, match="SPAMHAUS_DQS_KEY: not a Data Query Service key"):
        load(settings_for(server, SPAMHAUS_DQS_KEY="not a key!"))


async def test_configured_zones_and_codes(server: ZoneServer, tmp_path: Path) -> None:
    zone = spamhaus_zone() + (
        "$ORIGIN bl.example.\n@ IN SOA ns1 h 1 1 1 1 1\n"
        "80.100.51.198 IN A 127.0.0.2\n81.100.51.198 IN A 127.0.0.3\n"
    )
    toml = """
[providers.dnsbl]
ip_zones = ["zen.spamhaus.org", "bl.example"]
name_zones = []
[providers.dnsbl.codes."bl.example"]
"127.0.0.2" = { meaning = "spam trap hits", verdict = "malicious" }
"""
    with ZoneServer(zone) as custom:
        dnsbl = build(load(settings_for(custom, toml, tmp_path)))
        try:
            known = await dnsbl.lookup(request("198.51.100.80"))
            assert (known.verdict, known.summary) == ("malicious", "spam trap hits")
            unknown = await dnsbl.lookup(request("198.51.100.81"))
            assert unknown.verdict == "suspicious"  # a code no table knows
            assert "not documented" in unknown.summary
            none = await dnsbl.lookup(request("example.com"))
            assert (none.verdict, none.summary) == ("unknown", "no name zones configured")
        finally:
            await dnsbl.close()
    with pytest.raises(ConfigError, match="not a DNS zone name"):
        load(settings_for(server, '[providers.dnsbl]\nip_zones = ["bad zone"]\n', tmp_path))
    with pytest.raises(ConfigError, match="not an answer address"):
        load(
            settings_for(
                server, '[providers.dnsbl.codes."x.example"]\n"2" = { meaning = "m" }\n', tmp_path
            )
        )


async def test_timeouts_and_one_zone_failing(server: ZoneServer, tmp_path: Path) -> None:
    server.timeout_names = {"9.9.51.198.zen.spamhaus.org"}
    dnsbl = build(load(settings_for(server)))
    try:
        with pytest.raises(ProviderError, match=r"^zen.spamhaus.org: timeout after 0.5 s"):
            await dnsbl.lookup(request("198.51.9.9"))
    finally:
        server.timeout_names = set()
        await dnsbl.close()
