"""Configuration: environment variables plus an optional TOML file named by ``LOOKOUT_CONFIG``.

Secrets (:mod:`shared.core.secrets`) may be read from files. Bad configuration raises
:class:`~shared.core.errors.ConfigError` whose message names the offending variable or TOML
key; the CLI prints it and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from shared.core import env as envvars
from shared.core import natsurl
from shared.core.errors import ConfigError
from shared.core.secrets import Secret, secret, secret_list
from shared.lookups.config import ProvidersConfig
from shared.relay.config import (
    AnyTarget,
    LogTargetConfig,
    check_templates,
)
from shared.relay.config import (
    target_secrets as read_target_secrets,
)

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_JSON_BYTES = 1024 * 1024


class FileConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    targets: list[AnyTarget] = []
    providers: ProvidersConfig = ProvidersConfig()


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
    message (``shared.relay.schemas.envelope_limit`` of the server's ``max_payload``)."""
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
    (private, loopback…; see shared.core.ssrf)."""
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
        target_secrets = read_target_secrets(targets, config_path, secrets_of)
        check_templates(targets, config_path)
        providers = file_config.providers

    nats_url = env.get("NATS_URL") or None
    if nats_url is not None:
        natsurl.check(nats_url)
    log_level = env.get("LOOKOUT_LOG_LEVEL", "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"LOOKOUT_LOG_LEVEL must be debug|info|warning|error, got {log_level!r}")

    return Settings(
        http_host=env.get("LOOKOUT_HTTP_HOST") or "127.0.0.1",
        http_port=envvars.integer(env, "LOOKOUT_HTTP_PORT", 8080, 0, 65535),
        nats_url=nats_url,
        nats_port=envvars.integer(env, "LOOKOUT_NATS_PORT", 4222, 1, 65535),
        data_dir=data_dir(env),
        sqreen_secrets=secret_list(env, "SQREEN_WEBHOOK_SECRET"),
        api_tokens=secret_list(env, "LOOKOUT_API_TOKENS"),
        max_body_bytes=envvars.integer(
            env, "LOOKOUT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1024, 1024 * 1024 * 1024
        ),
        dedup_window=envvars.number(env, "LOOKOUT_DEDUP_WINDOW", 3600.0, 1.0, 7 * 86400.0),
        publish_timeout=envvars.number(env, "LOOKOUT_PUBLISH_TIMEOUT", 5.0, 0.1, 120.0),
        stream_replicas=envvars.integer(env, "LOOKOUT_STREAM_REPLICAS", 1, 1, 5),
        log_level=log_level,
        metrics_host=_metrics_host(env),
        metrics_port=envvars.optional_port(env, "LOOKOUT_METRICS_PORT"),
        config_path=config_path,
        targets=tuple(targets),
        target_secrets=target_secrets,
        dns_nameservers=envvars.nameservers(env.get("LOOKOUT_DNS_NAMESERVERS", "")),
        dns_timeout=envvars.number(env, "LOOKOUT_DNS_TIMEOUT", 5.0, 0.1, 60.0),
        max_indicators=envvars.integer(env, "LOOKOUT_MAX_INDICATORS", 10_000, 1, 1_000_000),
        job_ttl=envvars.number(env, "LOOKOUT_JOB_TTL", 7 * 86400.0, 60.0, 365 * 86400.0),
        rdap_url=envvars.base_url(env, "LOOKOUT_RDAP_URL", None),
        whois_server=envvars.host_port(env, "LOOKOUT_WHOIS_SERVER", 43),
        virustotal_api_key=secret(env, "VIRUSTOTAL_API_KEY"),
        virustotal_url=envvars.base_url(env, "VIRUSTOTAL_URL", "https://www.virustotal.com/api/v3")
        or "",
        abuseipdb_api_key=secret(env, "ABUSEIPDB_API_KEY"),
        abuseipdb_url=envvars.base_url(env, "ABUSEIPDB_URL", "https://api.abuseipdb.com/api/v2")
        or "",
        providers=providers,
        outbound_allow=envvars.networks(env, "LOOKOUT_OUTBOUND_ALLOW"),
        allowed_hosts=envvars.host_names(env, "LOOKOUT_ALLOWED_HOSTS"),
        api_rate=envvars.number(env, "LOOKOUT_API_RATE", 20.0, 0.0, 1_000_000.0),
        api_burst=envvars.integer(env, "LOOKOUT_API_BURST", 100, 1, 1_000_000),
        max_json_bytes=envvars.integer(
            env, "LOOKOUT_MAX_JSON_BYTES", DEFAULT_MAX_JSON_BYTES, 1024, 1024 * 1024 * 1024
        ),
    )


def describe(settings: Settings) -> dict[str, Any]:
    """A log-safe summary of the settings (no secret values)."""
    return {
        "http": f"{settings.http_host}:{settings.http_port}",
        "nats": natsurl.safe_url(settings.effective_nats_url),
        "config": str(settings.config_path) if settings.config_path else None,
        "targets": [f"{t.name}:{type(t).__struct_config__.tag}" for t in settings.targets],
        "sqreen_secrets": len(settings.sqreen_secrets),
        "api_tokens": len(settings.api_tokens),
    }
