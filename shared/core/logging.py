"""Structured JSON logging (structlog) that never prints a secret.

Two guards: every secret value read by :mod:`shared.core.settings` is registered here and replaced
by ``[REDACTED]`` wherever it appears in a log line, and values under keys that name a
secret (``secret``, ``token``, ``password``, ``authorization``…) are replaced whatever
they hold.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(r"secret|token|password|passwd|authorization|api_key|apikey", re.I)
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None  # every secret: the rendered line's last scrub
_value_pattern: re.Pattern[str] | None = None  # those JSON would not write as they are
_min_level = logging.NOTSET  # structlog's default configuration filters nothing
_service: str | None = None  # the process's service, for library lines (see _StdlibJson)


def register_secret(value: str) -> None:
    """Never log ``value`` (nor any string containing it)."""
    global _pattern, _value_pattern
    if len(value) < 4 or value in _secrets:
        return
    _secrets.add(value)
    _pattern = _alternatives(_secrets)
    _value_pattern = _alternatives({s for s in _secrets if not _json_verbatim(s)})


def _alternatives(secrets: set[str]) -> re.Pattern[str] | None:
    ordered = sorted(secrets, key=len, reverse=True)  # the longest first
    return re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


def _json_verbatim(secret: str) -> bool:
    """Whether JSON writes ``secret`` inside a string as it is: then the rendered line's
    scrub (:func:`_scrub_rendered`) finds it, and a text value need not be scrubbed apart
    (a ``str.sub`` per value was a third of a line's cost). Not so for one JSON escapes
    (non-ASCII, control characters, quotes, backslashes): values are scrubbed for those."""
    return secret.isascii() and secret.isprintable() and '"' not in secret and "\\" not in secret


_PLAIN = frozenset({int, float, bool, type(None)})
"""Types that hold no text: nothing to scrub (checked by exact type, first, because nearly
every value logged is one of these or a ``str``)."""


def _scrub(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return _value_pattern.sub(REDACTED, value) if _value_pattern is not None else value
    if kind in _PLAIN:
        return value
    if isinstance(value, str):
        return _value_pattern.sub(REDACTED, value) if _value_pattern is not None else value
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return _scrub(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, BaseException):
        return _scrub(f"{type(value).__name__}: {value}")
    return value


@functools.lru_cache(maxsize=4096)
def _names_secret(key: str) -> bool:
    """Whether a log line's key names a secret (asked once per key: there are few)."""
    return _SECRET_KEY.search(key) is not None


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = REDACTED if _names_secret(key) else _scrub(value)
    return event_dict


def _scrub_rendered(_logger: Any, _method: str, line: Any) -> Any:
    # Last line of defence, after rendering (covers formatted tracebacks too).
    return _pattern.sub(REDACTED, line) if _pattern is not None else line


def _fallback(value: Any) -> Any:
    """What JSON cannot hold, as structlog's JSONRenderer writes it: its ``__structlog__()``,
    else its ``repr``."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


_encoder = json.JSONEncoder(default=_fallback)


def _render(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    """The line as ``json.dumps`` writes it (structlog's JSONRenderer), with one encoder made
    once instead of one per line."""
    return _encoder.encode(event_dict)


class _CurrentStdout(io.TextIOBase):
    """Whatever ``sys.stdout`` is now: cached loggers never hold on to a replaced stream.
    Each ``write`` is one write of the stream (a line is never split here)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def setup(service: str, level: str = "info") -> None:
    """Configure structlog (and stdlib logging) to write one JSON object per line."""
    global _min_level
    numeric = _min_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            _render,
            _scrub_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write() of the whole line, newline included (PrintLogger writes the newline
        # apart): the services of `lookout run` share one stdout, and with PYTHONUNBUFFERED
        # each write is a system call, so a line cut in two took another's line inside it.
        logger_factory=structlog.WriteLoggerFactory(cast(TextIO, _CurrentStdout())),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    global _service
    _service = service
    # Libraries (aiohttp, nats) log through stdlib: route them to the same JSON stream.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_StdlibJson())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientsFault) for f in server.filters):
        server.addFilter(_ClientsFault())


class _ClientsFault(logging.Filter):
    """aiohttp's server logs a request it could not parse (an over-long line, a malformed
    header: it answers 400) at error level with its traceback. That is the client's fault,
    not the service's, and anyone can send it: one warning line with the reason, no
    traceback, so that a service's error lines stay its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            record.msg = f"{record.getMessage()}: HTTP {exc.code}, {exc.message}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class _StdlibJson(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: MutableMapping[str, Any] = {
            "event": record.getMessage(),
            "service": _service,
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        redact(None, "", event)
        line = _render(None, "", event)
        return str(_scrub_rendered(None, "", line))


def enabled(level: int) -> bool:
    """Whether a line at ``level`` (``logging.INFO``…) is written: a hot path asks first
    instead of paying for a call that is filtered out."""
    return level >= _min_level


def get(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    """A bound structlog logger."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
