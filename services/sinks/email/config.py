"""The ``email`` target's TOML table."""

from __future__ import annotations

import email.utils
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

    def __post_init__(self) -> None:
        for field, value in [("sender", self.sender), *(("to", v) for v in self.to)]:
            problem = address_problem(value)
            if problem:
                raise ValueError(
                    f"{field}: {value!r} is not one e-mail address ({problem}); "
                    "write user@example.com or Name <user@example.com>"
                )


def address_problem(value: str) -> str | None:
    """Why ``value`` is not exactly one ``user@domain`` (with an optional display name)."""
    if any(c in value for c in "\r\n\0"):
        return "line breaks"
    found = email.utils.getaddresses([value])
    if len(found) != 1:
        return f"{len(found)} addresses"
    address = found[0][1]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        return "no user@domain in it"
    return None
