"""The JSON a notification carries: what the gateway accepts, and how a sink reads it back.

The gateway passes each message on byte for byte (``Notification.data``), so whatever it
accepts every sink must be able to read. It accepts a body (:func:`check`) when it is JSON
in UTF-8 nested at most :data:`MAX_DEPTH` levels deep: a reader that recurses (msgspec, the
stdlib's ``json``, ``repr``, the log redaction) then stays far below Python's recursion
limit wherever it runs, instead of failing in one process and not another.

JSON puts no bound on numbers, Python's readers do: msgspec refuses ``1e999`` and integers
of more than 4,300 digits. :func:`load` reads them all: such a number comes back as its
JSON text (a ``str``), every other value as msgspec gives it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

MAX_DEPTH = 128
"""The deepest nesting of arrays and objects accepted in a body, the body's own level
included (``[{"a": []}]`` is 3 deep)."""


class JsonError(ValueError):
    """Not what lookout accepts (the message is the reason, for a 400)."""


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects in ``body`` nest more than ``limit`` levels deep.

    Exact for well-formed JSON; for malformed JSON it may say no (the decoder then names
    the fault). Costs two counting passes when the body holds at most ``limit`` brackets,
    as almost every real message does; else the strings are cut out and innermost bracket
    pairs removed a level at a time (at most ``limit`` passes over the brackets alone)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(_OPEN_CLOSE, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        shorter = brackets.replace(b"()", b"")
        if len(shorter) == len(brackets):  # unbalanced: malformed, the decoder says so
            return False
        brackets = shorter
    return b"()" in brackets


def depth_reason(limit: int = MAX_DEPTH) -> str:
    return f"JSON nested more than {limit} levels deep"


def check(body: bytes) -> None:
    """Raise :class:`JsonError` unless ``body`` is UTF-8 and nested at most
    :data:`MAX_DEPTH` levels deep (whether it is well-formed JSON is the decoder's to say)."""
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"body is not UTF-8 (byte {exc.start})") from None
    if too_deep(body):
        raise JsonError(depth_reason())


def _float(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def _int(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        return text


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


_decoder = msgspec.json.Decoder()


def load(data: bytes | msgspec.Raw) -> Any:
    """``data`` (a notification's JSON) as Python values; a number no Python float or int
    holds comes back as its JSON text. :class:`JsonError` when it is not JSON that
    :func:`check` accepts (only a publisher that bypassed the gateway can send that)."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError:  # a number out of range: read it the slow way
        pass
    except msgspec.DecodeError as exc:
        raise JsonError(str(exc)) from None
    except RecursionError:
        raise JsonError(depth_reason()) from None
    try:
        return json.loads(bytes(data), parse_float=_float, parse_int=_int, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:
        raise JsonError(str(exc) or type(exc).__name__) from None
