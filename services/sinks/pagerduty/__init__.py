"""The ``pagerduty`` target: trigger an alert through the PagerDuty Events API v2.

Each notification becomes one ``trigger`` event, ``POST {api_url}/v2/enqueue``::

    {"routing_key": "<32 characters>",            # the integration key (a secret)
     "event_action": "trigger",
     "dedup_key": "lookout-<source>-<id>",        # see dedup_key()
     "payload": {
        "summary": "<title>",                     # at most 1024 characters
        "source": "<application or source>",      # the affected system
        "severity": "critical|error|warning|info",   # from the risk, see severity_for()
        "timestamp": "2021-03-04T11:40:03.118Z",  # when it occurred (ISO 8601, UTC)
        "component": "<source>",                  # who reported it, e.g. sqreen
        "group": "<environment>",
        "class": "<type>",                        # e.g. security_event
        "custom_details": {"body": "<body>", "notification_id": "<id>", "risk": 80,
                           "application": …, "environment": …, "ips": […], "accounts": […],
                           "url": …}},
     "links": [{"href": "<url>", "text": "View event"}],   # only when the event has a URL
     "client": "lookout"}

``component`` is left out when there is no application (it would repeat ``source``),
``group`` when there is no environment, ``timestamp`` when no time parses, and empty
custom details (no risk, no IPs…) are left out.

The title and body come from :func:`shared.relay.templates.render` (the target's own templates,
else the default for the message type). PagerDuty renders none of it as markup, so nothing
is escaped; texts are only cut to PagerDuty's limits (summary 1024 characters) and to sizes
that keep an event far below its 512 KB limit.

Idempotency: the dedup key is stable per notification (``source`` and ``id``), so a retry
after a lost answer, a JetStream redelivery or a replay from the dead letters adds an event
to the open incident instead of paging a second time. A notification that arrives after its
incident was resolved opens a new one (PagerDuty deduplicates on open incidents only).

Scope: trigger only. Lookout never acknowledges or resolves: incidents are resolved in
PagerDuty (or auto-resolved by the service's settings).

PagerDuty's answers (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/):
202 ``{"status": "success", "message": "Event processed", "dedup_key": …}`` is delivered;
400 ``{"status": "invalid event", "message": "Event object is invalid", "errors": […]}`` is
permanent and the dead letter quotes the errors (``Invalid routing key``, ``Length of
'routing_key' is incorrect…``); 429 (too many events for the integration, usually without
``Retry-After``) and 5xx are retried with the target's backoff, or ``Retry-After`` when
PagerDuty sends one. Anything else follows :func:`shared.relay.target.raise_for_status`.

The routing key is kept as a :class:`~shared.core.secrets.Secret`: it travels only in the request
body, is never logged and never part of an error message (nor of a dead letter).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import msgspec

from services.sinks.pagerduty.config import PagerDutyTargetConfig
from shared.core.errors import ConfigError
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.config import relay
from shared.relay.outbound import SessionTarget
from shared.relay.schemas import Notification
from shared.relay.sources import Reading, read
from shared.relay.target import Delivery, PermanentError, RetryableError, raise_for_status
from shared.relay.templates import TemplateError, context, render

USER_AGENT = "lookout-pagerduty/1"
CLIENT = "lookout"
ENQUEUE_PATH = "/v2/enqueue"

SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
FIELD_MAX = 255
"""``source``, ``component``, ``group`` and ``class`` are cut to this many characters."""
BODY_MAX = 8000
IPS_MAX = 100
ANSWER_MAX = 4096

SEVERITIES: Final = ("critical", "error", "warning")
"""Severities chosen by risk, highest first; below all of them: ``info``."""
FALLBACK_SEVERITY: Final = "info"
DEFAULT_SEVERITY_BY_RISK: Final[Mapping[str, int]] = {"critical": 80, "error": 60, "warning": 30}

ROUTING_KEY_RE = re.compile(r"^[A-Za-z0-9]{32}$")

CONFIG = PagerDutyTargetConfig
"""The ``[[targets]]`` table of a ``pagerduty`` target (registered by the launcher)."""


def cut(text: str, limit: int) -> str:
    """``text``, or its first characters and an ellipsis when longer than ``limit``."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def dedup_key(notification: Notification) -> str:
    """``lookout-<source>-<id>``: the same for every delivery of one notification. When that
    would be longer than PagerDuty's 255 characters, ``lookout-`` and the SHA-256 of
    ``<source>:<id>`` instead (still stable, still unique)."""
    key = f"lookout-{notification.source}-{notification.id}"
    if len(key) <= DEDUP_KEY_MAX:
        return key
    digest = hashlib.sha256(f"{notification.source}:{notification.id}".encode()).hexdigest()
    return f"lookout-{digest}"


def severity_for(risk: int | None, severity_by_risk: Mapping[str, int]) -> str:
    """The first of critical, error, warning whose minimum risk ``risk`` reaches (a severity
    missing from ``severity_by_risk`` is never chosen); else ``info``, also without a risk."""
    if risk is None:
        return FALLBACK_SEVERITY
    for severity in SEVERITIES:
        minimum = severity_by_risk.get(severity)
        if minimum is not None and risk >= minimum:
            return severity
    return FALLBACK_SEVERITY


def _iso_utc(value: Any) -> str | None:
    """``value`` as an ISO 8601 UTC time with milliseconds, ``None`` when it is not a time
    with a time zone."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_event(
    notification: Notification | Reading,
    severity_by_risk: Mapping[str, int] = DEFAULT_SEVERITY_BY_RISK,
    subject: str | None = None,
    title_template: str | None = None,
    body_template: str | None = None,
) -> dict[str, Any]:
    """The trigger event for ``notification``, without the routing key (raises
    ``TemplateError``)."""
    reading = read(notification)
    note = reading.notification
    rendered = render(reading, title_template, body_template, subject)
    values = context(reading, subject)
    title = rendered.title or f"{note.source} {note.type}"
    risk: int | None = values["risk"]
    application: str | None = values["application"]
    environment: str | None = values["environment"]
    url: str | None = values["url"]

    details: dict[str, Any] = {
        "body": cut(rendered.body, BODY_MAX),
        "notification_id": note.id,
    }
    if risk is not None:
        details["risk"] = risk
    if application:
        details["application"] = application
    if environment:
        details["environment"] = environment
    if values["ips"]:
        details["ips"] = values["ips"][:IPS_MAX]
    if values["accounts"]:
        details["accounts"] = values["accounts"][:IPS_MAX]
    if url:
        details["url"] = url

    payload: dict[str, Any] = {
        "summary": cut(title, SUMMARY_MAX),
        "source": cut(application or note.source, FIELD_MAX),
        "severity": severity_for(risk, severity_by_risk),
    }
    message = values["message"]
    occurred = message.get("date_occurred") if isinstance(message, dict) else None
    timestamp = _iso_utc(occurred) or _iso_utc(note.timestamp)
    if timestamp is not None:
        payload["timestamp"] = timestamp
    if application:
        payload["component"] = cut(note.source, FIELD_MAX)
    if environment:
        payload["group"] = cut(environment, FIELD_MAX)
    payload["class"] = cut(note.type, FIELD_MAX)
    payload["custom_details"] = details

    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": dedup_key(note),
        "payload": payload,
    }
    if url:
        event["links"] = [{"href": url, "text": "View event"}]
    event["client"] = CLIENT
    return event


def _pagerduty_error(body: str) -> str:
    """A readable reason from an answer body: ``<status>: <message> (<errors>)`` from
    PagerDuty's JSON, else the text itself."""
    text = body.strip()
    try:
        decoded = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return cut(text, 300)
    if not isinstance(decoded, dict):
        return cut(text, 300)
    parts = [str(decoded[k]) for k in ("status", "message") if isinstance(decoded.get(k), str)]
    reason = ": ".join(parts)
    errors = decoded.get("errors")
    if isinstance(errors, list) and errors:
        listed = "; ".join(str(error) for error in errors)
        reason = f"{reason} ({listed})" if reason else listed
    return cut(reason or text, 1000)


class PagerDutyTarget(SessionTarget):
    def __init__(
        self,
        config: PagerDutyTargetConfig,
        routing_key: Secret,
        allow: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        super().__init__(config.timeout, allow)
        self.name = config.name
        self.config = config
        self._routing_key = routing_key
        self._url = config.api_url.rstrip("/") + ENQUEUE_PATH

    def __repr__(self) -> str:  # never the routing key
        return f"PagerDutyTarget(name={self.name!r})"

    def session_headers(self) -> dict[str, str]:
        return {"User-Agent": USER_AGENT}

    async def deliver(self, delivery: Delivery) -> None:
        session = self.session
        template = self.config.template
        try:
            event = build_event(
                delivery.reading,
                self.config.severity_by_risk,
                delivery.subject,
                template.title,
                template.body,
            )
        except TemplateError as exc:
            raise PermanentError(str(exc)) from None
        body = msgspec.json.encode({"routing_key": self._routing_key.reveal(), **event})
        try:
            async with session.post(
                self._url,
                data=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                answer = (await response.content.read(ANSWER_MAX)).decode("utf-8", "replace")
        except TimeoutError:
            raise RetryableError(
                f"PagerDuty did not answer within {self.config.timeout}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableError(self._scrub(f"{type(exc).__name__}: {exc}")) from None
        if 200 <= status < 300:
            return
        raise_for_status(status, retry_after, self._scrub(_pagerduty_error(answer)))

    def _scrub(self, text: str) -> str:
        """``text`` without the routing key, in case PagerDuty or a library quoted it."""
        return text.replace(self._routing_key.reveal(), "[routing_key]")


def build(config: PagerDutyTargetConfig, settings: Settings) -> PagerDutyTarget:
    where = f"target {config.name}"
    secret = relay(settings).secret(config.name, "routing_key")
    assert secret is not None  # required: config.load() refuses a pagerduty target without one
    if not ROUTING_KEY_RE.match(secret.reveal()):
        # The value itself is a secret: name the key, never show it.
        raise ConfigError(
            f"{where}: routing_key must be the 32-character integration key of an "
            "Events API v2 integration (letters and digits)"
        )
    parts = urlsplit(config.api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: api_url must be an absolute http(s) URL")
    for severity, minimum in config.severity_by_risk.items():
        if severity not in (*SEVERITIES, FALLBACK_SEVERITY):
            raise ConfigError(
                f"{where}: severity_by_risk.{severity}: not a severity "
                f"(use {', '.join(SEVERITIES)}; below them all is {FALLBACK_SEVERITY})"
            )
        if not 0 <= minimum <= 100:
            raise ConfigError(
                f"{where}: severity_by_risk.{severity}: a risk from 0 to 100, got {minimum}"
            )
    return PagerDutyTarget(config, secret, settings.outbound_allow)
