"""Route filters: which notifications a target receives.

Sqreen messages keep their routing fields in different places per version and type (v2
wraps them in ``message``; security events carry ``risk_coefficient``, v1 and the test
message ``risk``; security responses nest ``application.name`` and
``application.environment``). :func:`attributes` reads them all into one shape; messages
from other sources may carry top-level ``risk``, ``application`` and ``environment``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared import jsondata
from shared.config import Match, TargetConfig
from shared.schemas import Notification


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


def routes_everything(targets: Sequence[TargetConfig]) -> bool:
    """True when some target takes every notification (its route filters nothing), so no
    notification can be unrouted and :func:`unrouted` need not be asked."""
    return any(target.match == Match() for target in targets)


def unrouted(targets: Sequence[TargetConfig], notification: Notification) -> bool:
    """True when no configured target's route accepts ``notification``."""
    return not any(matches(target.match, notification) for target in targets)


def matches(match: Match, notification: Notification) -> bool:
    if match.types and notification.type not in match.types:
        return False
    if match.sources and notification.source not in match.sources:
        return False
    if match.min_risk is None and not match.applications and not match.environments:
        return True
    attrs = attributes(notification)
    if match.min_risk is not None and (attrs.risk is None or attrs.risk < match.min_risk):
        return False
    if match.applications and attrs.application not in match.applications:
        return False
    return not (match.environments and attrs.environment not in match.environments)
