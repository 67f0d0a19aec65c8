"""The NATS connection: unlimited reconnects, a bounded first wait, credentials never shown."""

from __future__ import annotations

import asyncio
import contextlib
import time

from nats.aio.client import Client as NATS

from shared.core import logging as log
from shared.core.natsurl import safe_url

_log = log.get("bus")


class BusUnavailable(Exception):
    pass


class Client(NATS):
    """nats-py's client with a cheaper parse of message headers, the same result.

    nats-py 2.16 checks each header name for whitespace with a generator over its
    characters: for a JetStream direct get, whose every reply carries half a dozen
    ``Nats-*`` headers, that check was 40 % of the CPU a read of a job's results took
    (7,800 messages, see BENCHMARKS.md). Here the names are checked with one
    ``str.split`` each; what comes out is what nats-py's own parse gives, byte for byte
    (tests/unit/test_bus_headers.py compares the two)."""

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue  # an empty line, or no colon
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if key and key.split() != [key]:
                continue  # whitespace inside the name (str.isspace's, as nats-py)
            out[key] = value.strip().decode("utf-8", "replace")
        return out


async def connect(url: str, name: str, *, wait: float | None = None) -> NATS:
    """Connect with unlimited reconnects. nats-py keeps retrying the first connection
    too; we log while it waits and give up after ``wait`` seconds (never when ``None``)."""
    client: list[NATS] = []
    last_note = 0.0

    async def on_error(exc: Exception) -> None:
        nonlocal last_note
        if client:
            _log.warning("nats error", error=str(exc) or type(exc).__name__)
        elif time.monotonic() - last_note > 5:
            last_note = time.monotonic()
            _log.info("waiting for nats", url=safe_url(url), error=str(exc) or type(exc).__name__)

    async def on_disconnected() -> None:
        if client and (client[0].is_closed or client[0].is_draining):
            return  # our own close, not an outage
        _log.warning("nats disconnected")

    async def on_reconnected() -> None:
        _log.info("nats reconnected")

    nc = Client()
    connecting = nc.connect(
        servers=[s.strip() for s in url.split(",")],
        name=name,
        connect_timeout=2,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds; nats-py says int
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        ping_interval=10,
        max_outstanding_pings=3,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    # nats-py's connect loop can lose a cancellation (asyncio.wait_for of Python 3.11 drops
    # one that meets a finished connection attempt, and the loop then tries again for
    # ever): it runs as its own task, and giving up cancels that task until it has ended.
    attempt = asyncio.ensure_future(connecting)
    try:
        shielded = asyncio.shield(attempt)
        await (shielded if wait is None else asyncio.wait_for(shielded, wait))
    except BaseException as exc:
        await _end(attempt, nc)
        if isinstance(exc, TimeoutError):
            raise BusUnavailable(f"cannot reach NATS at {safe_url(url)} within {wait:g}s") from None
        raise
    client.append(nc)
    return nc


async def _end(attempt: asyncio.Future[None], nc: NATS) -> None:
    """Cancel a connection attempt until it has ended; close the connection it made if it
    made one meanwhile."""
    while not attempt.done():
        attempt.cancel()
        await asyncio.wait({attempt}, timeout=0.1)
    if not attempt.cancelled() and attempt.exception() is None:
        with contextlib.suppress(Exception):
            await nc.close()
