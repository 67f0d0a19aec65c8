"""DMARC discovery and parsing (services/providers/emailsec/dmarc.py) on a loopback DNS server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from dnsserver import ZoneServer

from services.providers.emailsec.dmarc import (
    check_dmarc,
    is_dmarc_record,
    organisational_domain,
    parse_tags,
)
from shared.lookups.dns import DnsClient

ZONE = """
$TTL 300
example.com.            SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60
_dmarc.example.com.     TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.com"
_dmarc.example.com.     TXT "some other text"
mail.example.com.       A   192.0.2.25

_dmarc.monitor.test.    TXT "v=DMARC1; p=none; rua=mailto:a@monitor.test!10m, mailto:b@monitor.test"
_dmarc.partial.test.    TXT "v=DMARC1; p=quarantine; pct=25; rua=mailto:r@partial.test"
_dmarc.badpolicy.test.  TXT "v=DMARC1; p=block; rua=mailto:r@badpolicy.test"
_dmarc.nopolicy.test.   TXT "v=DMARC1; rua=mailto:r@nopolicy.test"
_dmarc.pnorua.test.     TXT "v=DMARC1; adkim=s"
_dmarc.badtags.test.    TXT "v=DMARC1; p=reject; pct=150; adkim=x; fo=2; ri=soon; rua=dmarc"
_dmarc.multi.test.      TXT "v=DMARC1; p=reject"
_dmarc.multi.test.      TXT "v=DMARC1; p=none"
_dmarc.norua.test.      TXT "v=DMARC1;p=reject"
_dmarc.unknown.test.    TXT "v=DMARC1; p=reject; rua=mailto:r@unknown.test; np=reject"
_dmarc.wrongcase.test.  TXT "v=dmarc1; p=reject"
_dmarc.notfirst.test.   TXT "p=reject; v=DMARC1"
_dmarc.spaces.test.     TXT "v = DMARC1 ; P = Reject ; RUA = mailto:r@spaces.test ;"
_dmarc.external.test. TXT "v=DMARC1; p=reject; rua=mailto:r@reports.example,mailto:x@auth.example"
external.test._report._dmarc.auth.example. TXT "v=DMARC1"
_dmarc.ftp.test.        TXT "v=DMARC1; p=reject; rua=https://reports.ftp.test/dmarc"
_dmarc.slow.test.       TXT "v=DMARC1; p=reject"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


@pytest.fixture
async def client(server: ZoneServer) -> AsyncIterator[DnsClient]:
    async with DnsClient([(server.host, server.port)], timeout=2.0) as dns_client:
        yield dns_client


async def test_record_at_the_domain(client: DnsClient) -> None:
    result = await check_dmarc("example.com", client)
    assert result["record"] == "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.com"
    assert result["found_at"] == "_dmarc.example.com"
    assert result["valid"] is True
    assert result["status"] == "ok"
    assert result["policy"] == "reject"
    assert result["subdomain_policy"] == "quarantine"
    assert result["effective_policy"] == "reject"
    assert result["pct"] == 100
    assert result["tags"]["rua"] == ["mailto:dmarc@example.com"]
    assert result["errors"] == []
    assert result["warnings"] == []


async def test_fallback_to_the_organisational_domain(client: DnsClient, server: ZoneServer) -> None:
    result = await check_dmarc("mail.example.com", client)
    assert result["found_at"] == "_dmarc.example.com"
    assert result["policy"] == "reject"
    assert result["effective_policy"] == "quarantine"  # sp= applies to subdomains
    assert server.query_count("_dmarc.mail.example.com", "TXT") == 1


async def test_p_none_and_rua_parsing(client: DnsClient) -> None:
    result = await check_dmarc("monitor.test", client)
    assert result["valid"] is True
    assert result["policy"] == "none"
    assert result["tags"]["rua"] == ["mailto:a@monitor.test!10m", "mailto:b@monitor.test"]
    assert any(warning.startswith("p=none") for warning in result["warnings"])
    assert not any("rua" in warning for warning in result["warnings"])


async def test_pct_below_100(client: DnsClient) -> None:
    result = await check_dmarc("partial.test", client)
    assert result["pct"] == 25
    assert result["policy"] == "quarantine"
    assert any("pct=25" in warning for warning in result["warnings"])


async def test_invalid_policy(client: DnsClient) -> None:
    # RFC 7489 §6.6.3: an invalid p= with a valid rua= is acted on as p=none
    result = await check_dmarc("badpolicy.test", client)
    assert result["tags"].get("rua")
    assert result["valid"] is True
    assert result["policy"] == "none"
    assert any(
        "invalid p= value 'block'" in w and "treat the record as p=none" in w
        for w in result["warnings"]
    )
    missing = await check_dmarc("nopolicy.test", client)
    assert (missing["valid"], missing["policy"]) == (True, "none")
    # without p= and without rua= there is nothing to act on: invalid
    nothing = await check_dmarc("pnorua.test", client)
    assert nothing["valid"] is False
    assert "the required p= tag is missing" in nothing["errors"]


async def test_invalid_tag_values(client: DnsClient) -> None:
    result = await check_dmarc("badtags.test", client)
    assert result["valid"] is False
    assert result["errors"] == [
        "invalid pct= value '150' (an integer from 0 to 100)",
        "invalid adkim= value 'x' (r or s)",
        "invalid fo= value '2' (0, 1, d, s separated by ':')",
        "invalid ri= value 'soon' (seconds)",
        "invalid rua= URI 'dmarc'",
    ]


async def test_multiple_records(client: DnsClient) -> None:
    result = await check_dmarc("multi.test", client)
    assert result["valid"] is False
    assert result["status"] == "permerror"
    assert result["errors"] == ["multiple DMARC records at _dmarc.multi.test (2)"]
    assert result["policy"] is None


async def test_no_record(client: DnsClient) -> None:
    for domain in ("nothing.test", "sub.nothing.test"):
        result = await check_dmarc(domain, client)
        assert result["status"] == "none"
        assert result["found_at"] is None
        assert result["record"] is None
        assert result["valid"] is False


async def test_version_must_be_first_and_exact(client: DnsClient) -> None:
    assert (await check_dmarc("wrongcase.test", client))["status"] == "none"
    assert (await check_dmarc("notfirst.test", client))["status"] == "none"


async def test_no_rua_warning(client: DnsClient) -> None:
    result = await check_dmarc("norua.test", client)
    assert result["valid"] is True
    assert "no rua= tag: no aggregate reports are sent" in result["warnings"]


async def test_unknown_tag_is_a_warning(client: DnsClient) -> None:
    result = await check_dmarc("unknown.test", client)
    assert result["valid"] is True
    assert "unknown tag 'np' (ignored)" in result["warnings"]


async def test_blanks_and_case(client: DnsClient) -> None:
    result = await check_dmarc("spaces.test", client)
    assert result["valid"] is True, result["errors"]
    assert result["policy"] == "reject"
    assert result["tags"]["rua"] == ["mailto:r@spaces.test"]


async def test_external_report_destinations(client: DnsClient) -> None:
    result = await check_dmarc("external.test", client)
    assert result["valid"] is True
    unauthorised = [w for w in result["warnings"] if "has not authorised" in w]
    assert unauthorised == [
        "reports.example has not authorised reports about external.test "
        "(no DMARC1 TXT at external.test._report._dmarc.reports.example)"
    ]


async def test_non_mailto_uri_warning(client: DnsClient) -> None:
    result = await check_dmarc("ftp.test", client)
    assert result["valid"] is True
    assert any("not a mailto: URI" in warning for warning in result["warnings"])


async def test_timeout_is_a_temperror(server: ZoneServer) -> None:
    server.timeout_names.add("_dmarc.slow.test")
    try:
        async with DnsClient([(server.host, server.port)], timeout=0.4) as dns_client:
            started = time.monotonic()
            result = await check_dmarc("slow.test", dns_client)
            assert time.monotonic() - started < 2.0
    finally:
        server.timeout_names.discard("_dmarc.slow.test")
    assert result["status"] == "temperror"
    assert result["errors"] == ["DNS TIMEOUT for TXT _dmarc.slow.test"]


def test_is_dmarc_record() -> None:
    assert is_dmarc_record("v=DMARC1; p=none")
    assert is_dmarc_record("v=DMARC1")
    assert is_dmarc_record("v = DMARC1;p=none")
    assert not is_dmarc_record("v=dmarc1; p=none")
    assert not is_dmarc_record("v=DMARC10; p=none")
    assert not is_dmarc_record(" p=none; v=DMARC1")


def test_parse_tags() -> None:
    tags, errors, warnings = parse_tags(
        "v=DMARC1; p=Quarantine; sp=none; pct=0; adkim=s; aspf=r; fo=0:1:d:s; rf=afrf; "
        "ri=3600; ruf=mailto:f@example.com; rua=mailto:a@example.com,https://r.example/x"
    )
    assert errors == []
    assert warnings == []
    assert tags == {
        "v": "DMARC1",
        "p": "quarantine",
        "sp": "none",
        "pct": 0,
        "adkim": "s",
        "aspf": "r",
        "fo": ["0", "1", "d", "s"],
        "rf": ["afrf"],
        "ri": 3600,
        "ruf": ["mailto:f@example.com"],
        "rua": ["mailto:a@example.com", "https://r.example/x"],
    }
    _, errors, _ = parse_tags("v=DMARC1; p=reject; p=none; junk")
    assert errors == ["tag 'p' appears more than once", "invalid tag 'junk'"]


def test_organisational_domain() -> None:
    assert organisational_domain("mail.example.co.uk") == "example.co.uk"
    assert organisational_domain("example.com") == "example.com"
    assert organisational_domain("co.uk") is None
