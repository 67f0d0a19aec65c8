"""Grouping: fold a burst of notifications into one digest per target.

A target with ``group_window`` collects the notifications that share its ``group_by``
fields (source, type, application, environment) for that many seconds from the first one,
then sends them as one **digest**: a notification with source ``lookout`` and type
``digest`` whose ``data`` is::

    {"count": 3, "window_seconds": 30.0, "source": "scanner", "type": "http_scan",
     "application": "shop", "environment": "production", "risk": 80,
     "ips": ["203.0.113.7", ...],
     "items": [{"id", "type", "source", "timestamp", "title", "risk", "url"}, ...],
     "notifications": [{"id", "type", "source", "timestamp", "data"}, ...]}

``risk`` is the highest of the members, ``application``/``environment`` are set when all
members agree. The digest id is derived from its members' ids, so a retried digest of the
same members keeps its idempotency key (``webhook-id``, an incident dedup key, Message-ID).
A group of one is sent as the notification itself. Members stay unacknowledged in
JetStream (kept alive with "in progress") until the digest is delivered or dead-lettered,
so a crash loses nothing: they are redelivered and grouped again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.msg import Msg

from shared.relay import schemas
from shared.relay.config import TargetConfig
from shared.relay.sources import Attributes
from shared.relay.status import Attempt
from shared.relay.target import Delivery
from shared.relay.templates import TemplateError, context, render_title

MAX_ITEMS_DATA = 1000


@dataclass(slots=True)
class Member:
    """One held notification: its JetStream message and the delivery it would have been."""

    msg: Msg
    delivery: Delivery
    attrs: Attributes
    history: list[Attempt] = field(default_factory=list)
    """Its calls to the target so far (the attempt log: see shared.relay.status)."""
    tries: int = 0
    """Its failed sends that count towards ``max_attempts`` (see shared.relay.status)."""


@dataclass(slots=True)
class _Group:
    members: dict[int, Member] = field(default_factory=dict)
    """By stream sequence: a member redelivered while held replaces itself in place."""
    full: asyncio.Event = field(default_factory=asyncio.Event)


def group_key(config: TargetConfig, notification: schemas.Notification, attrs: Attributes) -> str:
    values = {
        "source": notification.source,
        "type": notification.type,
        "application": attrs.application or "",
        "environment": attrs.environment or "",
    }
    return "\x1f".join(values[name] for name in config.group_by)


def _title(config: TargetConfig, delivery: Delivery, values: dict[str, Any]) -> str:
    try:
        return render_title(delivery.notification, values, config.template.title)
    except TemplateError:
        return f"{delivery.notification.source} {delivery.notification.type}"


def _common(values: Sequence[str | None]) -> str | None:
    first = values[0]
    return first if all(v == first for v in values) else None


def digest(config: TargetConfig, members: Sequence[Member], window: float) -> Delivery:
    """One delivery standing for all ``members`` (at least two)."""
    notes = [m.delivery.notification for m in members]
    risks = [m.attrs.risk for m in members if m.attrs.risk is not None]
    ips: list[str] = []
    items: list[dict[str, Any]] = []
    for member in members:
        values = context(member.delivery.reading, member.delivery.subject)
        ips.extend(ip for ip in values["ips"] if ip not in ips)
        items.append(
            {
                "id": member.delivery.notification.id,
                "type": member.delivery.notification.type,
                "source": member.delivery.notification.source,
                "timestamp": member.delivery.notification.timestamp,
                "title": _title(config, member.delivery, values),
                "risk": member.attrs.risk,
                "url": values["url"],
            }
        )
    data = {
        "count": len(members),
        "window_seconds": window,
        "source": _common([n.source for n in notes]),
        "type": _common([n.type for n in notes]),
        "application": _common([m.attrs.application for m in members]),
        "environment": _common([m.attrs.environment for m in members]),
        "risk": max(risks) if risks else None,
        "ips": ips[:100],
        "items": items[:MAX_ITEMS_DATA],
        "notifications": [
            {
                "id": n.id,
                "type": n.type,
                "source": n.source,
                "timestamp": n.timestamp,
                "data": n.data,
            }
            for n in notes[:MAX_ITEMS_DATA]
        ],
    }
    ids = "\n".join(sorted(n.msg_id for n in notes)).encode()
    notification = schemas.Notification(
        id="digest-" + hashlib.sha256(ids).hexdigest()[:40],
        type=schemas.DIGEST_TYPE,
        source=schemas.DIGEST_SOURCE,
        timestamp=min(n.timestamp for n in notes),
        data=msgspec.Raw(msgspec.json.encode(data)),
    )
    return Delivery(
        notification,
        notification.subject,
        max(m.delivery.attempt for m in members),
        members[0].delivery.request_id,
    )


class Grouper:
    """Holds notifications per group key and hands each group to ``flush`` when its window
    ends or it reaches ``group_max``; keeps the held messages alive in JetStream meanwhile."""

    def __init__(
        self,
        config: TargetConfig,
        flush: Callable[[list[Member]], Awaitable[None]],
        keepalive: float,
    ) -> None:
        assert config.group_window is not None
        self.config = config
        self.window = config.group_window
        self._flush = flush
        self._keepalive = keepalive
        self._groups: dict[str, _Group] = {}
        self._holding: dict[asyncio.Task[None], _Group] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    def add(self, member: Member) -> None:
        key = group_key(self.config, member.delivery.notification, member.attrs)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
            self._holding[asyncio.create_task(self._hold(key, group))] = group
        seq = member.msg.metadata.sequence.stream
        if seq in group.members:  # redelivered while held: replaces itself in place
            group.members[seq] = member
            return
        group.members[seq] = member
        if len(group.members) >= self.config.group_max:
            del self._groups[key]  # the next one starts a new group
            group.full.set()

    async def _hold(self, key: str, group: _Group) -> None:
        deadline = time.monotonic() + self.window
        while (remaining := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(group.full.wait(), min(remaining, self._keepalive))
            if group.full.is_set():
                break
            for member in list(group.members.values()):
                with contextlib.suppress(Exception):
                    await member.msg.in_progress()
        if self._groups.get(key) is group:
            del self._groups[key]
        task = asyncio.current_task()
        assert task is not None
        self._holding.pop(task, None)
        self._flushing.add(task)
        try:
            await self._flush(list(group.members.values()))
        finally:
            self._flushing.discard(task)

    async def close(self, timeout: float) -> None:
        """Hand every group still in its window back to JetStream (redelivered later, to
        this or another replica) and wait up to ``timeout`` for digests being sent."""
        holding, self._holding = self._holding, {}
        self._groups.clear()
        for task, group in holding.items():
            task.cancel()
            for member in group.members.values():
                with contextlib.suppress(Exception):
                    await member.msg.nak()
        if self._flushing:
            await asyncio.wait(set(self._flushing), timeout=timeout)
