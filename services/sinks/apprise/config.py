"""The ``apprise`` target's TOML table: one Apprise URL (a secret: it holds the service's
tokens), checked against the Apprise library when the configuration is read."""

from __future__ import annotations

from typing import ClassVar

from shared.core.errors import ConfigError
from shared.relay.config import TargetConfig


class AppriseTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="apprise"):
    """Any service Apprise reaches (Telegram, Mattermost, ntfy, Opsgenie, Matrix…), by its
    Apprise URL (``tgram://…``, ``mmost://…``, ``ntfy://…``, ``json://…``)."""

    secrets: ClassVar[tuple[str, ...]] = ("url",)
    required_secrets: ClassVar[tuple[str, ...]] = ("url",)
    secret_examples: ClassVar[dict[str, str]] = {
        "url": "json://example.invalid/example-only-change-me"
    }

    url: str | None = None
    url_file: str | None = None

    def check_secret(self, field_name: str, value: str, where: str) -> None:
        import apprise  # about 0.3 s: only where the secret is read

        if apprise.Apprise.instantiate(value.strip()) is None:
            # The value is a secret: name the key, never show it.
            raise ConfigError(
                f"{where}: not a URL Apprise can use (an unknown scheme or a malformed URL; "
                "see https://github.com/caronc/apprise/wiki)"
            )

    def missing_secret(self, field_name: str) -> str:
        return "needs url (or url_file): the Apprise URL of the service, e.g. tgram://…"
