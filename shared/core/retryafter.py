"""``Retry-After``: what an HTTP service says about when to come back."""

from __future__ import annotations

import email.utils
import time

MAX_SECONDS = 86_400.0
"""The longest wait a ``Retry-After`` is taken for: a day (a daily quota resets within
one). A service that means longer says so again when asked then; ``inf`` or a date
centuries away must not stop a provider or a target for good."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP-date), at most
    :data:`MAX_SECONDS`; None for no header or one that says nothing readable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)  # delta-seconds; some services send fractions ("0.529")
    except ValueError:
        pass
    else:
        return min(seconds, MAX_SECONDS) if seconds >= 0 and seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), MAX_SECONDS)
