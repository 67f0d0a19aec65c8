"""The relay's sources: the ``[[sources]]`` tables of the TOML file.

Every source has a ``name`` (the ``source`` of its notifications and its route,
``POST /webhooks/<name>``) and a ``type``; each source type adds its own keys (its signing
key, its header names…) in its own subclass of :class:`SourceConfig`, which its module
owns and the launcher registers (:func:`register_source_type`), as target types do. A
field named in a type's ``secrets`` may instead be read from a file named by
``<field>_file``. Optional ``application`` and ``environment`` are the defaults of the
route filter (``match``) for the source's notifications whose message names none.

Reading the section also tells :mod:`shared.relay.sources` which profile reads each
configured source's notifications (:meth:`SourceConfig.profile`), so every process (the
gateway, each sink) reads them the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Union

import msgspec

from shared.core.errors import ConfigError
from shared.core.secrets import Secret, read_secret_file, refuse_placeholder
from shared.core.settings import Section, Settings
from shared.relay import sources
from shared.relay.config import Name
from shared.relay.sources import SourceProfile

MAX_SOURCES = 100


class SourceConfig(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, tag_field="type"
):
    """Settings every source has; one subclass per source type (the TOML ``type`` key, the
    subclass's ``tag``).

    ``secrets`` names the fields that hold secrets: each may instead be read from a file
    named by ``<field>_file``; ``required_secrets`` must be set one way or the other."""

    secrets: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()

    name: Name
    application: str | None = None
    """Default application of its notifications (when the message names none)."""
    environment: str | None = None
    """Default environment of its notifications (when the message names none)."""

    @property
    def type(self) -> str:
        """The source type (the TOML ``type`` key)."""
        return source_type(type(self))

    def profile(self) -> SourceProfile:
        """How the relay reads this source's notifications (the generic profile unless the
        type has its own)."""
        return sources.GENERIC

    def check(self, secrets: Mapping[str, Secret], where: str) -> None:
        """Refuse settings this type cannot use (:class:`ConfigError` naming ``where``),
        given its secrets as read; nothing more by default."""
        for name in self.required_secrets:
            if name not in secrets:
                raise ConfigError(f"{where}: needs {name} (or {name}_file)")


_types: dict[str, type[SourceConfig]] = {}
_reserved: dict[str, str] = {}


def reserve(name: str, source_type: str) -> None:
    """``name`` is a source that exists without configuration (the launcher's): a
    ``[[sources]]`` entry may take it only with this type (to give it its settings)."""
    _reserved[name] = source_type


def source_type(config: type[SourceConfig]) -> str:
    tag = config.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{config.__name__} has no tag: not a source type")
    return tag


def register_source_type(config: type[SourceConfig]) -> None:
    """Accept ``[[sources]]`` of this type (its tag)."""
    _types[source_type(config)] = config


def source_types() -> Mapping[str, type[SourceConfig]]:
    """The registered source types, by name, in registration order."""
    return dict(_types)


@functools.lru_cache(maxsize=8)
def _tables(types: tuple[type[SourceConfig], ...]) -> type[msgspec.Struct]:
    union: Any = Union[types]  # noqa: UP007 - a union made at run time
    return msgspec.defstruct(
        "Sources", [("sources", list[union], msgspec.field(default_factory=list))], kw_only=True
    )


@dataclass(frozen=True)
class InboundConfig:
    sources: tuple[SourceConfig, ...] = ()

    def source(self, name: str) -> SourceConfig | None:
        for source in self.sources:
            if source.name == name:
                return source
        return None


def _secrets(config: SourceConfig, where: str) -> dict[str, Secret]:
    found: dict[str, Secret] = {}
    for field_name in config.secrets:
        direct = getattr(config, field_name, None)
        file_name = getattr(config, f"{field_name}_file", None)
        if direct and file_name:
            raise ConfigError(f"{where}: set either {field_name} or {field_name}_file")
        value = direct
        if file_name:
            value = read_secret_file(file_name, f"{where}.{field_name}_file")
        if value:
            found[field_name] = Secret(refuse_placeholder(value, f"{where}.{field_name}"))
    return found


def _load(settings: Settings) -> InboundConfig:
    if "sources" not in settings.document:
        return InboundConfig()
    where = settings.config_where
    if not _types:
        raise ConfigError(f"{where}: no source type is registered")
    try:
        tables = msgspec.convert(
            {"sources": settings.document["sources"]}, _tables(tuple(_types.values()))
        )
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    found: list[SourceConfig] = tables.sources  # type: ignore[attr-defined]
    if len(found) > MAX_SOURCES:
        raise ConfigError(f"{where}: {len(found)} sources; at most {MAX_SOURCES}")
    seen: set[str] = set()
    for index, source in enumerate(found):
        if source.name in seen:
            raise ConfigError(f"{where}: two sources are named {source.name!r}")
        seen.add(source.name)
        kind = _reserved.get(source.name)
        if kind is not None and source.type != kind:
            raise ConfigError(
                f"{where}: sources[{index}]: the source name {source.name!r} is reserved "
                f"for a source of type {kind}"
            )
    config = InboundConfig(tuple(found))
    if settings.secret_scope is None:  # lookout run: refuse a missing secret before starting
        _read_secrets(settings, config)
    for source in found:
        defaults = sources.Attributes(None, source.application, source.environment)
        sources.register(source.name, source.profile(), defaults)
    return config


def _read_secrets(settings: Settings, config: InboundConfig) -> dict[tuple[str, str], Secret]:
    secrets: dict[tuple[str, str], Secret] = {}
    for index, source in enumerate(config.sources):
        here = f"{settings.config_where}: sources[{index}] ({source.name})"
        own = _secrets(source, here)
        source.check(own, here)
        secrets.update({(source.name, k): v for k, v in own.items()})
    return secrets


def _describe(config: InboundConfig) -> dict[str, Any]:
    return {"sources": [f"{s.name}:{s.type}" for s in config.sources]}


SECTION = Section("relay.sources", _load, keys=("sources",), describe=_describe)


def inbound(settings: Settings) -> InboundConfig:
    """The configured sources (their secrets: :func:`source_secrets`)."""
    return settings.section(SECTION)


_SECRETS = Section(
    "relay.sources.secrets", lambda settings: _read_secrets(settings, inbound(settings))
)


def source_secrets(settings: Settings) -> Mapping[tuple[str, str], Secret]:
    """Every source's secret fields by ``(source, field)``, read from the TOML value or its
    ``_file`` on first use (only the gateway and ``lookout run`` need them, so only they
    read the files); :class:`ConfigError` for a missing one."""
    return settings.section(_SECRETS)
