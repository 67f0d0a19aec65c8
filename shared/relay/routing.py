"""Route filters: which notifications a target receives."""

from __future__ import annotations

from collections.abc import Sequence

from shared.relay.config import Match, TargetConfig
from shared.relay.schemas import Notification
from shared.relay.sources import Reading, read


def routes_everything(targets: Sequence[TargetConfig]) -> bool:
    """True when some target takes every notification (its route filters nothing), so no
    notification can be unrouted and :func:`unrouted` need not be asked."""
    return any(target.match == Match() for target in targets)


def unrouted(targets: Sequence[TargetConfig], notification: Notification | Reading) -> bool:
    """True when no configured target's route accepts ``notification``."""
    reading = read(notification)
    return not any(matches(target.match, reading) for target in targets)


def matches(match: Match, notification: Notification | Reading) -> bool:
    """Whether ``match`` takes ``notification``; its message is read (through its
    reading, once) only when the route filters on risk, application or environment."""
    reading = read(notification)
    notification = reading.notification
    if match.types and notification.type not in match.types:
        return False
    if match.sources and notification.source not in match.sources:
        return False
    if match.min_risk is None and not match.applications and not match.environments:
        return True
    attrs = reading.attributes
    if match.min_risk is not None and (attrs.risk is None or attrs.risk < match.min_risk):
        return False
    if match.applications and attrs.application not in match.applications:
        return False
    return not (match.environments and attrs.environment not in match.environments)
