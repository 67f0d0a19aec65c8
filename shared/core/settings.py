"""Configuration: environment variables plus an optional TOML file named by ``LOOKOUT_CONFIG``.

:class:`Settings` holds what every service needs (HTTP and NATS addresses, limits, API
tokens, logging, metrics), the environment it was read from and the TOML document, decoded
but not validated. Everything else belongs to a domain or an integration, each of which
declares its part as a :class:`Section`: the relay its ``[[targets]]``, the lookups their
``[providers.<name>]`` tables, an integration the environment variables it reads (its API
key, its base URL…). The launcher registers every section (``services/registry.py``) before
:func:`load`, which reads and validates them all, so a bad configuration is refused at once
whichever service starts; each section is read once per :class:`Settings`
(:meth:`Settings.section`).

Secrets (:mod:`shared.core.secrets`) may be read from files. Bad configuration raises
:class:`~shared.core.errors.ConfigError` whose message names the offending variable or TOML
key; the CLI prints it and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import msgspec

from shared.core import env as envvars
from shared.core import natsurl
from shared.core.errors import ConfigError
from shared.core.secrets import Secret, secret_list

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_JSON_BYTES = 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Section(Generic[T]):
    """A part of the configuration that a domain or an integration owns and reads itself.

    ``load`` reads it from :attr:`Settings.env` and :attr:`Settings.document` (and may ask
    for other sections), raising :class:`ConfigError` for anything wrong; ``keys`` are the
    top-level TOML keys it owns (any other is refused); ``describe`` says what
    :func:`describe` logs of it (never a secret)."""

    name: str
    load: Callable[[Settings], T]
    keys: tuple[str, ...] = ()
    describe: Callable[[T], Mapping[str, Any]] | None = None


_sections: dict[str, Section[Any]] = {}


def register_section(section: Section[Any]) -> None:
    """Make :func:`load` read and check ``section`` (again: the same name replaces it)."""
    _sections[section.name] = section


def sections() -> tuple[Section[Any], ...]:
    return tuple(_sections.values())


@dataclass(frozen=True)
class Settings:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    nats_url: str | None = None
    nats_port: int = 4222
    data_dir: Path = Path(".lookout")
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
    outbound_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Networks outbound connections (targets, provider referrals) may reach although
    special-purpose (private, loopback…; see shared.core.ssrf)."""
    allowed_hosts: tuple[str, ...] = ()
    """``LOOKOUT_ALLOWED_HOSTS``: host names (or IP addresses) the gateway answers to besides
    the loopback ones, lower-case, IPv6 without brackets (see services.gateway.hosts)."""
    api_rate: float = 20.0
    """Requests per second per client on ``/api/*`` (token refill rate; 0: no limit)."""
    api_burst: int = 100
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    """Largest JSON body on ``/api/*`` (file uploads keep ``max_body_bytes``)."""
    secret_scope: frozenset[str] | None = None
    """The targets whose secrets this process reads (and requires); None: every target's,
    as ``lookout run`` does (see :func:`load`)."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """The environment the settings were read from (each section reads its variables)."""
    document: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The TOML file (``LOOKOUT_CONFIG``) decoded, each section validating its own keys."""
    _read: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def effective_nats_url(self) -> str:
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    @property
    def config_where(self) -> str:
        """How errors in the TOML document name it: its path."""
        return str(self.config_path) if self.config_path else "LOOKOUT_CONFIG"

    def section(self, section: Section[T]) -> T:
        """``section`` as read from these settings (once: later calls return the same)."""
        if section.name not in self._read:
            self._read[section.name] = section.load(self)
        return cast(T, self._read[section.name])

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


def _load_document(path: Path) -> dict[str, Any]:
    """The TOML file, decoded; its top-level keys must belong to a registered section."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"LOOKOUT_CONFIG: cannot read {path}: {exc.strerror}") from None
    try:
        document = msgspec.toml.decode(raw)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    known = {key for section in _sections.values() for key in section.keys}
    for key in document:
        if key not in known:
            raise ConfigError(f"{path}: Object contains unknown field `{key}`")
    return cast(dict[str, Any], document)


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
    """Read and validate the whole configuration, every registered section included; raise
    :class:`ConfigError` on any problem.

    ``secrets_of`` names the targets whose secrets this process reads (and requires): a
    sink needs only its own, the gateway and the providers none, so each deployment mounts
    only the secrets of its service. ``None`` reads every target's, as ``lookout run`` does
    to refuse a bad configuration before anything starts."""
    env = os.environ if env is None else env
    config_path: Path | None = None
    document: dict[str, Any] = {}
    if env.get("LOOKOUT_CONFIG"):
        config_path = Path(env["LOOKOUT_CONFIG"])
        document = _load_document(config_path)

    nats_url = env.get("NATS_URL") or None
    if nats_url is not None:
        natsurl.check(nats_url)
    log_level = env.get("LOOKOUT_LOG_LEVEL", "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"LOOKOUT_LOG_LEVEL must be debug|info|warning|error, got {log_level!r}")

    settings = Settings(
        http_host=env.get("LOOKOUT_HTTP_HOST") or "127.0.0.1",
        http_port=envvars.integer(env, "LOOKOUT_HTTP_PORT", 8080, 0, 65535),
        nats_url=nats_url,
        nats_port=envvars.integer(env, "LOOKOUT_NATS_PORT", 4222, 1, 65535),
        data_dir=data_dir(env),
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
        outbound_allow=envvars.networks(env, "LOOKOUT_OUTBOUND_ALLOW"),
        allowed_hosts=envvars.host_names(env, "LOOKOUT_ALLOWED_HOSTS"),
        api_rate=envvars.number(env, "LOOKOUT_API_RATE", 20.0, 0.0, 1_000_000.0),
        api_burst=envvars.integer(env, "LOOKOUT_API_BURST", 100, 1, 1_000_000),
        max_json_bytes=envvars.integer(
            env, "LOOKOUT_MAX_JSON_BYTES", DEFAULT_MAX_JSON_BYTES, 1024, 1024 * 1024 * 1024
        ),
        secret_scope=None if secrets_of is None else frozenset(secrets_of),
        env=env,
        document=document,
    )
    for section in _sections.values():
        settings.section(section)  # every part checked now, whichever service starts
    return settings


def describe(settings: Settings) -> dict[str, Any]:
    """A log-safe summary of the settings (no secret values)."""
    described: dict[str, Any] = {
        "http": f"{settings.http_host}:{settings.http_port}",
        "nats": natsurl.safe_url(settings.effective_nats_url),
        "config": str(settings.config_path) if settings.config_path else None,
    }
    for section in _sections.values():
        if section.describe is not None:
            described.update(section.describe(settings.section(section)))
    described["api_tokens"] = len(settings.api_tokens)
    return described
