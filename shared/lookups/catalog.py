"""The providers lookout knows: what each declares of itself (:class:`ProviderSpec`).

A provider package declares its ``SPEC``: its name, how people call it, the indicator
kinds it answers for, whether it looks up private addresses, its ``[providers.<name>]``
Struct, the environment variables it reads, its default cache lifetime, and how the web UI
shows its results (its details and links to its own pages) and where its answers hold
values worth looking up next (its pivots). The launcher
registers every provider's spec (``services/registry.py``) before anything else, so every
process (the gateway, each worker, the CLI) knows the same providers, in the same order,
without importing any provider's code: which providers answer an indicator, the column
order of the CSV and the UI, the provider consumers to create, the names people read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.settings import Section, Settings, register_section
from shared.lookups import display, pivots
from shared.lookups.config import ProviderConfig, lookups, register_provider_table
from shared.lookups.display import Details
from shared.lookups.pivots import PivotRule


@dataclass(frozen=True)
class EnvVar:
    """An environment variable a provider reads."""

    name: str
    hint: str
    """What it is, for the documentation and error messages."""
    secret: bool = False
    """A secret: may be read from a file named by ``<name>_FILE``."""
    link: str | None = None
    """Where to get a value (e.g. a free API key)."""
    default: str = ""
    """The value it has when unset, as the deployment files write it (empty: none)."""
    without: str = 'the provider runs unconfigured (its results say "not_configured")'
    """What happens without a value (a secret's), for the deployment files' comments."""


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    label: str
    """How the provider is named to people (verdict reasons, the UI's column heads)."""
    kinds: frozenset[str]
    """The indicator kinds it answers for: the gateway lists a pending entry for every
    provider of an indicator's kind."""
    config: type[ProviderConfig] = ProviderConfig
    """Its ``[providers.<name>]`` table."""
    env: tuple[EnvVar, ...] = ()
    default_ttl: float = 3600.0
    """Seconds an answer is cached unless it says otherwise (``cache_ttl`` overrides)."""
    looks_up_private: bool = False
    """Whether private, loopback and reserved addresses are worth asking about."""
    settings: Section[Any] | None = None
    """The section that reads its environment variables, if any (checked at start)."""
    details: Details = field(default_factory=Details)
    """How the web UI lays out its results' data (see :mod:`shared.lookups.display`)."""
    links: Mapping[str, str] = field(default_factory=dict)
    """Per indicator kind, the provider's own page about the indicator: an ``https://``
    template naming ``{value}`` (the indicator) or ``{host}`` (its host)."""
    pivots: tuple[PivotRule, ...] = ()
    """Where its answers' data hold values worth looking up next (see
    :mod:`shared.lookups.pivots`): found by its worker, stored on each result."""


_specs: dict[str, ProviderSpec] = {}


def register(spec: ProviderSpec) -> None:
    """Know ``spec`` (again: the same name replaces it), its table and its settings;
    :class:`ValueError` for a display declaration the web UI could not follow."""
    display.check(spec.name, spec.details, spec.links, spec.kinds)
    pivots.check(spec.name, spec.pivots)
    _specs[spec.name] = spec
    register_provider_table(spec.name, spec.config)
    if spec.settings is not None:
        register_section(spec.settings)


def specs() -> tuple[ProviderSpec, ...]:
    """Every registered provider, in registration order."""
    return tuple(_specs.values())


def names() -> tuple[str, ...]:
    return tuple(_specs)


def setup_hint(name: str, why: str) -> tuple[str, dict[str, str]]:
    """What a ``not_configured`` result says: the summary (``why``, and where a free key
    is had) and its data, ``variable`` (the variable to set) and ``signup_url`` (the
    declared ``link`` of that variable, when it has one)."""
    spec = _specs.get(name)
    secrets = [v for v in (spec.env if spec is not None else ()) if v.secret]
    named = [v for v in secrets if v.name in why]
    candidates = named or [v for v in secrets if v.link] or secrets
    if not candidates:
        return why, {}
    chosen = candidates[0]
    data = {"variable": chosen.name}
    said = why if chosen.name in why else f"{why}: set {chosen.name}"
    if not chosen.link:
        return said, data
    data["signup_url"] = chosen.link
    return f"{said} (free key: {chosen.link})", data


def active(settings: Settings) -> tuple[ProviderSpec, ...]:
    """The registered providers that are on in ``settings`` (``LOOKOUT_PROVIDERS``,
    ``[providers.<name>] enabled``), in registration order: the only ones that get
    consumers, requests, columns and services."""
    config = lookups(settings)
    return tuple(spec for spec in _specs.values() if config.is_enabled(spec.name))


def active_names(settings: Settings) -> tuple[str, ...]:
    return tuple(spec.name for spec in active(settings))


def refused(settings: Settings, names: Iterable[str]) -> str | None:
    """Why a job or a watch cannot ask ``names``: the ones no running provider answers to
    (unknown, or turned off by ``LOOKOUT_PROVIDERS``); None when all can be asked."""
    running = active_names(settings)
    unknown = [name for name in names if name not in running]
    if not unknown:
        return None
    off = [name for name in unknown if name in _specs]
    why = f" ({', '.join(off)}: turned off by the configuration)" if off else ""
    return f"unknown providers: {', '.join(unknown)}{why}"


def get(name: str) -> ProviderSpec | None:
    return _specs.get(name)


def kinds(name: str) -> frozenset[str]:
    """The kinds ``name`` answers for (none for a provider that is not registered)."""
    spec = _specs.get(name)
    return spec.kinds if spec is not None else frozenset()


def label(name: str) -> str:
    """How people call ``name`` (its name when it is not registered)."""
    spec = _specs.get(name)
    return spec.label if spec is not None else name
