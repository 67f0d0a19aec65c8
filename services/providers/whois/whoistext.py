"""Reading WHOIS answers: free text, so every server spells it a little differently.

:func:`fields` turns an answer into ``(key, value, paragraph)`` triples, understanding
``Key: value`` lines (ICANN gTLD format, RIR objects), ``[Key]   value`` lines (JPRS),
a ``Key:`` line followed by indented values (Nominet, EURid) and dotted leaders
(``Key.......: value``). :func:`parse_domain` and :func:`parse_network` then pick the fields
from a list of synonyms, most specific first.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime

from services.providers.whois.record import (
    DomainRecord,
    NetworkRecord,
    NotRegistered,
    Unavailable,
    parse_date,
    range_cidrs,
)

Field = tuple[str, str, int]

_KEY_VALUE = re.compile(r"^\s*([^:\[\]]{1,60}?)\s*\.*:(?:\s+(.*))?$")
_KEY_VALUE_URL = re.compile(r"^\s*([^:\[\]]{1,60}?)\s*\.*:\s*(\S.*)$")
_BRACKETED = re.compile(r"^\s*(?:[a-z]\.\s*)?\[([^\]]{1,60})\]\s*(.*)$", re.IGNORECASE)
_ABUSE_COMMENT = re.compile(r"abuse contact for .* is '([^'\s]+@[^'\s]+)'", re.IGNORECASE)
_ASN = re.compile(r"^(?:AS)?(\d{1,10})\b", re.IGNORECASE)
_TRAILING_URL = re.compile(r"\s+\(?https?://\S+\)?$")

NO_MATCH = (
    "no match",
    "not found",
    "no entries found",
    "no data found",
    "no object found",
    "object does not exist",
    "no matching record",
    "domain name not known",
    "status: free",
    "status: available",
    "is available for registration",
    "this query returned 0 objects",
    "no information available",
)


def _norm(key: str) -> str:
    return re.sub(r"[\s_]+", " ", key.strip().lower().rstrip(". "))


def fields(text: str) -> list[Field]:
    out: list[Field] = []
    paragraph = 0
    open_key: str | None = None
    open_indent = 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            paragraph += 1
            open_key = None
            continue
        if stripped.startswith(("%", "#", ">>>", "--")):
            open_key = None
            continue
        indent = len(line) - len(line.lstrip())
        if open_key is not None and indent > open_indent and not _KEY_VALUE.match(line):
            out.append((open_key, stripped, paragraph))
            continue
        open_key = None
        if match := _BRACKETED.match(line):
            key, value = _norm(match[1]), match[2].strip()
        elif (match := _KEY_VALUE.match(line)) or (match := _KEY_VALUE_URL.match(line)):
            key, value = _norm(match[1]), (match[2] or "").strip()
        else:
            continue
        if value:
            out.append((key, value, paragraph))
        else:
            open_key, open_indent = key, indent
    return out


def _values(found: list[Field], keys: Iterable[str], paragraph: int | None = None) -> list[str]:
    """Values of the first key (in ``keys`` order) that has any, in order of appearance."""
    for key in keys:
        values = [v for k, v, p in found if k == key and (paragraph is None or p == paragraph)]
        if values:
            return values
    return []


def _first(found: list[Field], keys: Iterable[str], paragraph: int | None = None) -> str | None:
    values = _values(found, keys, paragraph)
    return values[0] if values else None


def no_match(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in NO_MATCH)


def abuse_email(text: str, found: list[Field]) -> str | None:
    email = _first(
        found,
        (
            "registrar abuse contact email",
            "abuse contact email",
            "orgabuseemail",
            "abuse-mailbox",
            "abuse email",
        ),
    )
    if email:
        return email
    match = _ABUSE_COMMENT.search(text)
    return match[1] if match else None


def referral(text: str) -> str | None:
    """The WHOIS server an answer refers to (``refer:``, ``Registrar WHOIS Server:``,
    ``whois:``, ``ReferralServer: whois://…``), as ``host`` or ``host:port``."""
    found = fields(text)
    value = _first(
        found, ("refer", "registrar whois server", "referralserver", "whois server", "whois")
    )
    if not value:
        return None
    value = value.split()[0].strip().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme.lower() != "whois":
            return None  # rwhois://, http://: not the WHOIS protocol
        value = rest
    value = value.split("/")[0]
    if not value or "." not in value:
        return None
    return value.lower()


# --------------------------------------------------------------------------- domains

CREATED = (
    "creation date",
    "created date",
    "created on",
    "domain registration date",
    "registration date",
    "registration time",
    "registered date",
    "registered on",
    "domain record activated",
    "domain create date",
    "created",
    "registered",
    "commencement date",
)
UPDATED = (
    "updated date",
    "last updated date",
    "domain last updated date",
    "last updated on",
    "record last updated on",
    "last updated",
    "last update",
    "last modified",
    "last-modified",
    "modified",
    "changed",
    "updated",
)
EXPIRES = (
    "registry expiry date",
    "registrar registration expiration date",
    "expiration date",
    "expiry date",
    "expiration time",
    "domain expiration date",
    "expires on",
    "expire date",
    "expires",
    "paid-till",
    "renewal date",
    "valid until",
)
REGISTRAR = ("registrar", "sponsoring registrar", "registrar name", "registrar organization")
NAMESERVERS = (
    "name server",
    "name servers",
    "nameserver",
    "nameservers",
    "nserver",
    "dns",
    "ns",
)
STATUS = ("domain status", "status", "state", "registration status")
REGISTRANT_COUNTRY = ("registrant country", "registrant country code", "registrant country/economy")
DOMAIN_NAME = ("domain name", "domain", "domainname", "domain name (ascii)")


def _hostname(value: str) -> str | None:
    host = value.split()[0].lower().rstrip(".") if value.split() else ""
    return host if "." in host and not host.startswith(("http:", "https:")) else None


def parse_domain(name: str, text: str) -> DomainRecord:
    """Raise :class:`NotRegistered` for a "No match" answer, :class:`Unavailable` for an
    answer that holds no registration data (a rate-limit notice…)."""
    found = fields(text)
    record = DomainRecord(domain=name)
    record.registrar = _first(found, REGISTRAR)
    if record.registrar and record.registrar.lower().startswith(("http://", "https://")):
        record.registrar = None
    record.created = _date(found, CREATED)
    record.updated = _date(found, UPDATED)
    record.expires = _date(found, EXPIRES)
    country = _first(found, REGISTRANT_COUNTRY)
    if country:
        record.registrant_country = country.upper() if len(country) == 2 else country
    seen: set[str] = set()
    for value in _values(found, NAMESERVERS):
        host = _hostname(value)
        if host and host not in seen:
            seen.add(host)
            record.nameservers.append(host)
    for value in _values(found, STATUS):
        status = _TRAILING_URL.sub("", value).strip()
        if status and status not in record.status:
            record.status.append(status)
    record.abuse_email = abuse_email(text, found)
    if not (record.created or record.registrar or record.nameservers or record.expires):
        # Sparse answers are fine ("Domain: x.de / Status: connect"), "No match" ones are not.
        if no_match(text):
            raise NotRegistered(name)
        if not _first(found, DOMAIN_NAME):
            raise Unavailable(f"WHOIS answer without registration data: {_first_line(text)!r}")
    return record


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:120]


def _date(found: list[Field], keys: Iterable[str]) -> datetime | None:
    for key in keys:
        for value in _values(found, (key,)):
            parsed = parse_date(value)
            if parsed is not None:
                return parsed
    return None


# --------------------------------------------------------------------------- networks

_NETWORK_KEYS = ("netrange", "inetnum", "inet6num", "cidr")


def parse_network(address: str, text: str) -> NetworkRecord:
    found = fields(text)
    paragraphs = [p for k, _, p in found if k in _NETWORK_KEYS]
    if not paragraphs:
        if no_match(text):
            raise NotRegistered(address)
        raise Unavailable(f"WHOIS answer without a network: {_first_line(text)!r}")
    net = paragraphs[-1]  # ARIN lists the broadest network first, the most specific last
    record = NetworkRecord(address=address)
    record.name = _first(found, ("netname",), net)
    record.handle = _first(found, ("nethandle",), net)
    span = _first(found, ("netrange", "inetnum", "inet6num"), net)
    if span and "-" in span:
        start, _, end = span.partition("-")
        record.start_address, record.end_address = start.strip(), end.strip()
    elif span and "/" in span:
        record.cidrs = [_cidr(span)]
    cidrs = _first(found, ("cidr",), net)
    if cidrs:
        record.cidrs = [_cidr(c) for c in re.split(r"[,\s]+", cidrs) if "/" in c]
    if record.start_address and record.end_address and not record.cidrs:
        record.cidrs = range_cidrs(record.start_address, record.end_address)
    record.complete_range()
    country = _first(found, ("country",), net) or _first(found, ("country",))
    record.country = country.upper() if country else None
    origin = _first(found, ("originas",), net) or _first(found, ("originas", "origin"))
    if origin and (match := _ASN.match(origin.strip())):
        record.asn = int(match[1])
    record.organization = (
        _first(found, ("orgname", "org-name", "owner"))
        or _first(found, ("organization",), net)
        or _first(found, ("descr",), net)
    )
    record.abuse_email = abuse_email(text, found)
    record.created = _date([f for f in found if f[2] == net], ("regdate", "created"))
    record.updated = _date([f for f in found if f[2] == net], ("updated", "last-modified"))
    record.status = [s for s in _values(found, ("nettype", "status"), net) if s]
    return record


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return text.strip()
