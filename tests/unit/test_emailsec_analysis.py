"""What the emailsec evaluators keep between evaluations: SPF records analysed once per
record text, organisational domains; and the fast paths of the SPF parser, which must say
exactly what the general ones say."""

from __future__ import annotations

import ipaddress
import random
import string
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dnsserver import ZoneServer

from services.providers.emailsec import clear_caches, dmarc, evaluate, spf, spfrecord
from shared.lookups.dns import DnsClient

ZONE = """
$ORIGIN example.com.
$TTL 300
@         SOA  ns1 hostmaster 1 3600 600 86400 60
one       TXT  "v=spf1 include:_spf.provider.example.com a mx ip4:192.0.2.7 -all ip4:192.0.2.8"
one       A    192.0.2.1
one       MX   10 one
two       TXT  "v=spf1 include:_spf.provider.example.com a:nothing.example.com ~all"
three     TXT  "v=spf1 redirect=_spf.provider.example.com"
loopy     TXT  "v=spf1 include:_spf.provider.example.com include:loopy.example.com -all"
_spf.provider TXT "v=spf1 ip4:198.51.100.0/24 include:_spf2.provider.example.com ~all"
_spf2.provider TXT "v=spf1 ip6:2001:db8::/32 a:one.example.com -all"
_dmarc.one TXT "v=DMARC1; p=reject; rua=mailto:r@reports.example.net"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


@pytest.fixture
async def client(server: ZoneServer) -> AsyncIterator[DnsClient]:
    clear_caches()
    async with DnsClient([(server.host, server.port)], timeout=2.0) as dns_client:
        yield dns_client


def shared_terms(record: str) -> list[dict[str, Any]]:
    return [term.to_dict() for term in spfrecord.analyse(record).terms]


async def test_shared_records_are_analysed_once_and_never_modified(client: DnsClient) -> None:
    provider = "v=spf1 ip4:198.51.100.0/24 include:_spf2.provider.example.com ~all"
    results = []
    for name in ("one", "two", "three", "loopy", "one"):
        results.append(await spf.check_spf(f"{name}.example.com", client))
        if name == "one":
            before = shared_terms(provider)
    assert spfrecord.analyse.cache_info().hits > 0
    assert shared_terms(provider) == before  # targets, voids, addresses are per evaluation
    assert results[0] == results[-1]
    first_tree = results[0]["tree"]["includes"][0]
    assert first_tree["terms"][1]["target"] == "_spf2.provider.example.com"
    assert results[1]["void_lookups"] == 1  # a:nothing… in two's own record
    assert results[0]["void_lookups"] == 0


async def test_results_do_not_depend_on_what_is_cached(server: ZoneServer) -> None:
    outputs = []
    for clear in (True, False, False):
        if clear:
            clear_caches()
        async with DnsClient([(server.host, server.port)], timeout=2.0) as dns_client:
            outputs.append(
                [await evaluate(f"{n}.example.com", dns_client) for n in ("one", "loopy")]
            )
    assert outputs[0] == outputs[1] == outputs[2]
    loopy = outputs[0][1]["spf"]
    assert loopy["status"] == "permerror"
    assert any("include loop" in error for error in loopy["errors"])


def test_parse_record_gives_the_callers_own_terms() -> None:
    record = "v=spf1 include:_spf.example.com ip4:192.0.2.1 -all"
    first = spf.parse_record(record)
    first[0].info["target"] = "changed"
    first[0].lookups = 7
    second = spf.parse_record(record)
    assert "target" not in second[0].info
    assert second[0].lookups == 1


def test_terms_after_all_in_the_analysis() -> None:
    analysis = spfrecord.analyse("v=spf1 mx -all include:a.example.com a")
    assert [t.lookups for t in analysis.terms] == [1, 0, 0, 0]
    assert analysis.evaluated == (0,)
    assert analysis.lookups == 1
    assert analysis.warnings == ("terms after '-all' are never evaluated: include:a.example.com a",)
    redirect = spfrecord.analyse("v=spf1 ip4:192.0.2.1 redirect=_spf.example.com")
    assert redirect.redirect_index == 1
    assert redirect.lookups == 1
    assert redirect.root_warnings == redirect.warnings == ()
    bare = spfrecord.analyse("v=spf1 ip4:192.0.2.1")
    assert bare.warnings == ()
    assert bare.root_warnings == (
        "no 'all' mechanism and no redirect=: the default result is neutral ('?all')",
    )


def test_ip4_check_is_ipaddress_check() -> None:
    rng = random.Random(7)
    samples = [
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "1.2.3.4.5",
        "\u0661.2.3.4",  # an Arabic-Indic digit
        " 1.2.3.4",
        "1..2.3",
    ]
    for _ in range(20000):
        parts = [
            rng.choice(["0", "00", "7", "25", "255", "256", "099", "1000", ""]) for _ in range(4)
        ]
        samples.append(".".join(parts[: rng.randint(3, 4)]))
        samples.append("".join(rng.choice("0123456789.") for _ in range(rng.randint(1, 16))))
    for text in samples:
        try:
            ipaddress.IPv4Address(text)
            valid = True
        except ValueError:
            valid = False
        assert (spfrecord._IPV4_RE.fullmatch(text) is not None) == valid, text


def test_domain_spec_fast_path_agrees() -> None:
    rng = random.Random(11)
    alphabet = string.ascii_letters + string.digits + "-_.%{}é "
    specs = [
        "a.com",
        "a.com.",
        "a..com",
        ".a.com",
        "-a.com",
        "a-.com",
        "a.1com",
        "a.123",
        "a.c-m",
        "x" * 63 + ".com",
        "x" * 64 + ".com",
        "a." + "b" * 63,
        "a." + "b" * 64,
        ".".join(["a" * 60] * 5),
        "_spf.%{d}",
    ]
    specs += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))) for _ in range(30000)
    ]
    for spec in specs:
        assert spfrecord._domain_spec_error(spec) == spfrecord._domain_spec_error_general(spec), (
            spec
        )


def test_organisational_domain_cache() -> None:
    dmarc.clear_cache()
    assert dmarc.organisational_domain("Mail.Example.co.uk.") == "example.co.uk"
    assert dmarc.organisational_domain("mail.example.co.uk") == "example.co.uk"
    assert dmarc._organisational.cache_info().hits == 1
    assert dmarc.organisational_domain("co.uk") is None
