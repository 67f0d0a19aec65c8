"""``GET /api/v1/providers`` and the lookup form: the gateway learns which providers exist
from the launcher's registry (the catalog), not from any provider's code, so a provider
registered there is offered, listed, selected for jobs and named in verdict reasons with
nothing else to change."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from helpers import api, make_settings, running_gateway

from services import registry
from shared.core.natsserver import NatsServer
from shared.lookups import catalog
from shared.lookups import config as lookups_config
from shared.lookups.catalog import ProviderSpec

TOKEN = "t0ken-abc"


@pytest.fixture
def echo_provider(monkeypatch: pytest.MonkeyPatch) -> ProviderSpec:
    """One more provider in the catalog, as its registration line would add it (the catalog
    is restored afterwards)."""
    monkeypatch.setattr(catalog, "_specs", dict(catalog._specs))
    monkeypatch.setattr(lookups_config, "_tables", dict(lookups_config._tables))
    spec = ProviderSpec(name="echo", label="Echo Intel", kinds=frozenset({"domain", "url"}))
    catalog.register(spec)
    return spec


async def test_the_providers_are_the_registered_ones(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, nats_server.url, LOOKOUT_API_TOKENS=TOKEN)
    async with running_gateway(settings) as base:
        assert (await api("GET", f"{base}/api/v1/providers"))[0] == 401  # as all of /api
        code, body = await api("GET", f"{base}/api/v1/providers", TOKEN)
    assert code == 200
    assert [p["name"] for p in body["providers"]] == list(registry.PROVIDERS)
    by_name = {p["name"]: p for p in body["providers"]}
    assert set(by_name["emailsec"]) == {"name", "label", "kinds", "details", "links"}
    assert {k: by_name["emailsec"][k] for k in ("name", "label", "kinds")} == {
        "name": "emailsec",
        "label": "SPF/DMARC",
        "kinds": ["domain", "email"],
    }
    assert {k: by_name["abuseipdb"][k] for k in ("name", "label", "kinds")} == {
        "name": "abuseipdb",
        "label": "AbuseIPDB",
        "kinds": ["ipv4", "ipv6"],
    }
    assert by_name["dns"]["kinds"] == ["ipv4", "ipv6", "domain", "url", "email"]
    # how each provider's details look and where its own pages are: what its SPEC declares
    for name in registry.PROVIDERS:
        spec = catalog.get(name)
        assert spec is not None
        assert by_name[name]["details"] == spec.details.as_json(), name
        assert by_name[name]["links"] == dict(spec.links), name
    report, _network = by_name["abuseipdb"]["details"]["sections"]
    assert report["title"] == "Report"
    assert report["fields"][0] == {
        "label": "Confidence of abuse",
        "path": "abuseConfidenceScore",
        "format": "score",
        "template": "",
        "missing": "",
    }
    assert by_name["abuseipdb"]["links"]["ipv4"] == "https://www.abuseipdb.com/check/{value}"
    assert by_name["emailsec"]["details"] == {"sections": [], "notes": []}


async def test_a_provider_registered_in_the_catalog_is_offered_everywhere(
    nats_server: NatsServer, tmp_path: Path, echo_provider: ProviderSpec
) -> None:
    settings = make_settings(tmp_path, nats_server.url)
    async with running_gateway(settings) as base:
        _, listed = await api("GET", f"{base}/api/v1/providers")
        assert listed["providers"][-1] == {
            "name": "echo",
            "label": "Echo Intel",
            "kinds": ["domain", "url"],
            "details": {"sections": [], "notes": []},
            "links": {},
        }
        async with aiohttp.ClientSession() as session, session.get(f"{base}/") as page:
            form = await page.text()
        assert 'value="echo" checked> Echo Intel</label>' in form
        assert "{{providers}}" not in form

        code, job = await api("POST", f"{base}/api/v1/lookups", json={"text": "example.com"})
        assert code == 202, job
        named = [p for p in registry.PROVIDERS if "domain" in catalog.kinds(p)]
        assert job["providers"] == {"domain": [*named, "echo"]}
        code, only = await api(
            "POST", f"{base}/api/v1/lookups", json={"text": "example.com", "providers": ["echo"]}
        )
        assert only["providers"] == {"domain": ["echo"]}
        _, shown = await api("GET", f"{base}/api/v1/lookups/{only['id']}")
        assert shown["indicators"][0]["verdict_reasons"] == ["Echo Intel: pending"]
        code, refused = await api(
            "POST", f"{base}/api/v1/lookups", json={"text": "example.com", "providers": ["nope"]}
        )
        assert code == 400
        assert refused["providers"] == [*registry.PROVIDERS, "echo"]
