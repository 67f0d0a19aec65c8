"""Dead letters: list them, and replay them to the one target that gave up on them.

A replay is published on ``replay.<target>`` (stream NOTIFICATIONS), which only that
target's consumer reads, with a fresh attempt count; the dead letter is removed once the
replay is stored, so ``list`` shows what is still unresolved. If the target fails again, the
notification comes back as a new dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext

from shared.bus import direct, messages
from shared.core.settings import Settings
from shared.relay import schemas, streams
from shared.relay.config import relay

ORIGINAL_SUBJECT_HEADER = "Lookout-Original-Subject"


@dataclass(frozen=True)
class Entry:
    seq: int
    record: schemas.DeadLetter


def subject(target: str) -> str:
    return f"deadletter.{target}"


def _entry(msg: direct.Stored) -> Entry | None:
    try:
        return Entry(msg.seq, schemas.decode_deadletter(msg.data))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def entries(reader: direct.Reader, target: str) -> list[Entry]:
    """Every dead letter of ``target``, oldest first, read in pages of direct gets."""
    found = await reader.scan(streams.DEADLETTERS, subject(target))
    return [e for msg in found if (e := _entry(msg)) is not None]


async def newest(reader: direct.Reader, target: str, limit: int) -> tuple[list[Entry], int]:
    """The newest ``limit`` dead letters of ``target``, newest first, and how many it has:
    a few small requests and the ``limit`` entries, however many there are (see
    :meth:`shared.bus.direct.Reader.newest`)."""
    found, total = await reader.newest(streams.DEADLETTERS, subject(target), limit)
    return [e for msg in found if (e := _entry(msg)) is not None], total


async def counts(js: JetStreamContext) -> dict[str, int]:
    """Dead letters per target, from the stream's per-subject counts (no entry is read)."""
    info = await js.stream_info(streams.DEADLETTERS, subjects_filter="deadletter.>")
    return {
        name.removeprefix("deadletter."): count
        for name, count in (info.state.subjects or {}).items()
    }


def target_type(settings: Settings, name: str) -> str | None:
    """The type of the configured target ``name`` (e.g. ``http``), or None."""
    for target in relay(settings).targets:
        if target.name == name:
            return target.type
    return None


@dataclass(frozen=True)
class TargetCount:
    name: str
    type: str | None
    configured: bool
    count: int


def per_target(settings: Settings, found: dict[str, int]) -> list[TargetCount]:
    """Every configured target with its count (0 when it has none), then any other that
    still has dead letters (e.g. a target removed from the configuration)."""
    configured = [t.name for t in relay(settings).targets]
    return [
        TargetCount(name, target_type(settings, name), True, found.get(name, 0))
        for name in configured
    ] + [
        TargetCount(name, None, False, count)
        for name, count in sorted(found.items())
        if name not in configured
    ]


@dataclass(frozen=True)
class Outcome:
    seq: int
    notification_id: str | None
    replayed: bool
    reason: str = ""


async def replay(
    js: JetStreamContext, settings: Settings, target: str, chosen: list[Entry]
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for entry in chosen:
        note = entry.record.notification
        if note is None:
            outcomes.append(
                Outcome(entry.seq, None, False, "not a valid notification: cannot be replayed")
            )
            continue
        await js.publish(
            f"replay.{target}",
            messages.encode(note),
            headers={
                "Nats-Msg-Id": f"replay:{target}:{entry.seq}",
                messages.SCHEMA_HEADER: schemas.NOTIFICATION_SCHEMA,
                ORIGINAL_SUBJECT_HEADER: entry.record.subject,
            },
            timeout=settings.publish_timeout,
        )
        await js.delete_msg(streams.DEADLETTERS, entry.seq)
        outcomes.append(Outcome(entry.seq, note.id, True))
    return outcomes


def select(found: list[Entry], ident: str | None) -> list[Entry]:
    """All entries, or those whose stream sequence or notification id is ``ident``."""
    if ident is None:
        return found
    return [
        e
        for e in found
        if str(e.seq) == ident or (e.record.notification and e.record.notification.id == ident)
    ]
