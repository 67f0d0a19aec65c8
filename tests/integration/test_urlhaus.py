"""The ``urlhaus`` provider through the real runner and bus against its loopback fake,
which serves the URLhaus documentation's bodies (tests/fixtures/urlhaus/SOURCES.md)."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fakes.urlhaus import FakeUrlhaus, fixture
from helpers import api, make_settings, provider_job, running_gateway, running_provider, wait_for

from shared.core.natsserver import NatsServer
from shared.core.settings import Settings

URL_OK = fixture("url_ok.json")
HOST_OK = fixture("host_ok.json")
EVIL_URL = URL_OK["url"]  # http://sskymedia.com/VMYB-ht_JAQo-gi/INV/…/ (online)


def offline(body: dict[str, object]) -> dict[str, object]:
    """The documented host body with every URL taken down."""
    changed = copy.deepcopy(body)
    for url in changed["urls"]:  # type: ignore[attr-defined]
        url["url_status"] = "offline"
    return changed


def settings_for(tmp_path: Path, nats: NatsServer, fake: FakeUrlhaus, **env: str) -> Settings:
    return make_settings(
        tmp_path,
        nats.url,
        **{"ABUSECH_API_KEY": fake.api_key, "URLHAUS_URL": fake.base_url, **env},
    )


async def test_urlhaus_verdicts(nats_server: NatsServer, tmp_path: Path) -> None:
    taken_down = offline(HOST_OK)
    async with FakeUrlhaus(
        urls={EVIL_URL: URL_OK},
        hosts={"vektorex.com": HOST_OK, "45.77.1.2": taken_down},
    ) as fake:
        got = await provider_job(
            settings_for(tmp_path, nats_server, fake),
            "urlhaus",
            [EVIL_URL, "vektorex.com", "45.77.1.2", "example.com", "https://example.com/"],
        )
    url = got[EVIL_URL]
    assert url["verdict"] == "malicious"
    assert url["summary"] == "malware_download, online (Heodo)"
    assert url["data"]["url_status"] == "online"
    assert url["data"]["blacklists"]["spamhaus_dbl"] == "abused_legit_malware"
    assert url["data"]["date_added"] == "2019-01-19T01:33:26Z"
    host = got["vektorex.com"]
    assert host["verdict"] == "malicious"
    assert host["summary"] == "120 malware URLs, 2 online"
    assert host["data"]["urls"][0]["url"] == "http://vektorex.com/source/Z/5016223.exe"
    assert got["45.77.1.2"]["verdict"] == "suspicious"  # only offline URLs
    assert got["45.77.1.2"]["summary"] == "120 malware URLs, 0 online"
    assert got["example.com"]["verdict"] == "undetected"
    assert got["example.com"]["summary"] == "not in URLhaus"
    assert got["https://example.com/"]["verdict"] == "undetected"
    forms = sorted(r.body.decode() for r in fake.requests)
    assert "host=vektorex.com" in forms
    assert "url=https%3A%2F%2Fexample.com%2F" in forms
    assert {r.path for r in fake.requests} == {"/v1/url/", "/v1/host/"}
    assert {r.headers["Auth-Key"] for r in fake.requests} == {fake.api_key}


async def test_offline_url_is_suspicious(nats_server: NatsServer, tmp_path: Path) -> None:
    body = {**URL_OK, "url_status": "offline"}
    async with FakeUrlhaus(urls={EVIL_URL: body}) as fake:
        got = await provider_job(settings_for(tmp_path, nats_server, fake), "urlhaus", [EVIL_URL])
    assert got[EVIL_URL]["verdict"] == "suspicious"
    assert got[EVIL_URL]["summary"] == "malware_download, offline (Heodo)"


async def test_refused_key_says_so_and_never_shows_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeUrlhaus(api_key="the-right-key-0123456789") as fake:
        settings = settings_for(tmp_path, nats_server, fake, ABUSECH_API_KEY="a-wrong-key-987654")
        got = await provider_job(settings, "urlhaus", ["vektorex.com"])
        base_url = fake.base_url
    result = got["vektorex.com"]
    assert result["status"] == "error"
    assert result["error"] == "HTTP 401: API key refused"
    assert result["data"] == {"upstream": f"{base_url}/host/"}
    assert "a-wrong-key" not in str(result)


async def first_result(base: str, indicator: str) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Submit a urlhaus lookup of ``indicator``; a reader of its (only) result."""
    _, created = await api(
        "POST",
        f"{base}/api/v1/lookups",
        json={"indicators": [indicator], "providers": ["urlhaus"]},
    )

    async def result() -> dict[str, Any]:
        _, job = await api("GET", f"{base}/api/v1/lookups/{created['id']}")
        return job["results"][0]  # type: ignore[no-any-return]

    return result


async def test_429_queues_then_answers(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeUrlhaus(hosts={"vektorex.com": HOST_OK}) as fake:
        fake.fail(429, retry_after="1")
        settings = settings_for(tmp_path, nats_server, fake)
        async with running_gateway(settings) as base, running_provider(settings, "urlhaus"):
            result = await first_result(base, "vektorex.com")
            seen: list[str] = []

            async def done() -> bool:
                seen.append((await result())["status"])
                return seen[-1] == "done"

            await wait_for(done, within=20)
    assert fake.answers[:2] == [429, 200]
    assert "queued" in seen


async def test_an_endless_retry_after_queues_for_a_day_not_for_ever(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """``Retry-After: inf`` once stored an endless pause the store could not read back:
    the result stayed pending for good, and so did every later throttled lookup."""
    async with FakeUrlhaus(hosts={"vektorex.com": HOST_OK}) as fake:
        fake.fail(429, retry_after="inf")
        settings = settings_for(tmp_path, nats_server, fake)
        async with running_gateway(settings) as base, running_provider(settings, "urlhaus"):
            result = await first_result(base, "vektorex.com")

            async def queued() -> bool:
                return bool((await result())["status"] == "queued")

            await wait_for(queued, within=20)
            shown = await result()
    retry_at = datetime.fromisoformat(shown["retry_at"])
    assert timedelta(hours=23) < retry_at - datetime.now(UTC) <= timedelta(days=1)


async def test_unreachable_and_not_configured(nats_server: NatsServer, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, ABUSECH_API_KEY="k" * 20, URLHAUS_URL="http://127.0.0.1:9/v1"
    )
    got = await provider_job(settings, "urlhaus", ["vektorex.com"])
    assert got["vektorex.com"]["error"] == "cannot connect: Connection refused"
    keyless = make_settings(tmp_path, nats_server.url)
    got = await provider_job(keyless, "urlhaus", ["vektorex.com"])
    assert got["vektorex.com"]["status"] == "not_configured"
    assert got["vektorex.com"]["data"] == {
        "variable": "ABUSECH_API_KEY",
        "signup_url": "https://auth.abuse.ch/",
    }
