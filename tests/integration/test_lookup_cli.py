"""``lookout lookup`` through the bus, as a script would run it."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnsserver import ZoneServer
from fakes.virustotal import FakeVirusTotal
from helpers import LOOKOUT, make_settings, running_provider

from shared.core.natsserver import NatsServer, free_port

ZONE = """
$ORIGIN example.com.
@     IN SOA ns1 hostmaster 1 7200 3600 1209600 300
evil  IN A 203.0.113.66
good  IN A 192.0.2.1
"""


@pytest.fixture
def zone() -> Iterator[ZoneServer]:
    with ZoneServer(ZONE) as server:
        yield server


async def lookup(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        LOOKOUT,
        "lookup",
        *args,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_lookup_cli(nats_server: NatsServer, tmp_path: Path, zone: ZoneServer) -> None:
    async with FakeVirusTotal(
        {
            "evil.example.com": FakeVirusTotal.stats(malicious=12, harmless=40),
            "good.example.com": FakeVirusTotal.stats(harmless=70),
            "http://evil.example.com/x": FakeVirusTotal.stats(malicious=6),
        }
    ) as vt:
        env = {
            "NATS_URL": nats_server.url,
            "LOOKOUT_DNS_NAMESERVERS": zone.nameserver,
            "VIRUSTOTAL_API_KEY": vt.api_key,
            "VIRUSTOTAL_URL": vt.base_url,
        }
        settings = make_settings(tmp_path, nats_server.url, **env)
        async with running_provider(settings, "dns"), running_provider(settings, "virustotal"):
            args = ("--providers", "dns,virustotal")
            code, out, err = await lookup(env, "evil[.]example[.]com", *args)
            assert code == 1, err  # a malicious indicator fails the script
            [header, row] = out.splitlines()
            assert header.split()[:4] == ["INDICATOR", "VERDICT", "DNS", "VIRUSTOTAL"]
            assert row.split()[:5] == [
                "evil.example.com",
                "malicious",
                "A",
                "203.0.113.66",
                "12/77",
            ]
            assert "\033[" not in out  # no colour when stdout is not a terminal

            code, out, _ = await lookup(env, "good.example.com", "--json", *args)
            assert code == 0
            job = json.loads(out)
            assert job["complete"] is True
            # the run has its own request id, sent with its lookup requests like the API's
            assert isinstance(job["request_id"], str), job
            assert job["request_id"], job
            assert {r["provider"]: r["verdict"] for r in job["results"]} == {
                "dns": "unknown",
                "virustotal": "harmless",
            }

            code, out, _ = await lookup(
                env,
                "-",
                "--csv",
                *args,
                stdin=b"alert: hxxp://evil[.]example[.]com/x from good.example.com\n",
            )
            assert code == 1
            rows = list(csv.DictReader(io.StringIO(out)))
            assert [r["indicator"] for r in rows] == [
                "http://evil.example.com/x",
                "good.example.com",
            ]
            assert rows[0]["verdict"] == "malicious"

            code, _, err = await lookup(env, "999.1.1.1", "not-a-host")
            assert code == 2
            assert "skipped '999.1.1.1'" in err
            assert "no indicator" in err
            code, _, err = await lookup(env, "a.com", "--providers", "nope")
            assert code == 2

    dead = {"NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    code, _, err = await lookup(dead, "a.com")
    assert code == 3
    assert "cannot reach NATS" in err


async def test_errors_are_errors_and_skipped_lines_are_told(
    nats_server: NatsServer, tmp_path: Path, zone: ZoneServer
) -> None:
    """A result that could not be checked makes the verdict ``error`` and exit 3; a
    malicious finding still exits 1; lines of ``--file`` that gave nothing are told."""
    async with FakeVirusTotal(
        {"evil.example.com": FakeVirusTotal.stats(malicious=12, harmless=40)}
    ) as vt:
        env = {
            "NATS_URL": nats_server.url,
            "LOOKOUT_DNS_NAMESERVERS": zone.nameserver,
            "VIRUSTOTAL_API_KEY": vt.api_key,
            "VIRUSTOTAL_URL": vt.base_url,
            "LOOKOUT_RDAP_URL": f"http://127.0.0.1:{free_port()}",
            "LOOKOUT_WHOIS_SERVER": f"127.0.0.1:{free_port()}",
        }
        settings = make_settings(tmp_path, nats_server.url, **env)
        async with (
            running_provider(settings, "dns"),
            running_provider(settings, "virustotal"),
            running_provider(settings, "whois"),
        ):
            # WHOIS alone, its upstreams unreachable: nothing checked, so error and 3
            code, out, err = await lookup(env, "good.example.com", "--providers", "whois")
            assert code == 3, (out, err)
            [header, row] = out.splitlines()
            assert header.split() == ["INDICATOR", "VERDICT", "WHOIS", "WHY"]
            assert row.split()[:3] == ["good.example.com", "error", "error:"]
            assert row.endswith("WHOIS: cannot connect: Connection refused (RDAP, WHOIS)")
            assert "1 result could not be checked" in err

            # DNS answered (unknown), WHOIS failed: error, not unknown, in JSON and CSV too
            both = ("--providers", "dns,whois")
            code, out, _ = await lookup(env, "good.example.com", "--json", *both)
            assert code == 3
            [indicator] = json.loads(out)["indicators"]
            assert indicator["verdict"] == "error"
            assert indicator["verdict_reasons"] == [
                "WHOIS: cannot connect: Connection refused (RDAP, WHOIS)"
            ]
            code, out, _ = await lookup(env, "good.example.com", "--csv", *both)
            assert code == 3
            [csv_row] = list(csv.DictReader(io.StringIO(out)))
            assert csv_row["verdict"] == "error"
            assert csv_row["verdict_reasons"].startswith("WHOIS: cannot connect")

            # a malicious finding still wins (exit 1) although WHOIS failed
            iocs = tmp_path / "iocs.txt"
            iocs.write_text(
                "indicator,note\n"
                "evil[.]example[.]com,phish\n"
                "\n"
                "intranet\n"
                "999.1.1.1\n"
                "call the helpdesk\n"
            )
            code, out, err = await lookup(
                env, "--file", str(iocs), "--providers", "dns,virustotal,whois"
            )
            assert code == 1, (out, err)
            [_, row] = out.splitlines()
            assert row.split()[:2] == ["evil.example.com", "malicious"]
            assert row.endswith("  VirusTotal: 12/77 engines")
            assert f"skipped {iocs} line 1 'indicator,note': no IP address" in err
            assert f"skipped {iocs} line 4 'intranet': not a public domain" in err
            assert f"skipped {iocs} line 6 'call the helpdesk'" in err
            assert "skipped '999.1.1.1': malformed IPv4 address" in err
            assert "line 3" not in err  # an empty line is nothing to tell
            assert "could not be checked" in err


async def test_a_file_that_cannot_be_read_is_bad_input(tmp_path: Path) -> None:
    """Exit 2 (bad input), never 1, which a script reads as "a malicious indicator"."""
    dead = {"NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    for path in (tmp_path / "missing.txt", tmp_path):
        code, out, err = await lookup(dead, "--file", str(path))
        assert code == 2, err
        assert err.startswith(f"lookout: cannot read {path}: "), err
        assert out == ""
