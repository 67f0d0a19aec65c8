"""Reads of JetStream streams and KV buckets that create nothing on the server.

A KV ``watch`` (nats-py) makes an ordered consumer that outlives ``stop()`` for its inactive
threshold (300 s), so a read path built on it fills the stream's consumer cap under polling.
Here every read is a *direct get* (ADR-31, ``$JS.API.DIRECT.GET.<stream>``): a request the
stream's servers answer from their store, one message per reply, in pages
(``{"seq", "next_by_subj", "batch", "max_bytes"}``) that end with a ``204 EOB`` status
carrying ``Nats-Num-Pending``. The stream needs ``allow_direct`` (see ``shared.bus``).

A server older than 2.11 answers a page with its first message only (no
``Nats-Num-Pending``): the reads then go on one message per request, slower but complete.

Direct gets may be answered by any replica of a clustered stream, so a read right after a
write can miss it; callers that must see their own write ask the stream leader
(:meth:`Reader.leader_last`). Live updates come from a core NATS subscription on the
stored subjects (:class:`Follow`), made before the snapshot is read: no consumer either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

API_PREFIX = "$JS.API"
PAGE = 4096
"""Messages per page of a batched read. Most pages end at :data:`PAGE_BYTES` first: the
server counts every message still matching (``Nats-Num-Pending``) once per page, which
for a wildcard over thousands of keys costs it more than sending the page (a scan of
7,800 results of 500 bytes: 280 ms of its CPU in pages of 256, 80 ms in pages of 1 MB)."""
PAGE_BYTES = 1024 * 1024
"""Bytes per page: the server ends a page once it has sent this much."""
KV_OPERATION = "KV-Operation"  # DEL or PURGE on a KV delete marker
STATUS = "Status"
DESCRIPTION = "Description"
NUM_PENDING = "Nats-Num-Pending"
SEQUENCE = "Nats-Sequence"
SUBJECT = "Nats-Subject"
UP_TO = "Nats-UpTo-Sequence"
MULTI_LAST = 1024
"""Subjects one :meth:`Reader.last_of` asks about, at most (the server's own limit)."""
IN_FLIGHT = 16
"""Direct gets one :class:`Reader` has outstanding at once; the others wait their turn.
Each brings at most a page (:data:`PAGE_BYTES`), so the server holds at most ~16 MB of
replies for the connection. Unbounded, a thousand reads asked at once passed the server's
64 MB for one connection: it dropped the connection as a slow consumer, and every read
(and publish) on it failed."""

_request = msgspec.json.Encoder()


class ReadRefused(Exception):
    """JetStream did not serve a read: the stream is missing or does not allow direct gets
    (no responder), it answered an error status, or nothing came back in time."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One message of a stream, as stored."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def removed(self) -> bool:
        """A KV delete or purge marker (the key has no value)."""
        return self.headers.get(KV_OPERATION) in ("DEL", "PURGE")


@dataclass(frozen=True, slots=True)
class Page:
    messages: list[Stored]
    pending: int | None
    """Matching messages after this page; None from a server without batched gets (then
    each request brings one message)."""


def kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def kv_key(bucket: str, subject: str) -> str:
    return subject.removeprefix(f"$KV.{bucket}.")


class Reader:
    """Direct gets over one connection: every reply comes to one wildcard inbox made once
    (a read costs one request and its replies, no subscription of its own)."""

    def __init__(self, nc: NATS, timeout: float, prefix: str = API_PREFIX) -> None:
        self._nc = nc
        self._timeout = timeout
        self._api = prefix
        self._inbox = ""
        self._waiting: dict[str, asyncio.Queue[Msg | None]] = {}
        self._tokens = itertools.count(1)
        self._sub: Subscription | None = None
        self._turns = asyncio.Semaphore(IN_FLIGHT)

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox() + "."
        # Unbounded pending limits: every read is bounded (PAGE, PAGE_BYTES) and the
        # callback only hands the reply on, so nothing piles up.
        self._sub = await self._nc.subscribe(
            self._inbox + "*", cb=self._on_reply, pending_msgs_limit=0, pending_bytes_limit=0
        )

    async def _on_reply(self, msg: Msg) -> None:
        queue = self._waiting.get(msg.subject[len(self._inbox) :])
        if queue is not None:
            queue.put_nowait(msg)

    async def _ask(self, stream: str, request: dict[str, object], batched: bool) -> list[Msg]:
        """The replies to one direct get: for a batch, up to and including its end (a status
        message, or the only message of a server without batches)."""
        if not self._inbox:
            raise ReadRefused("reader not started")
        async with self._turns:  # the timeout counts from the request, not from the wait
            return await self._ask_now(stream, request, batched)

    async def _ask_now(self, stream: str, request: dict[str, object], batched: bool) -> list[Msg]:
        token = f"{next(self._tokens):x}"
        queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._waiting[token] = queue
        timer = asyncio.get_running_loop().call_later(self._timeout, queue.put_nowait, None)
        replies: list[Msg] = []
        try:
            try:
                await self._nc.publish(
                    f"{self._api}.DIRECT.GET.{stream}",
                    _request.encode(request),
                    reply=self._inbox + token,
                )
            except nats.errors.Error as exc:
                raise ReadRefused(f"cannot ask {stream}: {exc or type(exc).__name__}") from exc
            while True:
                msg = await queue.get()
                if msg is None:
                    raise ReadRefused(f"no answer from stream {stream} in {self._timeout:g}s")
                replies.append(msg)
                headers = msg.headers or {}
                if not batched or STATUS in headers or NUM_PENDING not in headers:
                    return replies
        finally:
            timer.cancel()
            del self._waiting[token]

    def _check(self, stream: str, msg: Msg) -> str | None:
        """The status of a reply (None for a message); :class:`ReadRefused` for an error."""
        headers = msg.headers or {}
        status = headers.get(STATUS)
        if status is None or status in ("204", "404"):
            return status
        if status == "503":
            raise ReadRefused(
                f"stream {stream} does not answer direct gets (missing, or allow_direct off)"
            )
        description = headers.get(DESCRIPTION, "")
        raise ReadRefused(f"stream {stream} refused the read: {status} {description}".rstrip())

    @staticmethod
    def _stored(msg: Msg) -> Stored:
        headers = dict(msg.headers or {})
        return Stored(
            seq=int(headers.get(SEQUENCE, "0")),
            subject=headers.get(SUBJECT, ""),
            data=msg.data,
            headers=headers,
        )

    async def page(self, stream: str, subjects: str, seq: int = 1, batch: int = PAGE) -> Page:
        """Up to ``batch`` messages matching ``subjects`` (wildcards allowed) from stream
        sequence ``seq`` on, oldest first."""
        request: dict[str, object] = {
            "seq": max(1, seq),
            "next_by_subj": subjects,
            "batch": batch,
            "max_bytes": PAGE_BYTES,
        }
        found: list[Stored] = []
        pending: int | None = None
        for msg in await self._ask(stream, request, batched=True):
            status = self._check(stream, msg)
            if status == "404":
                return Page([], 0)
            headers = msg.headers or {}
            if status == "204":
                pending = int(headers.get(NUM_PENDING, "0"))
                continue
            found.append(self._stored(msg))
            if NUM_PENDING not in headers:  # a server without batched gets: one at a time
                return Page(found, None)
        return Page(found, 0 if pending is None else pending)

    async def scan(self, stream: str, subjects: str, seq: int = 1) -> list[Stored]:
        """Every message matching ``subjects`` from sequence ``seq`` on, oldest first."""
        found: list[Stored] = []
        while True:
            page = await self.page(stream, subjects, seq)
            found += page.messages
            if not page.messages or page.pending == 0:
                return found
            seq = page.messages[-1].seq + 1

    async def get(self, stream: str, seq: int) -> Stored | None:
        """The message at sequence ``seq``, or None."""
        [msg] = await self._ask(stream, {"seq": seq}, batched=False)
        return None if self._check(stream, msg) == "404" else self._stored(msg)

    async def last(self, stream: str, subject: str) -> Stored | None:
        """The newest message on ``subject`` (no wildcards), or None."""
        [msg] = await self._ask(stream, {"last_by_subj": subject}, batched=False)
        return None if self._check(stream, msg) == "404" else self._stored(msg)

    async def last_of(self, stream: str, subjects: list[str]) -> dict[str, Stored]:
        """The newest message on each of ``subjects`` (no wildcards; at most
        :data:`MULTI_LAST` of them), by subject; a subject with none is left out. One
        request (``multi_last``, nats-server 2.11+) for all of them, pages continued from
        where the last one stopped at the same snapshot (``up_to_seq``); on an older server,
        one :meth:`last` per subject."""
        if len(subjects) > MULTI_LAST:
            raise ValueError(f"at most {MULTI_LAST} subjects in one read")
        found: dict[str, Stored] = {}
        left = list(dict.fromkeys(subjects))
        up_to: int | None = None
        while left:
            request: dict[str, object] = {
                "multi_last": left,
                "batch": len(left),
                "max_bytes": PAGE_BYTES,
            }
            if up_to is not None:
                request["up_to_seq"] = up_to
            replies = await self._ask(stream, request, batched=True)
            pending = 0
            for msg in replies:
                headers = msg.headers or {}
                refused = headers.get(STATUS) not in (None, "204", "404", "503")
                if refused and up_to is None and not found:  # a server without multi_last
                    return await self._last_each(stream, left)
                status = self._check(stream, msg)
                if status == "404":
                    return found
                if status == "204":
                    pending = int(headers.get(NUM_PENDING, "0"))
                    up_to = int(headers.get(UP_TO, "0")) or up_to
                    continue
                stored = self._stored(msg)
                found[stored.subject] = stored
            if not pending:
                return found
            before = len(left)
            left = [subject for subject in left if subject not in found]
            if len(left) == before:  # no progress (one message over a page): one by one
                found.update(await self._last_each(stream, left))
                return found
        return found

    async def _last_each(self, stream: str, subjects: list[str]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        for subject in subjects:
            stored = await self.last(stream, subject)
            if stored is not None:
                found[subject] = stored
        return found

    async def leader_last(self, stream: str, subject: str) -> Stored | None:
        """As :meth:`last`, asked of the stream's leader (``STREAM.MSG.GET``): sees every
        write already acknowledged, where a replica answering a direct get may lag."""
        try:
            answer = await self._nc.request(
                f"{self._api}.STREAM.MSG.GET.{stream}",
                _request.encode({"last_by_subj": subject}),
                timeout=self._timeout,
            )
        except nats.errors.NoRespondersError as exc:
            raise ReadRefused("JetStream does not answer (is it enabled?)") from exc
        except nats.errors.Error as exc:
            raise ReadRefused(f"no answer from stream {stream}: {exc!r}") from exc
        reply = msgspec.json.decode(answer.data, type=_MsgGetReply)
        if reply.error is not None:
            if reply.error.err_code == 10037:  # no message found
                return None
            raise ReadRefused(f"stream {stream} refused the read: {reply.error.description}")
        if reply.message is None:
            return None
        return reply.message.stored()

    async def newest(self, stream: str, subject: str, limit: int) -> tuple[list[Stored], int]:
        """The newest ``limit`` messages on ``subject`` (no wildcards), newest first, and
        how many there are in all. Direct gets only read forwards, so the start is found by
        bisection on the count of messages from a sequence on (``Nats-Num-Pending`` of a
        one-message page): about log2(stream length) small requests, never one per entry."""
        first = await self.page(stream, subject, 1, batch=1)
        if not first.messages:
            return [], 0
        if first.pending is None:  # no batched gets: read them all, one by one
            every = await self.scan(stream, subject)
            return every[::-1][:limit], len(every)
        total = first.pending + 1
        low = first.messages[0].seq  # at least `limit` messages from here on
        if total > limit:
            last = await self.last(stream, subject)
            low = await self.start_of_newest(
                stream, subject, limit, low, last.seq if last is not None else low
            )
        found: list[Stored] = []
        seq = low
        while len(found) < limit:
            page = await self.page(stream, subject, seq, batch=min(PAGE, limit - len(found)))
            found += page.messages
            if not page.messages or page.pending == 0:
                break
            seq = page.messages[-1].seq + 1
        return found[::-1][:limit], total

    async def start_of_newest(
        self, stream: str, subjects: str, count: int, low: int, high: int
    ) -> int:
        """The sequence from which ``count`` messages match ``subjects`` (wildcards allowed),
        given ``low`` from which at least that many do and the stream's last sequence
        ``high``: a bisection on ``Nats-Num-Pending`` of one-message pages (about
        log2(high - low) small requests)."""
        while low < high:
            middle = (low + high + 1) // 2
            probe = await self.page(stream, subjects, middle, batch=1)
            if probe.messages and (probe.pending or 0) + 1 >= count:
                low = max(middle, probe.messages[0].seq)
            else:
                high = middle - 1
        return low

    async def probe(self, stream: str) -> None:
        """:class:`ReadRefused` unless the stream answers a direct get (a 404 will do)."""
        await self.last(stream, "_lookout.readiness-probe")


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _RawMessage(msgspec.Struct):
    subject: str
    seq: int
    data: str = ""
    hdrs: str | None = None

    def stored(self) -> Stored:
        headers: dict[str, str] = {}
        if self.hdrs:
            lines = base64.b64decode(self.hdrs).decode("utf-8", "replace").split("\r\n")
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip()] = value.strip()
        return Stored(self.seq, self.subject, base64.b64decode(self.data), headers)


class _MsgGetReply(msgspec.Struct):
    message: _RawMessage | None = None
    error: _ApiError | None = None


class Follow:
    """Messages published on ``subjects`` from now on, through a core NATS subscription (no
    consumer). Open it *before* reading what is stored, so nothing falls in between; a
    message lost in a reconnect is found again by reading the store again."""

    def __init__(self, nc: NATS, subjects: str) -> None:
        self._nc = nc
        self._subjects = subjects
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        try:
            self._sub = await self._nc.subscribe(
                self._subjects, cb=self._on_msg, pending_msgs_limit=0, pending_bytes_limit=0
            )
        except nats.errors.Error as exc:
            raise ReadRefused(f"cannot follow {self._subjects}: {exc!r}") from exc

    async def _on_msg(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    def ready(self) -> list[Msg]:
        """What has arrived and not been taken yet."""
        out: list[Msg] = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def next(self, timeout: float) -> Msg | None:
        """The next message, or None when none came within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.Error):  # gone with its connection
                await sub.unsubscribe()
