"""asyncwhois' per-TLD WHOIS parsers, used offline on an answer lookout already has.

asyncwhois (https://github.com/pogzyb/asyncwhois) keeps one set of regular expressions per
registry (``asyncwhois.tldparsers.Regex<TLD>``) and a generic one for the rest. Only its
parsing is used here: :class:`asyncwhois.parse_tld.DomainParser` reads a text and touches
no network (its client, which would query servers, RDAP bootstrap files or the public
suffix list, is never created). Its "not found" guess is turned off: whether a name is
registered is lookout's call.

:func:`parse` gives what asyncwhois finds as a :class:`DomainRecord`, cleaned the way
lookout cleans its own values (dates in UTC, registrar names without ids, host names only,
a registrant country only when it looks like one), so that
:func:`services.providers.whois.whoistext.parse_domain` can fill the gaps of its own reading
with it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from asyncwhois.parse_tld import DomainParser

from services.providers.whois.record import DomainRecord, hostname, parse_date, registrar_name

MAX_TEXT = 64 * 1024
"""asyncwhois reads at most this much of an answer (its expressions scan the whole text;
a registry's answer is a few kB)."""
# A code ("US") or a name ("Ukraine", "United States"), not an address line asyncwhois'
# expressions caught instead ("suite 520", "Taichung City, Taiwan", "Technical Contact:").
_COUNTRY = re.compile(r"^[^\W\d_]{2}$|^[^\W\d_][^\W\d_ .'-]*(?:[ .'-]+[^\W\d_]+){0,3}$")


def parse(name: str, text: str) -> DomainRecord | None:
    """asyncwhois' reading of ``text`` (its parser for the last label of ``name``), or None
    when it breaks on the text."""
    tld = name.lower().rstrip(".").rsplit(".", 1)[-1]
    try:
        parsed = DomainParser(ignore_not_found=True).parse(text[:MAX_TEXT], tld)
        found: dict[str, Any] = {str(key.value): value for key, value in parsed.items()}
    except Exception:
        return None
    record = DomainRecord(domain=name)
    record.created = _date(found.get("created"))
    record.updated = _date(found.get("updated"))
    record.expires = _date(found.get("expires"))
    registrar = found.get("registrar")
    if isinstance(registrar, str):
        record.registrar = registrar_name(registrar)
    country = found.get("registrant_country")
    if isinstance(country, str) and _COUNTRY.match(country.strip()):
        country = country.strip()
        record.registrant_country = country.upper() if len(country) == 2 else country
    servers = found.get("name_servers")
    if isinstance(servers, list):
        for value in servers:
            host = hostname(value) if isinstance(value, str) else None
            if host and host != record.domain and host not in record.nameservers:
                record.nameservers.append(host)
    return record


def _date(value: object) -> datetime | None:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value if 1900 <= value.year <= 9999 else None
    if isinstance(value, str):
        return parse_date(value)
    return None
