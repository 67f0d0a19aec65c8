"""The ``discord`` target's TOML table."""

from __future__ import annotations

from typing import ClassVar

from shared.relay.config import Rate, TargetConfig


class DiscordTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="discord"):
    """Discord webhook (embed); the URL is a secret."""

    secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)
    required_secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)
    secret_examples: ClassVar[dict[str, str]] = {
        "webhook_url": "https://discord.com/api/webhooks/0/example-only-change-me"
    }

    webhook_url: str | None = None
    webhook_url_file: str | None = None
    per_second: Rate | None = 1.0
