"""The ``otx`` provider through the real runner and bus against its loopback fake, which
serves real OTX captures (tests/fixtures/otx/SOURCES.md)."""

from __future__ import annotations

import copy
from pathlib import Path

from fakes.otx import FakeOtx, fixture
from helpers import make_settings, provider_job

from shared.core.natsserver import NatsServer
from shared.core.settings import Settings

IP_BODY = fixture("ipv4_general.json")  # 186.180.44.234, 2 pulses
DOMAIN_BODY = fixture("domain_general.json")  # support-gmeet.com, 4 pulses
MD5_BODY = fixture("file_md5_general.json")  # 1 pulse
IP = "186.180.44.234"
DOMAIN = "support-gmeet.com"
MD5 = "1fd35d9dc2eb919088f4eb48ab18b5a8"


def settings_for(
    tmp_path: Path, nats: NatsServer, fake: FakeOtx, toml: str | None = None, **env: str
) -> Settings:
    return make_settings(
        tmp_path, nats.url, toml, **{"OTX_API_KEY": fake.api_key, "OTX_URL": fake.base_url, **env}
    )


async def test_otx_verdicts(nats_server: NatsServer, tmp_path: Path) -> None:
    whitelisted = copy.deepcopy(IP_BODY)
    whitelisted["validation"] = [
        {"source": "whitelist", "message": "Whitelisted IP", "name": "Whitelisted IP"}
    ]
    async with FakeOtx(
        {
            ("IPv4", IP): IP_BODY,
            ("domain", DOMAIN): DOMAIN_BODY,
            ("hostname", f"www.{DOMAIN}"): DOMAIN_BODY,
            ("file", MD5): MD5_BODY,
            ("IPv4", "8.8.8.8"): whitelisted,
        }
    ) as fake:
        got = await provider_job(
            settings_for(tmp_path, nats_server, fake),
            "otx",
            [IP, DOMAIN, f"www.{DOMAIN}", MD5, "8.8.8.8", "example.com"],
        )
    assert got[IP]["verdict"] == "suspicious"  # 2 pulses < 3
    assert got[IP]["summary"] == "2 pulses"
    assert got[IP]["data"]["pulses"][0]["name"] == "LCIA HoneyNet Data - July 2025 - Redishoneypot"
    assert got[IP]["data"]["pulses"][0]["created"] == "2025-07-01T00:00:26Z"
    assert got[DOMAIN]["verdict"] == "malicious"  # 4 pulses
    assert got[DOMAIN]["summary"] == "4 pulses (APNIC)"
    assert got[f"www.{DOMAIN}"]["verdict"] == "malicious"  # asked as a hostname
    assert got[MD5]["verdict"] == "suspicious"
    assert got[MD5]["summary"] == "1 pulse"
    assert got[MD5]["data"]["algorithm"] == "md5"
    assert got["8.8.8.8"]["verdict"] == "harmless"
    assert got["8.8.8.8"]["summary"] == "whitelisted by OTX"
    assert got["example.com"]["verdict"] == "undetected"
    assert got["example.com"]["summary"] == "not in OTX"
    paths = {r.path for r in fake.requests}
    assert f"/api/v1/indicators/file/{MD5}/general" in paths
    assert f"/api/v1/indicators/hostname/www.{DOMAIN}/general" in paths


async def test_threshold_is_configurable(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeOtx({("IPv4", IP): IP_BODY}) as fake:
        got = await provider_job(
            settings_for(tmp_path, nats_server, fake, "[providers.otx]\nmalicious_pulses = 2\n"),
            "otx",
            [IP],
        )
    assert got[IP]["verdict"] == "malicious"


async def test_refused_key_and_429(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeOtx({("IPv4", IP): IP_BODY}, api_key="the-right-key-0123456789") as fake:
        settings = settings_for(tmp_path, nats_server, fake, OTX_API_KEY="a-wrong-key-987654")
        got = await provider_job(settings, "otx", [IP])
        base_url = fake.base_url
    assert got[IP]["error"] == "HTTP 403: API key refused"
    assert got[IP]["data"] == {"upstream": f"{base_url}/indicators/IPv4/{IP}/general"}
    assert "a-wrong-key" not in str(got)
    async with FakeOtx({("IPv4", IP): IP_BODY}) as fake:
        fake.fail(429, retry_after="1")
        got = await provider_job(settings_for(tmp_path, nats_server, fake), "otx", [IP])
    assert fake.answers[:2] == [429, 200]
    assert got[IP]["verdict"] == "suspicious"
    keyless = make_settings(tmp_path, nats_server.url)
    got = await provider_job(keyless, "otx", [IP])
    assert got[IP]["status"] == "not_configured"
    assert got[IP]["data"] == {
        "variable": "OTX_API_KEY",
        "signup_url": "https://otx.alienvault.com/accounts/signup",
    }
