"""``NATS_URL``: checked, its credentials registered as secrets, shown without them."""

from __future__ import annotations

from urllib.parse import urlsplit

from shared.core import logging as log
from shared.core.errors import ConfigError


def safe_url(url: str) -> str:
    """``url`` without credentials, for logs and messages: every server of a
    comma-separated ``NATS_URL`` (``user:password@`` or ``token@`` becomes ``***@``).
    Never raises, whatever the text."""
    return ",".join(_safe_server(server.strip()) for server in url.split(","))


def _safe_server(server: str) -> str:
    scheme, sep, rest = server.partition("://")
    if not sep:
        scheme, rest = "", server
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{rest[end:]}"


def check(nats_url: str) -> None:
    """Every server of ``NATS_URL`` a NATS URL; the credentials any of them carries are
    registered as secrets (never logged), and no message here shows them."""
    for server in nats_url.split(","):
        try:
            parts = urlsplit(server.strip())
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(f"NATS_URL: {safe_url(server.strip())!r}: {exc}") from None
        if parts.scheme not in ("nats", "tls", "ws", "wss"):
            raise ConfigError(
                f"NATS_URL: {safe_url(server.strip())!r} is not a nats:// (or tls://) URL"
            )
        # The password, or a token alone (``nats://token@host``); a user name is no secret.
        credential = parts.password if parts.password is not None else parts.username
        if credential:
            log.register_secret(credential)
