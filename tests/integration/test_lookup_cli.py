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

from shared.natsserver import NatsServer, free_port

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


async def test_a_file_that_cannot_be_read_is_bad_input(tmp_path: Path) -> None:
    """Exit 2 (bad input), never 1, which a script reads as "a malicious indicator"."""
    dead = {"NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    for path in (tmp_path / "missing.txt", tmp_path):
        code, out, err = await lookup(dead, "--file", str(path))
        assert code == 2, err
        assert err.startswith(f"lookout: cannot read {path}: "), err
        assert out == ""
