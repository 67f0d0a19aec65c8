"""Verdict changes as notifications: a history :class:`~shared.lookups.history.Alert`
becomes ``notification.lookout.verdict_changed`` (schema ``notification/1``), routed,
templated, grouped, retried and dead-lettered by the sinks like any notification.

The id is ``verdict-<indicator key>-<job id>``: a change found again (a redelivered result)
is stored once (``Nats-Msg-Id``), and every target sees the same id on every retry."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from shared.lookups.history import Alert
from shared.relay.schemas import (
    LOOKOUT_SOURCE,
    VERDICT_CHANGED_TYPE,
    Notification,
)


def page(public_url: str, value: str) -> str:
    """The indicator's page in the web UI."""
    return f"{public_url}/indicator/{quote(value, safe='')}"


def sentence(alert: Alert) -> str:
    """ "example.com is now malicious (was harmless): VirusTotal 0/85 engines → 7/85
    engines" (what the default title says too)."""
    if alert.old_verdict != alert.new_verdict:
        said = f"{alert.indicator} is now {alert.new_verdict} (was {alert.old_verdict})"
    else:
        said = f"{alert.indicator} is still {alert.new_verdict}"
    changes = [
        f"{c.label} {c.old_summary or c.old_verdict} → {c.new_summary or c.new_verdict}"
        for c in alert.changes
    ]
    return f"{said}: {', '.join(changes)}" if changes else said


def data(alert: Alert, public_url: str) -> dict[str, Any]:
    """The notification's ``data``."""
    body: dict[str, Any] = {
        "indicator": alert.indicator,
        "kind": alert.kind,
        "old_verdict": alert.old_verdict,
        "new_verdict": alert.new_verdict,
        "verdict_reasons": alert.reasons,
        "changes": [msgspec.to_builtins(c) for c in alert.changes],
        "job_id": alert.job_id,
        "scheduled": alert.scheduled,
        "watches": alert.watches,
        "checked_at": alert.at,
        "url": page(public_url, alert.indicator),
        "description": sentence(alert),
    }
    if alert.kind in ("ipv4", "ipv6"):
        body["ips"] = [alert.indicator]
    return body


def notification(alert: Alert, public_url: str) -> Notification:
    return Notification(
        id=alert.id,
        type=VERDICT_CHANGED_TYPE,
        source=LOOKOUT_SOURCE,
        timestamp=alert.at,
        data=msgspec.Raw(msgspec.json.encode(data(alert, public_url))),
    )
