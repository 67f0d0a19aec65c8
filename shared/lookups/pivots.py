"""Pivots: the values in a provider's answer worth looking up next (a domain's addresses and
name servers, an address's host names, a URL's host…), as the provider declares them.

A provider declares its :class:`PivotRule` s in its ``ProviderSpec`` (``pivots``); the
provider runner finds them in each answer's ``data`` (:func:`find`) and stores them on the
result (``LookupResult.pivots``), so neither the gateway nor the web UI needs any provider's
code to offer them. A pivot is an indicator as on input (refanged, normalised, its kind
found by the same parser), never the indicator looked up itself, and a result holds at most
:data:`MAX_PIVOTS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from shared.lookups import indicators
from shared.lookups.schemas import Pivot

MAX_PIVOTS = 50
"""The most pivots one result holds (the first found, in the order of the rules)."""
MAX_VALUE = 2048
"""A longer value is not offered as a pivot."""

Take = Literal["value", "host", "last"]
"""What of a value is the pivot: the value itself; its host (an e-mail's domain, a URL's
host); its last word (an MX record's ``10 mx.example.com``)."""
TAKES: tuple[str, ...] = get_args(Take)


@dataclass(frozen=True)
class PivotRule:
    """Where a provider's ``data`` holds values worth looking up next."""

    path: str
    """Keys separated by dots (``records.MX``); a list at any step is walked item by item."""
    why: str
    """What the value is to the indicator, shown with it (``MX record``, ``name server``)."""
    take: Take = "value"


def check(name: str, rules: tuple[PivotRule, ...]) -> None:
    """Refuse a declaration :func:`find` could not follow (:class:`ValueError`)."""
    for rule in rules:
        if not rule.path or not rule.why:
            raise ValueError(f"provider {name}: a pivot rule needs a path and a why")
        if rule.take not in TAKES:
            raise ValueError(
                f"provider {name}: pivot {rule.path!r} takes {rule.take!r} "
                f"(one of: {', '.join(TAKES)})"
            )


def _walk(node: Any, keys: list[str]) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, keys)
        return
    if not keys:
        if isinstance(node, str):
            yield node
        return
    if isinstance(node, dict):
        yield from _walk(node.get(keys[0]), keys[1:])


def _indicator(text: str) -> indicators.Indicator | None:
    parsed = indicators.parse_items([text])
    if parsed.rejected or len(parsed.indicators) != 1:
        return None
    return parsed.indicators[0]


def _pivot(text: str, take: Take) -> indicators.Indicator | None:
    text = text.strip()
    if take == "last":
        words = text.split()
        text = words[-1] if words else ""
    text = text.rstrip(".")
    if not text or len(text) > MAX_VALUE:
        return None
    found = _indicator(text)
    if found is None or take != "host":
        return found
    if found.host is None or found.host == found.value:
        return found if found.kind in ("domain", "ipv4", "ipv6") else None
    return _indicator(found.host)


def find(rules: tuple[PivotRule, ...], kind: str, value: str, data: dict[str, Any]) -> list[Pivot]:
    """The pivots ``rules`` find in ``data``, the answer about ``value`` (of ``kind``):
    each once, never ``value`` itself, at most :data:`MAX_PIVOTS`."""
    found: list[Pivot] = []
    seen = {(kind, value)}
    for rule in rules:
        for text in _walk(data, rule.path.split(".")):
            item = _pivot(text, rule.take)
            if item is None or (item.kind, item.value) in seen:
                continue
            seen.add((item.kind, item.value))
            found.append(Pivot(value=item.value, kind=item.kind, why=rule.why))
            if len(found) >= MAX_PIVOTS:
                return found
    return found
