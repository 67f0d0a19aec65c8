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


_REGISTRAR_NOISE = (
    re.compile(r"\s*\[\s*tag\s*=[^\]]*\]\s*$", re.IGNORECASE),  # Nominet "[Tag = X]"
    re.compile(r"\s+t/a\s+.*$", re.IGNORECASE),  # "Ltd t/a Brand": the registrar is Ltd
    # An IANA/registry id or a URL in parentheses: "(R22-LRMS)", "(292)", "(http://…)"
    re.compile(
        r"\s*\(\s*(?:R\d+-[A-Z0-9]+|\d+|IANA(?: ID)?:?\s*\d+|https?://[^)\s]*)\s*\)\s*$",
        re.IGNORECASE,
    ),
    re.compile(r"\s+https?://\S+$", re.IGNORECASE),
)
_NOT_A_REGISTRAR = re.compile(
    r"^(?:no registrar|not (?:available|disclosed|applicable)|n/?a$|none$|redacted|-+$)",
    re.IGNORECASE,
)


def registrar_name(value: str) -> str | None:
    """A registrar's name without the decorations registries add (IANA or registry ids,
    Nominet's ``[Tag = …]``, a URL); None for "no registrar listed" and the like."""
    name = value.strip()
    for pattern in _REGISTRAR_NOISE:
        name = pattern.sub("", name).strip()
    if not name or _NOT_A_REGISTRAR.match(name) or name.lower().startswith(("http:", "https:")):
        return None
    return name


def hostname(value: str) -> str | None:
    """The host name a name-server value starts with ("ns1.example.net. [192.0.2.1]")."""
    host = value.split()[0].lower().rstrip(".") if value.split() else ""
    return host if "." in host and not host.startswith(("http:", "https:")) else None


def normal_address(value: str) -> str:
    """An IP address as Python writes it, from the spellings registries use: ARIN's
    zero-padded IPv4 (``074.125.000.000`` → ``74.125.0.0``), uncompressed or uppercase IPv6
    (``2001:4860:0000:…:FFFF`` → ``2001:4860::…``), a ``/length`` some RIPE answers append
    to a range's ends (``62.239.237.0/32``). Anything that is not an address comes back as
    given."""
    text = value.strip()
    bare = text.split("/", 1)[0].strip()
    parts = bare.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        bare = ".".join(str(int(p)) for p in parts)
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return text


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
# Zone abbreviations WHOIS servers write after a time (only unambiguous ones).
_NAMED_TZ = {
    "utc": "+00:00",
    "gmt": "+00:00",
    "z": "+00:00",
    "ut": "+00:00",
    "wet": "+00:00",
    "west": "+01:00",
    "bst": "+01:00",
    "cet": "+01:00",
    "cest": "+02:00",
    "met": "+01:00",
    "mest": "+02:00",
    "eet": "+02:00",
    "eest": "+03:00",
    "msk": "+03:00",
    "wat": "+01:00",
    "cat": "+02:00",
    "sast": "+02:00",
    "eat": "+03:00",
    "ict": "+07:00",
    "wib": "+07:00",
    "hkt": "+08:00",
    "sgt": "+08:00",
    "myt": "+08:00",
    "pht": "+08:00",
    "awst": "+08:00",
    "jst": "+09:00",
    "kst": "+09:00",
    "aest": "+10:00",
    "aedt": "+11:00",
    "nzst": "+12:00",
    "nzdt": "+13:00",
    "brt": "-03:00",
    "brst": "-02:00",
    "art": "-03:00",
    "clt": "-04:00",
    "clst": "-03:00",
    "ast": "-04:00",
    "adt": "-03:00",
    "est": "-05:00",
    "edt": "-04:00",
    "cdt": "-05:00",
    "mst": "-07:00",
    "mdt": "-06:00",
    "pst": "-08:00",
    "pdt": "-07:00",
    "hst": "-10:00",
}
_DMY_NAMED = re.compile(r"^(\d{1,2})[- ./]([a-z]{3})[a-z]*[- ./,]+(\d{4})\b(.*)$")
_YMD_NAMED = re.compile(r"^(\d{4})[- ./]([a-z]{3})[a-z]*[- ./](\d{1,2})\b(.*)$")
_DMY_NUMERIC = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})\b(.*)$")
_YMD_LOOSE = re.compile(r"^(\d{4})([./-])(\d{1,2})\2(\d{1,2})\.?(.*)$")
_YMD_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:\s.*)?$")
_TIME = re.compile(r"^[ t]?(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?\s*(.*)$")
_OFFSET = re.compile(r"^(?:utc|gmt)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$")
_FORMAT_HINT = re.compile(r"\s*\((?:yyyy|dd|mm)[^)]*\)", re.IGNORECASE)  # "(YYYY-MM-DD)"
_BEFORE = re.compile(r"^before\s+([a-z]{3})[a-z]*[- ./]+(\d{4})$")  # Nominet "before Aug-1996"
_WORD_TIME = re.compile(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?\b")


def parse_date(text: str | None) -> datetime | None:
    """An RFC 3339 / ISO 8601 date, or one of the usual WHOIS spellings ("2004.12.23",
    "15-Sep-1997", "Tue Feb 10 09:42:42 2004", "30th April 2003", "2002-10-22 17:48:23
    CLST"...), as an aware UTC datetime (a date without a zone is taken as UTC); None when
    unreadable. Day-first when numeric and ambiguous ("02.03.2019" is 2 March)."""
    if not text:
        return None
    raw = re.sub(r"\s+", " ", _FORMAT_HINT.sub("", text).strip().strip("\"'").lower())
    raw = re.sub(r"\s*\(([a-z]{2,5}|(?:utc|gmt)?[+-]\d{1,2}(?::?\d{2})?)\)$", r" \1", raw)
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
        year, month, day, rest = int(m[1]), int(m[3]), int(m[4]), m[5]
    elif m := _DMY_NUMERIC.match(raw):
        day, month, year, rest = int(m[1]), int(m[2]), int(m[3]), m[4]
        if month > 12 >= day:  # "03/27/2013" can only be month first
            day, month = month, day
    elif m := _YMD_COMPACT.match(raw):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif m := _BEFORE.match(raw):
        return _make(int(m[2]), _MONTHS.get(m[1], 0), 1, 0, 0, 0, "")
    else:
        return _parse_words(raw)
    hour = minute = second = 0
    zone = ""
    rest = rest.strip()
    if t := _TIME.match(rest):
        hour, minute, second = int(t[1]), int(t[2]), int(t[3] or 0)
        zone = t[4].strip()
    return _make(year, month, day, hour, minute, second, zone)


def _make(
    year: int, month: int, day: int, hour: int, minute: int, second: int, zone: str
) -> datetime | None:
    try:
        value = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    zone = _NAMED_TZ.get(zone, zone)
    if o := _OFFSET.match(zone):
        try:
            return datetime.fromisoformat(
                f"{value.isoformat()}{o[1]}{int(o[2]):02d}:{o[3] or '00'}"
            )
        except ValueError:
            return value
    return value


def _parse_words(raw: str) -> datetime | None:
    """Dates written with the month's name, in any order: "Tue Feb 10 09:42:42 2004",
    "Mar 25 01:57:22 PDT 2009", "Monday 16th Jun 2014", "30th April 2003 at 00:00:00.000",
    "2nd April, 2001", "May 22 2002"."""
    hour = minute = second = 0
    if t := _WORD_TIME.search(raw):
        hour, minute, second = int(t[1]), int(t[2]), int(t[3] or 0)
        raw = raw[: t.start()] + " " + raw[t.end() :]
    raw = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", raw)  # "30th April"
    words = re.findall(r"[a-z]+|\d+|[+-]\d{1,2}(?::?\d{2})?", raw)
    month = next((_MONTHS[w[:3]] for w in words if w[:3] in _MONTHS and len(w) >= 3), 0)
    years = [w for w in words if w.isdigit() and len(w) == 4]
    days = [w for w in words if w.isdigit() and len(w) <= 2]
    if not (month and len(years) == 1 and len(days) == 1):
        return None
    zone = next((w for w in words if w in _NAMED_TZ), "")
    if not zone:
        zone = next((w for w in words if w[0] in "+-"), "")
    return _make(int(years[0]), month, int(days[0]), hour, minute, second, zone)
