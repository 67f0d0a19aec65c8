"""Watch lists: indicators looked up again on a schedule, telling when their verdict changes.

A :class:`Watch` is kept in the KV bucket ``watches`` under its id. The scheduler service
(``services/scheduler``) runs each one every ``every`` seconds, as a scheduled job (fresh
answers, quotas spent after interactive lookups), and keeps when it ran and runs next in
the bucket ``scheduler`` under ``run.<id>`` (:class:`RunState`). The gateway
(``/api/v1/watches``) and ``lookout watch`` create, list and remove them with the functions
here; reads are direct gets (no consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared.bus import direct, messages
from shared.core.settings import Settings
from shared.lookups import catalog, indicators, jobs
from shared.lookups import streams as lookup_streams
from shared.lookups.config import lookups
from shared.lookups.schemas import JobIndicator

MAX_WATCHES = 1000
MAX_INDICATORS = 1000
"""Indicators per watch (each run is one job of them all)."""
MAX_EVERY = 30 * 86400.0
MAX_COMMENT = 256
NotifyOn = Literal["any_change", "worse"]
NOTIFY_ON: tuple[NotifyOn, ...] = ("any_change", "worse")
WATCH_ID = "[0-9a-f]{24}"

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``6h``, ``1d``, ``2w`` or plain seconds (``3600``); ValueError
    for anything else."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not a duration (e.g. 30m, 6h, 1d): {text[:64]!r}")
    return float(found[1]) * _UNITS[(found[2] or "s").lower()]


def format_duration(seconds: float) -> str:
    """``21600`` → ``6h`` (the largest unit that divides it), else seconds."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class Watch(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    created_at: str
    indicators: list[JobIndicator]
    every: float
    """Seconds between runs."""
    providers: list[str] = []
    """Only these providers (empty: every provider of each kind)."""
    notify_on: NotifyOn = "any_change"
    comment: str = ""
    request_id: str | None = None


class RunState(msgspec.Struct, kw_only=True, frozen=True):
    """When a watch runs next and ran last (written by the scheduler only, by
    compare-and-set, so a run happens once whatever the number of replicas)."""

    next_at: float
    """Epoch seconds."""
    last_at: float | None = None
    last_job: str | None = None
    runs: int = 0


class WatchInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/watches``."""

    indicators: list[Any]  # an item that is no string: rejected alone
    every: str | float
    providers: list[str] = []
    notify_on: str = "any_change"
    comment: str = ""


class Invalid(ValueError):
    """A watch lookout refuses: the message is the reason (a 400); ``rejected`` lists the
    items that are not indicators."""

    def __init__(self, reason: str, rejected: list[dict[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.rejected = rejected or []


def build(given: WatchInput, settings: Settings, request_id: str | None = None) -> Watch:
    """The watch ``given`` asks for; :class:`Invalid` with the reason otherwise."""
    min_every = lookups(settings).watch_min_every
    if not given.indicators:
        raise Invalid("indicators is empty: give at least one")
    if len(given.indicators) > MAX_INDICATORS:
        raise Invalid(f"{len(given.indicators)} indicators; at most {MAX_INDICATORS} per watch")
    parsed = indicators.parse_items(given.indicators)
    if parsed.rejected:
        rejected, total = jobs.rejected_items(parsed)
        raise Invalid(f"{total} item(s) are not indicators", rejected)
    try:
        every = (
            float(given.every) if not isinstance(given.every, str) else parse_duration(given.every)
        )
    except ValueError as exc:
        raise Invalid(f"every: {exc}") from None
    if not min_every <= every <= MAX_EVERY:
        raise Invalid(
            f"every must be from {format_duration(min_every)} to {format_duration(MAX_EVERY)}, "
            f"not {format_duration(every) if every > 0 else every}"
        )
    refused = catalog.refused(settings, given.providers)
    if refused is not None:
        raise Invalid(refused)
    if given.notify_on not in NOTIFY_ON:
        raise Invalid(f"notify_on must be one of {', '.join(NOTIFY_ON)}")
    if len(given.comment) > MAX_COMMENT:
        raise Invalid(f"comment longer than {MAX_COMMENT} characters")
    notify_on: NotifyOn = "worse" if given.notify_on == "worse" else "any_change"
    return Watch(
        id=jobs.new_job_id(),
        created_at=messages.utc_now(),
        indicators=[JobIndicator(i.value, i.kind, i.scope) for i in parsed.indicators],
        every=every,
        providers=sorted(set(given.providers), key=catalog.names().index),
        notify_on=notify_on,
        comment=given.comment,
        request_id=request_id,
    )


_decode_watch = msgspec.json.Decoder(Watch).decode
_decode_state = msgspec.json.Decoder(RunState).decode
_WATCHES = direct.kv_stream(lookup_streams.WATCHES_BUCKET)
_SCHEDULER = direct.kv_stream(lookup_streams.SCHEDULER_BUCKET)


def run_key(watch_id: str) -> str:
    return f"run.{watch_id}"


async def load_all(reader: direct.Reader) -> list[Watch]:
    """Every watch, oldest first."""
    stored = await reader.scan(_WATCHES, direct.kv_subject(lookup_streams.WATCHES_BUCKET, ">"))
    found: dict[str, Watch] = {}
    for msg in stored:
        key = direct.kv_key(lookup_streams.WATCHES_BUCKET, msg.subject)
        if msg.removed or not msg.data:
            found.pop(key, None)
            continue
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            found[key] = _decode_watch(msg.data)
    return sorted(found.values(), key=lambda w: w.id)


async def load(reader: direct.Reader, watch_id: str) -> Watch | None:
    subject = direct.kv_subject(lookup_streams.WATCHES_BUCKET, watch_id)
    found = await reader.last(_WATCHES, subject)
    if found is None:
        found = await reader.leader_last(_WATCHES, subject)
    if found is None or found.removed or not found.data:
        return None
    try:
        return _decode_watch(found.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def states(reader: direct.Reader) -> dict[str, RunState]:
    """When each watch ran last and runs next, by watch id."""
    stored = await reader.scan(
        _SCHEDULER, direct.kv_subject(lookup_streams.SCHEDULER_BUCKET, "run.*")
    )
    found: dict[str, RunState] = {}
    for msg in stored:
        key = direct.kv_key(lookup_streams.SCHEDULER_BUCKET, msg.subject).removeprefix("run.")
        if msg.removed or not msg.data:
            found.pop(key, None)
            continue
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            found[key] = _decode_state(msg.data)
    return found


def decode_state(data: bytes) -> RunState:
    return _decode_state(data)


class TooMany(Exception):
    pass


_creating: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
"""Creates in this process (its event loop) one at a time: the count and the write of one
are not split by another's (concurrent creates went past :data:`MAX_WATCHES`)."""


async def create(js: JetStreamContext, reader: direct.Reader, watch: Watch) -> None:
    """Store ``watch``; :class:`TooMany` when :data:`MAX_WATCHES` exist already."""
    async with _creating.setdefault(asyncio.get_running_loop(), asyncio.Lock()):
        if len(await load_all(reader)) >= MAX_WATCHES:
            raise TooMany(f"at most {MAX_WATCHES} watches: remove one first")
        bucket = await js.key_value(lookup_streams.WATCHES_BUCKET)
        await bucket.put(watch.id, messages.encode(watch))


async def remove(js: JetStreamContext, reader: direct.Reader, watch_id: str) -> bool:
    """Remove the watch (and its schedule); False when there is no such watch."""
    if await load(reader, watch_id) is None:
        return False
    bucket: KeyValue = await js.key_value(lookup_streams.WATCHES_BUCKET)
    await bucket.delete(watch_id)
    scheduler = await js.key_value(lookup_streams.SCHEDULER_BUCKET)
    with contextlib.suppress(KeyNotFoundError):
        await scheduler.delete(run_key(watch_id))
    return True


def _time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def as_json(watch: Watch, state: RunState | None) -> dict[str, Any]:
    """A watch as the API and ``lookout watch list --json`` show it."""
    return {
        "id": watch.id,
        "created_at": watch.created_at,
        "indicators": [
            {"value": i.value, "kind": i.kind, "scope": i.scope} for i in watch.indicators
        ],
        "every": format_duration(watch.every),
        "every_seconds": watch.every,
        "providers": watch.providers,
        "notify_on": watch.notify_on,
        "comment": watch.comment,
        "runs": state.runs if state is not None else 0,
        "last_run_at": _time(state.last_at) if state is not None else None,
        "last_job": state.last_job if state is not None else None,
        "next_run_at": _time(state.next_at) if state is not None else None,
    }
