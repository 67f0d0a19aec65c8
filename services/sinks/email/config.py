"""The ``email`` target's TOML table."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from shared.relay.config import TargetConfig


class EmailTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="email"):
    """SMTP through aiosmtplib: STARTTLS (port 587), implicit TLS (465) or plain."""

    secrets: ClassVar[tuple[str, ...]] = ("password",)

    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 587
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    sender: str
    to: Annotated[list[str], msgspec.Meta(min_length=1)]
    verify_tls: bool = True
