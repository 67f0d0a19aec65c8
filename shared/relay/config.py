"""The relay's configuration: the ``[[targets]]`` tables of the TOML file.

Every target has a name, a route filter (:class:`Match`), a retry policy, message templates,
a concurrency and a timeout, an optional send rate and grouping (:class:`TargetConfig`);
each target type adds its own keys in its own subclass, which its sink package owns and
the launcher registers (:func:`register_target_type`): the ``[[targets]]`` union is made of
the registered types when the configuration is read. A field named in a type's ``secrets``
may instead be read from a file named by ``<field>_file``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec

from shared.core.errors import ConfigError
from shared.core.secrets import Secret, read_secret_file, refuse_placeholder
from shared.core.settings import Section, Settings
from shared.relay.templates import NAMES, TemplateError, compile_template, unknown_names

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Rate = Annotated[float, msgspec.Meta(ge=0)]
"""A send rate per second; 0 means no limit (lifts a target type's default)."""
Name = Annotated[str, msgspec.Meta(pattern=NAME_RE.pattern)]
GroupField = Literal["source", "type", "application", "environment"]


DEFAULT_SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Seconds before each retry by default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — about
27 hours from the first attempt to the eighth and last (Standard Webhooks' example)."""

_EXPONENTIAL = {"initial_backoff": 1.0, "max_backoff": 600.0, "multiplier": 2.0}
"""The exponential backoff's settings and their defaults (used when any one is set)."""


class RetryPolicy(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Bounded retries: a schedule of delays, or exponential backoff; with jitter.

    By default the delay before attempt ``n + 1`` is ``schedule[n - 1]`` (the last one
    repeated past its end; :data:`DEFAULT_SCHEDULE` spans about a day) and ``max_attempts``
    is one more than the schedule's length. When any of ``initial_backoff``,
    ``max_backoff`` or ``multiplier`` is set (and no ``schedule``), the delay is instead
    ``min(max_backoff, initial_backoff * multiplier ** (n - 1))`` (defaults 1, 600, 2;
    ``max_attempts`` 10). Either is scaled by a random factor in ``[1 - jitter, 1]``
    (``jitter`` default 0.5 for the exponential backoff, 0.1 for a schedule). A
    ``Retry-After`` from the target replaces the computed delay (capped by
    ``max_retry_after``).

    While the target is paused (see ``TargetConfig.pause_after``) a probe delivery is
    tried ``probe_backoff`` seconds after the pause, then twice as long after each failed
    probe, at most ``max_probe_backoff``.
    """

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 0  # 0: from the schedule
    schedule: Annotated[list[PositiveFloat], msgspec.Meta(min_length=1, max_length=100)] = []
    initial_backoff: PositiveFloat | None = None
    max_backoff: PositiveFloat | None = None
    multiplier: Annotated[float, msgspec.Meta(ge=1)] | None = None
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = -1.0  # -1: the default
    max_retry_after: PositiveFloat = 3600.0
    probe_backoff: PositiveFloat = 30.0
    max_probe_backoff: PositiveFloat = 3600.0

    def __post_init__(self) -> None:
        exponential = any(getattr(self, name) is not None for name in _EXPONENTIAL)
        if exponential and self.schedule:
            raise ValueError("retry: set either schedule or initial_backoff/max_backoff/multiplier")
        if not exponential and not self.schedule:
            msgspec.structs.force_setattr(self, "schedule", list(DEFAULT_SCHEDULE))
        if self.max_attempts == 0:
            attempts = len(self.schedule) + 1 if self.schedule else 10
            msgspec.structs.force_setattr(self, "max_attempts", attempts)
        if self.jitter < 0:
            msgspec.structs.force_setattr(self, "jitter", 0.1 if self.schedule else 0.5)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), before jitter."""
        if self.schedule:
            return self.schedule[min(max(attempt, 1), len(self.schedule)) - 1]
        initial = self.initial_backoff or _EXPONENTIAL["initial_backoff"]
        ceiling = self.max_backoff or _EXPONENTIAL["max_backoff"]
        multiplier = self.multiplier or _EXPONENTIAL["multiplier"]
        return float(min(ceiling, initial * multiplier ** (attempt - 1)))

    def probe_delay(self, probes: int) -> float:
        """Seconds from a pause (``probes`` = 0) or a failed probe to the next probe."""
        return float(min(self.max_probe_backoff, self.probe_backoff * 2 ** min(probes, 40)))


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
    """Settings every target has; one subclass per target type (the TOML ``type`` key,
    the subclass's ``tag``).

    ``secrets`` names the fields that hold secrets: each may instead be read from a file
    named by ``<field>_file``; ``required_secrets`` must be set one way or the other."""

    secrets: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()
    secret_examples: ClassVar[dict[str, str]] = {}
    """Per secret field, a placeholder the type's checks accept, for the example secret
    files of the deployments (default: ``example-only-change-me-<secret name>``)."""

    name: Name
    match: Match = Match()
    retry: RetryPolicy = RetryPolicy()
    template: MessageTemplate = MessageTemplate()
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    timeout: PositiveFloat = 10.0
    per_second: Rate | None = None
    """Most messages per second sent to the target by all replicas of its sink together
    (unset or 0: no limit; 0 lifts a target type's own default: a type declares its
    service's limit as this field's default in its Struct). The sink runner keeps it, and
    after a 429 with ``Retry-After`` makes every send wait that long: shared by every
    replica through the KV bucket ``sink_pace`` (see shared.relay.pacing.Pacer), in this
    process only without a rate. Read it as :attr:`send_rate`."""
    group_window: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None
    """Seconds to collect notifications that share ``group_by`` before sending them as
    one digest (unset: every notification on its own). A lone one is sent as itself."""
    group_by: list[GroupField] = msgspec.field(
        default_factory=lambda: ["source", "type", "application"]
    )
    group_max: Annotated[int, msgspec.Meta(ge=2, le=5000)] = 500
    """A group this large is sent at once, before its window ends."""
    pause_after: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 20
    """Consecutive failed deliveries (timeouts, 5xx, 429…) after which the target is
    paused: its deliveries wait, probes back off, one success resumes it (see
    shared.relay.health); a 410 Gone pauses it at once. 0: never paused."""
    on_failure: Name | None = None
    """Another target, told when this one is paused or resumed or dead-letters a
    notification (see shared.relay.operational)."""

    @property
    def send_rate(self) -> float | None:
        """``per_second``, or ``None`` for no limit (unset or 0)."""
        return self.per_second or None

    @property
    def type(self) -> str:
        """The target type (the TOML ``type`` key)."""
        return target_type(type(self))

    def check_secret(self, field_name: str, value: str, where: str) -> None:
        """Refuse a secret value this type cannot use (:class:`ConfigError` naming ``where``);
        any value by default."""

    def missing_secret(self, field_name: str) -> str:
        """Why a required secret is needed, and how to set it."""
        return f"needs {field_name} (or {field_name}_file)"


# --------------------------------------------------------------------------- target types

_types: dict[str, type[TargetConfig]] = {}
_fallback: list[str] = []


def target_type(config: type[TargetConfig]) -> str:
    """The ``type`` of a target config class (its msgspec ``tag``)."""
    tag = config.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{config.__name__} has no tag: not a target type")
    return tag


def register_target_type(config: type[TargetConfig], *, fallback: bool = False) -> None:
    """Accept ``[[targets]]`` of this type (its tag); ``fallback``: with no ``[[targets]]``
    at all, one target of this type named after it is active."""
    name = target_type(config)
    _types[name] = config
    if fallback:
        _fallback[:] = [name]


def target_types() -> Mapping[str, type[TargetConfig]]:
    """The registered target types, by name, in registration order."""
    return dict(_types)


@functools.lru_cache(maxsize=8)
def _tables(types: tuple[type[TargetConfig], ...]) -> type[msgspec.Struct]:
    """A Struct whose ``targets`` is a list of the tagged union of ``types`` (so that errors
    read ``$.targets[0].url`` as in the file)."""
    union: Any = Union[types]  # noqa: UP007 - a union made at run time
    return msgspec.defstruct(
        "Targets", [("targets", list[union], msgspec.field(default_factory=list))], kw_only=True
    )


# --------------------------------------------------------------------------- the section


@dataclass(frozen=True)
class RelayConfig:
    targets: tuple[TargetConfig, ...] = ()
    target_secrets: Mapping[tuple[str, str], Secret] = field(default_factory=dict)

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets) or "none"
        raise ConfigError(f"no target named {name!r} is configured (configured: {known})")

    def secret(self, target: str, field_name: str) -> Secret | None:
        """A target's secret field (read from the TOML value or its ``_file``)."""
        return self.target_secrets.get((target, field_name))


def _targets(settings: Settings) -> list[TargetConfig]:
    where = settings.config_where
    if "targets" not in settings.document:
        return []
    if not _types:
        raise ConfigError(f"{where}: no target type is registered")
    try:
        tables = msgspec.convert(
            {"targets": settings.document["targets"]}, _tables(tuple(_types.values()))
        )
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    found: list[TargetConfig] = tables.targets  # type: ignore[attr-defined]
    return found


def target_secrets(
    settings: Settings, targets: list[TargetConfig]
) -> dict[tuple[str, str], Secret]:
    """The secret fields of the targets in the secret scope (``None``: every target), from
    the TOML value or ``<field>_file``."""
    only = settings.secret_scope
    secrets: dict[tuple[str, str], Secret] = {}
    for index, target in enumerate(targets):
        if only is not None and target.name not in only:
            continue  # another service's secret: neither read nor required here
        where = f"{settings.config_where}: targets[{index}] ({target.name})"
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
                    raise ConfigError(f"{where}: {target.missing_secret(field_name)}")
                continue
            refuse_placeholder(value, f"{where}.{field_name}")
            target.check_secret(field_name, value, f"{where}.{field_name}")
            secrets[(target.name, field_name)] = Secret(value)
    return secrets


def check_templates(settings: Settings, targets: list[TargetConfig]) -> None:
    for index, target in enumerate(targets):
        for part in ("title", "body"):
            source = getattr(target.template, part)
            if source is None:
                continue
            where = f"{settings.config_where}: targets[{index}] ({target.name}).template.{part}"
            try:
                compile_template(source, where)
            except TemplateError as exc:
                raise ConfigError(str(exc)) from None
            unknown = unknown_names(source)
            if unknown:
                raise ConfigError(
                    f"{where}: no notification has {', '.join(unknown)} (a template can use "
                    f"{', '.join(sorted(NAMES))}; a field of the message is message.<name>)"
                )


def _load(settings: Settings) -> RelayConfig:
    targets = _targets(settings)
    if not targets:
        targets = [_types[name](name=name) for name in _fallback]
    seen: set[str] = set()
    for target in targets:
        if target.name in seen:
            raise ConfigError(f"{settings.config_where}: two targets are named {target.name!r}")
        seen.add(target.name)
    for target in targets:
        if target.on_failure is None:
            continue
        if target.on_failure == target.name:
            raise ConfigError(
                f"{settings.config_where}: target {target.name!r}: on_failure names itself"
            )
        if target.on_failure not in seen:
            raise ConfigError(
                f"{settings.config_where}: target {target.name!r}: on_failure names "
                f"{target.on_failure!r}, which is not a configured target"
            )
    secrets = target_secrets(settings, targets)
    check_templates(settings, targets)
    return RelayConfig(tuple(targets), secrets)


def _describe(config: RelayConfig) -> dict[str, Any]:
    return {"targets": [f"{t.name}:{t.type}" for t in config.targets]}


SECTION = Section("relay", _load, keys=("targets",), describe=_describe)


def relay(settings: Settings) -> RelayConfig:
    """The relay's part of ``settings``: the targets and the secrets this process reads."""
    return settings.section(SECTION)
