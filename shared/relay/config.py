"""The relay's configuration: the ``[[targets]]`` tables of the TOML file.

Every target has a name, a route filter (:class:`Match`), a retry policy, message
templates, a concurrency and a timeout, an optional send rate and grouping; each target type
adds its own keys. A field named in a type's ``secrets`` may instead be read from a file
named by ``<field>_file``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

import msgspec

from shared.core.errors import ConfigError
from shared.core.secrets import Secret, read_secret_file
from shared.relay.templates import TemplateError, compile_template

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Rate = Annotated[float, msgspec.Meta(ge=0)]
"""A send rate per second; 0 means no limit (lifts a target type's default)."""
Name = Annotated[str, msgspec.Meta(pattern=NAME_RE.pattern)]
GroupField = Literal["source", "type", "application", "environment"]


class RetryPolicy(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Bounded retries with exponential backoff and jitter.

    The delay before attempt ``n + 1`` is ``min(max_backoff, initial_backoff *
    multiplier ** (n - 1))``, scaled by a random factor in ``[1 - jitter, 1]``. A
    ``Retry-After`` from the target replaces the computed delay (capped by
    ``max_retry_after``).
    """

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    initial_backoff: PositiveFloat = 1.0
    max_backoff: PositiveFloat = 600.0
    multiplier: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    max_retry_after: PositiveFloat = 3600.0


class Match(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Which notifications a target receives; an empty list means "any"."""

    types: list[str] = []
    sources: list[str] = []
    min_risk: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    applications: list[str] = []
    environments: list[str] = []


class MessageTemplate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Jinja2 templates (sandboxed) for the title and body; unset: the default for the
    message type (see shared/relay/templates.py)."""

    title: str | None = None
    body: str | None = None


class TargetConfig(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, tag_field="type"
):
    """Settings every target has; one subclass per target type (the TOML ``type`` key).

    ``secrets`` names the fields that hold secrets: each may instead be read from a file
    named by ``<field>_file``; ``required_secrets`` must be set one way or the other."""

    secrets: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()

    name: Name
    match: Match = Match()
    retry: RetryPolicy = RetryPolicy()
    template: MessageTemplate = MessageTemplate()
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    timeout: PositiveFloat = 10.0
    per_second: Rate | None = None
    """Most messages per second sent to the target by all replicas of its sink together
    (unset or 0: no limit; 0 lifts the default of 1 of chat and SMS targets); after a
    429 with ``Retry-After`` every send of every replica waits that long. Shared through
    the KV bucket ``sink_pace`` (see shared.relay.pacing.Pacer); read it as :attr:`send_rate`."""
    group_window: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None
    """Seconds to collect notifications that share ``group_by`` before sending them as
    one digest (unset: every notification on its own). A lone one is sent as itself."""
    group_by: list[GroupField] = msgspec.field(
        default_factory=lambda: ["source", "type", "application"]
    )
    group_max: Annotated[int, msgspec.Meta(ge=2, le=5000)] = 500
    """A group this large is sent at once, before its window ends."""

    @property
    def send_rate(self) -> float | None:
        """``per_second``, or ``None`` for no limit (unset or 0)."""
        return self.per_second or None


class LogTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="log"):
    level: Literal["debug", "info", "warning", "error"] = "info"


class HttpTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="http"):
    secrets: ClassVar[tuple[str, ...]] = ("secret",)
    required_secrets: ClassVar[tuple[str, ...]] = ("secret",)

    url: str
    secret: str | None = None
    secret_file: str | None = None
    headers: dict[str, str] = {}

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an absolute http(s) URL, got {self.url!r}")


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


class SlackTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="slack"):
    """Slack incoming webhook (the URL is a secret: it carries the token)."""

    secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)
    required_secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)

    webhook_url: str | None = None
    webhook_url_file: str | None = None
    per_second: Rate | None = 1.0
    """Messages per second to this webhook (Slack allows about one)."""


class TeamsTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="teams"):
    """Microsoft Teams through a Workflows webhook (Adaptive Card); the URL is a secret."""

    secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)
    required_secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)

    webhook_url: str | None = None
    webhook_url_file: str | None = None
    per_second: Rate | None = 1.0


class DiscordTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="discord"):
    """Discord webhook (embed); the URL is a secret."""

    secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)
    required_secrets: ClassVar[tuple[str, ...]] = ("webhook_url",)

    webhook_url: str | None = None
    webhook_url_file: str | None = None
    per_second: Rate | None = 1.0


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


AnyTarget = (
    LogTargetConfig
    | HttpTargetConfig
    | EmailTargetConfig
    | SmsTargetConfig
    | SlackTargetConfig
    | TeamsTargetConfig
    | DiscordTargetConfig
    | PagerDutyTargetConfig
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


def target_secrets(
    targets: list[AnyTarget], path: Path, only: Collection[str] | None
) -> dict[tuple[str, str], Secret]:
    """The secret fields of the targets named in ``only`` (``None``: every target), from the
    TOML value or ``<field>_file``."""
    secrets: dict[tuple[str, str], Secret] = {}
    for index, target in enumerate(targets):
        if only is not None and target.name not in only:
            continue  # another service's secret: neither read nor required here
        where = f"{path}: targets[{index}] ({target.name})"
        for field_name in target.secrets:
            direct = getattr(target, field_name, None)
            file_name = getattr(target, f"{field_name}_file", None)
            if direct and file_name:
                raise ConfigError(f"{where}: set either {field_name} or {field_name}_file")
            value = direct
            if file_name:
                value = read_secret_file(file_name, f"{where}.{field_name}_file")
            if not value:
                if field_name in target.required_secrets:
                    raise ConfigError(f"{where}: {_missing_secret_hint(target, field_name)}")
                continue
            if isinstance(target, HttpTargetConfig):
                decode_webhook_secret(value, f"{where}.secret")
            secrets[(target.name, field_name)] = Secret(value)
    return secrets


def check_templates(targets: list[AnyTarget], path: Path) -> None:
    for index, target in enumerate(targets):
        for part in ("title", "body"):
            source = getattr(target.template, part)
            if source is None:
                continue
            where = f"{path}: targets[{index}] ({target.name}).template.{part}"
            try:
                compile_template(source, where)
            except TemplateError as exc:
                raise ConfigError(str(exc)) from None


def _missing_secret_hint(target: AnyTarget, field_name: str) -> str:
    if isinstance(target, HttpTargetConfig):
        return (
            "an http target needs secret = 'whsec_…' (or secret_file) to sign deliveries; "
            'make one with: python -c "import base64,os; '
            "print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
        )
    return f"needs {field_name} (or {field_name}_file)"
