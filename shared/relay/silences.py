"""Silences: for a while, notifications that match stop reaching the targets.

A silence has matchers over ``source``, ``type``, ``application``, ``environment``, ``ip``
and ``target`` (each an exact string; absent means any; every one given must match, as in
Alertmanager, where a silence's matchers are ANDed), when it ends, a comment and who made
it. Silences live in the KV bucket ``silences`` (key: the silence's id), written by the
gateway's API and ``lookout silence``; expiring one rewrites it with ``ends_at`` = now, so
it stays listed (state ``expired``) for :data:`RETENTION`, as Alertmanager keeps expired
silences for its retention (5 days by default).

Every sink keeps a :class:`SilenceView`: what the bucket holds, read once at start (direct
gets) and kept current by a core NATS subscription on the bucket's subjects (no consumer),
read again every :data:`RESYNC` seconds for anything lost in a reconnect. Checking a
notification costs no request: ``ends_at`` is compared with the clock at the check, so a
silence stops applying the moment it ends or is expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import urlencode

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyWrongLastSequenceError

from shared.bus import direct
from shared.bus.manage import DAY
from shared.core import logging as log
from shared.relay.schemas import is_digest, rfc3339, subject_token
from shared.relay.sources import Reading, read

BUCKET: Final = "silences"
MATCHERS: Final = ("source", "type", "application", "environment", "ip", "target")
SIMILAR: Final = ("source", "type", "application", "environment")
"""What a "Silence similar" link fills in: what notifications of one kind share (an
address or a target is the user's choice)."""
MAX_DURATION: Final = 90 * DAY
"""The longest silence: a forgotten one must not hide alerts for ever."""
MIN_DURATION: Final = 1.0
RETENTION: Final = 5 * DAY
"""How long an expired silence stays listed (then it goes from the bucket as well)."""
MAX_VALUE: Final = 256
MAX_COMMENT: Final = 1000
RESYNC: Final = 30.0
ID_PATTERN: Final = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_ID = re.compile(ID_PATTERN)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}

State = Literal["active", "expired"]

_log = log.get("silences")


class SilenceError(ValueError):
    """A silence lookout refuses, with the reason (the API's 400)."""


class Matchers(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    source: str | None = None
    type: str | None = None
    application: str | None = None
    environment: str | None = None
    ip: str | None = None
    target: str | None = None

    def items(self) -> list[tuple[str, str]]:
        """The matchers given, in :data:`MATCHERS` order."""
        return [(n, v) for n in MATCHERS if (v := getattr(self, n)) is not None]


class Silence(msgspec.Struct, kw_only=True, frozen=True):
    """One silence as the bucket keeps it (times in RFC 3339, UTC)."""

    id: str
    matchers: Matchers
    starts_at: str
    ends_at: str
    created_by: str
    created_at: str
    comment: str = ""
    updated_at: str = ""
    expired_by: str | None = None

    def ends(self) -> datetime:
        return parse_time(self.ends_at)

    def state(self, now: datetime | None = None) -> State:
        return "active" if self.ends() > (now or datetime.now(UTC)) else "expired"


class SilenceInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What ``POST /api/v1/silences`` takes."""

    matchers: dict[str, Any]
    duration: str | None = None
    ends_at: str | None = None
    comment: str = ""


_decode_silence = msgspec.json.Decoder(Silence).decode
_decode_input = msgspec.json.Decoder(SilenceInput).decode
_encode = msgspec.json.Encoder().encode


def text_time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    """An RFC 3339 time (with its offset); :class:`SilenceError` otherwise."""
    when = rfc3339(value)
    if when is None:
        raise SilenceError(
            f"{value[:64]!r}: expected an RFC 3339 time with its offset, e.g. 2026-12-07T08:00:00Z"
        )
    return when


def parse_duration(text: str) -> float:
    """Seconds of ``2h``, ``90m``, ``1h30m``, ``1d``, ``1w`` (units ms, s, m, h, d, w)."""
    given = text.strip()
    if not given or _DURATION.sub("", given):
        raise SilenceError(
            f"duration {text!r}: expected a number and a unit (ms, s, m, h, d, w), e.g. 2h or 1h30m"
        )
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(given))


def _span(seconds: float) -> str:
    return f"{seconds / DAY:g} days" if seconds >= DAY else f"{seconds:g} s"


def check_matchers(given: dict[str, Any]) -> Matchers:
    unknown = sorted(set(given) - set(MATCHERS))
    if unknown:
        raise SilenceError(
            f"unknown matcher {', '.join(map(repr, unknown))} (known: {', '.join(MATCHERS)})"
        )
    values: dict[str, str] = {}
    for name in MATCHERS:
        value = given.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise SilenceError(f"matcher {name!r} must be a non-empty string")
        if len(value) > MAX_VALUE or not value.isprintable():
            raise SilenceError(f"matcher {name!r}: at most {MAX_VALUE} printable characters")
        values[name] = _matcher_value(name, value)
    if not values:
        raise SilenceError(
            "a silence needs at least one matcher: one without any would silence every "
            "notification to every target"
        )
    return Matchers(**values)


def _matcher_value(name: str, value: str) -> str:
    """``value`` as the notifications hold it, so that a silence made with what the sender
    wrote matches: a source and a type are subject tokens (lower case, any other character
    ``_``: Alertmanager's ``SSHBruteForce`` is ``sshbruteforce``, ``invoice.paid`` is
    ``invoice_paid``); an address or a network in its one written form. A value that no
    notification can hold is refused: such a silence would never apply."""
    if name in ("source", "type"):
        kept = subject_token(value)
        if kept == "unknown" and value.strip().lower() != "unknown":
            raise SilenceError(
                f"matcher {name!r}: {value!r} has no letter or digit, so no notification's "
                f"{name} can be it"
            )
        return kept
    if name == "ip":
        try:
            text = value.strip()
            return str(_network(text) if "/" in text else ipaddress.ip_address(text))
        except ValueError:
            raise SilenceError(
                f"matcher 'ip': {value!r} is not an IP address or network (e.g. 203.0.113.7, "
                "2001:db8::1 or 203.0.113.0/24)"
            ) from None
    return value


@functools.lru_cache(maxsize=1024)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address (a one-address network) or a network; host bits are dropped."""
    return ipaddress.ip_network(text, strict=False)


def make(given: SilenceInput, created_by: str, now: datetime | None = None) -> Silence:
    """A new silence from the API's (or the CLI's) input; :class:`SilenceError` says why not."""
    now = now or datetime.now(UTC)
    matchers = check_matchers(given.matchers)
    if (given.duration is None) == (given.ends_at is None):
        raise SilenceError('give either duration (e.g. "2h") or ends_at (RFC 3339), not both')
    if given.duration is not None:
        seconds = parse_duration(given.duration)
        ends = now + timedelta(seconds=seconds)
    else:
        assert given.ends_at is not None
        ends = parse_time(given.ends_at)
        seconds = (ends - now).total_seconds()
    if seconds < MIN_DURATION:
        raise SilenceError("a silence must end in the future (at least 1 s from now)")
    if seconds > MAX_DURATION:
        raise SilenceError(f"a silence lasts at most {_span(MAX_DURATION)}")
    if len(given.comment) > MAX_COMMENT:
        raise SilenceError(f"comment: at most {MAX_COMMENT} characters")
    stamp = text_time(now)
    return Silence(
        id=str(uuid.uuid4()),
        matchers=matchers,
        starts_at=stamp,
        ends_at=text_time(ends),
        created_by=created_by,
        created_at=stamp,
        comment=given.comment,
        updated_at=stamp,
    )


def decode_input(body: bytes) -> SilenceInput:
    """:class:`SilenceError` with msgspec's reason for a body that is not one."""
    try:
        return _decode_input(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SilenceError(
            f'expected {{"matchers": {{…}}, "duration" or "ends_at", "comment"}}: {exc}'
        ) from None


def decode(data: bytes) -> Silence:
    return _decode_silence(data)


def encode(silence: Silence) -> bytes:
    return _encode(silence)


def view(silence: Silence, now: datetime | None = None) -> dict[str, Any]:
    """The silence as the API and the CLI show it: its fields and its ``state``."""
    out: dict[str, Any] = msgspec.to_builtins(silence)
    out["state"] = silence.state(now)
    return out


def valid_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


# --------------------------------------------------------------------------- matching


def _same_ip(wanted: str, ips: list[str]) -> bool:
    """Whether one of ``ips`` is the address, or in the network, ``wanted`` names."""
    if wanted in ips:
        return True
    try:
        network = _network(wanted)
    except ValueError:  # written before matchers were checked: never matches
        return False
    for ip in ips:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(ip) in network:
                return True
    return False


def matches(matchers: Matchers, reading: Reading, target: str) -> bool:
    """Whether every matcher given takes this notification at ``target``."""
    note = reading.notification
    # As the gateway keeps them (subject tokens); a NATS publisher may have sent others.
    if matchers.source is not None and subject_token(note.source) != matchers.source:
        return False
    if matchers.type is not None and subject_token(note.type) != matchers.type:
        return False
    if matchers.target is not None and target != matchers.target:
        return False
    if matchers.application is not None or matchers.environment is not None:
        attrs = reading.attributes
        if matchers.application is not None and attrs.application != matchers.application:
            return False
        if matchers.environment is not None and attrs.environment != matchers.environment:
            return False
    return matchers.ip is None or _same_ip(matchers.ip, reading.fields.ips)


def similar_url(public_url: str, notification: Any) -> str | None:
    """The UI's new-silence form with this notification's source, type, application and
    environment filled in; None for a digest (its members differ)."""
    reading = read(notification)
    note = reading.notification
    if is_digest(note):
        return None
    attrs = reading.attributes
    return _similar_url(public_url, note.source, note.type, attrs.application, attrs.environment)


@functools.lru_cache(maxsize=1024)
def _similar_url(
    public_url: str, source: str, type_: str, application: str | None, environment: str | None
) -> str:
    """The link for one set of values, made once (a stream of notifications has few)."""
    values = {
        "source": source,
        "type": type_,
        "application": application,
        "environment": environment,
    }
    query = urlencode([(k, v) for k in SIMILAR if (v := values[k])])
    return f"{public_url}/silences?{query}"


# --------------------------------------------------------------------------- storage


def bucket_config() -> KeyValueConfig:
    return KeyValueConfig(
        bucket=BUCKET,
        description="silences: matchers, end, comment, author (kept RETENTION after they end)",
        history=1,
        direct=True,  # read with direct gets (shared.bus.direct), never a watch
        ttl=MAX_DURATION + RETENTION,  # a silence's last write is at most this old
        storage=StorageType.FILE,
    )


def subject(silence_id: str = ">") -> str:
    return direct.kv_subject(BUCKET, silence_id)


def _of(stored: direct.Stored) -> Silence | None:
    if stored.removed or not stored.data:
        return None
    try:
        return decode(stored.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def stored(reader: direct.Reader) -> list[Silence]:
    """Every silence in the bucket (none of those past :data:`RETENTION`)."""
    found = await reader.scan(direct.kv_stream(BUCKET), subject())
    now = datetime.now(UTC)
    return [
        s
        for msg in found
        if (s := _of(msg)) is not None and (now - s.ends()).total_seconds() < RETENTION
    ]


def ordered(silences: list[Silence], now: datetime | None = None) -> list[Silence]:
    """Active ones first, soonest to end first; then expired ones, latest ended first."""
    now = now or datetime.now(UTC)
    active = sorted((s for s in silences if s.state(now) == "active"), key=Silence.ends)
    expired = sorted((s for s in silences if s.state(now) == "expired"), key=Silence.ends)
    return active + expired[::-1]


async def one(reader: direct.Reader, silence_id: str) -> tuple[Silence, int] | None:
    """The silence and its revision, as the stream's leader has it (sees every write)."""
    found = await reader.leader_last(direct.kv_stream(BUCKET), subject(silence_id))
    if found is None or (silence := _of(found)) is None:
        return None
    return silence, found.seq


async def save(js: JetStreamContext, silence: Silence) -> None:
    kv = await js.key_value(BUCKET)
    await kv.create(silence.id, encode(silence))


async def expire(
    js: JetStreamContext, reader: direct.Reader, silence_id: str, by: str
) -> Silence | None:
    """End the silence now (kept, listed as expired); None when there is no such silence.
    One that has ended already is answered as it is."""
    kv = await js.key_value(BUCKET)
    for _ in range(5):
        found = await one(reader, silence_id)
        if found is None:
            return None
        silence, revision = found
        now = datetime.now(UTC)
        if silence.state(now) == "expired":
            return silence
        ended = msgspec.structs.replace(
            silence, ends_at=text_time(now), updated_at=text_time(now), expired_by=by
        )
        try:
            await kv.update(silence_id, encode(ended), last=revision)
        except KeyWrongLastSequenceError:  # changed meanwhile (another expiry): read it again
            _log.info("silence changed while expiring it, reading it again", id=silence_id)
            continue
        return ended
    raise SilenceError("the silence keeps changing: try again")


# --------------------------------------------------------------------------- the view


@dataclass(frozen=True, slots=True)
class _Held:
    silence: Silence
    ends: datetime


class SilenceView:
    """The silences a sink checks before each send, held in memory (see the module)."""

    def __init__(self, nc: NATS | None = None, timeout: float = 5.0) -> None:
        self._nc = nc
        self._timeout = timeout
        self._held: dict[str, _Held] = {}
        self._task: asyncio.Task[None] | None = None
        self._follow: direct.Follow | None = None
        self._reader: direct.Reader | None = None

    def take(self, silence: Silence) -> None:
        """Hold ``silence`` unless a newer write of it is held already."""
        held = self._held.get(silence.id)
        if held is None or held.silence.updated_at <= silence.updated_at:
            self._held[silence.id] = _Held(silence, silence.ends())

    def _apply(self, msg: Msg) -> None:
        silence_id = direct.kv_key(BUCKET, msg.subject)
        headers = msg.headers or {}
        if headers.get(direct.KV_OPERATION) in ("DEL", "PURGE"):
            self._held.pop(silence_id, None)
            return
        try:
            self.take(decode(msg.data))
        except (msgspec.DecodeError, msgspec.ValidationError):
            _log.warning("not a silence, ignored", key=silence_id)

    def silencing(self, reading: Reading, target: str) -> Silence | None:
        """The silence that holds this notification back from ``target`` now, or None."""
        if not self._held:
            return None
        now = datetime.now(UTC)
        for held in list(self._held.values()):
            if held.ends <= now:
                if (now - held.ends).total_seconds() > RETENTION:
                    self._held.pop(held.silence.id, None)
                continue
            if matches(held.silence.matchers, reading, target):
                return held.silence
        return None

    async def start(self) -> None:
        """Subscribe, read what is stored, then follow (a failed read is tried again)."""
        if self._nc is None:
            return
        self._follow = direct.Follow(self._nc, subject())
        self._reader = direct.Reader(self._nc, self._timeout)
        await self._follow.start()
        await self._reader.start()
        await self._resync()
        self._task = asyncio.create_task(self._run())

    async def _resync(self) -> bool:
        assert self._reader is not None
        assert self._follow is not None
        try:
            found = await stored(self._reader)
        except direct.ReadRefused as exc:
            _log.warning("cannot read the silences, will try again", error=str(exc))
            return False
        ids = {s.id for s in found}
        for gone in set(self._held) - ids:
            self._held.pop(gone, None)
        for silence in found:
            self.take(silence)
        for msg in self._follow.ready():
            self._apply(msg)
        return True

    async def _run(self) -> None:
        assert self._follow is not None
        loop = asyncio.get_running_loop()
        due = loop.time() + RESYNC
        while True:
            msg = await self._follow.next(max(0.0, due - loop.time()))
            if msg is not None:
                self._apply(msg)
            if loop.time() >= due:
                ok = await self._resync()
                due = loop.time() + (RESYNC if ok else 2.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._follow is not None:
            await self._follow.stop()
