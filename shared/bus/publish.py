"""JetStream publishes that wait for their ack, for a hot path."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg


class PublishAck(msgspec.Struct):
    """JetStream's answer to a publish: where the message is stored, or why it is not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_publish_ack = msgspec.json.Decoder(PublishAck)


class PublishRefused(Exception):
    """JetStream answered a publish with an error, or no stream takes the subject."""


class Publisher:
    """JetStream publishes that wait for their ack, for a hot path.

    ``JetStreamContext.publish`` makes a random reply token (a system call), parses the ack
    with the stdlib ``json`` into a dataclass and waits with ``asyncio.wait_for``. Here the
    acks of every publish come to one reply subscription, made once; a publish takes a counter
    token, decodes the ack with msgspec and times out with one timer: about a third less CPU
    per publish (see BENCHMARKS.md). Only nats-py's public API is used, so a reconnect keeps
    the subscription; an ack lost on the way ends as a timeout, as with ``js.publish``.
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count(1)

    @property
    def max_payload(self) -> int:
        """The most bytes the connected server stores in one message, headers included
        (its ``max_payload``; nats-py checks only the payload, the server both)."""
        return self._nc.max_payload

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._prefix + "*", cb=self._on_ack)

    async def _on_ack(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)

    async def send(self, subject: str, payload: bytes) -> None:
        """Publish without asking JetStream for an ack: stored if a stream takes the subject,
        silently not otherwise. Only for writes whose loss costs nothing but work later (a
        cache entry); it saves the ack's round trip and its processing on both sides."""
        await self._nc.publish(subject, payload)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float
    ) -> PublishAck:
        """Publish and wait for JetStream to store it; :class:`PublishRefused` when it will
        not, ``TimeoutError`` when no ack comes within ``timeout`` seconds, and nats-py's
        errors when the message cannot be sent. ``headers`` None: a message without headers
        (as a KV put stores its value)."""
        if not self._prefix:
            raise PublishRefused("publisher not started")
        token = f"{next(self._tokens):x}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = future
        timer = loop.call_later(timeout, _expire, future, timeout)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            msg = await future
        finally:
            timer.cancel()
            del self._waiting[token]
        if not msg.data:  # a status message: 503 when no stream takes the subject
            status = (msg.headers or {}).get("Status", "")
            raise PublishRefused(f"no stream took {subject} (status {status or 'unknown'})")
        ack = _publish_ack.decode(msg.data)
        if ack.error is not None:
            raise PublishRefused(str(ack.error.get("description") or ack.error))
        return ack


def _expire(future: asyncio.Future[Msg], timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"no ack from JetStream within {timeout:g}s"))
