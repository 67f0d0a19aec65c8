"""A 1,000-indicator job (domains, URLs, e-mail addresses, IPv4 and IPv6 addresses, MD5,
SHA-1 and SHA-256 hashes) through every registered provider, each its own service, on the
real bus, against the loopback fakes of :func:`helpers.lookup_stack`: it completes, each
provider is asked exactly the indicators of the kinds it answers, and every result ends in
the final state expected of its provider (OTX without its key: ``not_configured``;
InternetDB unreachable: ``error`` with the cause; every other provider ``done``)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from helpers import EMAIL, IP, LOGIN, SAMPLE_SHA256, api, lookup_stack, wait_job

from services import registry
from shared.core.natsserver import NatsServer, free_port

# The kinds each provider answers (README, provider table), written out so that a provider
# asked about a kind it does not answer, or not asked about one it does, fails the test.
KINDS = {
    "dns": {"domain", "url", "email", "ipv4", "ipv6"},
    "whois": {"domain", "url", "email", "ipv4", "ipv6"},
    "emailsec": {"domain", "email"},
    "virustotal": {"domain", "url", "email", "ipv4", "ipv6", "hash"},
    "abuseipdb": {"ipv4", "ipv6"},
    "urlhaus": {"domain", "url", "ipv4"},
    "threatfox": {"domain", "url", "ipv4", "hash"},
    "malwarebazaar": {"hash"},
    "otx": {"ipv4", "ipv6", "domain", "url", "hash"},
    "asn": {"ipv4", "ipv6"},
    "dnsbl": {"ipv4", "ipv6", "domain", "url", "email"},
    "internetdb": {"ipv4", "ipv6"},
    "tor": {"ipv4", "ipv6"},
}

# Quotas and concurrency high enough that nothing waits on a quota (the fakes have none).
SETTINGS = """
[providers.virustotal]
quota = { per_minute = 1000000, per_day = 1000000 }
concurrency = 32
[providers.abuseipdb]
quota = { per_day = 1000000 }
concurrency = 32
"""


def corpus() -> list[tuple[str, str]]:
    """1,000 (indicator, kind): the lookup stack's four known ones, then 250 domains, 150
    URLs, 150 IPv4, 100 e-mail addresses, 100 IPv6 and 246 hashes (MD5, SHA-1, SHA-256 in
    turn, every other one in upper case); public addresses only."""
    items = [(EMAIL, "email"), (LOGIN, "url"), (IP, "ipv4"), (SAMPLE_SHA256, "hash")]
    for i in range(250):
        items.append((f"h{i}.site{i % 25}-example.com", "domain"))
    for i in range(150):
        items.append((f"https://h{i}.site{i % 25}-example.com/path/{i}?q=1", "url"))
    for i in range(150):
        items.append((f"185.{220 + i % 20}.{i // 20}.{1 + i}", "ipv4"))
    for i in range(100):
        items.append((f"user{i}@mail{i % 10}-example.org", "email"))
    for i in range(100):
        items.append((f"2a01:4f8:{i + 1:x}::1", "ipv6"))
    for i in range(1000 - len(items)):
        digest = hashlib.new(("md5", "sha1", "sha256")[i % 3], f"sample {i}".encode())
        items.append((digest.hexdigest().upper() if i % 2 else digest.hexdigest(), "hash"))
    assert len({value for value, _ in items}) == 1000
    return items


async def test_thousand_indicators_through_every_provider(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    items = corpus()
    kinds = Counter(kind for _, kind in items)
    assert set(registry.PROVIDERS) == set(KINDS)  # a new provider must be added here
    async with lookup_stack(
        nats_server,
        tmp_path,
        toml=SETTINGS,
        OTX_API_KEY="",
        INTERNETDB_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        # 80 dns results ended in error once beside the rest of the suite, most likely
        # queries timing out (the loopback DNS server is a thread of this busy process):
        # 10 s instead of 5, within the providers' own 20 s; a failure shows the causes
        LOOKOUT_DNS_TIMEOUT="10",
    ) as base:
        status, created = await api(
            "POST", f"{base}/api/v1/lookups", json={"indicators": [v for v, _ in items]}
        )
        assert status == 202, created
        assert created["rejected"] == [], created
        assert created["rejected_total"] == 0, created
        job = await wait_job(base, created["id"], within=600)

    indicators = {i["value"].lower(): i for i in job["indicators"]}
    assert len(indicators) == 1000
    assert Counter(i["kind"] for i in job["indicators"]) == kinds
    hashes = [i for i in job["indicators"] if i["kind"] == "hash"]
    assert Counter(i["data"]["algorithm"] for i in hashes) == {"md5": 82, "sha1": 82, "sha256": 83}
    for kind in kinds:
        assert set(job["providers"][kind]) == {p for p, k in KINDS.items() if kind in k}, kind

    results: list[dict[str, Any]] = job["results"]
    # one result per indicator and provider of its kind, no more, no fewer
    pairs = Counter((r["indicator"].lower(), r["provider"]) for r in results)
    assert max(pairs.values()) == 1
    expected = {
        (value.lower(), provider)
        for value, kind in items
        for provider, answered in KINDS.items()
        if kind in answered
    }
    assert set(pairs) == expected
    per_provider = Counter(r["provider"] for r in results)
    assert per_provider == {p: sum(kinds[k] for k in KINDS[p]) for p in KINDS}
    assert per_provider["malwarebazaar"] == kinds["hash"] == 247
    assert {r["provider"] for r in results if r["kind"] == "hash"} == {
        "virustotal",
        "threatfox",
        "malwarebazaar",
        "otx",
    }

    # every result final, in the state its provider is expected to end in
    states = Counter((r["provider"], r["status"]) for r in results)
    causes = Counter((r["provider"], r["error"]) for r in results if r["status"] == "error")
    assert states == {
        (p, "not_configured" if p == "otx" else "error" if p == "internetdb" else "done"): n
        for p, n in per_provider.items()
    }, causes
    for result in results:
        if result["provider"] == "otx":
            assert result["data"]["variable"] == "OTX_API_KEY", result
            assert "OTX_API_KEY" in result["summary"], result
        elif result["provider"] == "internetdb":
            assert result["verdict"] == "error", result
            assert result["error"].startswith("cannot connect"), result
        else:
            assert result["verdict"] != "error", result
            assert not result["error"], result

    # the known indicators are still found among the thousand
    cell = {(r["indicator"].lower(), r["provider"]): r for r in results}
    assert cell[(SAMPLE_SHA256, "malwarebazaar")]["summary"] == "AgentTesla (exe)"
    assert cell[(LOGIN, "urlhaus")]["verdict"] == "malicious"
    assert cell[(IP, "threatfox")]["summary"] == "Cobalt Strike (botnet_cc), confidence 75%"
    assert cell[(IP, "tor")]["data"]["exit"] is True
    assert indicators[IP]["verdict"] == "malicious"
    assert indicators[SAMPLE_SHA256]["verdict"] == "malicious"
