"""Dead letters: list them, and replay them to the one target that gave up on them.

A replay is published on ``replay.<target>`` (stream NOTIFICATIONS), which only that
target's consumer reads, with a fresh attempt count; the dead letter is removed once the
replay is stored, so ``list`` shows what is still unresolved. If the target fails again, the
notification comes back as a new dead letter.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared import bus, schemas
from shared.config import Settings

ORIGINAL_SUBJECT_HEADER = "Lookout-Original-Subject"


@dataclass(frozen=True)
class Entry:
    seq: int
    record: schemas.DeadLetter


async def entries(js: JetStreamContext, target: str) -> list[Entry]:
    """Every dead letter of ``target``, oldest first."""
    subject = f"deadletter.{target}"
    found: list[Entry] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(bus.DEADLETTERS, seq, subject=subject, next=True)
        except NotFoundError:
            return found
        if msg.seq is None or msg.data is None:
            return found
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            found.append(Entry(msg.seq, schemas.decode_deadletter(msg.data)))
        seq = msg.seq + 1


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
            schemas.encode(note),
            headers={
                "Nats-Msg-Id": f"replay:{target}:{entry.seq}",
                schemas.SCHEMA_HEADER: schemas.NOTIFICATION_SCHEMA,
                ORIGINAL_SUBJECT_HEADER: entry.record.subject,
            },
            timeout=settings.publish_timeout,
        )
        await js.delete_msg(bus.DEADLETTERS, entry.seq)
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
