"""The teams and discord targets end to end: real nats-server, gateway and sinks, a
loopback Teams Workflows webhook and a loopback Discord."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import msgspec
import pytest
from fakes.discord import FakeDiscord, embed_size, pings
from fakes.discord import check_message as discord_check
from fakes.teams import FakeTeams, error_body
from fakes.teams import check_message as teams_check
from helpers import (
    dead_letters,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    settled,
    sqreen_fixture,
    wait_for,
)

from services.sinks import discord as discord_target
from services.sinks import teams as teams_target
from services.sinks.discord.config import DiscordTargetConfig
from services.sinks.teams.config import TeamsTargetConfig
from shared.core.errors import ConfigError
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.relay import schemas
from shared.relay.config import relay
from shared.relay.target import Delivered, Delivery, PermanentError, RetryableError

TEAMS = "soc-teams"
DISCORD = "soc-discord"
RETRY = "retry = { max_attempts = 3, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }"


def targets(teams_url: str, discord_url: str) -> str:
    return f"""
[[targets]]
name = "{TEAMS}"
type = "teams"
webhook_url = "{teams_url}"
timeout = 2
{RETRY}

[[targets]]
name = "{DISCORD}"
type = "discord"
webhook_url = "{discord_url}"
timeout = 2
{RETRY}
"""


@pytest.fixture
async def teams() -> AsyncIterator[FakeTeams]:
    async with FakeTeams() as fake:
        yield fake


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


def secrets_of(url: str) -> list[str]:
    """The parts of a webhook URL that must never be logged: the URL itself and its
    credential (Teams: the ``sig`` query parameter; Discord: the token, the last segment)."""
    parts = urlsplit(url)
    sig = parse_qs(parts.query).get("sig")
    return [url, sig[0] if sig else parts.path.rsplit("/", 1)[-1]]


def assert_webhooks_not_logged(
    out: str, caplog: pytest.LogCaptureFixture, urls: list[str], expect: str
) -> None:
    """Neither webhook URL nor its credential in the sinks' output (structlog writes to
    stdout, libraries to stdlib logging), and not even a redacted attempt to log one."""
    assert expect in out, "the sinks' log lines were not captured"
    for text in (out, caplog.text):
        for url in urls:
            for secret in secrets_of(url):
                assert secret not in text
        assert "[REDACTED]" not in text


def card_of(message: dict[str, Any]) -> dict[str, Any]:
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card: dict[str, Any] = attachment["content"]
    return card


def facts(card: dict[str, Any]) -> dict[str, str]:
    [fact_set] = [block for block in card["body"] if block["type"] == "FactSet"]
    return {fact["title"]: fact["value"] for fact in fact_set["facts"]}


def text_blocks(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [block for block in card["body"] if block["type"] == "TextBlock"]


def fields(embed: dict[str, Any]) -> dict[str, str]:
    return {field["name"]: field["value"] for field in embed["fields"]}


def sqreen_event(event_id: str, **message: Any) -> bytes:
    return json.dumps(
        [
            {
                "api_version": "2",
                "message_type": "security_event",
                "date_created": "2026-01-02T03:04:05+00:00",
                "message": {"event_id": event_id, **message},
            }
        ]
    ).encode()


async def test_security_events_coloured_by_risk_with_facts_fields_and_link(
    nats_server: NatsServer,
    tmp_path: Path,
    teams: FakeTeams,
    discord: FakeDiscord,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, targets(teams.webhook_url, discord.webhook_url)
    )
    body = sqreen_fixture("v2_security_event.json")
    async with (
        running_gateway(settings) as base,
        running_sink(settings, TEAMS),
        running_sink(settings, DISCORD),
    ):
        status, answer = await post_webhook(base, body)
        assert status == 200
        await wait_for(lambda: len(teams.messages) == 2 and len(discord.messages) == 2)
        await wait_for(lambda: settled(nats_server.url, TEAMS, DISCORD))
    assert teams.answers == [202, 202]
    assert discord.answers == [200, 200]
    assert all(request.path.endswith("?wait=true") for request in discord.requests)
    sent = json.loads(body)
    originals = {m["message"]["risk_coefficient"]: m["message"] for m in sent}
    ids = {
        m["message"]["risk_coefficient"]: m["message_id"] or m["message"]["event_id"] for m in sent
    }
    assert set(ids.values()) == set(answer["ids"])

    cards = {facts(card_of(m))["Risk"]: card_of(m) for m in teams.messages}
    embeds = {fields(m["embeds"][0])["Risk"]: m for m in discord.messages}
    assert sorted(cards) == sorted(embeds) == ["30", "80"]
    for risk, teams_colour, discord_colour in ((80, "attention", 0xE01E5A), (30, "good", 0x2EB67D)):
        original = originals[risk]
        app, env = original["application_name"], original["environment"]
        ip = original["ips"][0]["address"]
        title = f"Security event in {app} ({env}): risk {risk}"

        card = cards[str(risk)]
        assert card["type"] == "AdaptiveCard"
        assert card["version"] == "1.4"
        assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
        heading, text = text_blocks(card)
        assert heading == {
            "type": "TextBlock",
            "text": title,
            "weight": "bolder",
            "size": "medium",
            "color": teams_colour,
            "wrap": True,
        }
        assert text["wrap"] is True
        assert text["text"].startswith(original["humanized_description"] + "\n\n")
        assert facts(card) == {
            "Risk": str(risk),
            "Application": app,
            "Environment": env,
            "Source / Type": "sqreen / security\\_event",  # Markdown-escaped
            "IPs": ip,
            "Time": original["date_occurred"],
            "Id": ids[risk],
        }
        assert card["actions"] == [
            {"type": "Action.OpenUrl", "title": "View event", "url": original["event_url"]},
            {"type": "Action.OpenUrl", "title": "Silence similar", "url": similar(base, app, env)},
        ]

        message = embeds[str(risk)]
        assert message["content"] is None
        assert message["allowed_mentions"] == {"parse": []}
        [embed] = message["embeds"]
        assert embed["title"] == title
        assert embed["color"] == discord_colour
        assert embed["url"] == original["event_url"]
        assert embed["description"].startswith(original["humanized_description"] + "\n")
        assert embed["fields"] == [
            {"name": "Risk", "value": str(risk), "inline": True},
            {"name": "Application", "value": app, "inline": True},
            {"name": "Environment", "value": env, "inline": True},
            {"name": "Source / Type", "value": "sqreen / security\\_event", "inline": True},
            {"name": "IPs", "value": ip, "inline": False},
            {
                "name": "Silence",
                "value": f"[Silence similar]({similar(base, app, env)})",
                "inline": False,
            },
        ]
        assert embed["footer"] == {"text": f"lookout · {ids[risk]}"}
        assert embed["timestamp"] == original["date_occurred"]
    assert_webhooks_not_logged(
        capsys.readouterr().out, caplog, [teams.webhook_url, discord.webhook_url], "delivered"
    )


async def test_crafted_text_cannot_ping_and_is_shown_as_text(
    nats_server: NatsServer, tmp_path: Path, teams: FakeTeams, discord: FakeDiscord
) -> None:
    settings = make_settings(
        tmp_path, nats_server.url, targets(teams.webhook_url, discord.webhook_url)
    )
    crafted = (
        "@everyone <script>alert(1)</script> [click](https://evil.example) **now** "
        "<@123456789012345678> @here"
    )
    body = sqreen_event(
        "evt-crafted",
        risk_coefficient=55,
        application_name="shop <@&987654321098765432>",
        environment="prod",
        humanized_description=crafted,
        event_url="https://my.sqreen.com/application/a/events/evt-crafted",
    )
    async with (
        running_gateway(settings) as base,
        running_sink(settings, TEAMS),
        running_sink(settings, DISCORD),
    ):
        status, _ = await post_webhook(base, body)
        assert status == 200
        await wait_for(lambda: len(teams.messages) == 1 and len(discord.messages) == 1)

    # Discord: nobody notified, and every character that could make a mention, a link or
    # emphasis is escaped, so the text shows exactly as written.
    assert pings({"content": "@everyone"}) == ["@everyone"]  # the fake does notice pings
    assert discord.pings == []
    [message] = discord.messages
    assert message["content"] is None
    assert message["allowed_mentions"] == {"parse": []}
    [embed] = message["embeds"]
    assert embed["description"].startswith(
        "@everyone \\<script\\>alert(1)\\</script\\> \\[click\\](https://evil.example) "
        "\\*\\*now\\*\\* \\<@123456789012345678\\> @here"
    )
    assert fields(embed)["Application"] == "shop \\<@&987654321098765432\\>"
    assert embed["title"] == "Security event in shop \\<@&987654321098765432\\> (prod): risk 55"
    texts = fields(embed)
    link = texts.pop("Silence")
    for text in (embed["title"], embed["description"], *texts.values()):
        assert re.search(r"(?<!\\)[<>\[\]*_]", text) is None, text
    # The "Silence similar" link is a masked link on purpose; what it carries is encoded.
    assert link.startswith("[Silence similar](http")
    url = link.removeprefix("[Silence similar](").removesuffix(")")
    assert re.search(r"[<>\[\]()*@ ]", url) is None, link
    assert "application=shop+%3C%40%26987654321098765432%3E" in url
    assert embed["color"] == 0xECB22E

    # Teams: a card mentions nobody without msteams entities; HTML is not rendered, and the
    # Markdown that would make a link or emphasis is escaped.
    [teams_message] = teams.messages
    raw = json.dumps(teams_message)
    assert "msteams" not in raw
    assert "<at>" not in raw
    card = card_of(teams_message)
    heading, text = text_blocks(card)
    assert text["text"].startswith(
        "@everyone <script>alert(1)</script> \\[click\\](https://evil.example) \\*\\*now\\*\\* "
        "<@123456789012345678> @here"
    )
    assert heading["color"] == "warning"
    assert facts(card)["Application"] == "shop <@&987654321098765432>"


async def test_rate_limited_then_delivered_once(
    nats_server: NatsServer,
    tmp_path: Path,
    teams: FakeTeams,
    discord: FakeDiscord,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    teams.fail_next = [
        (
            429,
            error_body("TooManyRequests", "Rate limit is exceeded. Try again in 1 seconds."),
            {"Retry-After": "1"},
        )
    ]
    # Discord's body says 1.2 s (its headers round up): the body wins.
    discord.fail_next = [
        (
            429,
            json.dumps(
                {"message": "You are being rate limited.", "retry_after": 1.2, "global": False}
            ),
            {"Retry-After": "2", "X-RateLimit-Reset-After": "1.200", "X-RateLimit-Remaining": "0"},
        )
    ]
    settings = make_settings(
        tmp_path, nats_server.url, targets(teams.webhook_url, discord.webhook_url)
    )
    async with (
        running_gateway(settings) as base,
        running_sink(settings, TEAMS),
        running_sink(settings, DISCORD),
    ):
        await post_webhook(base, sqreen_fixture("v2_test.json"))
        await wait_for(lambda: len(teams.messages) == 1 and len(discord.messages) == 1)
        await wait_for(lambda: settled(nats_server.url, TEAMS, DISCORD))
    assert teams.answers == [429, 202]
    assert discord.answers == [429, 200]
    first, second = teams.requests
    assert second.at - first.at >= 0.9  # Retry-After: 1, where backoff alone says 0.2
    assert first.body == second.body  # the same message, sent once more
    throttled, accepted = discord.requests
    assert 1.1 <= accepted.at - throttled.at < 1.9  # retry_after 1.2, not Retry-After 2
    assert throttled.body == accepted.body
    assert await dead_letters(nats_server.url, TEAMS) == []
    assert await dead_letters(nats_server.url, DISCORD) == []
    # the test message: risk 42 and its own url
    card = card_of(teams.messages[0])
    assert text_blocks(card)[0]["color"] == "warning"
    assert card["actions"][0]["url"] == "http://test"
    [embed] = discord.messages[0]["embeds"]
    assert embed["color"] == 0xECB22E
    assert embed["url"] == "http://test"
    assert_webhooks_not_logged(
        capsys.readouterr().out, caplog, [teams.webhook_url, discord.webhook_url], "retry"
    )


async def test_unknown_webhooks_are_dead_lettered_at_once(
    nats_server: NatsServer,
    tmp_path: Path,
    teams: FakeTeams,
    discord: FakeDiscord,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    teams_gone = teams.unknown_webhook_url()  # a deleted flow: WorkflowNotFound
    discord_gone = discord.unknown_webhook_url()  # a deleted webhook: Unknown Webhook
    settings = make_settings(tmp_path, nats_server.url, targets(teams_gone, discord_gone))
    async with (
        running_gateway(settings) as base,
        running_sink(settings, TEAMS),
        running_sink(settings, DISCORD),
    ):
        _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))

        async def dead() -> bool:
            return (
                len(await dead_letters(nats_server.url, TEAMS)) == 1
                and len(await dead_letters(nats_server.url, DISCORD)) == 1
            )

        await wait_for(dead)
        await wait_for(lambda: settled(nats_server.url, TEAMS, DISCORD))
    assert teams.answers == [404]  # permanent: never retried
    assert discord.answers == [404]
    [teams_record] = await dead_letters(nats_server.url, TEAMS)
    [discord_record] = await dead_letters(nats_server.url, DISCORD)
    assert teams_record.error.startswith("HTTP 404: WorkflowNotFound: The workflow")
    assert teams_record.error.endswith("(the flow was deleted or the webhook URL is wrong)")
    assert discord_record.error == "HTTP 404: Unknown Webhook (code 10015)"
    workflow = urlsplit(teams_gone).path.split("/")[2]
    assert workflow not in teams_record.error  # Teams quoted it: scrubbed
    for record, url in ((teams_record, teams_gone), (discord_record, discord_gone)):
        assert record.attempts == 1
        for secret in secrets_of(url):
            assert secret not in record.error
        assert record.notification is not None
        assert record.notification.id == answer["ids"][0]
    assert_webhooks_not_logged(
        capsys.readouterr().out, caplog, [teams_gone, discord_gone], "dead-lettered"
    )


# ------------------------------------------------------------------ without a bus


def notification(message: dict[str, Any], kind: str = "security_event") -> schemas.Notification:
    return schemas.Notification(
        id="n-1",
        type=kind,
        source="sqreen",
        timestamp="2026-01-02T03:04:05.000Z",
        data=msgspec.Raw(json.dumps({"message_type": kind, "message": message}).encode()),
    )


def configs(settings: Settings) -> tuple[TeamsTargetConfig, DiscordTargetConfig]:
    teams_config, discord_config = relay(settings).target(TEAMS), relay(settings).target(DISCORD)
    assert isinstance(teams_config, TeamsTargetConfig)
    assert isinstance(discord_config, DiscordTargetConfig)
    return teams_config, discord_config


def test_long_texts_are_cut_to_the_limits() -> None:
    note = notification(
        {
            "risk_coefficient": 99,
            "application_name": "a_" * 2000,
            "humanized_description": "<x>\U0001f600" * 9000,
            "ips": [{"address": f"198.51.100.{i}"} for i in range(250)],
        }
    )
    teams_message = teams_target.build_message(note)
    assert teams_check(teams_message) is None
    assert len(msgspec.json.encode(teams_message)) <= 27 * 1024  # Teams: 28 KB at most
    _heading, text = text_blocks(card_of(teams_message))
    assert text["text"].endswith("…")
    assert facts(card_of(teams_message))["Application"].endswith("…")

    discord_message = discord_target.build_message(note)
    assert discord_check(discord_message) is None  # Discord would accept it
    [embed] = discord_message["embeds"]
    assert embed_size(embed) <= 6000
    assert len(embed["title"]) <= 256
    assert embed["title"].endswith("…")
    assert not embed["title"].removesuffix("…").endswith("\\")  # never cut inside an escape
    assert embed["description"].endswith("…")
    assert all(len(field["value"]) <= 1024 for field in embed["fields"])


def test_colours_and_a_message_without_risk() -> None:
    risks = (100, 70, 69, 40, 39, 0, None)
    assert [teams_target.risk_colour(r) for r in risks] == [
        "attention",
        "attention",
        "warning",
        "warning",
        "good",
        "good",
        "default",
    ]
    assert [discord_target.risk_colour(r) for r in risks] == [
        0xE01E5A,
        0xE01E5A,
        0xECB22E,
        0xECB22E,
        0x2EB67D,
        0x2EB67D,
        0x9E9E9E,
    ]
    note = notification({"description": "hi"}, kind="alert")
    card = card_of(teams_target.build_message(note))
    assert text_blocks(card)[0]["color"] == "default"
    assert "Risk" not in facts(card)
    assert card["actions"] == []  # no event URL, no link
    assert teams_check(teams_target.build_message(note)) is None
    message = discord_target.build_message(note)
    [embed] = message["embeds"]
    assert embed["color"] == 0x9E9E9E
    assert "Risk" not in fields(embed)
    assert "url" not in embed
    assert embed["timestamp"] == "2026-01-02T03:04:05+00:00"
    assert discord_check(message) is None


def test_a_webhook_url_that_is_not_a_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, "nats://127.0.0.1:4222", targets("wf/s3cr3t-sig", "123/s3cr3t-token")
    )
    teams_config, discord_config = configs(settings)
    with pytest.raises(ConfigError, match="webhook_url must be") as refused_teams:
        teams_target.build(teams_config, settings)
    with pytest.raises(ConfigError, match="webhook_url must be") as refused_discord:
        discord_target.build(discord_config, settings)
    for caught in (refused_teams, refused_discord):
        assert "s3cr3t" not in str(caught.value)


async def test_teams_wrong_signature_is_permanent_and_not_shown(tmp_path: Path) -> None:
    async with FakeTeams() as teams:
        workflow = next(iter(teams.workflows))
        wrong = teams.url_for(workflow, "x" * 43)
        settings = make_settings(tmp_path, "nats://127.0.0.1:4222", targets(wrong, wrong))
        target = teams_target.build(configs(settings)[0], settings)
        await target.open()
        try:
            note = notification({"risk_coefficient": 10})
            with pytest.raises(PermanentError) as caught:
                await target.deliver(Delivery(note, note.subject, 1))
        finally:
            await target.close()
    assert str(caught.value).startswith("HTTP 401: DirectApiInvalidAuthorizationSignature")
    assert "x" * 43 not in str(caught.value)
    assert teams.answers == [401]


async def test_discord_invalid_form_body_names_the_field(tmp_path: Path) -> None:
    refusal = {
        "code": 50035,
        "errors": {
            "embeds": {
                "0": {
                    "fields": {
                        "4": {
                            "value": {
                                "_errors": [
                                    {
                                        "code": "BASE_TYPE_MAX_LENGTH",
                                        "message": "Must be 1024 or fewer in length.",
                                    }
                                ]
                            }
                        }
                    }
                }
            }
        },
        "message": "Invalid Form Body",
    }
    async with FakeDiscord(fail_next=[(400, json.dumps(refusal))]) as discord:
        url = discord.webhook_url
        settings = make_settings(tmp_path, "nats://127.0.0.1:4222", targets(url, url))
        target = discord_target.build(configs(settings)[1], settings)
        await target.open()
        try:
            note = notification({"risk_coefficient": 10})
            with pytest.raises(PermanentError) as caught:
                await target.deliver(Delivery(note, note.subject, 1))
        finally:
            await target.close()
    assert str(caught.value) == (
        "HTTP 400: Invalid Form Body (code 50035): "
        "embeds.0.fields.4.value: Must be 1024 or fewer in length."
    )


async def test_discord_reports_fractional_retry_after_and_an_empty_bucket(
    tmp_path: Path,
) -> None:
    """The target reports the wait (the body's ``retry_after``, fractions kept) and, on a
    success that empties the bucket, the pause until it refills; waiting them out is the
    runner's job (tests/integration/test_chat_contract.py)."""
    throttled = json.dumps(
        {"message": "You are being rate limited.", "retry_after": 0.3, "global": False}
    )
    async with FakeDiscord(
        rate_limit=(1, 1.0), fail_next=[(429, throttled, {"Retry-After": "1"})]
    ) as discord:
        url = discord.webhook_url
        settings = make_settings(tmp_path, "nats://127.0.0.1:4222", targets(url, url))
        target = discord_target.build(configs(settings)[1], settings)
        await target.open()
        try:
            note = notification({"risk_coefficient": 10})
            with pytest.raises(RetryableError) as caught:
                await target.deliver(Delivery(note, note.subject, 1))
            assert caught.value.retry_after == 0.3  # the body's, not Retry-After's 1
            assert str(caught.value) == "HTTP 429: You are being rate limited."
            # That answer says X-RateLimit-Remaining: 0: the target asks for a pause until
            # the bucket refills (X-RateLimit-Reset-After), instead of earning a 429.
            outcome = await target.deliver(Delivery(note, note.subject, 2))
            assert isinstance(outcome, Delivered)
            assert 0.9 <= outcome.pause <= 1.0
        finally:
            await target.close()
    assert discord.answers == [429, 200]


def similar(base: str, app: str, env: str) -> str:
    """The "Silence similar" link of a Sqreen security event of ``app`` in ``env``."""
    query = urlencode(
        {"source": "sqreen", "type": "security_event", "application": app, "environment": env}
    )
    return f"{base}/silences?{query}"
