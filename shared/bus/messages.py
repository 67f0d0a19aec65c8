"""What every message on the bus carries, whatever its domain: the ``Lookout-Schema`` and
``Lookout-Request-Id`` headers, bounded text fields, JSON encoding, UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec

SCHEMA_HEADER = "Lookout-Schema"
REQUEST_ID_HEADER = "Lookout-Request-Id"
MAX_TEXT = 256
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]

_encoder = msgspec.json.Encoder()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(value: msgspec.Struct) -> bytes:
    return _encoder.encode(value)
