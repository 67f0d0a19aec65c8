"""Operational notifications: what lookout tells a target's ``on_failure`` target about it.

A target with ``on_failure = "<other target>"`` has its sink publish, on
``notification.lookout.<type>``, a notification with ``source = "lookout"`` and ``type``:

- ``target_paused``: the target was paused (``pause_after`` consecutive failures, or a
  410 Gone); its deliveries wait;
- ``target_resumed``: a delivery succeeded again; the waiting ones go;
- ``dead_lettered``: a notification was stored in ``deadletter.<target>``.

Its ``data`` is ``{"to", "target", "description", "risk", …}``; only the sink of the target
named by ``to`` delivers it (whatever that target's ``match``); every other sink skips it.
Published once per event (its id is the ``Nats-Msg-Id``), by the replica that made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import msgspec

from shared.bus import messages
from shared.relay import schemas
from shared.relay.sources import LookoutProfile, Reading, register

SOURCE: Final = "lookout"
TYPES: Final = ("target_paused", "target_resumed", "dead_lettered")
RISK: Final = {"target_paused": 70, "target_resumed": 20, "dead_lettered": 50}


def addressed_to(reading: Reading) -> str | None:
    """The target an operational notification is for (None for any other notification)."""
    note = reading.notification
    if note.source != SOURCE or note.type not in TYPES:
        return None
    data = reading.data
    to = data.get("to") if isinstance(data, dict) else None
    return to if isinstance(to, str) else ""


def build(kind: str, target: str, to: str, ident: str, **details: Any) -> schemas.Notification:
    """The operational notification ``kind`` about ``target``, for ``to``; ``ident`` makes
    its id (the same event published twice is stored once)."""
    data = {"to": to, "target": target, "risk": RISK[kind], **details}
    return schemas.Notification(
        id=f"{kind}:{target}:{ident}",
        type=kind,
        source=SOURCE,
        timestamp=messages.utc_now(),
        data=msgspec.Raw(msgspec.json.encode(data)),
    )


class OperationalProfile(LookoutProfile):
    """Titles and bodies of lookout's own notifications: the operational ones, and those
    of :class:`LookoutProfile` (``verdict_changed``): one profile reads source ``lookout``."""

    templates: ClassVar[Mapping[str, tuple[str, str]]] = {
        **LookoutProfile.templates,
        "target_paused": (
            "lookout: target {{ data.target }} paused",
            "{{ description }}\nLast error: {{ data.error or 'none' }}\n"
            "Deliveries to it wait; a probe is tried {{ data.next_probe_at or 'soon' }}.\n"
            "Time: {{ timestamp }}",
        ),
        "target_resumed": (
            "lookout: target {{ data.target }} resumed",
            "{{ description }}\nTime: {{ timestamp }}",
        ),
        "dead_lettered": (
            "lookout: a notification to {{ data.target }} was dead-lettered",
            "{{ description }}\nError: {{ data.error }}\n"
            "Notification: {{ data.notification.id if data.notification else 'undecodable' }}"
            "{% if data.notification %} ({{ data.notification.source }}/"
            "{{ data.notification.type }}){% endif %}\n"
            "Attempts: {{ data.attempts }}\nTime: {{ timestamp }}",
        ),
    }


register(SOURCE, OperationalProfile())
