"""Pivots (shared/lookups/pivots.py): what each provider declares it finds in its data, and
the rules of finding them (parsed as input, each once, never the indicator itself,
bounded). A declaration :func:`find` could not follow is refused at registration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services import registry
from shared.lookups import catalog, pivots
from shared.lookups import config as lookups_config
from shared.lookups.catalog import ProviderSpec
from shared.lookups.pivots import PivotRule

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(autouse=True)
def _restore_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register()
    monkeypatch.setattr(catalog, "_specs", dict(catalog._specs))
    monkeypatch.setattr(lookups_config, "_tables", dict(lookups_config._tables))


def found(provider: str, kind: str, value: str, data: dict[str, Any]) -> set[tuple[str, str, str]]:
    spec = catalog.get(provider)
    assert spec is not None
    return {(p.value, p.kind, p.why) for p in pivots.find(spec.pivots, kind, value, data)}


def test_dns_answers_give_their_targets() -> None:
    data = {  # the dns provider's data (records as its DNS client writes them)
        "host": "www.example.com",
        "records": {
            "A": ["192.0.2.10", "192.0.2.10"],
            "AAAA": ["2001:db8::10"],
            "CNAME": ["Example.COM"],
            "MX": ["10 mail.example.net", "20 mail.example.net"],
            "NS": ["ns1.example.net"],
            "TXT": ["v=spf1 include:_spf.example.org -all"],
            "SOA": ["ns1.example.net. hostmaster.example.net. 1 7200 3600 1209600 300"],
        },
        "nxdomain": False,
    }
    assert found("dns", "url", "https://www.example.com/x", data) == {
        ("192.0.2.10", "ipv4", "A record"),
        ("2001:db8::10", "ipv6", "AAAA record"),
        ("example.com", "domain", "CNAME"),
        ("mail.example.net", "domain", "MX record"),
        ("ns1.example.net", "domain", "name server"),
        ("www.example.com", "domain", "host looked up"),
    }
    # A domain's own host is the domain: never a pivot of itself.
    assert ("www.example.com", "domain", "host looked up") not in found(
        "dns", "domain", "www.example.com", data
    )
    reverse = {"address": "192.0.2.10", "ptr": ["host.example.com"], "nxdomain": False}
    assert found("dns", "ipv4", "192.0.2.10", reverse) == {
        ("host.example.com", "domain", "PTR record")
    }


def test_whois_abuseipdb_and_virustotal_declare_theirs() -> None:
    whois = {
        "domain": "example.com",
        "nameservers": ["A.IANA-SERVERS.NET", "b.iana-servers.net"],
        "abuse_email": "abuse@registrar.com",
    }
    assert found("whois", "url", "https://shop.example.com/", whois) == {
        ("example.com", "domain", "registered domain"),
        ("a.iana-servers.net", "domain", "name server"),
        ("b.iana-servers.net", "domain", "name server"),
        ("registrar.com", "domain", "abuse contact's domain"),
    }
    network = {"address": "192.0.2.1", "abuse_email": "abuse@rir.net"}
    assert found("whois", "ipv4", "192.0.2.1", network) == {
        ("rir.net", "domain", "abuse contact's domain")
    }
    # AbuseIPDB's check fields (https://docs.abuseipdb.com/#check-endpoint), a host name added
    check = {"ipAddress": "118.25.6.39", "domain": "tencent.com", "hostnames": ["a.b.tencent.com"]}
    assert found("abuseipdb", "ipv4", "118.25.6.39", check) == {
        ("a.b.tencent.com", "domain", "host name"),
        ("tencent.com", "domain", "network's domain"),
    }
    vt = {"found": True, "last_final_url": "https://landing.example.org/path?q=1"}
    assert found("virustotal", "url", "http://short.example.com/a", vt) == {
        ("landing.example.org", "domain", "final URL's host")
    }


def test_what_is_not_an_indicator_is_left_out_and_the_list_is_bounded() -> None:
    rules = (PivotRule("names", "name"), PivotRule("more", "more"))
    data = {
        "names": ["not a host", "", "x" * 3000 + ".com", 7, None, {"deep": "a.com"}],
        "more": [f"h{n}.example.com" for n in range(pivots.MAX_PIVOTS + 10)],
    }
    got = pivots.find(rules, "domain", "example.com", data)
    assert len(got) == pivots.MAX_PIVOTS
    assert [p.value for p in got[:2]] == ["h0.example.com", "h1.example.com"]
    assert pivots.find(rules, "domain", "example.com", {"names": "example.com"}) == []
    assert pivots.find(rules, "domain", "example.com", {}) == []


@pytest.mark.parametrize(
    ("rule", "refusal"),
    [
        (PivotRule("", "why"), "needs a path and a why"),
        (PivotRule("a", ""), "needs a path and a why"),
        (PivotRule("a", "why", take="first"), "takes 'first'"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_declaration_is_refused_at_registration(rule: PivotRule, refusal: str) -> None:
    with pytest.raises(ValueError, match=refusal):
        catalog.register(
            ProviderSpec(name="echo", label="Echo", kinds=frozenset({"domain"}), pivots=(rule,))
        )
    assert catalog.get("echo") is None


def test_internetdb_host_names_are_pivots() -> None:
    # the captured InternetDB answer in tests/fixtures/internetdb (see its SOURCES.md)
    body = (FIXTURES / "internetdb" / "bbot_fixture_200_ANONYMIZED.json").read_text()
    data = json.loads(body)
    assert found("internetdb", "ipv4", data["ip"], data) == {
        ("autodiscover.blacklanternsecurity.com", "domain", "host name (Shodan)"),
        ("mail.blacklanternsecurity.com", "domain", "host name (Shodan)"),
    }
    assert found("internetdb", "ipv4", "1.2.3.4", {"hostnames": []}) == set()
