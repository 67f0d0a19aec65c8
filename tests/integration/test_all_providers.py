"""One job of defanged free text (and a file hash) through every provider, each its own
service, on the real bus, against loopback DNS (with Team Cymru's and Spamhaus' zones),
RDAP, VirusTotal, AbuseIPDB, URLhaus, ThreatFox, MalwareBazaar, OTX, InternetDB and Tor
exit list servers."""

from __future__ import annotations

from pathlib import Path

from helpers import EMAIL, IP, LOGIN, LOOKUP_TEXT, SAMPLE_SHA256, api, lookup_stack, wait_job

from shared.core.natsserver import NatsServer


async def test_free_text_job_through_every_provider(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with lookup_stack(nats_server, tmp_path) as base:
        status, created = await api(
            "POST",
            f"{base}/api/v1/lookups",
            json={"text": f"{LOOKUP_TEXT}\nDropped sample: SHA256={SAMPLE_SHA256.upper()}"},
        )
        assert status == 202, created
        job = await wait_job(base, created["id"], within=30)

    cell = {(r["indicator"], r["provider"]): r for r in job["results"]}
    assert all(r["status"] == "done" for r in job["results"]), [
        (k, r["status"], r["error"]) for k, r in cell.items() if r["status"] != "done"
    ]
    assert set(job["providers"]["email"]) == {"dns", "whois", "emailsec", "virustotal", "dnsbl"}
    assert set(job["providers"]["url"]) == {
        "dns",
        "whois",
        "virustotal",
        "dnsbl",
        "urlhaus",
        "threatfox",
        "otx",
    }
    assert set(job["providers"]["ipv4"]) == {
        "dns",
        "whois",
        "virustotal",
        "abuseipdb",
        "urlhaus",
        "threatfox",
        "otx",
        "asn",
        "dnsbl",
        "internetdb",
        "tor",
    }
    assert job["providers"]["hash"] == ["virustotal", "threatfox", "malwarebazaar", "otx"]
    # email: good posture, well-established domain
    posture = cell[(EMAIL, "emailsec")]
    assert posture["verdict"] == "harmless"
    assert posture["data"]["spf"]["dns_lookups"] == 2  # mx + include
    assert posture["data"]["dmarc"]["policy"] == "reject"
    assert cell[(EMAIL, "whois")]["data"]["registrar"] == "Good Registrar"
    assert cell[(EMAIL, "virustotal")]["verdict"] == "harmless"
    # the phishing URL: young domain, flagged by engines
    assert cell[(LOGIN, "whois")]["verdict"] == "suspicious"
    assert cell[(LOGIN, "virustotal")]["verdict"] == "malicious"
    assert cell[(LOGIN, "dns")]["data"]["records"]["A"] == [IP]
    # the address: Tor exit with a bad reputation
    assert cell[(IP, "abuseipdb")]["verdict"] == "malicious"
    assert cell[(IP, "whois")]["data"]["asn"] in (64501, "64501", "AS64501")
    assert cell[(LOGIN, "urlhaus")]["verdict"] == "malicious"  # online malware URL
    assert cell[(LOGIN, "threatfox")]["verdict"] == "undetected"
    assert cell[(IP, "threatfox")]["summary"] == "Cobalt Strike (botnet_cc), confidence 75%"
    assert cell[(IP, "otx")]["verdict"] == "suspicious"  # 2 pulses
    assert cell[(IP, "urlhaus")]["verdict"] == "undetected"
    # the sample: MalwareBazaar knows it, the others do not
    assert cell[(SAMPLE_SHA256, "malwarebazaar")]["summary"] == "AgentTesla (exe)"
    assert cell[(SAMPLE_SHA256, "virustotal")]["verdict"] == "undetected"
    assert cell[(SAMPLE_SHA256, "otx")]["verdict"] == "undetected"
    assert cell[(IP, "asn")]["summary"] == "AS64501 TOR-EXIT-NET - Example Exit Network, DE"
    assert cell[(IP, "asn")]["verdict"] == "unknown"
    assert cell[(IP, "dnsbl")]["verdict"] == "suspicious"  # XBL
    assert cell[(LOGIN, "dnsbl")]["verdict"] == "malicious"  # DBL phishing
    assert cell[(EMAIL, "dnsbl")]["verdict"] == "undetected"
    assert cell[(IP, "internetdb")]["verdict"] == "undetected"  # ports and tags: no finding
    assert cell[(IP, "internetdb")]["summary"] == "3 ports, tags: tor, self-signed"
    assert cell[(IP, "tor")]["verdict"] == "suspicious"
    assert cell[(IP, "tor")]["data"]["exit"] is True
    overall = {i["value"]: i["verdict"] for i in job["indicators"]}
    assert overall == {
        EMAIL: "harmless",
        LOGIN: "malicious",
        IP: "malicious",
        SAMPLE_SHA256: "malicious",
    }
