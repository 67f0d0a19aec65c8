"""What lookout reads of a notification's message to route and render it.

Sqreen messages keep their routing fields in different places per version and type (v2
wraps them in ``message``; security events carry ``risk_coefficient``, v1 and the test
message ``risk``; security responses nest ``application.name`` and
``application.environment``). :func:`attributes` reads them all into one shape; messages
from other sources may carry top-level ``risk``, ``application`` and ``environment``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.core import jsondata
from shared.relay.schemas import Notification


@dataclass(frozen=True, slots=True)
class Attributes:
    risk: int | None = None
    application: str | None = None
    environment: str | None = None


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def attributes(notification: Notification) -> Attributes:
    try:
        data = jsondata.load(notification.data)
    except jsondata.JsonError:
        return Attributes()
    if not isinstance(data, dict):
        return Attributes()
    inner = data.get("message")
    body: dict[str, Any] = inner if isinstance(inner, dict) else data
    nested = body.get("application")
    app: dict[str, Any] = nested if isinstance(nested, dict) else {}
    risk = _number(body.get("risk_coefficient"))
    if risk is None:
        risk = _number(body.get("risk"))
    application = _text(body.get("application_name")) or _text(app.get("name"))
    if application is None and isinstance(nested, str):
        application = nested
    environment = _text(body.get("environment")) or _text(app.get("environment"))
    return Attributes(risk=risk, application=application, environment=environment)
