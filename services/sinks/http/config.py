"""The ``http`` target's TOML table, and its Standard Webhooks secret."""

from __future__ import annotations

import base64
import binascii
from typing import ClassVar
from urllib.parse import urlsplit

import msgspec

from shared.core.errors import ConfigError
from shared.relay.config import TargetConfig


class HttpTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="http"):
    secrets: ClassVar[tuple[str, ...]] = ("secret",)
    required_secrets: ClassVar[tuple[str, ...]] = ("secret",)
    secret_examples: ClassVar[dict[str, str]] = {
        "secret": "whsec_ZXhhbXBsZS1vbmx5LWNoYW5nZS1tZS1leGFtcGxlLTA="
    }

    url: str
    secret: str | None = None
    secret_file: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an absolute http(s) URL, got {self.url!r}")

    def check_secret(self, field_name: str, value: str, where: str) -> None:
        decode_webhook_secret(value, where)

    def missing_secret(self, field_name: str) -> str:
        return (
            "an http target needs secret = 'whsec_…' (or secret_file) to sign deliveries; "
            'make one with: python -c "import base64,os; '
            "print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
        )


def decode_webhook_secret(value: str, where: str) -> bytes:
    """The signing key of a Standard Webhooks secret ``whsec_<base64>``."""
    if not value.startswith("whsec_"):
        raise ConfigError(f"{where}: must start with 'whsec_' (Standard Webhooks secret format)")
    try:
        key = base64.b64decode(value[len("whsec_") :], validate=True)
    except binascii.Error:
        raise ConfigError(f"{where}: the part after 'whsec_' is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ConfigError(f"{where}: the key must decode to 24..64 bytes, got {len(key)}")
    return key
