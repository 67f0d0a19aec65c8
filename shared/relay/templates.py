"""Message templates: a title and a body per notification, rendered in a Jinja2 sandbox.

Every target renders through here. A source's profile (:mod:`shared.relay.sources`) may
bring a default per message type; anything else falls back to a generic template. A target
may set its own ``title`` and ``body`` templates; they see the same context:

``id``, ``type``, ``source``, ``timestamp``, ``subject``, ``risk``, ``application``,
``environment``, ``ips`` (addresses), ``accounts`` (compromised accounts), ``url`` (a link
to the event, when there is one), ``description``, ``message`` (the message's own fields,
as its source's profile finds them) and ``data`` (the whole original message); a digest's
context also has ``from_source`` (its members' source, when its profile names it).

Templates run sandboxed (no attribute access to internals, no imports) and an undefined
name renders empty, so a template written for one message type never fails on another.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.relay import sources
from shared.relay.schemas import Notification, is_digest
from shared.relay.sources import Reading

_env = ImmutableSandboxedEnvironment(
    undefined=jinja2.ChainableUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
)

GENERIC = (
    "[{{ source }}] {{ type | replace('_', ' ') }}"
    "{% if application %} in {{ application }}{% endif %}"
    "{% if risk is not none %} (risk {{ risk }}){% endif %}",
    "{{ description or type }}\n"
    "{% if application %}Application: {{ application }}"
    "{% if environment %} ({{ environment }}){% endif %}\n{% endif %}"
    "{% if ips %}IPs: {{ ips | join(', ') }}\n{% endif %}"
    "Time: {{ timestamp }}\n"
    "{% if url %}Details: {{ url }}\n{% endif %}"
    "Id: {{ id }}",
)


DIGEST = (
    "{{ data.count }} {{ (data.type or 'notification') | replace('_', ' ') }} notifications"
    "{% if from_source %} from {{ from_source }}{% endif %}"
    "{% if application %} in {{ application }}{% endif %}"
    "{% if environment %} ({{ environment }}){% endif %}"
    "{% if risk is not none %}: risk up to {{ risk }}{% endif %}",
    "{{ data.count }} notifications within {{ data.window_seconds | round(1) }}s:\n"
    "{% for item in data['items'][:20] %}- {{ item.title }} ({{ item.timestamp }})\n"
    "{% endfor %}"
    "{% if data.count > 20 %}… and {{ data.count - 20 }} more\n{% endif %}"
    "{% if ips %}IPs: {{ ips[:20] | join(', ') }}{% if ips | length > 20 %} …{% endif %}\n"
    "{% endif %}Digest: {{ id }}",
)
"""A digest (shared/relay/grouping.py) always renders with these; the target's own title
template renders each of its lines."""


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str


def compile_template(source: str, where: str) -> jinja2.Template:
    try:
        return _env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        message = f"{where}: template error at line {exc.lineno}: {exc.message}"
        raise TemplateError(message) from None


_compiled: dict[str, jinja2.Template] = {}


def _template(source: str) -> jinja2.Template:
    template = _compiled.get(source)
    if template is None:
        template = _compiled[source] = compile_template(source, "template")
    return template


def context(notification: Notification | Reading, subject: str | None = None) -> dict[str, Any]:
    """The values templates see for ``notification`` delivered on ``subject`` (its own
    subject when None). Built once per reading and subject: pass the delivery's
    :class:`~shared.relay.sources.Reading` and every caller shares one (read-only) dict."""
    reading = sources.read(notification)
    subject = subject or reading.notification.subject
    return reading.memo(("context", subject), lambda: _context(reading, subject))


NAMES: Final = frozenset(
    {
        "id",
        "type",
        "source",
        "timestamp",
        "subject",
        "risk",
        "application",
        "environment",
        "ips",
        "accounts",
        "url",
        "description",
        "message",
        "data",
        "from_source",
    }
)
"""Every name a template can read (:func:`_context`; ``from_source`` a digest's)."""


def unknown_names(source: str) -> list[str]:
    """The names template ``source`` reads that no notification's context has (a typo:
    ``aplication`` would render empty for ever), Jinja's own globals (``range``…) aside."""
    return sorted(_names(source) - NAMES - set(_env.globals))


def _context(reading: Reading, subject: str | None) -> dict[str, Any]:
    notification = reading.notification
    data = reading.data
    message = reading.message
    attrs = reading.attributes
    fields = reading.fields
    url = fields.url
    values = {
        "id": notification.id,
        "type": notification.type,
        "source": notification.source,
        "timestamp": notification.timestamp,
        "subject": subject or notification.subject,
        "risk": attrs.risk,
        "application": attrs.application,
        "environment": attrs.environment,
        "ips": fields.ips,
        "accounts": fields.accounts,
        "url": url if isinstance(url, str) and url.startswith(("http://", "https://")) else None,
        "description": fields.description,
        "message": message,
        "data": data,
    }
    if is_digest(notification):
        values["from_source"] = _digest_source(data)
    return values


def _digest_source(data: Any) -> str | None:
    """The source a digest names in its title: its members' one source, unless that
    source's profile says not to."""
    source = data.get("source") if isinstance(data, dict) else None
    if not isinstance(source, str) or not source:
        return None
    return source if sources.profile(source).digest_names_source else None


def _defaults(notification: Notification) -> tuple[str, str]:
    """The default title and body templates: the digest's, else the one its source's
    profile has for its type, else the generic one."""
    if is_digest(notification):
        return DIGEST
    return sources.profile(notification.source).templates_for(notification.type) or GENERIC


def _render(source: str, values: dict[str, Any]) -> str:
    """``source`` rendered with ``values``; :class:`TemplateError` when it fails, whatever
    the failure: a Jinja error, or one raised by an expression (``{{ risk + 10 }}`` when
    there is no risk is a ``TypeError``, ``{{ 1 / 0 }}`` a ``ZeroDivisionError``). The same
    template fails the same way on every attempt, so the targets treat it as permanent."""
    try:
        return _template(source).render(values)
    except TemplateError:
        raise
    except Exception as exc:
        detail = (
            str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
        )
        raise TemplateError(f"template failed: {detail}") from None


def render_title(
    notification: Notification | Reading, values: dict[str, Any], title: str | None = None
) -> str:
    """The title alone, from ``values`` (:func:`context` of ``notification``): the
    target's own ``title`` template where given, else the default (as :func:`render`)."""
    note = sources.read(notification).notification
    default_title, _ = _defaults(note)
    if is_digest(note):
        title = None  # a digest always renders with DIGEST
    return _one_line(_render(title or default_title, values))


def _one_line(title: str) -> str:
    """A rendered title on one line, spaces collapsed, at most 250 characters."""
    return " ".join(title.split())[:250]


def default_title(notification: Notification | Reading, subject: str | None = None) -> str:
    """The title with the default template (its source's for its type, else the generic
    one), rendered once per reading and subject: the target's message and the status
    record both show it."""
    reading = sources.read(notification)
    subject = subject or reading.notification.subject
    return reading.memo(("title", subject), lambda: _default_title(reading, subject))


_ATTRIBUTES = frozenset({"source", "type", "application", "environment", "risk"})
"""The names a title may use and still be rendered from the notification's attributes
alone, without its whole context (the generic title uses only these)."""


def _default_title(reading: Reading, subject: str) -> str:
    note = reading.notification
    template, _ = _defaults(note)
    if not is_digest(note) and _names(template) <= _ATTRIBUTES:
        attributes = reading.attributes
        return _attributes_title(
            template,
            note.source,
            note.type,
            attributes.application,
            attributes.environment,
            attributes.risk,
        )
    return render_title(reading, context(reading, subject))


@functools.lru_cache(maxsize=64)
def _names(source: str) -> frozenset[str]:
    """The names template ``source`` reads from its context."""
    return frozenset(jinja2.meta.find_undeclared_variables(_env.parse(source)))


@functools.lru_cache(maxsize=1024)
def _attributes_title(
    template: str,
    source: str,
    type_: str,
    application: str | None,
    environment: str | None,
    risk: int | None,
) -> str:
    """A title that reads only :data:`_ATTRIBUTES`, rendered once per set of their values:
    a stream of notifications has few (the sink's status record of every delivery shows
    the title; rendering it cost about a tenth of a plain delivery's CPU)."""
    values = {
        "source": source,
        "type": type_,
        "application": application,
        "environment": environment,
        "risk": risk,
    }
    return _one_line(_render(template, values))


def render(
    notification: Notification | Reading,
    title: str | None = None,
    body: str | None = None,
    subject: str | None = None,
) -> Rendered:
    """The title and body for ``notification``: the target's own templates where given,
    else its source's default for its type, else the generic one."""
    reading = sources.read(notification)
    note = reading.notification
    values = context(reading, subject)
    if title is None or is_digest(note):
        rendered_title = default_title(reading, subject)
    else:
        rendered_title = render_title(note, values, title)
    _, default_body = _defaults(note)
    if is_digest(note):
        body = None  # a digest always renders with DIGEST
    return Rendered(rendered_title, _render(body or default_body, values).strip())
