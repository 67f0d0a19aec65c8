"""File hashes (indicator kind ``hash``) through the API, the real bus and the
``virustotal`` provider against its loopback fake serving a real file object
(tests/fixtures/virustotal/SOURCES.md)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import aiohttp
from fakes.virustotal import FakeVirusTotal, file_fixture
from helpers import (
    api,
    make_settings,
    run_lookout,
    running_gateway,
    running_provider,
    wait_job,
)

from shared.core.natsserver import NatsServer

ITAMI = file_fixture()
SHA256 = ITAMI["id"]  # 03bd9a94…311b
MD5 = ITAMI["attributes"]["md5"]
SHA1 = ITAMI["attributes"]["sha1"]
UNKNOWN = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

TEXT = f"""Sysmon: Hashes=MD5={MD5.upper()},SHA256={SHA256}
also seen: sha1 {SHA1}. Not one: {SHA256}00 nor https://files.example.com/{UNKNOWN}
and {UNKNOWN}.exe; but ({UNKNOWN}) is."""


async def test_hashes_from_text_are_looked_up_by_virustotal(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeVirusTotal({SHA256: ITAMI["attributes"]}) as vt:
        settings = make_settings(
            tmp_path,
            nats_server.url,
            "[providers.virustotal.quota]\nper_minute = 1000\n",
            VIRUSTOTAL_API_KEY=vt.api_key,
            VIRUSTOTAL_URL=vt.base_url,
        )
        async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
            status, created = await api(
                "POST", f"{base}/api/v1/lookups", json={"text": TEXT, "providers": ["virustotal"]}
            )
            assert status == 202, created
            hashes = [i for i in created["indicators"] if i["kind"] == "hash"]
            assert [(i["value"], i["data"]["algorithm"]) for i in hashes] == [
                (MD5, "md5"),
                (SHA256, "sha256"),
                (SHA1, "sha1"),
                (UNKNOWN, "sha256"),
            ]
            assert created["providers"]["hash"] == ["virustotal"]
            job = await wait_job(base, created["id"])
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{base}/api/v1/lookups/{created['id']}.csv") as answer,
            ):
                table = list(csv.DictReader(io.StringIO(await answer.text())))
    paths = [r.path for r in vt.requests]
    assert f"/api/v3/files/{MD5}" in paths
    assert f"/api/v3/files/{SHA1}" in paths
    cell = {r["indicator"]: r for r in job["results"] if r["provider"] == "virustotal"}
    found = cell[MD5]
    assert found["status"] == "done"
    assert found["verdict"] == "malicious"  # 40 engines of 74
    assert found["summary"] == "40/74 engines"
    assert found["data"]["algorithm"] == "md5"
    assert found["data"]["meaningful_name"] == "itami.exe"
    assert found["data"]["size"] == 44032
    assert found["data"]["type_description"] == "Win32 EXE"
    assert found["data"]["first_submission_date"] == 1633178439
    assert found["data"]["threat_label"] == "trojan.msil/tasker"
    assert cell[SHA1]["verdict"] == "malicious"
    assert cell[UNKNOWN]["verdict"] == "undetected"
    assert cell[UNKNOWN]["data"] == {"found": False, "algorithm": "sha256"}
    shown = {i["value"]: i for i in job["indicators"]}
    assert shown[SHA1]["data"] == {"algorithm": "sha1"}
    assert shown[MD5]["verdict"] == "malicious"
    rows = {r["indicator"]: r for r in table}
    assert rows[SHA256]["kind"] == "hash"
    assert rows[SHA256]["virustotal_verdict"] == "malicious"


async def test_a_hash_goes_only_to_providers_that_know_hashes(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        status, created = await api(
            "POST", f"{base}/api/v1/lookups", json={"indicators": [MD5.upper(), "example.com"]}
        )
        assert status == 202, created
        assert created["indicators"][0] == {
            "value": MD5,
            "kind": "hash",
            "scope": "public",
            "data": {"algorithm": "md5"},
        }
        assert "dns" not in created["providers"]["hash"]
        assert "whois" not in created["providers"]["hash"]
        assert "virustotal" in created["providers"]["hash"]
        status, refused = await api(
            "POST", f"{base}/api/v1/lookups", json={"indicators": [SHA256[:50]]}
        )
        assert status == 400
        assert "50 hex digits" in str(refused)


async def test_hashes_from_an_uploaded_file_and_the_cli(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeVirusTotal({SHA256: ITAMI["attributes"]}) as vt:
        env = {
            "NATS_URL": nats_server.url,
            "VIRUSTOTAL_API_KEY": vt.api_key,
            "VIRUSTOTAL_URL": vt.base_url,
            "LOOKOUT_DATA_DIR": str(tmp_path / "cli"),
        }
        settings = make_settings(
            tmp_path, nats_server.url, "[providers.virustotal.quota]\nper_minute = 1000\n", **env
        )
        async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
            form = aiohttp.FormData()
            form.add_field("file", f"sha256,name\n{SHA256},itami.exe\n", filename="iocs.csv")
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{base}/api/v1/lookups", data=form) as answer,
            ):
                created = await answer.json()
            assert answer.status == 202, created
            assert [(i["kind"], i["value"]) for i in created["indicators"]] == [("hash", SHA256)]

            code, out, err = await run_lookout(
                {**os.environ, **env}, "lookup", "--providers", "virustotal", "--json", MD5.upper()
            )
    assert code == 1, err  # a malicious indicator fails the script
    job = json.loads(out)
    assert job["indicators"][0]["kind"] == "hash"
    assert job["indicators"][0]["data"] == {"algorithm": "md5"}
    assert job["results"][0]["verdict"] == "malicious"
