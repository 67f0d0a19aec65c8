"""SPF evaluation (services/providers/emailsec/spf.py) against a real loopback DNS server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from dnsserver import ZoneServer

from services.providers.emailsec.spf import check_spf, expand, is_spf_record, parse_record
from shared.lookups.dns import DnsClient

LONG_PART_1 = "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(1, 17))
LONG_PART_2 = " " + " ".join(f"ip4:198.51.100.{i}" for i in range(1, 9)) + " -all"
FIVE_INCLUDES = " ".join(f"include:n{i}.example.com" for i in range(1, 6))

ZONE = f"""
$ORIGIN example.com.
$TTL 300
@        SOA   ns1 hostmaster 1 3600 600 86400 60
@        MX    10 mail
mail     A     192.0.2.25
host     A     192.0.2.10
host6    AAAA  2001:db8::10

simple   TXT   "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"
simple   TXT   "google-site-verification=abc"
upper    TXT   "V=SPF1 -all"
notspf   TXT   "v=spf10 -all"
nospf    TXT   "just some text"

chain    TXT   "v=spf1 include:l1.example.com -all"
l1       TXT   "v=spf1 include:l2.example.com ~all"
l2       TXT   "v=spf1 ip4:198.51.100.1 -all"

ten      TXT   "v=spf1 {FIVE_INCLUDES} -all"
eleven   TXT   "v=spf1 {FIVE_INCLUDES} exists:host.example.com -all"
n1       TXT   "v=spf1 a:host.example.com -all"
n2       TXT   "v=spf1 a:host.example.com -all"
n3       TXT   "v=spf1 mx:example.com -all"
n4       TXT   "v=spf1 a:host6.example.com -all"
n5       TXT   "v=spf1 exists:host.example.com -all"

mxdom    TXT   "v=spf1 mx -all"
mxdom    MX    10 mx1.example.com.
mxdom    MX    20 mx2.example.com.
mxmany   TXT   "v=spf1 mx/24 -all"
{"".join(f"mxmany MX {i} mx{i}.example.com." + chr(10) for i in range(11))}
redir    TXT   "v=spf1 redirect=_spf.redir.example.com"
_spf.redir TXT "v=spf1 ip4:192.0.2.1 -all"
redirall TXT   "v=spf1 -all redirect=_spf.redir.example.com"

loop1    TXT   "v=spf1 include:loop2.example.com -all"
loop2    TXT   "v=spf1 include:loop1.example.com -all"
selfredir TXT  "v=spf1 redirect=selfredir.example.com"

missinc  TXT   "v=spf1 include:nowhere.example.com -all"
noinc    TXT   "v=spf1 include:nospf.example.com -all"
badredir TXT   "v=spf1 redirect=nowhere.example.com"

multi    TXT   "v=spf1 ip4:192.0.2.1 -all"
multi    TXT   "v=spf1 ip4:192.0.2.2 -all"

badip    TXT   "v=spf1 include:x.com mx ip4:1.2.3 -all"
badmech  TXT   "v=spf1 foo:bar -all"
badqual  TXT   "v=spf1 a !all"

plusall  TXT   "v=spf1 +all"
bareall  TXT   "v=spf1 all"
neutral  TXT   "v=spf1 ip4:192.0.2.1 ?all"
usesptr  TXT   "v=spf1 ptr -all"
noall    TXT   "v=spf1 ip4:192.0.2.1"
openinc  TXT   "v=spf1 include:plusall.example.com -all"
after    TXT   "v=spf1 -all ip4:192.0.2.1"
afterbig TXT   ( "v=spf1 mx -all include:a1.test include:a2.test include:a3.test "
                 "include:a4.test include:a5.test include:a6.test include:a7.test "
                 "include:a8.test include:a9.test include:a10.test" )
everyone TXT   "v=spf1 ip4:0.0.0.0/0 -all"

void2    TXT   "v=spf1 a:v1.example.com a:v2.example.com -all"
void3    TXT   "v=spf1 a:v1.example.com mx:v2.example.com exists:v3.example.com -all"

split    TXT   "v=spf1 ip4:192.0.2.1 " "ip4:192.0.2.2 " "-all"
long     TXT   "{LONG_PART_1}" "{LONG_PART_2}"

macro    TXT   "v=spf1 exists:%{{i}}._spf.example.com include:_spf.%{{d}} -all"
_spf.macro TXT "v=spf1 ip4:192.0.2.99 -all"

slowinc  TXT   "v=spf1 include:slow.example.com -all"
slow     TXT   "v=spf1 -all"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


@pytest.fixture
async def client(server: ZoneServer) -> AsyncIterator[DnsClient]:
    async with DnsClient([(server.host, server.port)], timeout=2.0) as dns_client:
        yield dns_client


async def spf(client: DnsClient, name: str) -> dict[str, Any]:
    return await check_spf(f"{name}.example.com", client)


# -- records ---------------------------------------------------------------------------------


async def test_simple_valid_record(client: DnsClient) -> None:
    result = await spf(client, "simple")
    assert result["record"] == "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"
    assert result["valid"] is True
    assert result["status"] == "ok"
    assert result["dns_lookups"] == 0
    assert result["void_lookups"] == 0
    assert result["errors"] == []
    assert result["warnings"] == []
    assert result["all"] == "-all"
    tree = result["tree"]
    assert tree["domain"] == "simple.example.com"
    assert [term["name"] for term in tree["terms"]] == ["ip4", "ip6", "all"]
    assert tree["terms"][0]["cidr4"] == 24
    assert tree["includes"] == []


async def test_version_is_case_insensitive_but_exact(client: DnsClient) -> None:
    assert (await spf(client, "upper"))["all"] == "-all"
    result = await spf(client, "notspf")
    assert result["status"] == "none"
    assert result["record"] is None
    assert result["valid"] is False


async def test_no_spf_record(client: DnsClient) -> None:
    for name in ("nospf", "doesnotexist"):
        result = await spf(client, name)
        assert result["status"] == "none"
        assert result["record"] is None
        assert result["errors"] == []


async def test_include_chain_depth_two(client: DnsClient) -> None:
    result = await spf(client, "chain")
    assert result["valid"] is True
    assert result["dns_lookups"] == 2
    tree = result["tree"]
    assert tree["dns_lookups"] == 1
    (l1,) = tree["includes"]
    assert l1["domain"] == "l1.example.com"
    assert l1["via"] == "include"
    assert l1["all"] == "~all"
    (l2,) = l1["includes"]
    assert l2["domain"] == "l2.example.com"
    assert l2["record"] == "v=spf1 ip4:198.51.100.1 -all"
    assert l2["dns_lookups"] == 0
    assert result["all"] == "-all"


async def test_exactly_ten_lookups_is_valid(client: DnsClient) -> None:
    result = await spf(client, "ten")
    assert result["dns_lookups"] == 10
    assert result["valid"] is True, result["errors"]
    assert result["void_lookups"] == 0


async def test_eleven_lookups_is_a_permerror(client: DnsClient) -> None:
    result = await spf(client, "eleven")
    assert result["dns_lookups"] == 11
    assert result["valid"] is False
    assert result["status"] == "permerror"
    assert "too many DNS lookups (11 > 10)" in result["errors"]


async def test_counts_do_not_depend_on_timing(client: DnsClient) -> None:
    first = await spf(client, "eleven")
    client.clear_cache()
    second = await spf(client, "eleven")
    assert first == second


async def test_mx_mechanism(client: DnsClient) -> None:
    result = await spf(client, "mxdom")
    assert result["valid"] is True
    assert result["dns_lookups"] == 1
    (mx,) = [t for t in result["tree"]["terms"] if t["name"] == "mx"]
    assert mx["mx_hosts"] == ["mx1.example.com", "mx2.example.com"]
    assert mx["address_lookups"] == 2


async def test_more_than_ten_mx_hosts_is_a_permerror(client: DnsClient) -> None:
    result = await spf(client, "mxmany")
    assert result["status"] == "permerror"
    assert result["dns_lookups"] == 1
    assert any("11 MX hosts (> 10)" in error for error in result["errors"]), result["errors"]


async def test_redirect(client: DnsClient) -> None:
    result = await spf(client, "redir")
    assert result["valid"] is True
    assert result["dns_lookups"] == 1
    assert result["all"] == "-all"  # from the redirect target
    assert result["warnings"] == []
    (child,) = result["tree"]["includes"]
    assert child["via"] == "redirect"
    assert child["domain"] == "_spf.redir.example.com"


async def test_redirect_ignored_when_all_present(client: DnsClient) -> None:
    result = await spf(client, "redirall")
    assert result["valid"] is True
    assert result["dns_lookups"] == 0
    assert result["tree"]["includes"] == []
    assert any("redirect= is ignored" in warning for warning in result["warnings"])


async def test_include_loop(client: DnsClient) -> None:
    result = await spf(client, "loop1")
    assert result["status"] == "permerror"
    assert any(
        "include loop: loop1.example.com -> loop2.example.com -> loop1.example.com" in error
        for error in result["errors"]
    ), result["errors"]
    redirect = await spf(client, "selfredir")
    assert redirect["status"] == "permerror"
    assert any("redirect loop" in error for error in redirect["errors"])


async def test_missing_include_target(client: DnsClient) -> None:
    result = await spf(client, "missinc")
    assert result["status"] == "permerror"
    assert result["errors"] == ["include target nowhere.example.com: domain does not exist"]
    assert result["void_lookups"] == 1
    no_record = await spf(client, "noinc")
    assert no_record["status"] == "permerror"
    assert any("no SPF record" in error for error in no_record["errors"])
    assert no_record["void_lookups"] == 0  # a TXT answer, just not SPF
    redirect = await spf(client, "badredir")
    assert redirect["status"] == "permerror"
    assert any("redirect target" in error for error in redirect["errors"])


async def test_multiple_spf_records(client: DnsClient) -> None:
    result = await spf(client, "multi")
    assert result["status"] == "permerror"
    assert result["valid"] is False
    assert result["errors"] == ["multiple SPF records"]
    assert len(result["tree"]["records"]) == 2


async def test_syntax_errors_with_position(client: DnsClient) -> None:
    result = await spf(client, "badip")
    assert result["status"] == "permerror"
    assert result["errors"] == ["term 3 'ip4:1.2.3' at char 24: invalid IPv4 network"]
    assert result["tree"]["includes"] == []  # a broken record is not evaluated further
    unknown = await spf(client, "badmech")
    assert unknown["errors"] == ["term 1 'foo:bar' at char 7: unknown mechanism 'foo'"]
    qualifier = await spf(client, "badqual")
    assert qualifier["errors"] == ["term 2 '!all' at char 9: invalid qualifier '!'"]


async def test_plus_all(client: DnsClient) -> None:
    for name in ("plusall", "bareall"):
        result = await spf(client, name)
        assert result["all"] == "+all"
        assert result["pass_all"] is True
        assert result["valid"] is True  # syntactically fine, but see the warning
        assert any("'+all'" in warning for warning in result["warnings"])


async def test_plus_all_through_an_include(client: DnsClient) -> None:
    result = await spf(client, "openinc")
    assert result["all"] == "-all"
    assert result["pass_all"] is True
    assert any("matches every sender" in warning for warning in result["warnings"])


async def test_ip4_zero_prefix_passes_everyone(client: DnsClient) -> None:
    result = await spf(client, "everyone")
    assert result["pass_all"] is True
    assert any("authorises every address" in warning for warning in result["warnings"])


async def test_neutral_all_warning(client: DnsClient) -> None:
    result = await spf(client, "neutral")
    assert result["all"] == "?all"
    assert result["pass_all"] is False
    assert any("'?all'" in warning for warning in result["warnings"])


async def test_soft_fail_has_no_warning(client: DnsClient) -> None:
    result = await spf(client, "chain")
    assert result["warnings"] == []
    assert (await check_spf("l1.example.com", client))["warnings"] == []


async def test_ptr_warning(client: DnsClient) -> None:
    result = await spf(client, "usesptr")
    assert result["valid"] is True
    assert result["dns_lookups"] == 1
    assert any("deprecated 'ptr'" in warning for warning in result["warnings"])


async def test_no_all_no_redirect_warning(client: DnsClient) -> None:
    result = await spf(client, "noall")
    assert result["all"] is None
    assert any("default result is neutral" in warning for warning in result["warnings"])


async def test_terms_after_all_warning(client: DnsClient) -> None:
    result = await spf(client, "after")
    assert any("never evaluated: ip4:192.0.2.1" in warning for warning in result["warnings"])


async def test_terms_after_all_cost_no_lookup(client: DnsClient) -> None:
    # RFC 7208 §5.1: never tested, so not counted (§4.6.4) nor resolved
    result = await spf(client, "afterbig")
    assert result["dns_lookups"] == 1  # the mx before -all
    assert result["valid"] is True


async def test_void_lookups(client: DnsClient) -> None:
    two = await spf(client, "void2")
    assert two["void_lookups"] == 2
    assert two["valid"] is True
    three = await spf(client, "void3")
    assert three["void_lookups"] == 3
    assert three["status"] == "permerror"
    assert "too many void DNS lookups (3 > 2)" in three["errors"]
    voids = [term for term in three["tree"]["terms"] if term.get("void")]
    assert [term["name"] for term in voids] == ["a", "mx", "exists"]


async def test_txt_split_in_several_strings(client: DnsClient) -> None:
    result = await spf(client, "split")
    assert result["record"] == "v=spf1 ip4:192.0.2.1 ip4:192.0.2.2 -all"
    assert result["valid"] is True
    assert result["warnings"] == []


async def test_record_longer_than_255_characters(client: DnsClient) -> None:
    result = await spf(client, "long")
    assert result["record"] == LONG_PART_1 + LONG_PART_2
    assert len(result["record"]) > 255
    assert result["valid"] is True
    assert any("characters long" in warning for warning in result["warnings"])


async def test_macros(client: DnsClient) -> None:
    result = await spf(client, "macro")
    assert result["valid"] is True
    assert result["dns_lookups"] == 2
    exists, include, _ = result["tree"]["terms"]
    assert "not resolved" in exists["note"]
    assert include["target"] == "_spf.macro.example.com"
    assert result["tree"]["includes"][0]["record"] == "v=spf1 ip4:192.0.2.99 -all"


async def test_include_timeout_is_a_temperror(server: ZoneServer) -> None:
    server.timeout_names.add("slow.example.com")
    try:
        async with DnsClient([(server.host, server.port)], timeout=0.4) as dns_client:
            started = time.monotonic()
            result = await check_spf("slowinc.example.com", dns_client)
            assert time.monotonic() - started < 2.0
    finally:
        server.timeout_names.discard("slow.example.com")
    assert result["status"] == "temperror"
    assert result["valid"] is False
    assert any("TIMEOUT" in reason for reason in result["temperrors"])


# -- parsing without DNS ---------------------------------------------------------------------


def test_is_spf_record() -> None:
    assert is_spf_record("v=spf1")
    assert is_spf_record("v=spf1 -all")
    assert is_spf_record("V=SpF1 -all")
    assert not is_spf_record("v=spf10 -all")
    assert not is_spf_record("v=spf1\t-all")
    assert not is_spf_record(" v=spf1 -all")


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ("v=spf1 ip4:1.2.3.256", "term 1 'ip4:1.2.3.256' at char 7: invalid IPv4 network"),
        ("v=spf1 ip4:1.2.3.4/33", "term 1 'ip4:1.2.3.4/33' at char 7: invalid IPv4 prefix length"),
        ("v=spf1 ip4:01.2.3.4", "term 1 'ip4:01.2.3.4' at char 7: invalid IPv4 network"),
        ("v=spf1 ip6:2001:db8::zz", "term 1 'ip6:2001:db8::zz' at char 7: invalid IPv6 network"),
        (
            "v=spf1 ip6:2001:db8::/129",
            "term 1 'ip6:2001:db8::/129' at char 7: invalid IPv6 prefix length",
        ),
        ("v=spf1 a/24//129", "term 1 'a/24//129' at char 7: invalid IPv6 prefix length"),
        ("v=spf1 a:", "term 1 'a:' at char 7: 'a:' needs a domain"),
        (
            "v=spf1 include",
            "term 1 'include' at char 7: 'include' needs a domain ('include:example.com')",
        ),
        (
            "v=spf1 include:localhost",
            "term 1 'include:localhost' at char 7: invalid domain 'localhost'",
        ),
        (
            "v=spf1 exists:%{z}.example.com",
            "term 1 'exists:%{z}.example.com' at char 7: invalid macro '%{z}'",
        ),
        (
            "v=spf1 exists:%{c}.example.com",
            "term 1 'exists:%{c}.example.com' at char 7: macro '%{c}' is only allowed in exp=",
        ),
        ("v=spf1 all:foo", "term 1 'all:foo' at char 7: 'all' takes no argument"),
        ("v=spf1 -all  ~ip4", "term 2 '~ip4' at char 13: 'ip4' needs a network ('ip4:...')"),
        ("v=spf1 redirect=", "term 1 'redirect=' at char 7: redirect= needs a domain"),
        ("v=spf1 ?", "term 1 '?' at char 7: invalid term"),
    ],
)
def test_syntax_errors(record: str, error: str) -> None:
    errors = [f"{t.describe()}: {t.error}" for t in parse_record(record) if t.error is not None]
    assert errors == [error]


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 a mx a:mail.example.com/24 mx:example.com//64 a/24//64 ptr:example.com -all",
        "v=spf1 ip4:192.0.2.0/24 ip6:::1 ip6:2001:db8::/0 exists:%{ir}.%{l1r+-}._spf.%{d} ~all",
        "v=spf1 include:_spf.google.com exp=explain._spf.%{d} foo.bar=%{s} ?all",
        "v=spf1 a:%{d1/}",
        "v=spf1 -all ",
    ],
)
def test_valid_syntax(record: str) -> None:
    assert [t.error for t in parse_record(record) if t.error is not None] == []


def test_term_fields() -> None:
    terms = parse_record("v=spf1 -a:mail.example.com/24//64 ~mx redirect=_spf.example.com")
    a, mx, redirect = terms
    assert (a.index, a.offset, a.qualifier, a.name, a.value) == (
        1,
        7,
        "-",
        "a",
        "mail.example.com",
    )
    assert (a.cidr4, a.cidr6, a.lookups) == (24, 64, 1)
    assert (mx.qualifier, mx.name, mx.value) == ("~", "mx", None)
    assert (redirect.kind, redirect.name, redirect.value) == (
        "modifier",
        "redirect",
        "_spf.example.com",
    )


def test_macro_expansion() -> None:
    assert expand("%{d}", "mail.example.com") == "mail.example.com"
    assert expand("_spf.%{d2}", "mail.example.com") == "_spf.example.com"
    assert expand("%{dr}", "mail.example.com") == "com.example.mail"
    assert expand("%{d1r}.x.example", "mail.example.com") == "mail.x.example"
    assert expand("%{i}.example.com", "example.com") is None
    assert expand("plain.example.com.", "x.test") == "plain.example.com"
