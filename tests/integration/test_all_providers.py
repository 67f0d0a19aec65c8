"""One job of defanged free text through all five providers, each its own service, on the
real bus, against loopback DNS, RDAP, VirusTotal and AbuseIPDB servers."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dnsserver import ZoneServer
from fakes.abuseipdb import FakeAbuseIpdb
from fakes.rdap import FakeRdapServer, domain_object, network_object
from fakes.virustotal import FakeVirusTotal
from helpers import SHOP_ZONE, api, make_settings, running_gateway, running_provider, wait_job

from shared.natsserver import NatsServer
from shared.schemas import PROVIDER_KINDS

TEXT = """
Reported by the helpdesk: mail from billing[at]shop-example[.]com linking to
hxxps://login-shop-example[.]com/verify and a beacon to 185.220.101[.]50.
"""


def rdap_records() -> dict[str, Any]:
    young = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "shop-example.com": domain_object("shop-example.com", registrar="Good Registrar"),
        "login-shop-example.com": domain_object("login-shop-example.com", registered=young),
        "185.220.101.0/24": network_object(
            "185.220.101.0",
            "185.220.101.255",
            name="TOR-EXIT-NET",
            country="DE",
            origin_as=64501,
        ),
    }


async def test_free_text_job_through_every_provider(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    login = "https://login-shop-example.com/verify"
    async with contextlib.AsyncExitStack() as stack:
        zone = stack.enter_context(ZoneServer(SHOP_ZONE))
        rdap = await stack.enter_async_context(FakeRdapServer(rdap_records()))
        vt = await stack.enter_async_context(
            FakeVirusTotal(
                {
                    "shop-example.com": FakeVirusTotal.stats(harmless=70, undetected=15),
                    login: FakeVirusTotal.stats(malicious=9, harmless=40),
                    "185.220.101.50": FakeVirusTotal.stats(malicious=2, harmless=50),
                }
            )
        )
        abuse = await stack.enter_async_context(
            FakeAbuseIpdb(
                {
                    "185.220.101.50": {
                        "abuseConfidenceScore": 100,
                        "totalReports": 812,
                        "isTor": True,
                    }
                }
            )
        )
        settings = make_settings(
            tmp_path,
            nats_server.url,
            "[providers.virustotal.quota]\nper_minute = 100\n",
            LOOKOUT_DNS_NAMESERVERS=zone.nameserver,
            LOOKOUT_RDAP_URL=rdap.url,
            VIRUSTOTAL_API_KEY=vt.api_key,
            VIRUSTOTAL_URL=vt.base_url,
            ABUSEIPDB_API_KEY=abuse.api_key,
            ABUSEIPDB_URL=abuse.base_url,
        )
        base = await stack.enter_async_context(running_gateway(settings))
        for name in PROVIDER_KINDS:
            await stack.enter_async_context(running_provider(settings, name))
        status, created = await api("POST", f"{base}/api/v1/lookups", json={"text": TEXT})
        assert status == 202, created
        job = await wait_job(base, created["id"], within=30)

    cell = {(r["indicator"], r["provider"]): r for r in job["results"]}
    assert all(r["status"] == "done" for r in job["results"]), [
        (k, r["status"], r["error"]) for k, r in cell.items() if r["status"] != "done"
    ]
    email, ip = "billing@shop-example.com", "185.220.101.50"
    assert set(job["providers"]["email"]) == {"dns", "whois", "emailsec", "virustotal"}
    assert set(job["providers"]["ipv4"]) == {"dns", "whois", "virustotal", "abuseipdb"}
    # email: good posture, well-established domain
    posture = cell[(email, "emailsec")]
    assert posture["verdict"] == "harmless"
    assert posture["data"]["spf"]["dns_lookups"] == 2  # mx + include
    assert posture["data"]["dmarc"]["policy"] == "reject"
    assert cell[(email, "whois")]["data"]["registrar"] == "Good Registrar"
    assert cell[(email, "virustotal")]["verdict"] == "harmless"
    # the phishing URL: young domain, flagged by engines
    assert cell[(login, "whois")]["verdict"] == "suspicious"
    assert cell[(login, "virustotal")]["verdict"] == "malicious"
    assert cell[(login, "dns")]["data"]["records"]["A"] == [ip]
    # the address: Tor exit with a bad reputation
    assert cell[(ip, "abuseipdb")]["verdict"] == "malicious"
    assert cell[(ip, "whois")]["data"]["asn"] in (64501, "64501", "AS64501")
    overall = {i["value"]: i["verdict"] for i in job["indicators"]}
    assert overall == {email: "harmless", login: "malicious", ip: "malicious"}
