"""Configuration: environment variables plus an optional TOML file named by ``LOOKOUT_CONFIG``.

Every secret may be given directly (``NAME``) or read from a file (``NAME_FILE``), the way
Docker and Kubernetes mount secrets. Secrets are wrapped in :class:`Secret`, whose ``repr``
and ``str`` never show the value, and every secret value is registered with the log
redactor as soon as it is read.

Bad configuration raises :class:`ConfigError` whose message names the offending variable or
TOML key; the CLI prints it and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import msgspec

from shared import logging as log

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_JSON_BYTES = 1024 * 1024


class ConfigError(Exception):
    """Configuration that cannot work; the message names the variable or key to fix."""


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        log.register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --------------------------------------------------------------------------- TOML schema

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
    message type (see shared/templates.py)."""

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
    the KV bucket ``sink_pace`` (see shared.targets.Pacer); read it as :attr:`send_rate`."""
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


class Quota(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Requests a provider may make upstream, shared by all its replicas (0 = no limit)."""

    per_minute: Annotated[int, msgspec.Meta(ge=0)] = 0
    per_day: Annotated[int, msgspec.Meta(ge=0)] = 0


class ProviderConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    quota: Quota = Quota()
    cache_ttl: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Seconds every answer is cached, overriding the provider's own choice (DNS: the
    record TTL; WHOIS: 24 h, 1 h for "not registered"; reputation: 1 h); 0: never."""
    timeout: PositiveFloat = 20.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    quota_slack: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    """Seconds added to the per-minute quota's 60-second window: the margin between how
    lookout counts and how the upstream does (whole seconds, clock skew)."""


class AbuseIpdbConfig(ProviderConfig, frozen=True):
    quota: Quota = Quota(per_day=1000)
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    max_age_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 90
    suspicious_score: Annotated[int, msgspec.Meta(ge=0, le=100)] = 25
    malicious_score: Annotated[int, msgspec.Meta(ge=0, le=100)] = 75


class VirusTotalConfig(ProviderConfig, frozen=True):
    # The public API's limits; a premium key raises them in [providers.virustotal.quota].
    quota: Quota = Quota(per_minute=4, per_day=500)
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4
    malicious_engines: Annotated[int, msgspec.Meta(ge=1)] = 3
    """At least this many engines saying malicious makes the verdict malicious (fewer:
    suspicious)."""


class ProvidersConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    dns: ProviderConfig = ProviderConfig()
    whois: ProviderConfig = ProviderConfig()
    emailsec: ProviderConfig = ProviderConfig()
    virustotal: VirusTotalConfig = VirusTotalConfig()
    abuseipdb: AbuseIpdbConfig = AbuseIpdbConfig()

    def get(self, name: str) -> ProviderConfig:
        value = getattr(self, name, None)
        return value if isinstance(value, ProviderConfig) else ProviderConfig()


class FileConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    targets: list[AnyTarget] = []
    providers: ProvidersConfig = ProvidersConfig()


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    nats_url: str | None = None
    nats_port: int = 4222
    data_dir: Path = Path(".lookout")
    sqreen_secrets: tuple[Secret, ...] = ()
    api_tokens: tuple[Secret, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest webhook body (and file upload); each message in it must also fit one NATS
    message (``shared.schemas.envelope_limit`` of the server's ``max_payload``)."""
    max_messages: int = 1000
    dedup_window: float = 3600.0
    publish_timeout: float = 5.0
    stream_replicas: int = 1
    """Copies JetStream keeps of every stream and KV bucket (3 or 5 on a NATS cluster)."""
    log_level: str = "info"
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    """Workers' ``/metrics`` listener (None: none; 0: a free port, logged)."""
    config_path: Path | None = None
    targets: tuple[AnyTarget, ...] = (LogTargetConfig(name="log"),)
    target_secrets: Mapping[tuple[str, str], Secret] = field(default_factory=dict)
    dns_nameservers: tuple[tuple[str, int], ...] = ()
    dns_timeout: float = 5.0
    max_indicators: int = 10_000
    job_ttl: float = 7 * 86400.0
    rdap_url: str | None = None
    whois_server: tuple[str, int] | None = None
    virustotal_api_key: Secret | None = None
    virustotal_url: str = "https://www.virustotal.com/api/v3"
    abuseipdb_api_key: Secret | None = None
    abuseipdb_url: str = "https://api.abuseipdb.com/api/v2"
    providers: ProvidersConfig = field(default_factory=lambda: ProvidersConfig())
    outbound_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Networks outbound targets and WHOIS referrals may reach although special-purpose
    (private, loopback…; see shared.ssrf)."""
    allowed_hosts: tuple[str, ...] = ()
    """``LOOKOUT_ALLOWED_HOSTS``: host names (or IP addresses) the gateway answers to besides
    the loopback ones, lower-case, IPv6 without brackets (see services.gateway.hosts)."""
    api_rate: float = 20.0
    """Requests per second per client on ``/api/*`` (token refill rate; 0: no limit)."""
    api_burst: int = 100
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    """Largest JSON body on ``/api/*`` (file uploads keep ``max_body_bytes``)."""

    @property
    def effective_nats_url(self) -> str:
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    def target(self, name: str) -> AnyTarget:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets) or "none"
        raise ConfigError(f"no target named {name!r} is configured (configured: {known})")

    def secret(self, target: str, field_name: str) -> Secret | None:
        """A target's secret field (read from the TOML value or its ``_file``)."""
        return self.target_secrets.get((target, field_name))

    def check_bind(self) -> None:
        """Refuse a non-loopback listener without API tokens (the API would be open)."""
        if self.api_tokens or _is_loopback(self.http_host):
            return
        raise ConfigError(
            f"LOOKOUT_HTTP_HOST={self.http_host} is not a loopback address and "
            "LOOKOUT_API_TOKENS is empty: set API tokens before listening there"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """``NAME`` or the contents of the file named by ``NAME_FILE`` (not both)."""
    file_var = f"{name}_FILE"
    if env.get(name) and env.get(file_var):
        raise ConfigError(f"set either {name} or {file_var}, not both")
    path = env.get(file_var)
    if path:
        return _read_secret_file(path, file_var)
    return env.get(name) or None


def _read_secret_file(path: str, label: str) -> str:
    """A secret file's stripped contents; ``label`` names the setting in any error."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{label}: {path} is empty")
    return value


def _secret_list(env: Mapping[str, str], name: str) -> tuple[Secret, ...]:
    raw = read_secret(env, name)
    if raw is None:
        return ()
    return tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = read_secret(env, name)
    return Secret(value) if value else None


def _base_url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = env.get(name) or default
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an absolute http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _host_port(env: Mapping[str, str], name: str, default_port: int) -> tuple[str, int] | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    host, sep, port_text = raw.rpartition(":")
    if not sep or "]" in port_text:
        host, port_text = raw, str(default_port)
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{name} must be host:port, got {raw!r}")
    return host, int(port_text)


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _networks(
    env: Mapping[str, str], name: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDR networks or single addresses (``10.0.0.0/8,::1``)."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in (part.strip() for part in env.get(name, "").split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{name}: {item!r} is not an IP address or CIDR network "
                "(expected e.g. 127.0.0.0/8,10.0.0.0/8,::1)"
            ) from None
    return tuple(networks)


def _host_names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated host names or IP addresses, without port (``lookout.example.org,
    10.0.0.5,[2001:db8::5]``): lower-case, no trailing dot, IPv6 compressed, unbracketed."""
    names: list[str] = []
    for item in (part.strip() for part in env.get(name, "").split(",")):
        if not item:
            continue
        value = item.lower().rstrip(".")
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        try:
            names.append(str(ipaddress.ip_address(value)))
            continue
        except ValueError:
            pass
        labels = value.split(".")
        if not all(
            re.fullmatch(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", label) for label in labels
        ):
            raise ConfigError(
                f"{name}: {item!r} is not a host name or IP address (no port, no scheme; "
                "expected e.g. lookout.example.org,10.0.0.5,[2001:db8::5])"
            )
        names.append(value)
    return tuple(names)


def _nameservers(raw: str) -> tuple[tuple[str, int], ...]:
    """``127.0.0.1:5353,9.9.9.9,[2620:fe::fe]:53`` → ((host, port), …)."""
    servers: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, port = item, 53
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                port = _port(rest.removeprefix(":"), item)
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
            port = _port(port_text, item)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"LOOKOUT_DNS_NAMESERVERS: {item!r} is not an IP address (with optional :port)"
            ) from None
        servers.append((host, port))
    return tuple(servers)


def _port(text: str, item: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"LOOKOUT_DNS_NAMESERVERS: bad port in {item!r}")
    return int(text)


def _metrics_host(env: Mapping[str, str]) -> str:
    raw = (env.get("LOOKOUT_METRICS_HOST") or "127.0.0.1").strip().strip("[]")
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        labels = raw.rstrip(".").split(".")
        if not raw or not all(
            0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
            for label in labels
        ):
            raise ConfigError(
                f"LOOKOUT_METRICS_HOST must be an IP address or host name, got {raw!r}"
            ) from None
    return raw


def _optional_port(env: Mapping[str, str], name: str) -> int | None:
    if (env.get(name) or "").strip() == "":
        return None
    return _int({name: env[name].strip()}, name, 0, 0, 65535)


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


def _load_file(path: Path) -> FileConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"LOOKOUT_CONFIG: cannot read {path}: {exc.strerror}") from None
    try:
        return msgspec.toml.decode(raw, type=FileConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _target_secrets(
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
                value = _read_secret_file(file_name, f"{where}.{field_name}_file")
            if not value:
                if field_name in target.required_secrets:
                    raise ConfigError(f"{where}: {_missing_secret_hint(target, field_name)}")
                continue
            if isinstance(target, HttpTargetConfig):
                decode_webhook_secret(value, f"{where}.secret")
            secrets[(target.name, field_name)] = Secret(value)
    return secrets


def _check_templates(targets: list[AnyTarget], path: Path) -> None:
    from shared.templates import TemplateError, compile_template  # templates import config

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


def data_dir(env: Mapping[str, str]) -> Path:
    """Where ``lookout run``'s embedded nats-server keeps JetStream: ``LOOKOUT_DATA_DIR``,
    else ``$XDG_STATE_HOME/lookout``, else ``~/.local/state/lookout`` (the XDG Base
    Directory default): the same whatever directory lookout is started from. Only without
    a home directory, ``.lookout`` in the current directory."""
    if env.get("LOOKOUT_DATA_DIR"):
        return Path(env["LOOKOUT_DATA_DIR"])
    state = env.get("XDG_STATE_HOME", "")
    if state and Path(state).is_absolute():  # the spec: a relative value is to be ignored
        return Path(state) / "lookout"
    home = env.get("HOME")
    if not home:
        try:
            home = str(Path.home())
        except (KeyError, RuntimeError):  # no HOME and no passwd entry (a bare container)
            return Path(".lookout").absolute()
    return Path(home) / ".local" / "state" / "lookout"


def _check_nats_url(nats_url: str) -> None:
    """Every server of ``NATS_URL`` a NATS URL; the credentials any of them carries are
    registered as secrets (never logged), and no message here shows them."""
    from shared.bus import safe_url  # the bus imports this module

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


def load(
    env: Mapping[str, str] | None = None, *, secrets_of: Collection[str] | None = None
) -> Settings:
    """Read and validate the whole configuration; raise :class:`ConfigError` on any problem.

    ``secrets_of`` names the targets whose secrets this process reads (and requires): a
    sink needs only its own, the gateway and the providers none, so each deployment mounts
    only the secrets of its service. ``None`` reads every target's, as ``lookout run`` does
    to refuse a bad configuration before anything starts."""
    env = os.environ if env is None else env
    config_path: Path | None = None
    targets: list[AnyTarget] = [LogTargetConfig(name="log")]
    target_secrets: dict[tuple[str, str], Secret] = {}
    providers = ProvidersConfig()
    if env.get("LOOKOUT_CONFIG"):
        config_path = Path(env["LOOKOUT_CONFIG"])
        file_config = _load_file(config_path)
        if file_config.targets:
            targets = file_config.targets
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ConfigError(f"{config_path}: two targets are named {target.name!r}")
            seen.add(target.name)
        target_secrets = _target_secrets(targets, config_path, secrets_of)
        _check_templates(targets, config_path)
        providers = file_config.providers

    nats_url = env.get("NATS_URL") or None
    if nats_url is not None:
        _check_nats_url(nats_url)
    log_level = env.get("LOOKOUT_LOG_LEVEL", "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"LOOKOUT_LOG_LEVEL must be debug|info|warning|error, got {log_level!r}")

    return Settings(
        http_host=env.get("LOOKOUT_HTTP_HOST") or "127.0.0.1",
        http_port=_int(env, "LOOKOUT_HTTP_PORT", 8080, 0, 65535),
        nats_url=nats_url,
        nats_port=_int(env, "LOOKOUT_NATS_PORT", 4222, 1, 65535),
        data_dir=data_dir(env),
        sqreen_secrets=_secret_list(env, "SQREEN_WEBHOOK_SECRET"),
        api_tokens=_secret_list(env, "LOOKOUT_API_TOKENS"),
        max_body_bytes=_int(
            env, "LOOKOUT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1024, 1024 * 1024 * 1024
        ),
        dedup_window=_float(env, "LOOKOUT_DEDUP_WINDOW", 3600.0, 1.0, 7 * 86400.0),
        publish_timeout=_float(env, "LOOKOUT_PUBLISH_TIMEOUT", 5.0, 0.1, 120.0),
        stream_replicas=_int(env, "LOOKOUT_STREAM_REPLICAS", 1, 1, 5),
        log_level=log_level,
        metrics_host=_metrics_host(env),
        metrics_port=_optional_port(env, "LOOKOUT_METRICS_PORT"),
        config_path=config_path,
        targets=tuple(targets),
        target_secrets=target_secrets,
        dns_nameservers=_nameservers(env.get("LOOKOUT_DNS_NAMESERVERS", "")),
        dns_timeout=_float(env, "LOOKOUT_DNS_TIMEOUT", 5.0, 0.1, 60.0),
        max_indicators=_int(env, "LOOKOUT_MAX_INDICATORS", 10_000, 1, 1_000_000),
        job_ttl=_float(env, "LOOKOUT_JOB_TTL", 7 * 86400.0, 60.0, 365 * 86400.0),
        rdap_url=_base_url(env, "LOOKOUT_RDAP_URL", None),
        whois_server=_host_port(env, "LOOKOUT_WHOIS_SERVER", 43),
        virustotal_api_key=_secret(env, "VIRUSTOTAL_API_KEY"),
        virustotal_url=_base_url(env, "VIRUSTOTAL_URL", "https://www.virustotal.com/api/v3") or "",
        abuseipdb_api_key=_secret(env, "ABUSEIPDB_API_KEY"),
        abuseipdb_url=_base_url(env, "ABUSEIPDB_URL", "https://api.abuseipdb.com/api/v2") or "",
        providers=providers,
        outbound_allow=_networks(env, "LOOKOUT_OUTBOUND_ALLOW"),
        allowed_hosts=_host_names(env, "LOOKOUT_ALLOWED_HOSTS"),
        api_rate=_float(env, "LOOKOUT_API_RATE", 20.0, 0.0, 1_000_000.0),
        api_burst=_int(env, "LOOKOUT_API_BURST", 100, 1, 1_000_000),
        max_json_bytes=_int(
            env, "LOOKOUT_MAX_JSON_BYTES", DEFAULT_MAX_JSON_BYTES, 1024, 1024 * 1024 * 1024
        ),
    )


def describe(settings: Settings) -> dict[str, Any]:
    """A log-safe summary of the settings (no secret values)."""
    from shared.bus import safe_url  # the bus imports this module

    return {
        "http": f"{settings.http_host}:{settings.http_port}",
        "nats": safe_url(settings.effective_nats_url),
        "config": str(settings.config_path) if settings.config_path else None,
        "targets": [f"{t.name}:{type(t).__struct_config__.tag}" for t in settings.targets],
        "sqreen_secrets": len(settings.sqreen_secrets),
        "api_tokens": len(settings.api_tokens),
    }
