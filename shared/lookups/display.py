"""How a provider's results look in the web UI, as the provider declares it (:class:`Details`
and its link templates, both part of its ``ProviderSpec``).

The web UI has one renderer for every provider (``services/gateway/static/render.js``): it
reads this declaration from ``GET /api/v1/providers`` and lays out a result's ``data`` as
titled sections of labelled fields, each written in one of a few :data:`Format` s. A
provider whose data needs more (a tree, say) keeps a custom renderer in render.js, which
takes precedence; one that declares nothing gets its data's top-level keys as one section.

Paths name a value in a result's ``data``: keys separated by dots (``stats.total``); the
empty path is the data itself. Templates write a value: ``{}`` is the value itself and
``{key}`` one of its keys (a path) when it is an object, e.g. the items of a list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Format = Literal[
    "text",
    "mono",
    "record",
    "list",
    "date",
    "time",
    "count",
    "link",
    "badge",
    "flag",
    "score",
    "counts",
    "groups",
]
"""How a field's value is written:

- ``text``: as text (a list joined with commas, a mapping as ``key: value`` pairs, a
  boolean as yes or no);
- ``mono``: as text, in a fixed-width font (addresses, handles);
- ``record``: a raw record (a DNS TXT string…), wrapped in its own box;
- ``list``: one line per item (a mapping: one ``key: value`` line per key);
- ``date``: the day (``YYYY-MM-DD``) of an ISO 8601 time or of epoch seconds;
- ``time``: an ISO 8601 time or epoch seconds, in the reader's local time;
- ``count``: a number, zero included;
- ``link``: an ``http(s)`` URL as a link (anything else as text);
- ``badge``: a chip, coloured when the value is a verdict;
- ``flag``: "yes" when true, left out otherwise;
- ``score``: a number from 0 to 100, as a meter and ``N / 100``;
- ``counts``: a mapping of names to numbers, as chips (a verdict's coloured when not 0);
- ``groups``: a mapping of names to lists: each name with its count, its values one a line.
"""

FORMATS: tuple[str, ...] = get_args(Format)
LINK_PLACEHOLDERS = frozenset({"value", "host"})
"""What a link template may name: the indicator as it was looked up, and its host (the
domain itself, a URL's host, an e-mail's domain, an address itself)."""
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Field:
    """One labelled value of a result's ``data``."""

    label: str
    """Its label (empty: the value alone, under the section's title)."""
    path: str
    format: Format = "text"
    template: str = ""
    """How the value (each item, for ``list``) is written; empty: the value itself."""
    missing: str = ""
    """What to show when the value is absent or empty (empty: leave the field out)."""


@dataclass(frozen=True)
class DetailSection:
    """A titled group of fields, left out when none of them has a value."""

    title: str
    fields: tuple[Field, ...]
    when: str = ""
    """Shown only when the data has a value at this path (empty: whenever it has one)."""


@dataclass(frozen=True)
class Note:
    """A sentence shown above the sections when the data says so."""

    when: str
    """The path looked at."""
    text: str
    """What is shown; ``{}`` is the value at ``when``, ``{key}`` another value of the data."""
    equals: str | int | bool | None = None
    """Shown when the value equals this; ``None``: whenever it is present and not empty."""


@dataclass(frozen=True)
class Details:
    """How a provider's results are laid out in the web UI's detail panel."""

    sections: tuple[DetailSection, ...] = ()
    notes: tuple[Note, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "sections": [
                {
                    "title": s.title,
                    "when": s.when,
                    "fields": [
                        {
                            "label": f.label,
                            "path": f.path,
                            "format": f.format,
                            "template": f.template,
                            "missing": f.missing,
                        }
                        for f in s.fields
                    ],
                }
                for s in self.sections
            ],
            "notes": [{"when": n.when, "text": n.text, "equals": n.equals} for n in self.notes],
        }


def check(name: str, details: Details, links: Mapping[str, str], kinds: frozenset[str]) -> None:
    """Refuse a declaration the web UI could not follow (:class:`ValueError` naming the
    provider ``name`` and what is wrong)."""
    for section in details.sections:
        for each in section.fields:
            if each.format not in FORMATS:
                raise ValueError(
                    f"provider {name}: field {each.label!r} has format {each.format!r} "
                    f"(one of: {', '.join(FORMATS)})"
                )
    for kind, template in links.items():
        if kind not in kinds:
            raise ValueError(f"provider {name}: a link for {kind!r}, a kind it does not answer")
        if not template.startswith("https://"):
            raise ValueError(f"provider {name}: the {kind} link must start with https://")
        unknown = set(_PLACEHOLDER.findall(template)) - LINK_PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"provider {name}: the {kind} link names {sorted(unknown)} "
                f"(it may name {{value}} and {{host}})"
            )
