"""The dnsbl provider as its own service on the real bus, through the real runner, against
Spamhaus' documented answers on the loopback DNS server (tests/fakes/dnszones.py)."""

from __future__ import annotations

from pathlib import Path

from dnsserver import ZoneServer
from fakes.dnszones import spamhaus_zone
from helpers import api, make_settings, running_gateway, running_provider, wait_job

from shared.core.natsserver import NatsServer

LISTED = {
    "185.220.101.50": "127.0.0.4",  # XBL
    "93.184.216.34": "127.0.0.10",  # PBL only
    "45.9.148.3": "127.0.0.2",  # SBL
    "5.45.70.1": "127.255.255.254",  # Spamhaus refusing a query through a public resolver
}


async def test_dnsbl_through_the_runner(nats_server: NatsServer, tmp_path: Path) -> None:
    with ZoneServer(spamhaus_zone(listed=LISTED)) as dns:
        settings = make_settings(tmp_path, nats_server.url, LOOKOUT_DNS_NAMESERVERS=dns.nameserver)
        async with running_gateway(settings) as base, running_provider(settings, "dnsbl"):
            text = (
                "185.220.101[.]50 93.184.216.34 45.9.148.3 8.8.8.8 5.45.70.1 "
                "hxxps://dbltest[.]com/x billing@example.com example.org"
            )
            status, created = await api(
                "POST", f"{base}/api/v1/lookups", json={"text": text, "providers": ["dnsbl"]}
            )
            assert status == 202, created
            job = await wait_job(base, created["id"])
    cell = {r["indicator"]: r for r in job["results"] if r["provider"] == "dnsbl"}
    assert cell["185.220.101.50"]["verdict"] == "suspicious"
    assert cell["185.220.101.50"]["summary"].startswith("XBL")
    assert cell["93.184.216.34"]["verdict"] == "undetected"
    assert cell["93.184.216.34"]["data"]["policy_only"] is True
    assert cell["45.9.148.3"]["verdict"] == "malicious"
    assert cell["8.8.8.8"]["verdict"] == "undetected"
    assert cell["https://dbltest.com/x"]["verdict"] == "malicious"
    assert cell["billing@example.com"]["verdict"] == "undetected"
    assert cell["example.org"]["summary"] == "not listed (dbl.spamhaus.org)"
    refused = cell["5.45.70.1"]
    assert (refused["status"], refused["verdict"]) == ("error", "error")
    assert "query via a public/open resolver" in refused["error"]
    assert refused["data"]["listed"] is False
    overall = {i["value"]: i["verdict"] for i in job["indicators"]}
    assert overall["45.9.148.3"] == "malicious"
    assert overall["93.184.216.34"] != "malicious"
