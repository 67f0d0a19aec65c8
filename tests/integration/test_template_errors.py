"""A target template that fails at render time is a permanent failure: dead-lettered at
the first attempt with the reason, never retried (issue 12, item 19)."""

from __future__ import annotations

from pathlib import Path

from fakes.slack import FakeSlack
from helpers import (
    dead_letters,
    jetstream,
    make_settings,
    publish_alerts,
    running_sink,
    settled,
    wait_for,
)

from shared.core.natsserver import NatsServer

TARGET = "soc-slack"


async def test_a_template_that_raises_is_dead_lettered_at_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with FakeSlack() as slack:
        toml = f"""
[[targets]]
name = "{TARGET}"
type = "slack"
webhook_url = "{slack.webhook_url}"
timeout = 2
retry = {{ max_attempts = 5, initial_backoff = 0.2, max_backoff = 1, jitter = 0 }}
template = {{ title = "Risk {{{{ risk + 10 }}}}" }}
"""
        settings = make_settings(tmp_path, nats_server.url, toml)
        async with running_sink(settings, TARGET), jetstream(nats_server.url, settings) as js:
            [with_risk] = await publish_alerts(js, 1, "risky")
            [no_risk] = await publish_alerts(js, 1, "plain", data=lambda _: {"description": "x"})

            async def both_done() -> bool:
                return len(await dead_letters(nats_server.url, TARGET)) == 1 and bool(
                    slack.requests
                )

            await wait_for(both_done, within=20)
            await wait_for(lambda: settled(nats_server.url, TARGET))
        [record] = await dead_letters(nats_server.url, TARGET)
        assert record.notification is not None
        assert record.notification.id == no_risk
        assert record.attempts == 1, "a template that raises fails the same way every time"
        assert "template failed: TypeError: unsupported operand" in record.error
        assert len(slack.requests) == 1, f"only {with_risk} reached Slack"
