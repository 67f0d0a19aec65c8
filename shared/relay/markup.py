"""Text for chat services: escaping their Markdown, cutting to their limits, risk bands.

Shared by the chat targets; each brings its own special characters and
colours, the algorithms live here once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

HIGH_RISK, MEDIUM_RISK = 70, 40
URL = re.compile(r"https?://[^\s<>\"]+")
BLANK = ("", " ", "\t", "\n", "\r")
"""What may follow a block marker (nothing: the end of the text)."""


def by_risk(risk: int | None, high: T, medium: T, low: T, unknown: T) -> T:
    """``high`` from 70, ``medium`` from 40, ``low`` below, ``unknown`` without a risk."""
    if risk is None:
        return unknown
    if risk >= HIGH_RISK:
        return high
    if risk >= MEDIUM_RISK:
        return medium
    return low


def cut(pieces: list[str], limit: int, measure: Callable[[str], int] = len) -> str:
    """The pieces joined; when longer than ``limit`` (by ``measure``), cut between two
    pieces (never inside an escape) and ended with an ellipsis."""
    if sum(measure(piece) for piece in pieces) <= limit:
        return "".join(pieces)
    kept: list[str] = []
    room = limit - 1  # for the ellipsis
    for piece in pieces:
        if measure(piece) > room:
            break
        kept.append(piece)
        room -= measure(piece)
    return "".join(kept).rstrip() + "…"


class MarkdownEscaper:
    """Backslash-escapes a service's Markdown: ``inline`` characters anywhere, the
    ``line_start`` ones where ``opens_block(char, next_char)`` says they would start a block
    (list, heading, quote, rule), and ``1.``-style list numbers. URLs are kept whole (an
    escape inside one would break the link)."""

    def __init__(
        self, inline: str, line_start: str, opens_block: Callable[[str, str], bool]
    ) -> None:
        self.inline = frozenset(inline)
        self.line_start = frozenset(line_start)
        self.opens_block = opens_block

    def pieces(self, text: str) -> list[str]:
        """``text`` one character at a time, each escaped where needed."""
        in_url = [False] * len(text)
        for match in URL.finditer(text):
            in_url[match.start() : match.end()] = [True] * (match.end() - match.start())
        pieces: list[str] = []
        line_start = True  # only blanks so far on this line
        numbered = False  # only digits after the blanks: "1." would start a list
        for index, char in enumerate(text):
            after = text[index + 1 : index + 2]
            special = (
                char in self.inline
                or (line_start and char in self.line_start and self.opens_block(char, after))
                or (numbered and char in ".)" and after in BLANK)
            )
            pieces.append("\\" + char if special and not in_url[index] else char)
            if char == "\n":
                line_start, numbered = True, False
            elif char in " \t\r" and line_start:
                continue
            elif char in "0123456789" and (line_start or numbered):
                line_start, numbered = False, True
            else:
                line_start = numbered = False
        return pieces

    def escape(self, text: str) -> str:
        return "".join(self.pieces(text))
