"""The ``log`` target's TOML table."""

from __future__ import annotations

from typing import Literal

from shared.relay.config import TargetConfig


class LogTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="log"):
    level: Literal["debug", "info", "warning", "error"] = "info"
