"""What ``POST /api/v1/lookups`` reads: its JSON body (:class:`LookupInput`) and a file
upload (multipart), read line by line and never held whole in memory."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from services.gateway import hardening
from shared.lookups import indicators

# What aiohttp's multipart reader raises on a malformed body (bad part headers, no or bad
# boundary, unknown charset or transfer encoding): the client's fault, a 400.
MALFORMED_MULTIPART = (BadHttpMessage, LookupError, RuntimeError, ValueError)


class LookupInput(msgspec.Struct, forbid_unknown_fields=True):
    indicators: list[Any] | None = None  # an item that is no string: rejected alone
    text: str | None = None
    providers: list[str] = []
    fresh: bool = False
    expand: bool = False


OPTION_MAX_BYTES = 4096
"""Largest ``providers`` or ``fresh`` form field of an upload."""


async def _option_text(part: BodyPartReader) -> str:
    """A small form field's text; 400 past :data:`OPTION_MAX_BYTES` (the file part has its
    own cap, and a field must not make the gateway hold an unbounded body)."""
    data = b""
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > OPTION_MAX_BYTES:
            raise web.HTTPBadRequest(
                reason=f"form field {part.name!r} longer than {OPTION_MAX_BYTES} bytes"
            )
    return data.decode(part.get_charset("utf-8"), "replace")


async def read_multipart(request: web.Request, limit: int) -> tuple[indicators.Parsed, LookupInput]:
    """A file upload (text or CSV) read line by line, never held whole in memory."""
    hardening.refuse_encoded(request)
    reader = await request.multipart()
    options = LookupInput()
    parsed: indicators.Parsed | None = None
    seen = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name in ("file", "text") or part.filename:
            lines: list[str] = []
            first = 1  # the number of lines[0] in the file
            pending = b""
            chunks: list[indicators.Parsed] = []
            while chunk := await part.read_chunk(64 * 1024):
                seen += len(chunk)
                if seen > limit:
                    raise hardening.body_too_large(limit)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                lines.extend(line.decode("utf-8", "replace") for line in complete)
                if len(lines) > 4096:
                    chunks.append(indicators.extract_text(lines, first))
                    first += len(lines)
                    lines = []
            lines.append(pending.decode("utf-8", "replace"))
            chunks.append(indicators.extract_text(lines, first))
            parsed = _merge([*(([parsed]) if parsed else []), *chunks])
        elif part.name == "providers":
            text = (await _option_text(part)).strip()
            options = msgspec.structs.replace(
                options, providers=[p.strip() for p in text.split(",") if p.strip()]
            )
        elif part.name in ("fresh", "expand"):
            on = (await _option_text(part)).strip().lower() in ("1", "true", "on", "yes")
            options = msgspec.structs.replace(options, **{part.name: on})
    if parsed is None:
        raise web.HTTPBadRequest(reason="multipart upload needs a 'file' part")
    return parsed, options


def _merge(parts: list[indicators.Parsed]) -> indicators.Parsed:
    seen: set[tuple[str, str]] = set()
    found: list[indicators.Indicator] = []
    rejected: list[indicators.Rejected] = []
    for part in parts:
        for item in part.indicators:
            if (item.kind, item.value) not in seen:
                seen.add((item.kind, item.value))
                found.append(item)
        rejected.extend(part.rejected)
    return indicators.Parsed(indicators=found, rejected=rejected)
