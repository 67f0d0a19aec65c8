"""The lookups' configuration: the environment variables every provider shares (limits, the
DNS servers) and the ``[providers.<name>]`` tables of the TOML file.

Each provider's table is its own Struct (a :class:`ProviderConfig` subclass with its quota
defaults and thresholds), declared in its package and registered with the catalog
(:mod:`shared.lookups.catalog`), which makes it a table of ``[providers]`` here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

import msgspec

from shared.core import env as envvars
from shared.core.errors import ConfigError
from shared.core.secrets import Secret, secret
from shared.core.settings import Section, Settings

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
C = TypeVar("C", bound="ProviderConfig")


class Quota(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Requests a provider may make upstream, shared by all its replicas (0 = no limit)."""

    per_minute: Annotated[int, msgspec.Meta(ge=0)] = 0
    per_day: Annotated[int, msgspec.Meta(ge=0)] = 0
    reserve: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.25
    """The share of each quota (rounded down) that scheduled lookups leave to interactive
    ones: they take a grant only while more than that is left (see shared.lookups.quota)."""


class ProviderConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The ``[providers.<name>]`` keys every provider has."""

    enabled: bool = True
    """``false``: the provider is off (as if ``LOOKOUT_PROVIDERS`` did not name it)."""
    quota: Quota = Quota()
    cache_ttl: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Seconds every answer is cached, overriding the provider's own choice (its default
    cache lifetime, or what an answer says of itself); 0: never."""
    timeout: PositiveFloat = 20.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    quota_slack: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    """Seconds added to the per-minute quota's 60-second window: the margin between how
    lookout counts and how the upstream does (whole seconds, clock skew)."""


_tables: dict[str, type[ProviderConfig]] = {}


def register_provider_table(name: str, config: type[ProviderConfig]) -> None:
    """Accept ``[providers.<name>]``, read as ``config``."""
    _tables[name] = config


@functools.lru_cache(maxsize=8)
def _file_struct(tables: tuple[tuple[str, type[ProviderConfig]], ...]) -> type[msgspec.Struct]:
    """A Struct with ``providers``, a Struct with one field per registered table (so errors
    read ``$.providers.<name>.quota.per_day`` as in the file)."""
    providers = msgspec.defstruct(
        "Providers",
        [(name, config, msgspec.field(default_factory=config)) for name, config in tables],
        kw_only=True,
        frozen=True,
        forbid_unknown_fields=True,
    )
    return msgspec.defstruct(
        "ProvidersFile",
        [("providers", providers, msgspec.field(default_factory=providers))],
        kw_only=True,
    )


@dataclass(frozen=True)
class LookupsConfig:
    max_indicators: int = 10_000
    job_ttl: float = 7 * 86400.0
    dns_nameservers: tuple[tuple[str, int], ...] = ()
    """``LOOKOUT_DNS_NAMESERVERS`` (empty: the system's resolver)."""
    dns_timeout: float = 5.0
    history_ttl: float = 90 * 86400.0
    """``LOOKOUT_HISTORY_TTL``: seconds an indicator's history is kept after its last
    update (and the recent-jobs index is kept)."""
    history_max_bytes: int = 512 * 1024 * 1024
    """``LOOKOUT_HISTORY_MAX_BYTES``: the most the indicator history keeps; past it, the
    indicators updated least recently are dropped first."""
    watch_min_every: float = 300.0
    """``LOOKOUT_WATCH_MIN_EVERY``: the shortest ``every`` a watch may have."""
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    wanted: frozenset[str] | None = None
    """``LOOKOUT_PROVIDERS``: the providers to run (None: every registered one)."""
    disabled: frozenset[str] = frozenset()
    """The providers whose table says ``enabled = false``."""

    def is_enabled(self, name: str) -> bool:
        """Whether provider ``name`` is on: named by ``LOOKOUT_PROVIDERS`` (or it is unset)
        and not turned off by its table."""
        return (self.wanted is None or name in self.wanted) and name not in self.disabled

    def provider(self, name: str) -> ProviderConfig:
        """The ``[providers.<name>]`` table (its defaults when absent, the base defaults
        for a provider without a table of its own)."""
        found = self.providers.get(name)
        return found if found is not None else ProviderConfig()


def _providers(settings: Settings) -> dict[str, ProviderConfig]:
    tables = tuple(_tables.items())
    document = {"providers": settings.document.get("providers", {})}
    try:
        read: Any = msgspec.convert(document, _file_struct(tables))
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{settings.config_where}: {exc}") from None
    return {name: getattr(read.providers, name) for name, _ in tables}


def _wanted(env: Mapping[str, str], known: Mapping[str, ProviderConfig]) -> frozenset[str] | None:
    """``LOOKOUT_PROVIDERS`` read: a name that is not a provider is a configuration error."""
    raw = env.get("LOOKOUT_PROVIDERS", "").strip()
    if not raw:
        return None
    wanted = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if not wanted:
        raise ConfigError(f"LOOKOUT_PROVIDERS names no provider (providers: {', '.join(known)})")
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(
            f"LOOKOUT_PROVIDERS: unknown provider {', '.join(repr(n) for n in unknown)} "
            f"(providers: {', '.join(known)})"
        )
    return frozenset(wanted)


def _load(settings: Settings) -> LookupsConfig:
    env = settings.env
    providers = _providers(settings)
    return LookupsConfig(
        max_indicators=envvars.integer(env, "LOOKOUT_MAX_INDICATORS", 10_000, 1, 1_000_000),
        job_ttl=envvars.number(env, "LOOKOUT_JOB_TTL", 7 * 86400.0, 1.0, 365 * 86400.0),
        dns_nameservers=envvars.nameservers(env.get("LOOKOUT_DNS_NAMESERVERS", "")),
        dns_timeout=envvars.number(env, "LOOKOUT_DNS_TIMEOUT", 5.0, 0.1, 60.0),
        history_ttl=envvars.number(env, "LOOKOUT_HISTORY_TTL", 90 * 86400.0, 60.0, 3650 * 86400.0),
        history_max_bytes=envvars.integer(
            env, "LOOKOUT_HISTORY_MAX_BYTES", 512 * 1024 * 1024, 1024 * 1024, 1 << 40
        ),
        watch_min_every=envvars.number(env, "LOOKOUT_WATCH_MIN_EVERY", 300.0, 1.0, 86400.0),
        providers=providers,
        wanted=_wanted(env, providers),
        disabled=frozenset(n for n, table in providers.items() if not table.enabled),
    )


SECTION = Section("lookups", _load, keys=("providers",))


def lookups(settings: Settings) -> LookupsConfig:
    """The lookups' part of ``settings``."""
    return settings.section(SECTION)


def provider_config(settings: Settings, name: str, config: type[C]) -> C:
    """The ``[providers.<name>]`` table of ``settings``, as the provider's own Struct."""
    found = lookups(settings).provider(name)
    if not isinstance(found, config):
        raise ConfigError(f"[providers.{name}] is not registered as {config.__name__}")
    return found


@dataclass(frozen=True)
class ApiSettings(Generic[C]):
    """An HTTP API provider's settings: its key (None when not set, or when it takes none),
    its base URL (without a trailing ``/``) and its ``[providers.<name>]`` table."""

    api_key: Secret | None
    url: str
    config: C


def api_section(
    name: str, config: type[C], url_var: str, default_url: str, key_var: str | None = None
) -> Section[ApiSettings[C]]:
    """The ``Section`` of provider ``name`` reading ``key_var`` (or ``<key_var>_FILE``, a
    secret; none when None), ``url_var`` (default ``default_url``) and its table."""

    def load(settings: Settings) -> ApiSettings[C]:
        return ApiSettings(
            api_key=secret(settings.env, key_var) if key_var is not None else None,
            url=envvars.base_url(settings.env, url_var, default_url) or default_url,
            config=provider_config(settings, name, config),
        )

    return Section(f"providers.{name}", load)
