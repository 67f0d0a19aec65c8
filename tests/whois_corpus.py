"""Scoring WHOIS parsing on public corpora of real registry answers (tests/fixtures/whois/).

A corpus is ``<name>/expected.json`` + ``<name>/texts/<id>.txt`` (see the README there).
:func:`score` compares what a parser found with what the corpus expects:

- dates (``created``, ``expires``, ``updated``) by day: right when the day found (in UTC, or
  as the registry wrote it for a parser that keeps the zone) is the expected day (in UTC,
  or as written); a corpus may list several acceptable dates;
- ``registrar`` case- and punctuation-insensitively, against any acceptable name;
- ``nameservers`` as sets of lowercased host names; ``registrant_country`` case-insensitively.

Only values a corpus states are scored: a field it leaves out (``null``) counts for nothing.
The headline score is the share of right ``created``/``expires``/``registrar`` values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from dateutil import parser as dateutil_parser
from dateutil import tz

FIXTURES = Path(__file__).parent / "fixtures" / "whois"
CORPORA = ("python-whois", "likexian", "weppos", "php-whois")
HEADLINE = ("created", "expires", "registrar")
FIELDS = (*HEADLINE, "updated", "nameservers", "registrant_country")
DATES = ("created", "expires", "updated")

# Zones the corpora's expected values name (weppos' Ruby time strings).
_ZONES = {
    "WAT": tz.tzoffset("WAT", 3600),
    "EAT": tz.tzoffset("EAT", 3 * 3600),
    "PDT": tz.tzoffset("PDT", -7 * 3600),
    "GMT": tz.UTC,
    "UTC": tz.UTC,
}


@dataclass
class Sample:
    corpus: str
    id: str
    domain: str
    origin: str
    split: str
    expected: dict[str, Any]
    text: str


def load(corpus: str) -> list[Sample]:
    folder = FIXTURES / corpus
    document = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    return [
        Sample(
            corpus=corpus,
            id=entry["id"],
            domain=entry["domain"],
            origin=entry["origin"],
            split=entry["split"],
            expected=entry["expected"],
            text=(folder / "texts" / f"{entry['id']}.txt").read_text(encoding="utf-8"),
        )
        for entry in document["samples"]
    ]


def tld(domain: str) -> str:
    return domain.lower().rstrip(".").rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- comparing


def _days(value: object) -> set[date]:
    """The days a found or expected date stands for: in UTC and as written."""
    if isinstance(value, datetime):
        days = {value.date()}
        if value.tzinfo is not None and value.utcoffset() is not None:
            days.add(value.astimezone(UTC).date())
        return days
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
        except ValueError:
            try:
                parsed = dateutil_parser.parse(text, tzinfos=_ZONES)
            except (ValueError, OverflowError):
                return set()
        return _days(parsed)
    return set()


_DECORATIONS = (
    re.compile(r"\s*\[\s*tag\s*=[^\]]*\]\s*$", re.IGNORECASE),
    re.compile(r"\s+t/a\s+.*$", re.IGNORECASE),
    re.compile(r"\s*\(\s*(?:R\d+-[A-Z0-9]+|\d+|https?://[^)\s]*)\s*\)\s*$", re.IGNORECASE),
)


def _name(value: str) -> str:
    """A registrar's name compared case- and punctuation-insensitively, without the
    decorations some corpora keep and others drop: an IANA or registry id in parentheses
    ("Tucows Inc. (R11-LROR)"), Nominet's "t/a Brand [Tag = X]", a URL in parentheses."""
    for pattern in _DECORATIONS:
        value = pattern.sub("", value.strip())
    return re.sub(r"[\W_]+", "", value.casefold())


def right(field_name: str, expected: Any, found: Any) -> bool:
    if found in (None, "", []):
        return False
    if field_name in DATES:
        wanted: set[date] = set()
        for value in expected if isinstance(expected, list) else [expected]:
            wanted |= _days(value)
        return bool(wanted & _days(found))
    if field_name == "registrar":
        names = expected if isinstance(expected, list) else [expected]
        return isinstance(found, str) and _name(found) in {_name(n) for n in names}
    if field_name == "nameservers":
        got = {str(h).lower().rstrip(".") for h in found}
        return got == {h.lower().rstrip(".") for h in expected}
    if field_name == "registrant_country":
        return isinstance(found, str) and found.casefold() == str(expected).casefold()
    raise ValueError(field_name)


# --------------------------------------------------------------------------- scoring


@dataclass
class Score:
    right: int = 0
    total: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.right / self.total if self.total else 1.0

    def __str__(self) -> str:
        return f"{self.share:6.1%} ({self.right}/{self.total})"


Found = dict[str, Any]


def score(
    samples: Iterable[Sample],
    found: Callable[[Sample], Found],
    fields: tuple[str, ...] = HEADLINE,
) -> dict[str, Score]:
    """Per field and ``"headline"`` (created/expires/registrar together)."""
    scores = {name: Score() for name in (*fields, "headline")}
    for sample in samples:
        answer = found(sample)
        for name in fields:
            if name not in sample.expected:
                continue
            ok = right(name, sample.expected[name], answer.get(name))
            for key in (name, "headline") if name in HEADLINE else (name,):
                scores[key].total += 1
                scores[key].right += ok
                if not ok and key == name:
                    scores[key].misses.append(
                        f"{sample.corpus}/{sample.id} {name}: "
                        f"expected {sample.expected[name]!r}, found {answer.get(name)!r}"
                    )
    return scores


# --------------------------------------------------------------------------- asyncwhois alone


def asyncwhois_alone(sample: Sample) -> Found:
    """What asyncwhois' own parser finds in the text (its per-TLD parser for the domain's
    last label, as its client picks it), with "not found" checks off."""
    from asyncwhois.parse_tld import DomainParser

    try:
        parsed = DomainParser(ignore_not_found=True).parse(sample.text, tld(sample.domain))
    except Exception:  # a parser that breaks finds nothing
        return {}
    out: Found = {}
    for ours, theirs in (
        ("created", "created"),
        ("expires", "expires"),
        ("updated", "updated"),
        ("registrar", "registrar"),
        ("nameservers", "name_servers"),
        ("registrant_country", "registrant_country"),
    ):
        value = parsed.get(theirs)
        out[ours] = value if value not in ("", []) else None
    return out
