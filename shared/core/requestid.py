"""Request ids: one per HTTP request (or ``lookout lookup`` run) that makes lookout publish.

The gateway keeps a sane ``X-Request-Id`` the client sent, else makes one; it answers it in
``X-Request-Id``, sends it in the ``Lookout-Request-Id`` NATS header
(:data:`shared.bus.messages.REQUEST_ID_HEADER`) of every message the request publishes, and the
services that handle those messages (sinks, providers) bind it to their log lines.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping

HTTP_HEADER = "X-Request-Id"
MAX_LENGTH = 128

_PREFIX = os.urandom(8).hex()  # unique per process; a counter makes it unique per request
_counter = itertools.count(1)


def new() -> str:
    """A fresh request id, unique across processes (random prefix) and requests (counter)."""
    return f"{_PREFIX}{next(_counter):x}"


def from_headers(headers: Mapping[str, str]) -> str:
    """The client's ``X-Request-Id`` when it is sane (1 to 128 printable ASCII characters,
    so it is safe in a NATS header and a log line), else a new id."""
    given = headers.get(HTTP_HEADER, "")
    if given and len(given) <= MAX_LENGTH and given.isascii() and given.isprintable():
        return given
    return new()
