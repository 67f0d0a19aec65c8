"""Message templates: a title and a body per notification, rendered in a Jinja2 sandbox.

Every target renders through here. Each Sqreen message type has a default (security
events, the dashboard's test message, incidents, security responses, pulses) and anything
else falls back to a generic template, which also serves other sources. A target may set
its own ``title`` and ``body`` templates; they see the same context:

``id``, ``type``, ``source``, ``timestamp``, ``subject``, ``risk``, ``application``,
``environment``, ``ips`` (addresses), ``accounts`` (compromised accounts), ``url`` (a link
to the event, when there is one), ``description``, ``message`` (the message's own fields:
v2 ``message`` or the flat v1 one) and ``data`` (the whole original message).

Templates run sandboxed (no attribute access to internals, no imports) and an undefined
name renders empty, so a template written for one message type never fails on another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.core import jsondata
from shared.relay.schemas import Notification, is_digest
from shared.relay.sources import attributes

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

DEFAULTS: dict[str, tuple[str, str]] = {
    "security_event": (
        "Security event{% if application %} in {{ application }}{% endif %}"
        "{% if environment %} ({{ environment }}){% endif %}"
        "{% if risk is not none %}: risk {{ risk }}{% endif %}",
        "{{ description or message.event_category or 'Security event' }}\n"
        "{% if message.event_kind %}Kind: {{ message.event_kind }}\n{% endif %}"
        "{% if ips %}From: {{ ips | join(', ') }}\n{% endif %}"
        "Time: {{ message.date_occurred or timestamp }}\n"
        "{% if url %}Details: {{ url }}\n{% endif %}"
        "Id: {{ id }}",
    ),
    "test": (
        "Test notification from {{ source | capitalize }}"
        "{% if application %} ({{ application }}){% endif %}",
        "The webhook works: lookout received and relayed this test message.\n"
        "Time: {{ timestamp }}\nId: {{ id }}",
    ),
    "security_response": (
        "Security response{% if message.playbook.name %}: {{ message.playbook.name }}{% endif %}"
        "{% if application %} in {{ application }}{% endif %}",
        "{{ description or 'A security automation playbook ran.' }}\n"
        "{% if ips %}IPs: {{ ips | join(', ') }}\n{% endif %}"
        "Time: {{ timestamp }}\nId: {{ id }}",
    ),
    "pulse": (
        "Pulse: {{ message.humanized_title or message.pulse_category or 'activity' }}"
        "{% if application %} in {{ application }}{% endif %}",
        "{{ message.humanized_title or description or 'New pulse' }}\n"
        "{% if message.humanized_accounts %}Accounts: {{ message.humanized_accounts }}\n"
        "{% endif %}{% if message.humanized_geos %}Where: {{ message.humanized_geos }}\n{% endif %}"
        "Time: {{ timestamp }}\nId: {{ id }}",
    ),
}
_INCIDENT = (
    "Incident {{ type | replace('_', ' ') }}"
    "{% if message.incident_status %} {{ message.incident_status }}{% endif %}"
    "{% if application %} in {{ application }}{% endif %}",
    "{{ description or (type | replace('_', ' ') | capitalize) }}\n"
    "{% if ips %}IPs: {{ ips | join(', ') }}\n{% endif %}"
    "{% if accounts %}Accounts: {{ accounts | join(', ') }}\n{% endif %}"
    "Started: {{ message.date_started or timestamp }}\n"
    "{% if url %}Details: {{ url }}\n{% endif %}"
    "Thread: {{ message.incident_thread or id }}",
)
for _incident in ("http_scan", "account_takeover", "incident"):
    DEFAULTS[_incident] = _INCIDENT


DIGEST = (
    "{{ data.count }} {{ (data.type or 'notification') | replace('_', ' ') }} notifications"
    "{% if data.source and data.source != 'sqreen' %} from {{ data.source }}{% endif %}"
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


def _list(value: Any) -> list[Any]:
    """``value`` when it is a list, else none: a message may hold anything anywhere."""
    return value if isinstance(value, list) else []


def _ips(message: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("ips", "new_related_ips"):
        for item in _list(message.get(key)):
            if isinstance(item, dict) and isinstance(item.get("address"), str):
                found.append(item["address"])
            elif isinstance(item, str):
                found.append(item)
    return found


def _accounts(message: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for item in _list(message.get("new_compromised_accounts") or message.get("accounts")):
        if isinstance(item, dict):
            found.append(
                str(item.get("email") or item.get("username") or next(iter(item.values()), ""))
            )
        elif isinstance(item, str):
            found.append(item)
    return found


def context(notification: Notification, subject: str | None = None) -> dict[str, Any]:
    try:
        data = jsondata.load(notification.data)
    except jsondata.JsonError:
        data = None
    inner = data.get("message") if isinstance(data, dict) else None
    message: dict[str, Any] = (
        inner if isinstance(inner, dict) else data if isinstance(data, dict) else {}
    )
    attrs = attributes(notification)
    url = message.get("event_url") or message.get("url")
    return {
        "id": notification.id,
        "type": notification.type,
        "source": notification.source,
        "timestamp": notification.timestamp,
        "subject": subject or notification.subject,
        "risk": attrs.risk,
        "application": attrs.application,
        "environment": attrs.environment,
        "ips": _ips(message),
        "accounts": _accounts(message),
        "url": url if isinstance(url, str) and url.startswith(("http://", "https://")) else None,
        "description": message.get("humanized_description") or message.get("description") or "",
        "message": message,
        "data": data,
    }


def _defaults(notification: Notification) -> tuple[str, str]:
    """The default title and body templates: the digest's, else the one for the type
    (Sqreen), else the generic one."""
    if is_digest(notification):
        return DIGEST
    if notification.source == "sqreen":
        return DEFAULTS.get(notification.type, GENERIC)
    return GENERIC


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
    notification: Notification, values: dict[str, Any], title: str | None = None
) -> str:
    """The title alone, from ``values`` (:func:`context` of ``notification``): the
    target's own ``title`` template where given, else the default (as :func:`render`)."""
    default_title, _ = _defaults(notification)
    if is_digest(notification):
        title = None  # a digest always renders with DIGEST
    return " ".join(_render(title or default_title, values).split())[:250]


def render(
    notification: Notification,
    title: str | None = None,
    body: str | None = None,
    subject: str | None = None,
) -> Rendered:
    """The title and body for ``notification``: the target's own templates where given,
    else the default for its type (Sqreen), else the generic one."""
    values = context(notification, subject)
    rendered_title = render_title(notification, values, title)
    _, default_body = _defaults(notification)
    if is_digest(notification):
        body = None  # a digest always renders with DIGEST
    return Rendered(rendered_title, _render(body or default_body, values).strip())
