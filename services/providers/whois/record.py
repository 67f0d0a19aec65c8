"""What the ``whois`` provider finds, whichever protocol answered, and the errors it uses.

RDAP (RFC 9083) and WHOIS text (RFC 3912) are both read into a :class:`DomainRecord` (a
registered name) or a :class:`NetworkRecord` (the network holding an IP address).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class NotRegistered(Exception):
    """The registry answered that it holds no such object (RDAP 404, WHOIS "No match")."""


class Unavailable(Exception):
    """The upstream could not be asked or gave no usable answer; the message says why."""


@dataclass
class DomainRecord:
    domain: str
    registrar: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    expires: datetime | None = None
    registrant_country: str | None = None
    nameservers: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    abuse_email: str | None = None

    def fill_from(self, other: DomainRecord) -> None:
        """Complete missing fields from ``other`` (a registrar's answer after the registry's)."""
        for name in ("registrar", "created", "updated", "expires", "registrant_country"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        if self.abuse_email is None:
            self.abuse_email = other.abuse_email
        if not self.nameservers:
            self.nameservers = list(other.nameservers)
        if not self.status:
            self.status = list(other.status)

    def data(self, now: datetime) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "registrar": self.registrar,
            "created": iso(self.created),
            "updated": iso(self.updated),
            "expires": iso(self.expires),
            "age_days": self.age_days(now),
            "registrant_country": self.registrant_country,
            "nameservers": self.nameservers,
            "status": self.status,
            "abuse_email": self.abuse_email,
        }

    def age_days(self, now: datetime) -> int | None:
        if self.created is None:
            return None
        return max(0, (now - self.created).days)


@dataclass
class NetworkRecord:
    address: str
    name: str | None = None
    handle: str | None = None
    start_address: str | None = None
    end_address: str | None = None
    cidrs: list[str] = field(default_factory=list)
    country: str | None = None
    asn: int | None = None
    organization: str | None = None
    abuse_email: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    status: list[str] = field(default_factory=list)

    def complete_range(self) -> None:
        """Derive CIDRs from the range or the range from the CIDRs, whichever is missing."""
        if not self.cidrs and self.start_address and self.end_address:
            self.cidrs = range_cidrs(self.start_address, self.end_address)
        if self.cidrs and not (self.start_address and self.end_address):
            try:
                networks = [ipaddress.ip_network(c, strict=False) for c in self.cidrs]
            except ValueError:
                return
            self.start_address = str(min(n.network_address for n in networks))
            self.end_address = str(max(n.broadcast_address for n in networks))

    def data(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "network": self.name,
            "handle": self.handle,
            "start_address": self.start_address,
            "end_address": self.end_address,
            "cidrs": self.cidrs,
            "country": self.country,
            "asn": self.asn,
            "organization": self.organization,
            "abuse_email": self.abuse_email,
            "created": iso(self.created),
            "updated": iso(self.updated),
            "status": self.status,
        }


def range_cidrs(start: str, end: str) -> list[str]:
    try:
        first, last = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
        return [str(n) for n in ipaddress.summarize_address_range(first, last)]
    except (ValueError, TypeError):  # not addresses, mixed versions, start after end
        return []


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- dates

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_NAMED_TZ = {"utc": "+00:00", "gmt": "+00:00", "z": "+00:00", "jst": "+09:00", "kst": "+09:00"}
_DMY_NAMED = re.compile(r"^(\d{1,2})[- ./]([a-z]{3})[a-z]*[- ./,]+(\d{4})\b(.*)$")
_YMD_NAMED = re.compile(r"^(\d{4})[- ./]([a-z]{3})[a-z]*[- ./](\d{1,2})\b(.*)$")
_DMY_NUMERIC = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})\b(.*)$")
_YMD_LOOSE = re.compile(r"^(\d{4})[./](\d{1,2})[./](\d{1,2})\.?(.*)$")
_YMD_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:\s.*)?$")
_TIME = re.compile(r"^[ t]?(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?\s*(.*)$")
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})?$")


def parse_date(text: str | None) -> datetime | None:
    """An RFC 3339 / ISO 8601 date, or one of the usual WHOIS spellings, as an aware UTC
    datetime (a date without a zone is taken as UTC); None when unreadable."""
    if not text:
        return None
    raw = re.sub(r"\s+", " ", text.strip().lower())
    raw = re.sub(r"\s*\(([a-z]{2,5}|[+-]\d{2}:?\d{2})\)$", r" \1", raw)  # "… (JST)"
    raw = re.sub(r"\s*\[[a-z]{2,5}\]$", "", raw)  # "2007-01-26T19:10:31Z[UTC]"
    if not raw:
        return None
    value: datetime | None
    try:
        value = datetime.fromisoformat(raw.upper().replace(" UTC", "Z").replace(" GMT", "Z"))
    except ValueError:
        value = _parse_loose(raw)
    if value is None or not 1900 <= value.year <= 9999:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _parse_loose(raw: str) -> datetime | None:
    year = month = day = 0
    rest = ""
    if m := _DMY_NAMED.match(raw):
        day, month, year, rest = int(m[1]), _MONTHS.get(m[2], 0), int(m[3]), m[4]
    elif m := _YMD_NAMED.match(raw):
        year, month, day, rest = int(m[1]), _MONTHS.get(m[2], 0), int(m[3]), m[4]
    elif m := _YMD_LOOSE.match(raw):
        year, month, day, rest = int(m[1]), int(m[2]), int(m[3]), m[4]
    elif m := _DMY_NUMERIC.match(raw):
        day, month, year, rest = int(m[1]), int(m[2]), int(m[3]), m[4]
    elif m := _YMD_COMPACT.match(raw):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    else:
        return None
    hour = minute = second = 0
    zone = ""
    rest = rest.strip()
    if t := _TIME.match(rest):
        hour, minute, second = int(t[1]), int(t[2]), int(t[3] or 0)
        zone = t[4].strip()
    iso_zone = _NAMED_TZ.get(zone, zone)
    try:
        value = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    if o := _OFFSET.match(iso_zone):
        try:
            return datetime.fromisoformat(f"{value.isoformat()}{o[1]}{o[2]}:{o[3] or '00'}")
        except ValueError:
            return value
    return value
