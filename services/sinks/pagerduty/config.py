"""The ``pagerduty`` target's TOML table."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from shared.relay.config import TargetConfig


class PagerDutyTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="pagerduty"):
    """PagerDuty Events API v2, one dedup key per notification."""

    secrets: ClassVar[tuple[str, ...]] = ("routing_key",)
    required_secrets: ClassVar[tuple[str, ...]] = ("routing_key",)

    routing_key: str | None = None
    routing_key_file: str | None = None
    api_url: str = "https://events.pagerduty.com"
    severity_by_risk: dict[str, int] = msgspec.field(
        default_factory=lambda: {"critical": 80, "error": 60, "warning": 30}
    )
    """The first severity whose minimum risk the notification reaches; else ``info``."""
