"""``[[sources]]`` end to end: real payloads posted to ``POST /webhooks/<name>`` of the real
gateway, stored on a real nats-server and delivered by a real sink to a loopback receiver
(payloads and their origin: tests/fixtures/sources/SOURCES.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from helpers import (
    Receiver,
    api,
    http_target,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    sqreen_fixture,
    sqreen_sign,
    wait_for,
)
from standardwebhooks import Webhook

from services.gateway import apidocs
from shared.core.natsserver import NatsServer, free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
SOURCE_WHSEC = "whsec_c291cmNlLXNpZGUtc2VjcmV0LWZvci10ZXN0cw=="
GH_SECRET = "gh-e2e-secret"

SOURCES = f"""
[[sources]]
name = "svix"
type = "standard-webhooks"
secret = "{SOURCE_WHSEC}"

[[sources]]
name = "gh"
type = "github"
secret = "{GH_SECRET}"

[[sources]]
name = "prom"
type = "alertmanager"
token = "s3cr3t-token"

[[sources]]
name = "hmac"
type = "generic"
secret = "k"
environment = "lab"

[[sources]]
name = "sqreen-eu"
type = "sqreen"
secret = "eu-secret"
"""


def documented(status: int, body: Any) -> None:
    """``body`` is what the OpenAPI document says ``POST /webhooks/{name}`` answers."""
    document = apidocs.openapi()
    answers = document["paths"]["/webhooks/{name}"]["post"]["responses"]
    assert str(status) in answers, f"{status} not documented"
    schema = answers[str(status)]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)


async def post(
    base: str, name: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/webhooks/{name}", data=body, headers=headers) as response,
    ):
        answer = await response.json()
        if name != "sqreen":
            documented(response.status, answer)
        return response.status, answer


def am_capture(path: str) -> tuple[dict[str, str], bytes]:
    base = FIXTURES / "alertmanager" / "captured-am-0.25.0" / path
    lines = (base.parent / f"{base.name}.headers.txt").read_text().splitlines()[1:]
    wanted = {"authorization", "content-type", "user-agent"}
    pairs = [line.split(": ", 1) for line in lines if ": " in line]
    return {k: v for k, v in pairs if k.lower() in wanted}, (
        base.parent / f"{base.name}.body.json"
    ).read_bytes()


def gh_headers(body: bytes, event: str, delivery: str) -> dict[str, str]:
    mac = hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={mac}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }


async def test_every_source_type_end_to_end(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, nats_server.url, SOURCES + http_target(receiver.url))
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        # Standard Webhooks, signed by the official library; sent twice (a retry)
        body = json.dumps(
            {"type": "scan.finished", "timestamp": "2026-12-07T08:00:00Z", "data": {"risk": 80}}
        ).encode()
        now = datetime.now(UTC)
        signature = Webhook(SOURCE_WHSEC).sign("msg_e2e_1", now, body.decode())
        sw_headers = {
            "webhook-id": "msg_e2e_1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "Content-Type": "application/json",
        }
        assert await post(base, "svix", body, sw_headers) == (
            200,
            {"accepted": 1, "duplicates": 0, "ids": ["msg_e2e_1"]},
        )
        assert await post(base, "svix", body, sw_headers) == (
            200,
            {"accepted": 1, "duplicates": 1, "ids": ["msg_e2e_1"]},
        )
        # GitHub: a security event, another event, and the ping
        dependabot = (
            FIXTURES / "github" / "dependabot_alert" / "created.payload.json"
        ).read_bytes()
        status, answer = await post(
            base, "gh", dependabot, gh_headers(dependabot, "dependabot_alert", "guid-1")
        )
        assert (status, answer["ids"]) == (200, ["guid-1"])
        push = (FIXTURES / "github" / "push" / "payload.json").read_bytes()
        assert (await post(base, "gh", push, gh_headers(push, "push", "guid-2")))[0] == 200
        ping = (FIXTURES / "github" / "ping" / "payload.json").read_bytes()
        status, answer = await post(base, "gh", ping, gh_headers(ping, "ping", "guid-3"))
        assert status == 200
        assert answer["accepted"] == 0
        assert answer["zen"] == json.loads(ping)["zen"]
        # Alertmanager, as the real one sent it: a mixed group, then a repeat of a group
        head, group = am_capture("run1-bearer-basic/03_bearer")
        status, answer = await post(base, "prom", group, head)
        assert (status, answer["accepted"], answer["duplicates"]) == (200, 2, 0)
        for number in (1, 2):
            head, repeat = am_capture(f"run2-repeat/0{number}_bearer")
            status, answer = await post(base, "prom", repeat, head)
            assert (status, answer["duplicates"]) == (200, number - 1)
        # generic HMAC
        alert = b'{"id": "g-1", "type": "port_scan", "risk": 30, "ips": ["198.51.100.4"]}'
        sig = hmac.new(b"k", alert, hashlib.sha256).hexdigest()
        assert (await post(base, "hmac", alert, {"X-Signature": sig}))[0] == 200
        # a second Sqreen organisation with its own secret
        sqreen_body = sqreen_fixture("v2_test.json")
        eu = {"X-Sqreen-Integrity": sqreen_sign(sqreen_body, "eu-secret")}
        status, answer = await post(base, "sqreen-eu", sqreen_body, eu)
        assert status == 200
        sqreen_ids = answer["ids"]
        # and /webhooks/sqreen still takes SQREEN_WEBHOOK_SECRET, and only it
        assert (await post_webhook(base, sqreen_body))[0] == 200
        assert (await post(base, "sqreen", sqreen_body, eu))[0] == 401

        expected = 1 + 2 + 2 + 1 + 1 + len(sqreen_ids) + len(sqreen_ids)
        await wait_for(lambda: len(receiver.requests) >= expected)
        await wait_for(lambda: settled(nats_server.url, "ops-http"))
        envelopes = [json.loads(raw) for _, raw in receiver.requests]
        assert len(envelopes) == expected  # each stored once, the ping never
        by_source: dict[str, list[dict[str, Any]]] = {}
        for envelope in envelopes:
            by_source.setdefault(envelope["source"], []).append(envelope)
        assert [e["type"] for e in by_source["svix"]] == ["scan_finished"]
        assert sorted(e["type"] for e in by_source["gh"]) == ["dependabot_alert", "push"]
        gh_alert = next(e for e in by_source["gh"] if e["type"] == "dependabot_alert")
        assert gh_alert["data"] == json.loads(dependabot)  # the payload, unchanged
        prom = by_source["prom"]
        assert len(prom) == 3  # two of the mixed group, one of the repeated group
        assert {e["id"].rsplit(":", 1)[1] for e in prom} == {"firing", "resolved"}
        assert [e["id"] for e in by_source["hmac"]] == ["g-1"]
        assert sorted(e["id"] for e in by_source["sqreen-eu"]) == sorted(sqreen_ids)

        # the notifications API shows them with what their profile read
        status, listed = await api("GET", f"{base}/api/v1/notifications?limit=100")
        assert status == 200
        shown = {(n["source"], n["id"]): n for n in listed["notifications"]}
        gh_shown = shown[("gh", "guid-1")]
        assert gh_shown["risk"] == 50  # dependabot severity "medium"
        assert gh_shown["application"] == "wolfy1339/pika-pack"
        assert gh_shown["title"].startswith("GitHub dependabot alert created")
        resolved = next(
            n
            for (source, _), n in shown.items()
            if source == "prom" and n["id"].endswith(":resolved")
        )
        assert (resolved["risk"], resolved["application"], resolved["environment"]) == (
            90,
            "bastion",
            "prod",
        )
        assert resolved["title"] == "[RESOLVED] SSHBruteForce in bastion (prod): critical"
        assert shown[("hmac", "g-1")]["environment"] == "lab"  # the source's default
        assert shown[("svix", "msg_e2e_1")]["risk"] == 80

        # metrics per source
        status, text = await api("GET", f"{base}/metrics")
        assert 'lookout_webhooks_total{outcome="accepted",source="prom"} 3.0' in text
        assert 'lookout_notifications_published_total{duplicate="true",source="svix"} 1.0' in text


async def test_refusals_are_4xx_with_a_reason_and_store_nothing(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path,
        nats_server.url,
        SOURCES + http_target(receiver.url),
        LOOKOUT_MAX_BODY_BYTES="4096",
    )
    head, group = am_capture("run1-bearer-basic/01_bearer")
    push = (FIXTURES / "github" / "push" / "payload.json").read_bytes()
    async with running_gateway(settings) as base, running_sink(settings, "ops-http"):
        cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
            ("nobody", group, head, 404, "no source named 'nobody'"),
            ("prom", group, {**head, "Authorization": "Bearer nope"}, 401, "credentials"),
            ("prom", group, {}, 401, "Authorization"),
            ("prom", b'{"version": "4", "alerts": [', head, 400, "malformed"),
            ("prom", b'{"version": "2", "alerts": []}', head, 400, "version"),
            ("gh", push[:3000], {"X-GitHub-Event": "push"}, 401, "X-Hub-Signature-256"),
            ("svix", b"{}", {"webhook-id": "x"}, 401, "webhook-timestamp"),
            ("hmac", b"{}", {"X-Signature": "00" * 32}, 401, "does not match"),
            ("hmac", b"x" * 5000, {"X-Signature": "00" * 32}, 413, "4096"),
        ]
        for name, body, headers, status, reason in cases:
            got, answer = await post(base, name, body, headers)
            assert got == status, (name, answer)
            assert reason.lower() in answer["error"].lower(), (name, answer)
            assert "Traceback" not in answer["error"]
        status, text = await api("GET", f"{base}/metrics")
        assert 'lookout_webhooks_rejected_total{reason="bad_signature",source="prom"} 2.0' in text
        assert "nobody" not in text  # no metric for a name no source has
        # the same request, signed: accepted (so the refusals were about what they said)
        mac = hmac.new(GH_SECRET.encode(), push[:3000], hashlib.sha256).hexdigest()
        got, answer = await post(
            base,
            "gh",
            push[:3000],
            {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={mac}"},
        )
        assert got == 400  # signed, but cut: not JSON
        assert "JSON" in answer["error"]
        status, listed = await api("GET", f"{base}/api/v1/notifications")
        assert listed["total"] == 0
    assert receiver.requests == []


async def test_a_source_named_sqreen_takes_its_secret_from_the_configuration(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    toml = '[[sources]]\nname = "sqreen"\ntype = "sqreen"\nsecret = "old-one, new-one"\n'
    settings = make_settings(tmp_path, nats_server.url, toml + http_target(receiver.url))
    body = sqreen_fixture("v2_test.json")
    async with running_gateway(settings) as base:
        for secret in ("old-one", "new-one"):
            headers = {"X-Sqreen-Integrity": sqreen_sign(body, secret)}
            assert (await post(base, "sqreen", body, headers))[0] == 200
        assert (await post_webhook(base, body))[0] == 401  # SQREEN_WEBHOOK_SECRET no longer


async def test_unavailable_bus_is_503_with_retry_after(tmp_path: Path) -> None:
    from aiohttp import web

    from services.gateway.app import create_app

    settings = make_settings(tmp_path, f"nats://127.0.0.1:{free_port()}", SOURCES)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        head, group = am_capture("run1-bearer-basic/01_bearer")
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}/webhooks/prom", data=group, headers=head) as response,
        ):
            assert response.status == 503  # Alertmanager retries a 5xx
            assert response.headers["Retry-After"] == "5"
            answer = await response.json()
        documented(503, answer)
        assert "retry" in answer["error"]
        # authentication comes first: a stranger learns nothing about the bus
        status, answer = await post(base, "prom", group, {"Authorization": "Bearer x"})
        assert status == 401
    finally:
        await runner.cleanup()
