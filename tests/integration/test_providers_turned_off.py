"""Providers turned off (``LOOKOUT_PROVIDERS``, ``[providers.<name>] enabled = false``) are
absent everywhere: no consumer on the bus, not in ``GET /api/v1/providers``, the lookup
form, jobs, the JSON, the CSV or ``lookout lookup``; asking for one is a 400."""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

import aiohttp
import pytest
from helpers import api, jetstream, make_settings, run_lookout, running_gateway, running_provider
from nats.js.errors import NotFoundError

from shared.core.natsserver import NatsServer
from shared.lookups import streams

LOOKOUT = str(Path(sys.executable).parent / "lookout")


async def test_providers_turned_off_are_absent_everywhere(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        "[providers.whois]\nenabled = false\n",
        LOOKOUT_PROVIDERS="dns,whois,virustotal",
    )
    async with running_gateway(settings) as base, running_provider(settings, "virustotal"):
        _, listed = await api("GET", f"{base}/api/v1/providers")
        assert [p["name"] for p in listed["providers"]] == ["dns", "virustotal"]
        async with aiohttp.ClientSession() as session, session.get(f"{base}/") as page:
            form = await page.text()
        assert 'value="dns"' in form
        assert 'value="virustotal"' in form
        assert 'value="whois"' not in form
        assert 'value="abuseipdb"' not in form

        code, job = await api(
            "POST", f"{base}/api/v1/lookups", json={"indicators": ["198.51.100.7"]}
        )
        assert code == 202, job
        assert job["providers"] == {"ipv4": ["dns", "virustotal"]}
        _, shown = await api("GET", f"{base}/api/v1/lookups/{job['id']}")
        assert {r["provider"] for r in shown["results"]} == {"dns", "virustotal"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/api/v1/lookups/{job['id']}.csv") as answer,
        ):
            header = next(csv.reader(io.StringIO(await answer.text())))
        assert [h for h in header if h.endswith("_status")] == ["dns_status", "virustotal_status"]

        for off in ("whois", "abuseipdb"):
            code, refused = await api(
                "POST",
                f"{base}/api/v1/lookups",
                json={"indicators": ["198.51.100.7"], "providers": [off]},
            )
            assert code == 400
            assert f"{off}: turned off by the configuration" in refused["error"]
            assert refused["providers"] == ["dns", "virustotal"]

        async with jetstream(nats_server.url) as js:
            await js.consumer_info(streams.LOOKUPS, streams.provider_durable("dns"))
            for off in ("whois", "abuseipdb", "emailsec"):
                with pytest.raises(NotFoundError):
                    await js.consumer_info(streams.LOOKUPS, streams.provider_durable(off))


async def test_lookout_lookup_refuses_a_provider_that_is_off(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "LOOKOUT_PROVIDERS": "dns",
        "LOOKOUT_DATA_DIR": str(tmp_path),
    }
    env.pop("LOOKOUT_CONFIG", None)
    code, _, err = await run_lookout(env, "lookup", "--providers", "virustotal", "example.com")
    assert code == 2
    assert "unknown or turned-off providers virustotal (known: dns)" in err
