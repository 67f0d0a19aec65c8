"""The ``sms`` target's TOML table."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from shared.relay.config import Rate, TargetConfig


class SmsTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="sms"):
    """Twilio Messages API."""

    secrets: ClassVar[tuple[str, ...]] = ("auth_token",)
    required_secrets: ClassVar[tuple[str, ...]] = ("auth_token",)

    account_sid: str
    auth_token: str | None = None
    auth_token_file: str | None = None
    sender: str
    to: Annotated[list[str], msgspec.Meta(min_length=1)]
    api_url: str = "https://api.twilio.com"
    max_length: Annotated[int, msgspec.Meta(ge=20, le=1600)] = 320
    per_second: Rate | None = 1.0
    """Twilio sends about one SMS per second per sender number."""
