"""Reading WHOIS answers: free text, so every server spells it a little differently.

:func:`fields` turns an answer into :class:`Field` entries, understanding ``Key: value``
lines (ICANN gTLD format, RIR objects), ``[Key]   value`` lines (JPRS), dotted leaders
(``Key.......: value``), ``Key<TAB>value`` lines, sentences such as ``Record created on
2000-08-29`` and header lines (``Registrar:``, ``Administrative Contact:``, ``[Tech-C]``)
followed by their values or by the header's own ``Key: value`` lines (Nominet, EURid, DENIC,
TWNIC…). Each field knows its paragraph, its *segment* (the RPSL-style object it belongs to:
a ``contact:`` or ``nsset:`` object that follows a domain's without a blank line starts a new
one) and the header it is under, so that a contact's or a name-server set's creation date is
never taken for the domain's.

:func:`parse_domain` and :func:`parse_network` then pick the fields from lists of synonyms,
most specific first, the domain's own object first.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

import services.providers.whois.bytld as bytld
from services.providers.whois.record import (
    DomainRecord,
    NetworkRecord,
    NotRegistered,
    Unavailable,
    hostname,
    normal_address,
    parse_date,
    range_cidrs,
    registrar_name,
)


class Field(NamedTuple):
    key: str
    """Normalised: lowercase, ``-``, ``_`` and runs of spaces as one space."""
    value: str
    paragraph: int
    segment: int
    section: str | None
    """The header the line is under (``"registrar"``, ``"tech c"``…), if any."""


_KEY_VALUE = re.compile(r"^\s*([^:\[\]]{1,60}?)\s*\.*:(?:\s+(.*))?$")
_KEY_VALUE_URL = re.compile(r"^\s*([^:\[\]]{1,60}?)\s*\.*:(?!//)\s*(\S.*)$")
_BRACKETED = re.compile(r"^\s*(?:[a-z]\.\s*)?\[([^\]]{1,60})\]\s*(.*)$", re.IGNORECASE)
_DAY_OR_MONTH = r"(?:mon|tue|wed|thu|fri|sat|sun|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_PHRASE = re.compile(
    rf"^\s*([a-z][a-z ]{{1,40}}?\s(?:on|until))\s+(\d.*|{_DAY_OR_MONTH}[a-z]*\b.*)$",
    re.IGNORECASE,
)  # "Record created on 2000-08-29", "Registered on 30th April 2003 at 00:00:00"
_TABBED = re.compile(r"^([A-Za-z][\w./ -]{0,40}?)(?:\t+| {2,})(\S.*)$")  # "Registrar\tName"
_SEPARATOR = re.compile(r"^[-=_*]{3,}$")
_BARE_HEADER = re.compile(  # a header without a colon (NIC.it, SWITCH, DK Hostmaster)
    r"^\s*(registrar|registrant|name ?servers|domain servers|"
    r"(?:admin\w*|tech\w*|billing) contacts?)\s*$",
    re.IGNORECASE,
)
_ABUSE_COMMENT = re.compile(r"abuse contact for .* is '([^'\s]+@[^'\s]+)'", re.IGNORECASE)
_ASN = re.compile(r"^(?:AS)?(\d{1,10})\b", re.IGNORECASE)
_TRAILING_URL = re.compile(r"\s+\(?https?://\S+\)?$")

# Headers whose lines may follow at the same indentation ("Registrant:" then "Org: …"), up
# to the next blank line or header; any other header only holds more-indented lines.
_FLAT_HEADERS = re.compile(
    r"(?:^|\s)(?:contacts?|contact\(s\)|registrant|holder|owner|registrar|servers?|"
    r"nameservers|listed order)$"
)
# Keys that begin another RPSL-style object when the current one already has dates (or the
# key): the contact, NSSET and KEYSET objects FRED registries (.cz, .cr, .tz…) list after a
# domain, person/role objects, a registrar's object.
_OBJECT_KEYS = {"contact", "person", "role", "nic hdl", "nsset", "keyset", "registrar"}
_CONTACT_WORDS = re.compile(
    r"\b(?:contacts?|contact\(s\)|registrant|admin\w*|tech\w*|billing|holder|owner|zone c|"
    r"person|role)\b"
)


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
            "abuse mailbox",
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


def _norm(key: str) -> str:
    return re.sub(r"[\s_\-.]+", " ", key.strip().lower()).strip()


def fields(text: str) -> list[Field]:
    out: list[Field] = []
    paragraph = segment = 0
    section: str | None = None  # the open header
    section_indent = 0
    child_indent: int | None = None
    flat = False  # the header's lines may be as indented as the header itself
    last: tuple[str, int] | None = None  # the last "Key: value" line, for continuations
    seen: set[str] = set()
    dated = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            paragraph += 1
            segment += 1
            last, seen, dated = None, set(), False
            if child_indent is not None:  # a header may stand one blank line above its lines
                section = None
            continue
        if stripped.startswith(("%", "#", ">>>", "<<<")) or _SEPARATOR.match(stripped):
            continue
        indent = len(line) - len(line.lstrip())
        key, value, bracketed = _split(line)
        if section is not None:
            if child_indent is None:
                child_indent = indent
                # "First registration date:\n1996-02-08" (SWITCH): a value under its key
                flat = flat or key is None
                if indent <= section_indent and not flat:
                    section = None
            elif child_indent > section_indent and indent <= section_indent:
                section = None
        if key is None:
            if section is not None:
                out.append(Field(section, stripped, paragraph, segment, section))
            elif last is not None and indent > last[1]:
                # "nameservers: ns1.example.net\n             ns2.example.net" (NASK)
                out.append(Field(last[0], stripped, paragraph, segment, None))
            continue
        if key in _OBJECT_KEYS and (key in seen or dated):
            if seen:
                segment += 1
                seen, dated = set(), False
            if section is not None and child_indent is not None and indent <= section_indent:
                section = None
        seen.add(key)
        dated = dated or key in _DATE_KEYS
        if value:
            out.append(Field(key, value, paragraph, segment, section))
            last = (key, indent)
        elif section is None or indent <= section_indent:
            section, section_indent, child_indent, last = key, indent, None, None
            flat = bracketed or bool(_FLAT_HEADERS.search(key))
    return out


def _split(line: str) -> tuple[str | None, str, bool]:
    """(key, value, bracketed) of a line; (None, line, False) for a line without a key."""
    if (match := _BRACKETED.match(line)) and (match[2].strip() or "." not in match[1]):
        return _norm(match[1]), _value(match[2]), True  # not "[whois.nic.fr]"
    if match := _BARE_HEADER.match(line):
        return _norm(match[1]), "", False
    match = _KEY_VALUE.match(line) or _PHRASE.match(line) or _KEY_VALUE_URL.match(line)
    if match := match or _TABBED.match(line):
        return _norm(match[1]), _value(match[2] or ""), False
    return None, line, False


def _value(text: str) -> str:
    return re.sub(r"^\.{2,}", "", text.strip()).strip()  # "Name Server:....ns1.example.net"


def _values(found: Iterable[Field], keys: Iterable[str], paragraph: int | None = None) -> list[str]:
    """Values of the first key (in ``keys`` order) that has any, in order of appearance."""
    found = list(found)
    for key in keys:
        values = [f.value for f in found if f.key == key and paragraph in (None, f.paragraph)]
        if values:
            return values
    return []


def _first(found: Iterable[Field], keys: Iterable[str], paragraph: int | None = None) -> str | None:
    values = _values(found, keys, paragraph)
    return values[0] if values else None


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
    "record created on",
    "record created",
    "domain record activated",
    "domain create date",
    "domain created",
    "domain dateregistered",
    "entry created",
    "first registration date",
    "fecha de registro",
    "fecha de creación",
    "fecha de creacion",
    "domain registered",
    "activation",
    "activated",
    "acivated",
    "created",
    "registered",
    "registration",
    "assigned",
    "commencement date",
)
UPDATED = (
    "updated date",
    "last updated date",
    "domain last updated date",
    "last updated on",
    "record last updated on",
    "record last updated",
    "domain last updated",
    "domain datelastmodified",
    "domain record last updated",
    "updated on",
    "update date",
    "modified date",
    "entry updated",
    "last updated",
    "last update",
    "last modified",
    "modification date",
    "última actualización",
    "ultima actualización",
    "ultima actualizacion",
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
    "record expires on",
    "expires on",
    "expire date",
    "exp date",
    "domain currently expires",
    "domain expires",
    "record will expire on",
    "expiration",
    "domain datebilleduntil",
    "fecha de vencimiento",
    "fecha de expiración",
    "fecha de expiracion",
    "expires",
    "expire",
    "expiry",
    "expired",
    "paid till",
    "valid until",
    "valid date",
    "validity",
    "renewal date",
    "renewal",
)
_DATE_KEYS = frozenset((*CREATED, *UPDATED, *EXPIRES))
# Last resorts for keys no list names, by the words they use.
_CREATED_LIKE = re.compile(r"\b(?:crea[tc]\w*|registered|registration|activat\w*|assigned|since)\b")
_EXPIRES_LIKE = re.compile(r"\b(?:expir\w*|exp|paid|valid\w*|renew\w*|due|vencimiento)\b")
_UPDATED_LIKE = re.compile(r"\b(?:updat\w*|modif\w*|changed|change|actualizaci\w*)\b")
_DATE_KINDS = (_CREATED_LIKE, _EXPIRES_LIKE, _UPDATED_LIKE)
_NOT_A_DATE_KEY = re.compile(
    r"\b(?:database|whois|query|lookup|option|registrar|registrant|by|for|status|period)\b"
)
_REGISTRAR_LIKE = re.compile(
    r"^(?!.*\b(?:whois|url|iana|id|abuse|phone|e ?mail|fax|address|street|city|country|postal|"
    r"zip|state|province|contacts?|server|status|website|homepage|language|handle|number|"
    r"tel\w*|lock|date|expir\w*|created?)\b).*\bregistrar\b"
)
_NAMESERVER_LIKE = re.compile(
    r"^(?!.*\b(?:whois|referral|registrar|ip|address|addresses|ipv4|ipv6)\b).*"
    r"\b(?:name ?servers?|nservers?|dns|ns)\b"
)
REGISTRAR_NAMED = (
    "registrar name",
    "registrar organization",
    "registrar organisation",
    "sponsoring registrar organization",
    "registration service provider",
)
REGISTRAR = ("registrar", "sponsoring registrar", "registrar of record")
_REGISTRAR_SECTION = ("registrar", "sponsoring registrar", "registrar information")
_NAME_KEYS = ("organization", "organisation", "org", "company", "company name", "name")
NAMESERVERS = (
    "hostname",
    "name server",
    "name servers",
    "nameserver",
    "nameservers",
    "nserver",
    "domain servers in listed order",
    "name servers in the listed order",
    "domain name servers",
    "domain nameservers",
    "dns servers",
    "dns",
    "ns",
    "name server (db)",
    "dns name",
    "current nameservers",
    "domain servers",
    "servidores de nombre (domain servers)",
)
_NUMBERED_NAMESERVER = re.compile(
    r"^(?:ns|nameserver|name server|nserver|dns)(?: name)? ?\d{1,2}$|server hostname$"
)
STATUS = ("domain status", "status", "state", "registration status")
REGISTRANT_COUNTRY = ("registrant country", "registrant country code", "registrant country/economy")
_COUNTRY_KEYS = ("country code", "countrycode", "country", "country / region")
_OWNER = re.compile(r"registrant|holder|owner|titular")
_OWNER_OBJECT = ("domain registrant", "registrant", "holder", "owner")
_OWNER_HANDLE = ("holder c", "registrant", "owner c", "registrant c", "holder")
_HANDLE_KEYS = ("contact", "nic hdl", "handle", "registrant id")
DOMAIN_NAME = (
    "domain name",
    "domain",
    "domainname",
    "domain name (ascii)",
    "complete domain name",
    "query",
)
_HANDLE = re.compile(r"^[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)+$")
_CONNECTED_UNTIL = re.compile(r"^connected \((\d{4}/\d{1,2}/\d{1,2})\)$", re.IGNORECASE)


class _Answer:
    """The fields of one answer and where the domain's own object is."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name.lower().rstrip(".")
        self.found = fields(text)
        domain_fields = [
            f for f in self.found if f.key in DOMAIN_NAME and f.section in (None, f.key)
        ]
        own = [f for f in domain_fields if hostname(f.value) == self.name]
        first = (own or domain_fields)[:1]
        self.domain_segment = first[0].segment if first else None
        segment_keys: dict[int, str] = {}
        for f in self.found:
            segment_keys.setdefault(f.segment, f.key)
        self._segment_first = segment_keys
        mine = [f for f in self.found if not self.about_someone(f)]
        self._tiers = [[f for f in mine if f.segment == self.domain_segment], mine]

    def about_someone(self, f: Field) -> bool:
        """Whether a field belongs to a contact, a person, an NSSET…, not to the domain."""
        if f.section is not None and _is_contact(f.section):
            return True
        first = self._segment_first.get(f.segment)
        return f.segment != self.domain_segment and first in (_OBJECT_KEYS - {"registrar"})

    def tiers(self) -> list[list[Field]]:
        """The domain's own object, then everything but contacts' and NSSETs' objects."""
        return self._tiers

    def date(self, keys: Iterable[str], like: re.Pattern[str]) -> datetime | None:
        """The first readable date of the first key (in ``keys`` order) in the domain's
        object, else outside contacts'; else under any key ``like`` a date of that kind
        ("Domain Activation Date", "Expire On")."""
        keys = tuple(keys)
        tiers = self.tiers()
        for tier in tiers:
            for key in keys:
                for f in tier:
                    if f.key == key and (parsed := parse_date(f.value)) is not None:
                        return parsed
        for tier in tiers:
            for f in tier:
                if (
                    like.search(f.key)
                    and not _NOT_A_DATE_KEY.search(f.key)
                    and sum(bool(k.search(f.key)) for k in _DATE_KINDS) == 1
                    and (parsed := parse_date(f.value)) is not None
                ):
                    return parsed
        return None

    def registrar(self) -> str | None:
        candidates: list[str] = []
        for tier in self.tiers():
            candidates += [f.value for key in REGISTRAR_NAMED for f in tier if f.key == key]
            candidates += [
                f.value
                for key in _NAME_KEYS
                for f in tier
                if f.section in _REGISTRAR_SECTION and f.key == key
            ]
            candidates += [f.value for key in REGISTRAR for f in tier if f.key == key]
        for tier in self.tiers():
            candidates += [f.value for f in tier if _REGISTRAR_LIKE.search(f.key)]
        for value in candidates:
            name = registrar_name(value)
            if name:
                return self._resolve_handle(name)
        return None

    def nameservers(self) -> list[str]:
        # NSSET objects (.cz, .cr…) hold the name servers: only contacts' fields are left out.
        usable = [f for f in self.found if f.section is None or not _is_contact(f.section)]
        hosts: list[str] = []
        for key in (*NAMESERVERS, None, ""):
            for f in usable:
                if (
                    f.key == key
                    or (key is None and _NUMBERED_NAMESERVER.search(f.key))
                    or (key == "" and _NAMESERVER_LIKE.search(f.key))
                ):
                    host = hostname(f.value)
                    if host and host != self.name and host not in hosts:
                        hosts.append(host)
            if hosts:
                break
        return hosts

    def registrant_country(self) -> str | None:
        country = _first(self.found, REGISTRANT_COUNTRY)
        if not country:
            owner = [f for f in self.found if f.section and _OWNER.search(f.section)]
            country = _first(owner, _COUNTRY_KEYS)
        if not country:
            # "holder-c: ABC123" / "Registrant: Google", then the contact object it names.
            handle = _first(
                [f for f in self.found if f.section is None or not _is_contact(f.section)],
                _OWNER_HANDLE,
            )
            if handle:
                for f in self.found:
                    if f.value == handle and f.key in _HANDLE_KEYS:
                        same = [g for g in self.found if g.segment == f.segment]
                        country = _first(same, _COUNTRY_KEYS)
                        break
        if not country:
            # "Domain registrant: A24C-154952" opening the registrant's own object (SK-NIC)
            for f in self.found:
                if f.key in _OWNER_OBJECT and self._segment_first.get(f.segment) == f.key:
                    same = [g for g in self.found if g.segment == f.segment]
                    country = _first(same, _COUNTRY_KEYS)
                    break
        if not country:
            return None
        return country.upper() if len(country) == 2 else country

    def _resolve_handle(self, name: str) -> str:
        """A registrar given by its handle ("FAJN-0002") named by its own object further
        down ("Registrar: FAJN-0002 / Name: FAJNOR IP s. r. o."), when the answer has one."""
        if not _HANDLE.match(name):
            return name
        for f in self.found:
            if (
                f.key == "registrar"
                and f.value == name
                and f.segment != self.domain_segment
                and self._segment_first.get(f.segment) == "registrar"
            ):
                same = [g for g in self.found if g.segment == f.segment]
                named = _first(same, _NAME_KEYS)
                if named:
                    return registrar_name(named) or name
        return name


def _is_contact(section: str) -> bool:
    return bool(_CONTACT_WORDS.search(section))


def parse_domain(name: str, text: str) -> DomainRecord:
    """What a registry's (or registrar's) answer says about ``name``: lookout's own reading,
    its gaps filled with asyncwhois' reading for the TLD (:mod:`.bytld`).

    Raise :class:`NotRegistered` for a "No match" answer, :class:`Unavailable` for an
    answer that holds no registration data (a rate-limit notice…)."""
    text = text[:MAX_TEXT]
    record = parse_domain_own(name, text)
    by_tld = bytld.parse(name, text)
    if by_tld is not None:
        for field_name in _FILLED:
            if getattr(record, field_name) in (None, []):
                setattr(record, field_name, getattr(by_tld, field_name))
    if not (record.created or record.registrar or record.nameservers or record.expires):
        # Sparse answers are fine ("Domain: x.de / Status: connect"), "No match" ones are not.
        found = fields(text)
        if no_match(text):
            raise NotRegistered(name)
        if not _first(found, DOMAIN_NAME):
            raise Unavailable(f"WHOIS answer without registration data: {_first_line(text)!r}")
    return record


MAX_TEXT = 128 * 1024
"""What is read of an answer (a registry's is a few kB; the biggest of the corpora 12 kB)."""
_FILLED = ("created", "updated", "expires", "registrar", "registrant_country", "nameservers")


def parse_domain_own(name: str, text: str) -> DomainRecord:
    """lookout's own reading of an answer (never raises; may find nothing)."""
    answer = _Answer(name, text[:MAX_TEXT])
    found = answer.found
    mine = answer.tiers()[1]
    record = DomainRecord(domain=name)
    record.registrar = answer.registrar()
    record.created = answer.date(CREATED, _CREATED_LIKE)
    record.updated = answer.date(UPDATED, _UPDATED_LIKE)
    record.expires = answer.date(EXPIRES, _EXPIRES_LIKE)
    record.registrant_country = answer.registrant_country()
    record.nameservers = answer.nameservers()
    for value in _values(mine, STATUS):
        status = _TRAILING_URL.sub("", value).strip()
        if status and status not in record.status:
            record.status.append(status)
    if record.expires is None:
        # JPRS: "[State] Connected (2030/03/31)" is connected until the end of the term.
        for status in record.status:
            if match := _CONNECTED_UNTIL.match(status):
                record.expires = parse_date(match[1])
    record.abuse_email = abuse_email(text, found)
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
    paragraphs = [f.paragraph for f in found if f.key in _NETWORK_KEYS]
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
        record.start_address, record.end_address = normal_address(start), normal_address(end)
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
        _first(found, ("orgname", "org name", "owner"))
        or _first(found, ("organization",), net)
        or _first(found, ("descr",), net)
    )
    record.abuse_email = abuse_email(text, found)
    record.created = _date([f for f in found if f.paragraph == net], ("regdate", "created"))
    record.updated = _date([f for f in found if f.paragraph == net], ("updated", "last modified"))
    record.status = [s for s in _values(found, ("nettype", "status"), net) if s]
    return record


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return text.strip()
