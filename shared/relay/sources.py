"""Source profiles: what lookout reads of a notification's message to route and render it.

A notification carries its sender's message unchanged (``data``); where that message keeps
its risk, application, environment, description, link, addresses and accounts depends on
the source. A :class:`SourceProfile` reads them into one shape (:class:`Attributes` for
route filters and grouping, :class:`Fields` for templates) and may bring default templates
per message type. The base class is the **generic profile**, for any source without one of
its own: the message's top-level ``risk`` (a number), ``application``, ``environment``,
``description``, ``url``, ``ips`` (addresses, or objects with an ``address``) and
``accounts``. The launcher registers a profile per source name (``services/registry.py``),
and reading the ``[[sources]]`` section one per configured source, with its default
application and environment (``shared/relay/inbound.py``); every service reads
notifications through :func:`profile`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, TypeVar, cast

from shared.core import jsondata
from shared.relay.schemas import LOOKOUT_SOURCE, VERDICT_CHANGED_TYPE, Notification

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attributes:
    """What route filters (``match``) and grouping (``group_by``) read of a notification."""

    risk: int | None = None
    application: str | None = None
    environment: str | None = None


@dataclass(frozen=True, slots=True)
class Fields:
    """What templates read of a notification besides its :class:`Attributes`."""

    ips: list[str]
    accounts: list[str]
    url: Any
    """A link to the event as the message gives it (templates keep only http(s) URLs)."""
    description: Any


def number(value: Any) -> int | None:
    """``value`` as a whole number when it is a JSON number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def text(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def items(value: Any) -> list[Any]:
    """``value`` when it is a list, else none: a message may hold anything anywhere."""
    return value if isinstance(value, list) else []


def addresses(value: Any) -> list[str]:
    """The addresses of a list of strings or of objects with an ``address``."""
    found: list[str] = []
    for item in items(value):
        if isinstance(item, dict) and isinstance(item.get("address"), str):
            found.append(item["address"])
        elif isinstance(item, str):
            found.append(item)
    return found


def names(value: Any) -> list[str]:
    """Accounts as text: strings, or objects by their ``email``, ``username`` or first value."""
    found: list[str] = []
    for item in items(value):
        if isinstance(item, dict):
            found.append(
                str(item.get("email") or item.get("username") or next(iter(item.values()), ""))
            )
        elif isinstance(item, str):
            found.append(item)
    return found


class SourceProfile:
    """How lookout reads one source's messages; this base class is the generic profile.

    A source with its own shape subclasses it: :meth:`message` finds the object that holds
    the message's fields, :meth:`attributes` and :meth:`fields` read them, and
    :attr:`templates` gives the default title and body templates per message type (a type
    without one renders with the generic templates)."""

    templates: ClassVar[Mapping[str, tuple[str, str]]] = {}
    """Default ``(title, body)`` Jinja2 templates per message type."""
    digest_names_source: ClassVar[bool] = True
    """Whether a digest of this source's notifications says where they come from
    ("12 port scan notifications from suricata")."""

    def templates_for(self, kind: str) -> tuple[str, str] | None:
        """The default ``(title, body)`` templates of its messages of type ``kind``, if it
        has its own (from :attr:`templates` unless a subclass says otherwise)."""
        return self.templates.get(kind)

    def typed(self, kind: str) -> SourceProfile:
        """The profile that reads this source's messages of type ``kind`` (itself, unless
        where the fields are depends on the type and the message does not say it)."""
        return self

    def message(self, data: Any) -> dict[str, Any]:
        """The object holding the message's fields (``{}`` when there is none)."""
        return data if isinstance(data, dict) else {}

    def attributes(self, message: dict[str, Any]) -> Attributes:
        return Attributes(
            risk=number(message.get("risk")),
            application=text(message.get("application")),
            environment=text(message.get("environment")),
        )

    def fields(self, message: dict[str, Any]) -> Fields:
        return Fields(
            ips=addresses(message.get("ips")),
            accounts=names(message.get("accounts")),
            url=message.get("url"),
            description=message.get("description") or "",
        )


VERDICT_CHANGED = (
    "{{ data.indicator }} is "
    "{% if data.old_verdict != data.new_verdict %}now {{ data.new_verdict }} "
    "(was {{ data.old_verdict }}){% else %}still {{ data.new_verdict }}{% endif %}"
    "{% for c in data.changes %}{{ ': ' if loop.first else ', ' }}{{ c.label }} "
    "{{ c.old_summary or c.old_verdict }} → {{ c.new_summary or c.new_verdict }}{% endfor %}",
    "{{ data.indicator }} ({{ data.kind }}) is "
    "{% if data.old_verdict != data.new_verdict %}now {{ data.new_verdict }}, "
    "was {{ data.old_verdict }}{% else %}still {{ data.new_verdict }}{% endif %}.\n"
    "{% for c in data.changes %}- {{ c.label }}: {{ c.old_verdict }}"
    "{% if c.old_summary %} ({{ c.old_summary }}){% endif %} → {{ c.new_verdict }}"
    "{% if c.new_summary %} ({{ c.new_summary }}){% endif %}\n{% endfor %}"
    "{% if data.verdict_reasons %}Why: {{ data.verdict_reasons | join('; ') }}\n{% endif %}"
    "{% if data.watches %}Watch: {{ data.watches | join(', ') }}\n{% endif %}"
    "Seen: {{ data.checked_at or timestamp }} (job {{ data.job_id }})\n"
    "{% if url %}Details: {{ url }}\n{% endif %}"
    "Id: {{ id }}",
)
"""The default title and body of a ``verdict_changed`` notification: "example.com is now
malicious (was harmless): Reputation 0/85 engines → 7/85 engines"."""


class LookoutProfile(SourceProfile):
    """lookout's own notifications (source ``lookout``): a digest of grouped notifications,
    which always renders with the digest's templates (shared.relay.templates), and
    ``verdict_changed``, whose ``data`` holds ``indicator``, ``kind``, ``old_verdict``,
    ``new_verdict``, ``verdict_reasons``, ``changes`` (``provider``, ``label``,
    ``old_verdict``, ``new_verdict``, ``old_summary``, ``new_summary``), ``job_id``,
    ``watches``, ``checked_at`` and, read as by the generic profile, ``url`` (the
    indicator's page), ``description`` and ``ips``."""

    templates: ClassVar[Mapping[str, tuple[str, str]]] = {VERDICT_CHANGED_TYPE: VERDICT_CHANGED}


GENERIC = SourceProfile()
_profiles: dict[str, SourceProfile] = {LOOKOUT_SOURCE: LookoutProfile()}
_defaults: dict[str, Attributes] = {}


def register(source: str, profile: SourceProfile, defaults: Attributes | None = None) -> None:
    """Read the notifications whose ``source`` is ``source`` with ``profile``; ``defaults``:
    the application and environment of those whose message names none."""
    _profiles[source] = profile
    if defaults is None or defaults == Attributes():
        _defaults.pop(source, None)
    else:
        _defaults[source] = defaults


def profile(source: str) -> SourceProfile:
    """The profile of ``source``: its own, else the generic one."""
    return _profiles.get(source, GENERIC)


class Reading:
    """A notification as lookout reads it: its message decoded once, on first use, and
    what its source's profile finds there, kept for every later reader.

    One delivery reads one notification in several places (the route filter, grouping,
    the templates, the target's own fields, the status record); each asks the delivery's
    reading (:attr:`shared.relay.target.Delivery.reading`), so the message's JSON is
    decoded at most once per delivery, and only if someone needs it. Everything here is
    computed on first access and never changes: treat the values as read-only."""

    def __init__(self, notification: Notification) -> None:
        self.notification = notification
        self._memo: dict[Hashable, Any] = {}

    @cached_property
    def profile(self) -> SourceProfile:
        return profile(self.notification.source).typed(self.notification.type)

    @cached_property
    def loaded(self) -> tuple[bool, Any]:
        """``(True, value)`` when the message is JSON lookout reads, else ``(False, None)``
        (only a publisher that bypassed the gateway can send that)."""
        try:
            return True, jsondata.load(self.notification.data)
        except jsondata.JsonError:
            return False, None

    @property
    def data(self) -> Any:
        """The message as Python values, or None when it is not JSON lookout reads."""
        return self.loaded[1]

    @cached_property
    def message(self) -> dict[str, Any]:
        """The object holding the message's fields, as its source's profile finds it."""
        return self.profile.message(self.data)

    @cached_property
    def attributes(self) -> Attributes:
        """Risk, application and environment, as its source's profile reads them (none of
        them when the message is not a JSON object)."""
        defaults = _defaults.get(self.notification.source)
        if not isinstance(self.data, dict):
            return defaults or Attributes()
        found = self.profile.attributes(self.message)
        if defaults is None:
            return found
        return Attributes(
            found.risk,
            found.application or defaults.application,
            found.environment or defaults.environment,
        )

    @cached_property
    def fields(self) -> Fields:
        return self.profile.fields(self.message)

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()``, called once per ``key`` for this notification: what the modules
        that read a notification derive from it (the template context per subject, the
        title the notifications page shows) is computed once per delivery too."""
        try:
            return cast(T, self._memo[key])
        except KeyError:
            value = self._memo[key] = build()
            return value


def read(notification: Notification | Reading) -> Reading:
    """``notification``'s reading (itself when it is one already)."""
    return notification if isinstance(notification, Reading) else Reading(notification)


def data_of(notification: Notification | Reading) -> Any:
    """The notification's message as Python values, or None when it is not JSON lookout
    reads (only a publisher that bypassed the gateway can send that)."""
    return read(notification).data


def attributes(notification: Notification | Reading) -> Attributes:
    """Risk, application and environment of ``notification``, as its source's profile
    reads them (none of them when its message is not a JSON object)."""
    return read(notification).attributes
