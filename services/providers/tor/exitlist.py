"""The Tor Project's exit lists, read.

Two formats (tests/fixtures/tor):

* TorDNSEL, ``https://check.torproject.org/exit-addresses``: records of ``ExitNode
  <fingerprint>``, ``Published``, ``LastStatus`` and one or more ``ExitAddress <ip>
  <YYYY-MM-DD HH:MM:SS>`` (UTC; when the address was last seen exiting). CollecTor's copies
  start with ``@type tordnsel 1.0`` and ``Downloaded <time>``.
* the bulk list, ``https://check.torproject.org/torbulkexitlist``: one address per line,
  membership only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime


class NotAnExitList(ValueError):
    """The body is neither format (an HTML error page, an empty answer…)."""


@dataclass
class ExitList:
    exits: dict[str, str | None] = field(default_factory=dict)
    """Address (as Python writes it) → when last seen exiting (ISO 8601 UTC), if known."""
    published: str | None = None
    """When the list was made (``Downloaded``, else its latest ``LastStatus`` or
    ``ExitAddress`` time), if known."""
    format: str = "exit-addresses"


def _iso(date: str, time: str) -> str | None:
    try:
        when = datetime.strptime(f"{date} {time}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def parse(text: str) -> ExitList:
    """The exits of ``text`` in either format; :class:`NotAnExitList` when there is none."""
    lines = [line.strip() for line in text.splitlines()]
    keywords = {line.split(" ", 1)[0] for line in lines if line}
    out = ExitList()
    if "ExitAddress" in keywords or "ExitNode" in keywords:
        latest: str | None = None
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "ExitAddress":
                address, seen = _address(parts[1]), _iso(parts[2], parts[3])
                if address is not None:
                    before = out.exits.get(address)
                    out.exits[address] = max(filter(None, (before, seen)), default=None)
                    latest = max(filter(None, (latest, seen)), default=None)
            elif len(parts) == 3 and parts[0] == "LastStatus":
                latest = max(filter(None, (latest, _iso(parts[1], parts[2]))), default=None)
            elif len(parts) == 3 and parts[0] == "Downloaded":
                out.published = _iso(parts[1], parts[2])
        out.published = out.published or latest
    else:
        out.format = "bulk"
        for line in lines:
            if not line or line.startswith("#"):
                continue
            address = _address(line)
            if address is None:
                raise NotAnExitList(f"not an exit list: line {line[:60]!r}")
            out.exits[address] = None
    if not out.exits:
        raise NotAnExitList("not an exit list: no exit address in it")
    return out
