"""The ``apprise`` target through the real runner and bus, with the real Apprise library
posting to a loopback ``json://`` endpoint (tests/fakes/apprise.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes.apprise import AppriseJsonFake
from helpers import (
    api,
    dead_letters,
    jetstream,
    make_settings,
    publish_alerts,
    running_gateway,
    running_sink,
    settled,
    wait_for,
)

from shared.core.errors import ConfigError
from shared.core.natsserver import NatsServer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "apprise"
RETRY = "retry = { max_attempts = 3, initial_backoff = 0.2, max_backoff = 0.5, jitter = 0 }"


@pytest.fixture
async def endpoint() -> AsyncIterator[AppriseJsonFake]:
    async with AppriseJsonFake() as fake:
        yield fake


def apprise_target(url: str, extra: str = "", timeout: float = 3) -> str:
    return f"""
[[targets]]
name = "chat"
type = "apprise"
url = "{url}"
timeout = {timeout}
{RETRY}
{extra}
"""


async def log_of(base: str, ident: str) -> list[tuple[str, int | None]]:
    status, body = await api("GET", f"{base}/api/v1/notifications/{ident}")
    assert status == 200, body
    return [(a["outcome"], a["status"]) for a in body["targets"]["chat"]["attempt_log"]]


def captured_headers() -> dict[str, str]:
    lines = (FIXTURES / "json_ok.headers.txt").read_text().splitlines()[1:]
    return dict(line.split(": ", 1) for line in lines if ": " in line)


async def test_delivers_through_apprise_as_apprise_posts(
    nats_server: NatsServer, tmp_path: Path, endpoint: AppriseJsonFake
) -> None:
    settings = make_settings(tmp_path, nats_server.url, apprise_target(endpoint.url()))

    def message(i: int) -> dict[str, Any]:
        return {"risk": 80 - 70 * i, "description": f"port scan {i}", "application": "shop"}

    async with running_gateway(settings) as base, running_sink(settings, "chat"):
        async with jetstream(nats_server.url, settings) as js:
            ids = await publish_alerts(js, 2, prefix="apprise", data=message)
        await wait_for(lambda: settled(nats_server.url, "chat"), within=20)
        logs = [await log_of(base, ident) for ident in ids]
    assert logs == [[("delivered", None)], [("delivered", None)]]
    captured = (FIXTURES / "json_ok.body").read_text()
    shape = set(json.loads(captured))
    bodies = sorted(endpoint.bodies(), key=lambda b: b["message"])
    assert [set(b) for b in bodies] == [shape, shape]  # what Apprise itself sends
    assert [b["type"] for b in bodies] == ["failure", "info"]  # risk 80, risk 10
    assert bodies[0]["title"] == "[scanner] http scan in shop (risk 80)"
    assert "port scan 0" in bodies[0]["message"]
    expected = captured_headers()
    for request in endpoint.requests:
        assert request.headers["User-Agent"] == expected["User-Agent"]
        assert request.headers["Content-Type"] == expected["Content-Type"]


async def test_failures_retry_refusals_dead_letter_and_the_url_stays_secret(
    nats_server: NatsServer, tmp_path: Path, endpoint: AppriseJsonFake
) -> None:
    password, token = "pa55w0rd-very-secret", "tok3n-abcdefghijkl"
    url = endpoint.url(path=token).replace("json://", f"json://lookout:{password}@")
    settings = make_settings(tmp_path, nats_server.url, apprise_target(url, timeout=1))
    endpoint.fail_next = [500]
    endpoint.delay_next = [0.0, 3.0]  # the second call outlasts the timeout
    async with running_gateway(settings) as base, running_sink(settings, "chat"):
        async with jetstream(nats_server.url, settings) as js:
            [first] = await publish_alerts(js, 1, prefix="retried")
        await wait_for(lambda: settled(nats_server.url, "chat"), within=30)
        retried = await log_of(base, first)
        endpoint.fail_next = [400]
        async with jetstream(nats_server.url, settings) as js:
            [second] = await publish_alerts(js, 1, prefix="refused")
        await wait_for(lambda: settled(nats_server.url, "chat"), within=20)
        refused = await log_of(base, second)
    assert retried[0] == ("failed", 500)
    assert retried[-1] == ("delivered", None)
    assert all(outcome == "failed" for outcome, _ in retried[:-1])
    assert refused == [("refused", 400)]
    [dead] = await dead_letters(nats_server.url, "chat")
    assert dead.notification is not None
    assert dead.notification.id == second
    assert "HTTP 400" in dead.error
    assert password not in dead.error
    assert token not in dead.error


def test_a_url_apprise_cannot_use_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a URL Apprise can use") as info:
        make_settings(tmp_path, "nats://127.0.0.1:1", apprise_target("notaschema://s3cr3t"))
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigError, match="needs url"):
        make_settings(tmp_path, "nats://127.0.0.1:1", apprise_target("").replace('url = ""', ""))
    secret = tmp_path / "apprise-url"
    secret.write_text("json://127.0.0.1:9/lookout\n")
    toml = apprise_target("x").replace('url = "x"', f'url_file = "{secret}"')
    make_settings(tmp_path, "nats://127.0.0.1:1", toml)
