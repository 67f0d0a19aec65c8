"""The ``threatfox`` provider through the real runner and bus against its loopback fake,
which serves the ThreatFox documentation's bodies (tests/fixtures/threatfox/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

from fakes.threatfox import FakeThreatFox, fixture
from helpers import make_settings, provider_job

from shared.core.natsserver import NatsServer
from shared.core.settings import Settings

SEARCH_IOC = fixture("search_ioc_docs.json")  # 139.180.203.104:443, confidence 75
LOW = fixture("search_ioc_ip_rollwagen.json")  # 139.180.203.104:443, confidence 50
SEARCH_HASH = fixture("search_hash_docs.json")  # Houdini C2 URL, confidence 100
IP = "139.180.203.104"
MD5 = "2151c4b970eff0071948dbbc19066aa4"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"


def settings_for(
    tmp_path: Path, nats: NatsServer, fake: FakeThreatFox, toml: str | None = None, **env: str
) -> Settings:
    return make_settings(
        tmp_path,
        nats.url,
        toml,
        **{"ABUSECH_API_KEY": fake.api_key, "THREATFOX_URL": fake.base_url, **env},
    )


async def test_threatfox_verdicts(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeThreatFox(
        iocs={IP: SEARCH_IOC, "139.180.203.1": SEARCH_IOC, "harold.jetos.com": SEARCH_HASH},
        hashes={MD5: SEARCH_HASH},
    ) as fake:
        got = await provider_job(
            settings_for(tmp_path, nats_server, fake),
            "threatfox",
            [IP, MD5.upper(), SHA1, "example.com", "139.180.203.1", "harold.jetos.com"],
        )
    ip = got[IP]
    assert ip["verdict"] == "malicious"
    assert ip["summary"] == "Cobalt Strike (botnet_cc), confidence 75%"
    assert ip["data"]["iocs"][0]["ioc"] == "139.180.203.104:443"
    assert ip["data"]["first_seen"] == "2020-12-06T09:10:23Z"
    found = got[MD5]
    assert found["verdict"] == "malicious"
    assert found["data"]["algorithm"] == "md5"
    assert found["data"]["malware"] == ["Houdini"]
    assert got[SHA1]["verdict"] == "unknown"
    assert got[SHA1]["summary"] == "ThreatFox searches MD5 and SHA-256 only"
    assert got["example.com"]["verdict"] == "undetected"
    assert got["example.com"]["summary"] == "not in ThreatFox"
    # an answer about another address (a substring match) is not this address's finding
    assert got["139.180.203.1"]["verdict"] == "undetected"
    # a domain that is the host of a URL IOC is
    assert got["harold.jetos.com"]["verdict"] == "malicious"
    assert {"query": "search_hash", "hash": MD5} in fake.queries
    assert {"query": "search_ioc", "search_term": IP} in fake.queries
    assert all(q.get("hash") != SHA1 for q in fake.queries)


async def test_low_confidence_is_suspicious_and_threshold_is_set(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeThreatFox(iocs={IP: LOW}) as fake:
        got = await provider_job(
            settings_for(
                tmp_path, nats_server, fake, "[providers.threatfox]\nmalicious_confidence = 60\n"
            ),
            "threatfox",
            [IP],
        )
    assert got[IP]["verdict"] == "suspicious"
    assert got[IP]["data"]["confidence"] == 50


async def test_refused_key_and_429(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeThreatFox(api_key="the-right-key-0123456789") as fake:
        settings = settings_for(tmp_path, nats_server, fake, ABUSECH_API_KEY="a-wrong-key-987654")
        got = await provider_job(settings, "threatfox", [IP])
        base_url = fake.base_url
    assert got[IP]["status"] == "error"
    assert got[IP]["error"] == "HTTP 401: API key refused"
    assert got[IP]["data"] == {"upstream": f"{base_url}/"}
    assert "a-wrong-key" not in str(got)
    async with FakeThreatFox(iocs={IP: SEARCH_IOC}) as fake:
        fake.fail(429, retry_after="1")
        got = await provider_job(settings_for(tmp_path, nats_server, fake), "threatfox", [IP])
    assert fake.answers[:2] == [429, 200]
    assert got[IP]["verdict"] == "malicious"
