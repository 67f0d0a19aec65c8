"""The slack target end to end: real nats-server, gateway and sink, a loopback Slack."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from fakes.slack import FakeSlack, check_message
from helpers import (
    dead_letters,
    jetstream,
    make_settings,
    post_webhook,
    publish_alerts,
    running_gateway,
    running_sink,
    settled,
    sqreen_fixture,
    wait_for,
)

from services.sinks.slack import AMBER, GREEN, GREY, RED, build, build_message, risk_colour
from services.sinks.slack.config import SlackTargetConfig
from shared.core import jsondata
from shared.core.errors import ConfigError
from shared.core.natsserver import NatsServer
from shared.core.settings import Settings
from shared.relay import schemas
from shared.relay.config import relay
from shared.relay.target import Delivery, RetryableError

TARGET = "soc-slack"


def slack_target(url: str, name: str = TARGET) -> str:
    return f"""
[[targets]]
name = "{name}"
type = "slack"
webhook_url = "{url}"
timeout = 2
retry = {{ max_attempts = 3, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }}
"""


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def assert_webhook_not_logged(
    out: str, caplog: pytest.LogCaptureFixture, url: str, expect: str
) -> None:
    """Neither the webhook URL nor its token in the sink's output (structlog writes to
    stdout, libraries to stdlib logging), and not even a redacted attempt to log it."""
    assert expect in out, "the sink's log lines were not captured"
    token = url.rsplit("/", 1)[-1]
    for text in (out, caplog.text):
        assert url not in text
        assert token not in text
        assert "[REDACTED]" not in text


def fields(message: dict[str, Any]) -> dict[str, str]:
    [section] = [b for b in message["attachments"][0]["blocks"] if "fields" in b]
    pairs = (f["text"].split("\n", 1) for f in section["fields"])
    return {label.strip("*"): value for label, value in pairs}


def block(message: dict[str, Any], kind: str) -> dict[str, Any] | None:
    found = [b for b in message["attachments"][0]["blocks"] if b["type"] == kind]
    return found[0] if found else None


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


async def test_security_events_coloured_by_risk_with_fields_and_button(
    nats_server: NatsServer,
    tmp_path: Path,
    slack: FakeSlack,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(tmp_path, nats_server.url, slack_target(slack.webhook_url))
    body = sqreen_fixture("v2_security_event.json")
    base = f"http://{settings.http_host}:{settings.http_port}"
    async with running_gateway(settings), running_sink(settings, TARGET):
        status, answer = await post_webhook(base, body)
        assert status == 200
        await wait_for(lambda: len(slack.messages) == 2)
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert slack.answers == [200, 200]
    sent = json.loads(body)
    originals = {m["message"]["risk_coefficient"]: m["message"] for m in sent}
    # the notification id: Sqreen's message_id when set, else the event id
    ids = {
        m["message"]["risk_coefficient"]: m["message_id"] or m["message"]["event_id"] for m in sent
    }
    by_risk = {fields(m)["Risk"]: m for m in slack.messages}
    assert sorted(by_risk) == ["30", "80"]
    for risk, colour in ((80, RED), (30, GREEN)):
        message, original = by_risk[str(risk)], originals[risk]
        app, env = original["application_name"], original["environment"]
        title = f"Security event in {app} ({env}): risk {risk}"
        assert message["text"] == title  # the notification / fallback text
        assert message["blocks"] == [
            {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}
        ]
        [attachment] = message["attachments"]
        assert attachment["color"] == colour
        assert fields(message) == {
            "Risk": str(risk),
            "Application": app,
            "Environment": env,
            "Source / Type": "sqreen / security_event",
            "IPs": original["ips"][0]["address"],
        }
        [section] = [b for b in attachment["blocks"] if "text" in b and b["type"] == "section"]
        assert section["text"]["type"] == "mrkdwn"
        assert section["text"]["text"].startswith(original["humanized_description"])
        context = block(message, "context")
        assert context is not None
        context_text = " ".join(e["text"] for e in context["elements"])
        assert original["date_occurred"] in context_text  # the fallback of the date token
        assert f"Id: {ids[risk]}" in context_text
        actions = block(message, "actions")
        assert actions is not None
        [button, silence] = actions["elements"]
        assert button["type"] == "button"
        assert button["text"]["text"] == "View event"
        assert button["url"] == original["event_url"]
        # LOOKOUT_PUBLIC_URL's default: the gateway's own address
        assert silence["text"]["text"] == "Silence similar"
        assert silence["url"] == similar(base, app, env)
    assert set(ids.values()) == set(answer["ids"])
    assert_webhook_not_logged(capsys.readouterr().out, caplog, slack.webhook_url, "delivered")


async def test_mrkdwn_is_escaped_and_cannot_ping_the_channel(
    nats_server: NatsServer, tmp_path: Path, slack: FakeSlack
) -> None:
    settings = make_settings(tmp_path, nats_server.url, slack_target(slack.webhook_url))
    crafted = "<script>alert(1)</script> & <!channel> <https://evil.example|click> <@U024BE7LH>"
    body = sqreen_event(
        "evt-crafted",
        risk_coefficient=55,
        application_name="shop <!here>",
        environment="prod",
        humanized_description=crafted,
        event_url="https://my.sqreen.com/application/a/events/evt-crafted",
    )
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        status, _ = await post_webhook(base, body)
        assert status == 200
        await wait_for(lambda: len(slack.messages) == 1)
    [message] = slack.messages
    raw = json.dumps(message, ensure_ascii=False)
    # The only control sequence in the whole message is lookout's own date token.
    assert raw.count("<") == 1
    assert "<!date^" in raw
    for injected in ("<!channel>", "<!here>", "<script>", "<https://evil", "<@U024"):
        assert injected not in raw
    [section] = [b for b in message["attachments"][0]["blocks"] if "text" in b]
    assert section["text"]["text"].startswith(
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;!channel&gt; "
        "&lt;https://evil.example|click&gt; &lt;@U024BE7LH&gt;"
    )
    assert fields(message)["Application"] == "shop &lt;!here&gt;"
    assert message["attachments"][0]["color"] == AMBER
    assert message["text"] == "Security event in shop &lt;!here&gt; (prod): risk 55"


async def test_rate_limited_then_delivered_once(
    nats_server: NatsServer,
    tmp_path: Path,
    slack: FakeSlack,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack.fail_next = [(429, "rate_limited", {"Retry-After": "1"})]
    settings = make_settings(tmp_path, nats_server.url, slack_target(slack.webhook_url))
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        await post_webhook(base, sqreen_fixture("v2_test.json"))
        await wait_for(lambda: len(slack.messages) == 1)
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert slack.answers == [429, 200]
    first, second = slack.requests
    assert second.at - first.at >= 0.9  # Retry-After: 1, where backoff alone says 0.2
    assert first.body == second.body  # the same message, sent once more
    assert await dead_letters(nats_server.url, TARGET) == []
    [message] = slack.messages
    assert message["attachments"][0]["color"] == AMBER  # the test message has risk 42
    actions = block(message, "actions")
    assert actions is not None
    assert actions["elements"][0]["url"] == "http://test"  # the test message's own url
    assert_webhook_not_logged(capsys.readouterr().out, caplog, slack.webhook_url, "retry")


async def test_server_error_then_delivered(
    nats_server: NatsServer, tmp_path: Path, slack: FakeSlack
) -> None:
    slack.fail_next = [(500, "rollup_error")]
    settings = make_settings(tmp_path, nats_server.url, slack_target(slack.webhook_url))
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        await post_webhook(base, sqreen_fixture("v2_test.json"))
        await wait_for(lambda: len(slack.messages) == 1)
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert slack.answers == [500, 200]
    assert await dead_letters(nats_server.url, TARGET) == []


async def test_unknown_webhook_is_dead_lettered_at_once(
    nats_server: NatsServer,
    tmp_path: Path,
    slack: FakeSlack,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = slack.base_url + FakeSlack.new_path()  # a removed webhook: Slack says no_service
    settings = make_settings(tmp_path, nats_server.url, slack_target(gone))
    async with running_gateway(settings) as base, running_sink(settings, TARGET):
        _, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))

        async def dead() -> bool:
            return len(await dead_letters(nats_server.url, TARGET)) == 1

        await wait_for(dead)
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert slack.answers == [404]  # permanent: never retried
    [record] = await dead_letters(nats_server.url, TARGET)
    assert record.attempts == 1
    assert record.error.startswith("HTTP 404: no_service")
    assert gone not in record.error
    assert gone.rsplit("/", 1)[-1] not in record.error
    assert record.notification is not None
    assert record.notification.id == answer["ids"][0]
    assert_webhook_not_logged(capsys.readouterr().out, caplog, gone, "dead-lettered")


async def test_a_burst_is_paced_to_slacks_rate(nats_server: NatsServer, tmp_path: Path) -> None:
    async with FakeSlack(rate_limit_per_second=1) as slack:
        settings = make_settings(tmp_path, nats_server.url, slack_target(slack.webhook_url))
        body = json.dumps(
            [{"message_type": "test", "message": {"id": f"burst-{i}"}} for i in range(5)]
        ).encode()
        async with running_gateway(settings) as base, running_sink(settings, TARGET):
            status, _ = await post_webhook(base, body)
            assert status == 200
            await wait_for(lambda: len(slack.messages) == 5, within=15)
    assert slack.answers == [200] * 5  # Slack never had to say 429
    times = [request.at for request in slack.requests]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.9, gaps
    assert times[-1] - times[0] >= 3.8


# ------------------------------------------------------------------ without a bus


def notification(message: dict[str, Any], kind: str = "security_event") -> schemas.Notification:
    return schemas.Notification(
        id="n-1",
        type=kind,
        source="sqreen",
        timestamp="2026-01-02T03:04:05.000Z",
        data=msgspec.Raw(json.dumps({"message_type": kind, "message": message}).encode()),
    )


def slack_config(settings: Settings) -> SlackTargetConfig:
    config = relay(settings).target(TARGET)
    assert isinstance(config, SlackTargetConfig)
    return config


def test_long_texts_are_cut_to_slacks_limits() -> None:
    message = build_message(
        notification(
            {
                "risk_coefficient": 99,
                "application_name": "a&" * 200,
                "humanized_description": "<x>" * 2000,
                "ips": [{"address": f"198.51.100.{i}"} for i in range(250)],
            }
        )
    )
    assert check_message(message) is None  # Slack would accept it
    header = message["blocks"][0]["text"]["text"]
    assert len(header) <= 150
    assert header.endswith("…")
    assert "&amp;" in header
    assert not header.removesuffix("…").endswith(("&", "&a", "&am", "&amp"))  # entity kept whole
    [section] = [b for b in message["attachments"][0]["blocks"] if "text" in b]
    assert len(section["text"]["text"]) <= 3000


def test_colours_and_a_message_without_risk() -> None:
    assert [risk_colour(r) for r in (100, 70, 69, 40, 39, 0, None)] == [
        RED,
        RED,
        AMBER,
        AMBER,
        GREEN,
        GREEN,
        GREY,
    ]
    message = build_message(notification({"description": "hi"}, kind="alert"))
    assert message["attachments"][0]["color"] == GREY
    assert "Risk" not in fields(message)
    assert block(message, "actions") is None  # no event URL, no button
    assert check_message(message) is None


def test_a_webhook_url_that_is_not_a_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "nats://127.0.0.1:4222", slack_target("T0/B0/s3cr3t"))
    with pytest.raises(ConfigError, match="webhook_url must be") as caught:
        build(slack_config(settings), settings)
    assert "s3cr3t" not in str(caught.value)


async def test_a_429_tells_the_runner_how_long_to_wait(tmp_path: Path) -> None:
    """The target reports Slack's ``Retry-After``; pausing every send for it is the
    runner's job (tests/integration/test_chat_contract.py: the 429 row)."""
    async with FakeSlack(fail_next=[(429, "rate_limited", {"Retry-After": "1"})]) as slack:
        settings = make_settings(tmp_path, "nats://127.0.0.1:4222", slack_target(slack.webhook_url))
        target = build(slack_config(settings), settings)
        await target.open()
        try:
            note = notification({"risk_coefficient": 10})
            with pytest.raises(RetryableError) as caught:
                await target.deliver(Delivery(note, note.subject, 1))
            assert caught.value.retry_after == 1.0
            assert str(caught.value) == "HTTP 429: rate_limited (Slack rate limit)"
            await target.deliver(Delivery(note, note.subject, 2))
        finally:
            await target.close()
    assert slack.answers == [429, 200]


async def test_one_delivery_decodes_the_message_once(
    nats_server: NatsServer, tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route filter, the templates, the payload's fields and the status record all
    read the notification's message through the delivery's reading: its JSON is decoded
    once per delivery (it was four times)."""
    decoded: list[bytes] = []
    load = jsondata.load

    def counting(data: bytes | bytearray | memoryview) -> object:
        decoded.append(bytes(data))
        return load(data)

    monkeypatch.setattr(jsondata, "load", counting)
    toml = slack_target(slack.webhook_url) + "per_second = 0\nmatch = { min_risk = 10 }\n"
    settings = make_settings(tmp_path, nats_server.url, toml)
    async with jetstream(nats_server.url, settings) as js, running_sink(settings, TARGET):
        ids = await publish_alerts(js, 2, "once")
        await wait_for(lambda: len(slack.messages) == 2)
        await wait_for(lambda: settled(nats_server.url, TARGET))
    assert [m["text"] for m in slack.messages] == ["[scanner] http scan (risk 50)"] * 2
    assert len(ids) == 2
    assert len(decoded) == 2, decoded  # one per delivery


def similar(base: str, app: str, env: str) -> str:
    """The "Silence similar" link of a Sqreen security event of ``app`` in ``env``."""
    query = urlencode(
        {"source": "sqreen", "type": "security_event", "application": app, "environment": env}
    )
    return f"{base}/silences?{query}"
