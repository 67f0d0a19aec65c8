"""Source type ``alertmanager``: Prometheus Alertmanager's ``webhook_config`` receiver.

The body is the webhook payload version 4 (Alertmanager's docs, ``<webhook_config>``):
``{receiver, status, alerts[], groupLabels, commonLabels, commonAnnotations, externalURL,
version, groupKey, truncatedAlerts}``, each alert ``{status, labels, annotations, startsAt,
endsAt, generatorURL, fingerprint}``. Grafana's webhook contact point sends the same shape
as version ``1``, also taken. Alertmanager signs nothing: it authenticates as its
``http_config`` says, ``Authorization: Bearer <credentials>`` (``token``) or basic auth
(``username``, ``password``), compared in constant time.

**Each alert of a group is its own notification**, its id ``<fingerprint>:<startsAt>:<status>``
(the fingerprint from the sorted labels when an old Alertmanager sends none): firing and
resolved are two notifications, and a group sent again (``repeat_interval``, a retry) is
stored once, within JetStream's duplicate window (``LOOKOUT_DEDUP_WINDOW``). Its ``data``
is the group without its ``alerts`` and with ``alert``, that one alert; its type is the
``alertname`` label (``alert`` without one). Risk comes from the ``severity`` label through
``risks``; application and environment from the first of ``application_labels`` /
``environment_labels`` present; addresses from ``ip_labels`` (an ``instance`` such as
``10.0.0.5:9100`` gives its address).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from services.gateway.sources import (
    Headers,
    Malformed,
    Received,
    Unauthorized,
    any_matches,
    checked_id,
    load_json,
    raw,
    text,
)
from shared.core.errors import ConfigError
from shared.core.secrets import Secret, read_secret_file
from shared.core.settings import Settings
from shared.relay.inbound import SourceConfig
from shared.relay.schemas import Notification, subject_token
from shared.relay.sources import Attributes, Fields, SourceProfile

VERSIONS = ("4", "1")
"""Alertmanager's webhook version, and Grafana's (the same shape with more fields)."""
DEFAULT_TYPE = "alert"
DEFAULT_RISKS = {"critical": 90, "error": 70, "high": 70, "warning": 50, "info": 10, "none": 0}
UNSET_TIME = "0001-01-01T00:00:00Z"


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _address(value: str) -> str | None:
    """The IP address in a label value: ``10.0.0.5``, ``10.0.0.5:9100``, ``[::1]:9100``."""
    candidates = [value]
    if value.startswith("[") and "]" in value:
        candidates.append(value[1 : value.index("]")])
    elif value.count(":") == 1:
        candidates.append(value.split(":")[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


TEMPLATES = (
    "[{{ message.status | upper }}] {{ message.labels.alertname or type }}"
    "{% if application %} in {{ application }}{% endif %}"
    "{% if environment %} ({{ environment }}){% endif %}"
    "{% if message.labels.severity %}: {{ message.labels.severity }}{% endif %}",
    "{{ description or message.labels.alertname or 'Alert' }}\n"
    "{% if message.annotations.description and message.annotations.description != description %}"
    "{{ message.annotations.description }}\n{% endif %}"
    "{% if ips %}Addresses: {{ ips | join(', ') }}\n{% endif %}"
    "Started: {{ message.startsAt }}\n"
    "{% if message.status == 'resolved' %}Ended: {{ message.endsAt }}\n{% endif %}"
    "{% if url %}Source: {{ url }}\n{% endif %}"
    "Fingerprint: {{ message.fingerprint or id }}",
)


class AlertmanagerProfile(SourceProfile):
    """Reads the one alert of a notification (``data.alert``) by this source's labels."""

    def __init__(self, config: AlertmanagerSourceConfig) -> None:
        self.config = config

    def templates_for(self, kind: str) -> tuple[str, str] | None:
        return TEMPLATES  # every type (an alert's type is its alertname)

    def message(self, data: Any) -> dict[str, Any]:
        alert = data.get("alert") if isinstance(data, dict) else None
        return alert if isinstance(alert, dict) else {}

    def _first(self, labels: dict[str, str], names: list[str]) -> str | None:
        return next((labels[name] for name in names if labels.get(name)), None)

    def attributes(self, message: dict[str, Any]) -> Attributes:
        labels = _labels(message.get("labels"))
        severity = (labels.get(self.config.severity_label) or "").strip().lower()
        return Attributes(
            risk=self.config.risks.get(severity),
            application=self._first(labels, self.config.application_labels),
            environment=self._first(labels, self.config.environment_labels),
        )

    def fields(self, message: dict[str, Any]) -> Fields:
        labels = _labels(message.get("labels"))
        notes = _labels(message.get("annotations"))
        found: list[str] = []
        for name in self.config.ip_labels:
            address = _address(labels.get(name, ""))
            if address and address not in found:
                found.append(address)
        return Fields(
            ips=found,
            accounts=[],
            url=message.get("generatorURL"),
            description=notes.get("summary") or notes.get("description") or "",
        )


class AlertmanagerSourceConfig(SourceConfig, frozen=True, kw_only=True, tag="alertmanager"):
    """``token`` (bearer) or ``username`` and ``password`` (basic auth), each also as
    ``_file``, as the receiver's ``http_config`` sends them."""

    secrets: ClassVar[tuple[str, ...]] = ("token", "password")

    token: str | None = None
    token_file: str | None = None
    username: str | None = None
    username_file: str | None = None
    password: str | None = None
    password_file: str | None = None
    severity_label: str = "severity"
    risks: dict[str, int] = msgspec.field(default_factory=lambda: dict(DEFAULT_RISKS))
    """Risk by the (lower-case) value of ``severity_label``."""
    application_labels: list[str] = msgspec.field(
        default_factory=lambda: ["application", "app", "service", "job"]
    )
    environment_labels: list[str] = msgspec.field(default_factory=lambda: ["environment", "env"])
    ip_labels: list[str] = msgspec.field(
        default_factory=lambda: ["src_ip", "source_ip", "ip", "address", "instance"]
    )

    def profile(self) -> SourceProfile:
        return AlertmanagerProfile(self)

    def user(self, where: str) -> str | None:
        """The basic auth username: ``username``, or what ``username_file`` holds (not a
        secret: it is not scrubbed from logs, where a short common name would blank out
        every line that holds it)."""
        if self.username and self.username_file:
            raise ConfigError(f"{where}: set either username or username_file")
        if self.username_file:
            return read_secret_file(self.username_file, f"{where}.username_file")
        return self.username or None

    def check(self, secrets: Mapping[str, Secret], where: str) -> None:
        user = self.user(where)
        basic = user is not None or "password" in secrets
        if "token" in secrets and basic:
            raise ConfigError(f"{where}: set either token or username/password, not both")
        if "token" not in secrets and not basic:
            raise ConfigError(
                f"{where}: needs token (or token_file) or username and password "
                "(or username_file, password_file): what the receiver's http_config sends"
            )
        if basic and (user is None or "password" not in secrets):
            raise ConfigError(f"{where}: basic auth needs both username and password")
        if user is not None and ":" in user:
            raise ConfigError(f"{where}: a basic auth username cannot hold ':' (RFC 7617)")
        for severity, risk in self.risks.items():
            if not 0 <= risk <= 100:
                raise ConfigError(f"{where}.risks.{severity} must be from 0 to 100")


CONFIG = AlertmanagerSourceConfig


def fingerprint(labels: dict[str, str]) -> str:
    """A stand-in for Alertmanager's fingerprint, from the sorted labels."""
    text_form = "\x00".join(f"{k}\x00{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text_form.encode()).hexdigest()[:16]


class AlertmanagerReceiver:
    def __init__(
        self, config: AlertmanagerSourceConfig, secrets: Mapping[str, Secret], max_messages: int
    ) -> None:
        self.name = config.name
        self.max_messages = max_messages
        self.expected: list[bytes] = []
        if "token" in secrets:
            self.expected.append(f"Bearer {secrets['token'].reveal()}".encode())
        else:
            pair = f"{config.user(config.name)}:{secrets['password'].reveal()}".encode()
            self.expected.append(b"Basic " + base64.b64encode(pair))

    def _authenticate(self, headers: Headers) -> None:
        given = headers.get("Authorization")
        if not given:
            raise Unauthorized("missing Authorization header")
        scheme, _, credentials = given.strip().partition(" ")
        # The scheme is case-insensitive (RFC 9110); the credentials are not.
        normal = f"{scheme.capitalize()} {credentials.strip()}".encode()
        if not any_matches(self.expected, [normal]):
            raise Unauthorized("credentials do not match")

    def receive(self, headers: Headers, body: bytes) -> Received:
        self._authenticate(headers)
        group = load_json(body)
        if not isinstance(group, dict):
            raise Malformed("the body must be a JSON object (Alertmanager's webhook payload)")
        version = group.get("version")
        if version not in VERSIONS:
            raise Malformed(f"unsupported webhook payload version {version!r}; expected 4")
        alerts = group.get("alerts")
        if not isinstance(alerts, list) or not alerts:
            raise Malformed("alerts must be a non-empty list")
        if len(alerts) > self.max_messages:
            raise Malformed(f"{len(alerts)} alerts in one request; at most {self.max_messages}")
        shared = {k: v for k, v in group.items() if k != "alerts"}
        found: list[Notification] = []
        for index, alert in enumerate(alerts):
            found.append(self._notification(index, alert, group, shared))
        return Received(found)

    def _notification(
        self, index: int, alert: Any, group: dict[str, Any], shared: dict[str, Any]
    ) -> Notification:
        if not isinstance(alert, dict):
            raise Malformed(f"alert {index}: must be a JSON object")
        labels = _labels(alert.get("labels"))
        if not labels:
            raise Malformed(f"alert {index}: needs labels")
        starts = text(alert.get("startsAt"))
        if starts is None:
            raise Malformed(f"alert {index}: needs startsAt")
        status = text(alert.get("status")) or text(group.get("status"))
        if status not in ("firing", "resolved"):
            raise Malformed(f"alert {index}: status must be firing or resolved")
        print_ = text(alert.get("fingerprint")) or fingerprint(labels)
        ident = checked_id(f"{print_}:{starts}:{status}", f"alert {index}")
        ends = text(alert.get("endsAt"))
        when = ends if status == "resolved" and ends and ends != UNSET_TIME else starts
        return Notification(
            id=ident,
            type=subject_token(labels.get("alertname") or DEFAULT_TYPE),
            source=self.name,
            timestamp=when,
            data=raw({**shared, "alert": alert}),
        )


def build(
    config: AlertmanagerSourceConfig, secrets: Mapping[str, Secret], settings: Settings
) -> AlertmanagerReceiver:
    return AlertmanagerReceiver(config, secrets, settings.max_messages)
