"""The ``slack`` target's TOML table."""

from __future__ import annotations

from typing import ClassVar

from shared.relay.config import Rate, TargetConfig


class SlackTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="slack"):
    """Slack incoming webhook (the URL is a secret: it carries the token)."""

    secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)
    required_secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)
    secret_examples: ClassVar[dict[str, str]] = {
        "webhook_url": "https://hooks.slack.com/services/EXAMPLE/ONLY/example-only-change-me"
    }

    webhook_url: str | None = None
    webhook_url_file: str | None = None
    per_second: Rate | None = 1.0
    """Messages per second to this webhook (Slack allows about one)."""
