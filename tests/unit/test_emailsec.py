"""The emailsec provider: evaluate(), verdicts, summaries, MTA-STS/BIMI, DNS failures."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from dnsserver import ZoneServer

from services.providers.emailsec import EmailSecProvider, build, evaluate
from shared.core.settings import load
from shared.lookups.dns import DnsClient, servers
from shared.lookups.provider import ProviderError
from shared.lookups.schemas import LookupRequest

ZONE = """
$TTL 300
good.test.                 TXT "v=spf1 include:_spf.good.test mx -all"
good.test.                 MX  10 mx.good.test.
_spf.good.test.            TXT "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 a:mx.good.test ~all"
mx.good.test.              A   192.0.2.25
_dmarc.good.test.          TXT "v=DMARC1; p=reject; rua=mailto:dmarc@good.test"
_mta-sts.good.test.        TXT "v=STSv1; id=20240101"
default._bimi.good.test.   TXT "v=BIMI1; l=https://good.test/logo.svg"

monitor.test.              TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.monitor.test.       TXT "v=DMARC1; p=none; rua=mailto:d@monitor.test"
_mta-sts.monitor.test.     TXT "not mta-sts"

partial.test.              TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.partial.test.       TXT "v=DMARC1; p=quarantine; pct=50; rua=mailto:d@partial.test"

open.test.                 TXT "v=spf1 +all"
_dmarc.open.test.          TXT "v=DMARC1; p=reject; rua=mailto:d@open.test"

heavy.test.                TXT ( "v=spf1 a mx ptr exists:heavy.test include:i1.heavy.test "
                                 "include:i2.heavy.test include:i3.heavy.test -all" )
heavy.test.                A   192.0.2.1
heavy.test.                MX  10 heavy.test.
i1.heavy.test.             TXT "v=spf1 a:heavy.test mx:heavy.test -all"
i2.heavy.test.             TXT "v=spf1 a:heavy.test -all"
i3.heavy.test.             TXT "v=spf1 a:heavy.test -all"

nodmarc.test.              TXT "v=spf1 -all"
baddmarc.test.             TXT "v=spf1 -all"
_dmarc.baddmarc.test.      TXT "v=DMARC1; p=maybe"
nospf.test.                TXT "hello"
_dmarc.nospf.test.         TXT "v=DMARC1; p=reject; rua=mailto:d@nospf.test"

slow.test.                 TXT "v=spf1 -all"
slowdmarc.test.            TXT "v=spf1 -all"
"""


@pytest.fixture(scope="module")
def server() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as zone_server:
        yield zone_server


@pytest.fixture
async def provider(server: ZoneServer) -> AsyncIterator[EmailSecProvider]:
    settings = load({"LOOKOUT_DNS_NAMESERVERS": server.nameserver, "LOOKOUT_DNS_TIMEOUT": "2"})
    emailsec_provider = build(settings)
    await emailsec_provider.open()
    yield emailsec_provider
    await emailsec_provider.close()


def request(value: str) -> LookupRequest:
    if "@" in value:
        return LookupRequest(
            job_id="job", indicator=value, kind="email", host=value.split("@", 1)[1]
        )
    return LookupRequest(job_id="job", indicator=value, kind="domain", host=value)


async def test_evaluate(server: ZoneServer) -> None:
    async with DnsClient([(server.host, server.port)], 2.0) as client:
        data = await evaluate("Good.Test.", client)
    assert set(data) == {"domain", "spf", "dmarc", "mta_sts", "bimi"}
    assert data["domain"] == "good.test"
    assert data["spf"]["valid"] is True
    assert data["spf"]["dns_lookups"] == 3
    assert data["dmarc"]["policy"] == "reject"
    assert data["mta_sts"] is True
    assert data["bimi"] is True
    msgspec.json.encode(data)  # what the runner stores must be JSON


async def test_evaluate_an_email_address(server: ZoneServer) -> None:
    async with DnsClient([(server.host, server.port)], 2.0) as client:
        data = await evaluate("someone@monitor.test", client)
    assert data["domain"] == "monitor.test"
    assert data["mta_sts"] is False
    assert data["bimi"] is False


async def test_harmless(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("good.test"))
    assert answer.verdict == "harmless"
    assert answer.summary == "SPF 3 lookups ✓, p=reject"
    assert answer.ttl == 3600
    assert answer.data["domain"] == "good.test"


async def test_email_indicator(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("ceo@good.test"))
    assert answer.verdict == "harmless"
    assert answer.data["domain"] == "good.test"


async def test_monitoring_only_is_undetected(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("monitor.test"))
    assert answer.verdict == "undetected"
    assert answer.summary == "SPF 0 lookups ✓, p=none"


async def test_partial_pct_is_undetected(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("partial.test"))
    assert answer.verdict == "undetected"
    assert answer.summary == "SPF 0 lookups ✓, p=quarantine pct=50"


async def test_plus_all_is_suspicious(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("open.test"))
    assert answer.verdict == "suspicious"
    assert answer.summary == "SPF 0 lookups ✗ +all, p=reject"


async def test_too_many_lookups_is_suspicious(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("heavy.test"))
    assert answer.data["spf"]["dns_lookups"] == 11
    assert answer.verdict == "suspicious"
    assert answer.summary == "SPF 11 lookups ✗, no DMARC"


async def test_no_dmarc_is_suspicious(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("nodmarc.test"))
    assert answer.verdict == "suspicious"
    assert answer.summary == "SPF 0 lookups ✓, no DMARC"


async def test_invalid_dmarc_is_suspicious(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("baddmarc.test"))
    assert answer.verdict == "suspicious"
    assert answer.summary == "SPF 0 lookups ✓, DMARC invalid"


async def test_no_spf_is_undetected(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(request("nospf.test"))
    assert answer.verdict == "undetected"
    assert answer.summary == "no SPF, p=reject"


async def test_timeout_raises_quickly(server: ZoneServer) -> None:
    settings = load({"LOOKOUT_DNS_NAMESERVERS": server.nameserver, "LOOKOUT_DNS_TIMEOUT": "0.4"})
    emailsec_provider = build(settings)
    server.timeout_names.update({"slow.test", "_dmarc.slowdmarc.test"})
    try:
        started = time.monotonic()
        # the cause first; what was asked, and of whom, in the details
        with pytest.raises(ProviderError) as spf:
            await emailsec_provider.lookup(request("slow.test"))
        assert str(spf.value) == "DNS timeout for TXT slow.test (SPF)"
        assert spf.value.data["upstream"] == server.nameserver
        assert spf.value.data["domain"] == "slow.test"
        with pytest.raises(ProviderError) as dmarc:
            await emailsec_provider.lookup(request("slowdmarc.test"))
        assert str(dmarc.value) == "DNS timeout for TXT _dmarc.slowdmarc.test (DMARC)"
        assert dmarc.value.data["check"] == "DMARC"
        assert time.monotonic() - started < 2.0
    finally:
        server.timeout_names.difference_update({"slow.test", "_dmarc.slowdmarc.test"})
        await emailsec_provider.close()


async def test_a_domain_that_does_not_exist_is_no_posture_finding(
    provider: EmailSecProvider, server: ZoneServer
) -> None:
    """NXDOMAIN is not "no SPF, no DMARC → suspicious": the domain does not exist."""
    answer = await provider.lookup(request("nosuchdomain.test"))
    assert ("nosuchdomain.test", "TXT") in server.queries
    assert answer.verdict == "unknown"
    assert answer.summary == "domain does not exist"
    assert answer.data["nxdomain"] is True
    assert answer.data["domain"] == "nosuchdomain.test"
    mailbox = await provider.lookup(request("someone@gone.nosuchdomain.test"))
    assert (mailbox.verdict, mailbox.summary) == ("unknown", "domain does not exist")
    # a name that exists without any record (NODATA) is still judged as before
    assert (await provider.lookup(request("nodmarc.test"))).verdict == "suspicious"


async def test_address_literal_is_not_looked_up(provider: EmailSecProvider) -> None:
    answer = await provider.lookup(
        LookupRequest(job_id="j", indicator="x@[192.0.2.1]", kind="email", host="192.0.2.1")
    )
    assert answer.verdict == "unknown"


async def test_one_client_per_provider(provider: EmailSecProvider) -> None:
    await provider.lookup(request("good.test"))
    client = provider.client
    assert client is not None
    await provider.lookup(request("good.test"))
    assert provider.client is client
    assert client.stats.cache_hits > 0


def test_configuration(server: ZoneServer, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = build(load({"LOOKOUT_DNS_NAMESERVERS": "127.0.0.1:5353,9.9.9.9"}))
    assert configured.name == "emailsec"
    assert configured.configured() is None
    assert configured.cache_salt() == "127.0.0.1:5353,9.9.9.9:53"

    monkeypatch.setattr(servers, "system_nameservers", lambda: [("192.0.2.53", 53)])
    system = build(load({}))
    assert system.nameservers == [("192.0.2.53", 53)]
    assert system.configured() is None

    monkeypatch.setattr(servers, "system_nameservers", lambda: [])
    nothing = build(load({}))
    assert nothing.configured() == "no DNS server: set LOOKOUT_DNS_NAMESERVERS"
