"""Source type ``github``: repository, organisation or GitHub App webhooks.

GitHub signs the raw body: ``X-Hub-Signature-256`` = ``sha256=`` and the hex HMAC-SHA256
keyed with the webhook's secret ("Validating webhook deliveries", GitHub Docs); the event
is ``X-GitHub-Event`` and ``X-GitHub-Delivery`` its GUID, which becomes the notification's
id (the same on a manual redelivery: stored once). The body is JSON, or the form
``payload=<JSON>`` when the hook's content type is ``application/x-www-form-urlencoded``.

``ping`` (sent when the hook is made) is answered 200 with its ``zen`` and stored as
nothing. Every other event is stored with the event's name as its type. The security
events (``code_scanning_alert``, ``secret_scanning_alert``, ``dependabot_alert``,
``repository_vulnerability_alert``, ``security_advisory``) are read by :class:`GitHubProfile`:
risk from their severity, the repository as application, the alert's page as link.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar

from services.gateway.sources import (
    Headers,
    Malformed,
    Received,
    Unauthorized,
    any_matches,
    checked_id,
    digest_id,
    header,
    load_json,
    mac,
    optional_header,
    raw,
    raw_body,
    text,
    unhex,
)
from shared.bus.messages import utc_now
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.inbound import SourceConfig
from shared.relay.schemas import Notification, subject_token
from shared.relay.sources import Attributes, Fields, SourceProfile

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
PING = "ping"
SECURITY_EVENTS = (
    "code_scanning_alert",
    "secret_scanning_alert",
    "dependabot_alert",
    "repository_vulnerability_alert",
    "security_advisory",
)

RISKS = {"critical": 90, "high": 70, "medium": 50, "moderate": 50, "low": 20}
"""Risk by GitHub's severity words (advisories say ``moderate``, alerts ``medium``)."""
RULE_RISKS = {"error": 50, "warning": 20, "note": 10, "none": 10}
"""Risk of a code scanning alert whose rule has no security severity, by its severity."""
SECRET_RISK = 70
"""A leaked secret has no severity: high."""


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _word(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def severity_risk(event: str, message: dict[str, Any]) -> int | None:
    """The risk of a security event from its severity (None for other events)."""
    if event == "code_scanning_alert":
        level = _word(_get(message, "alert", "rule", "security_severity_level"))
        if level in RISKS:
            return RISKS[level]
        return RULE_RISKS.get(_word(_get(message, "alert", "rule", "severity")) or "")
    if event == "secret_scanning_alert":
        return SECRET_RISK
    if event == "dependabot_alert":
        level = _word(_get(message, "alert", "security_advisory", "severity")) or _word(
            _get(message, "alert", "security_vulnerability", "severity")
        )
    elif event == "repository_vulnerability_alert":
        level = _word(_get(message, "alert", "severity"))
    elif event == "security_advisory":
        level = _word(_get(message, "security_advisory", "severity"))
    else:
        return None
    return RISKS.get(level or "")


def _description(event: str, message: dict[str, Any]) -> str:
    alert = _get(message, "alert")
    if event == "code_scanning_alert":
        return (
            text(_get(alert, "rule", "description"))
            or text(_get(alert, "rule", "id"))
            or "Code scanning alert"
        )
    if event == "secret_scanning_alert":
        kind = text(_get(alert, "secret_type_display_name")) or text(_get(alert, "secret_type"))
        return f"Secret detected: {kind}" if kind else "Secret scanning alert"
    if event == "dependabot_alert":
        summary = text(_get(alert, "security_advisory", "summary"))
        package = text(_get(alert, "dependency", "package", "name"))
        return summary or (f"Vulnerable dependency {package}" if package else "Dependabot alert")
    if event == "repository_vulnerability_alert":
        package = text(_get(alert, "affected_package_name"))
        ident = text(_get(alert, "external_identifier")) or text(_get(alert, "ghsa_id"))
        return " ".join(p for p in (ident, package) if p) or "Vulnerable dependency"
    if event == "security_advisory":
        return text(_get(message, "security_advisory", "summary")) or "Security advisory"
    return text(_get(message, "head_commit", "message")) or ""


def _url(event: str, message: dict[str, Any]) -> Any:
    if event == "security_advisory":
        ghsa = text(_get(message, "security_advisory", "ghsa_id"))
        return f"https://github.com/advisories/{ghsa}" if ghsa else None
    if event == "repository_vulnerability_alert":
        return _get(message, "alert", "external_reference")
    return (
        _get(message, "alert", "html_url")
        or _get(message, "compare")
        or _get(message, "repository", "html_url")
    )


_SECURITY_TEMPLATES = (
    "GitHub {{ type | replace('_', ' ') }}"
    "{% if message.action %} {{ message.action | replace('_', ' ') }}{% endif %}"
    "{% if application %} in {{ application }}{% endif %}"
    "{% if risk is not none %}: risk {{ risk }}{% endif %}",
    "{{ description }}\n"
    "{% if message.alert.state %}State: {{ message.alert.state }}\n{% endif %}"
    "{% if message.sender.login %}By: {{ message.sender.login }}\n{% endif %}"
    "{% if url %}Details: {{ url }}\n{% endif %}"
    "Delivery: {{ id }}",
)
TEMPLATES: dict[str, tuple[str, str]] = dict.fromkeys(SECURITY_EVENTS, _SECURITY_TEMPLATES)
TEMPLATES["push"] = (
    "GitHub push to {{ message.ref }}{% if application %} in {{ application }}{% endif %}",
    "{{ message.commits | length }} commit(s) by {{ message.pusher.name }}\n"
    "{% if url %}Compare: {{ url }}\n{% endif %}Delivery: {{ id }}",
)


class GitHubProfile(SourceProfile):
    """GitHub payloads: the repository's ``full_name`` as application (the organisation's
    login for an organisation hook), risk and link per security event. The event's name is
    the notification's type (the payload does not say it): :meth:`typed` gives the
    profile of one event."""

    templates = TEMPLATES

    def __init__(self, event: str = "") -> None:
        self.event = event
        self._typed: dict[str, GitHubProfile] = {}

    def typed(self, kind: str) -> SourceProfile:
        if kind == self.event:
            return self
        found = self._typed.get(kind)
        if found is None:
            found = self._typed[kind] = GitHubProfile(kind)
        return found

    def message(self, data: Any) -> dict[str, Any]:
        return data if isinstance(data, dict) else {}

    def attributes(self, message: dict[str, Any]) -> Attributes:
        return Attributes(
            risk=severity_risk(self.event, message),
            application=text(_get(message, "repository", "full_name"))
            or text(_get(message, "organization", "login")),
        )

    def fields(self, message: dict[str, Any]) -> Fields:
        return Fields(
            ips=[],
            accounts=[],
            url=_url(self.event, message),
            description=_description(self.event, message),
        )


PROFILE = GitHubProfile()


class GitHubSourceConfig(SourceConfig, frozen=True, kw_only=True, tag="github"):
    """``secret`` (or ``secret_file``): the webhook's secret, as set on GitHub."""

    secrets: ClassVar[tuple[str, ...]] = ("secret",)
    required_secrets: ClassVar[tuple[str, ...]] = ("secret",)

    secret: str | None = None
    secret_file: str | None = None

    def profile(self) -> SourceProfile:
        return PROFILE


CONFIG = GitHubSourceConfig


def _payload(headers: Headers, body: bytes) -> tuple[Any, bool]:
    """The payload and whether it is the body itself (JSON) rather than a form field."""
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            form = urllib.parse.parse_qs(body.decode(), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise Malformed("malformed form body") from None
        values = form.get("payload")
        if not values or len(values) != 1:
            raise Malformed("the form needs one payload field")
        return load_json(values[0].encode()), False
    return load_json(body), True


class GitHubReceiver:
    def __init__(self, name: str, secret: Secret) -> None:
        self.name = name
        self.key = secret.reveal().encode()

    def receive(self, headers: Headers, body: bytes) -> Received:
        signature = header(headers, SIGNATURE_HEADER)
        if not signature.lower().startswith("sha256="):
            raise Unauthorized(f"{SIGNATURE_HEADER} must be sha256=<hex>")
        given = unhex(signature[7:], SIGNATURE_HEADER)
        if not any_matches([mac(self.key, body)], [given]):
            raise Unauthorized("signature does not match")
        event = optional_header(headers, EVENT_HEADER)
        if event is None:
            raise Malformed(f"missing {EVENT_HEADER} header")
        payload, as_is = _payload(headers, body)
        if not isinstance(payload, dict):
            raise Malformed("the payload must be a JSON object")
        if event == PING:
            return Received([], {"zen": text(payload.get("zen")) or "", "event": PING})
        delivery = optional_header(headers, DELIVERY_HEADER)
        ident = checked_id(delivery, DELIVERY_HEADER) if delivery else digest_id(payload)
        stamp = _timestamp(payload)
        note = Notification(
            id=ident,
            type=subject_token(event),
            source=self.name,
            timestamp=stamp,
            data=raw_body(body) if as_is else raw(payload),
        )
        return Received([note])


def _timestamp(payload: dict[str, Any]) -> str:
    for path in (
        ("alert", "updated_at"),
        ("alert", "created_at"),
        ("security_advisory", "updated_at"),
        ("security_advisory", "published_at"),
        ("head_commit", "timestamp"),
    ):
        found = text(_get(payload, *path))
        if found:
            return found
    return utc_now()


def build(
    config: GitHubSourceConfig, secrets: Mapping[str, Secret], settings: Settings
) -> GitHubReceiver:
    return GitHubReceiver(config.name, secrets["secret"])
