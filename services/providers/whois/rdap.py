"""RDAP (RFC 9082 queries, RFC 9083 answers): ``/domain/<name>`` and ``/ip/<address>``.

:func:`fetch` raises :class:`NotRegistered` on 404 (the registry holds no such object) and
:class:`Unavailable` on anything else that is not a JSON answer (connection errors,
timeouts, 5xx, 429…), which is what makes the provider fall back to WHOIS.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import msgspec

from services.providers.whois.record import (
    DomainRecord,
    NetworkRecord,
    NotRegistered,
    Unavailable,
    normal_address,
    parse_date,
)
from shared.lookups.provider import client_error_text

ACCEPT = "application/rdap+json, application/json;q=0.9"
MAX_BODY = 4 * 1024 * 1024
_ASN_IN_TEXT = re.compile(r"\bAS(\d{1,10})\b", re.IGNORECASE)


async def fetch(
    session: aiohttp.ClientSession, url: str, timeout: float, connect_timeout: float
) -> dict[str, Any]:
    """The decoded RDAP object at ``url``.

    :class:`Unavailable` says the cause alone (``HTTP 503``, ``timeout after 2.5 s``,
    ``cannot connect: Connection refused``): the caller knows it asked ``url``."""
    limits = aiohttp.ClientTimeout(
        total=timeout, connect=min(connect_timeout, timeout), sock_connect=connect_timeout
    )
    try:
        async with session.get(
            url, headers={"Accept": ACCEPT}, timeout=limits, max_redirects=5
        ) as response:
            if response.status == 404:
                raise NotRegistered(url)
            if response.status != 200:
                raise Unavailable(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body.extend(chunk)
                if len(body) > MAX_BODY:
                    raise Unavailable(f"answer larger than {MAX_BODY} bytes")
    except TimeoutError:
        raise Unavailable(f"timeout after {timeout:.2g} s") from None
    except aiohttp.ClientError as exc:
        raise Unavailable(client_error_text(exc)) from None
    try:
        document: Any = msgspec.json.decode(bytes(body))
    except msgspec.DecodeError:
        raise Unavailable("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise Unavailable("the answer is not an RDAP object")
    if "errorCode" in document and "objectClassName" not in document:
        if document.get("errorCode") == 404:
            raise NotRegistered(url)
        raise Unavailable(f"RDAP error {document.get('errorCode')}")
    return document


# --------------------------------------------------------------------------- parsing


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _vcard(entity: dict[str, Any]) -> list[list[Any]]:
    """The jCard properties (RFC 7095) of an entity: ``[name, params, type, value]`` each."""
    card = _list(entity.get("vcardArray"))
    if len(card) < 2:
        return []
    return [p for p in _list(card[1]) if isinstance(p, list) and len(p) >= 4]


def _vcard_value(entity: dict[str, Any], name: str) -> str | None:
    for prop in _vcard(entity):
        if prop[0] == name:
            value = prop[3]
            if isinstance(value, list):
                value = next((v for v in value if _text(v)), None)
            text = _text(value)
            if text:
                return text.removeprefix("mailto:")
    return None


def _vcard_country(entity: dict[str, Any]) -> str | None:
    for prop in _vcard(entity):
        if prop[0] != "adr":
            continue
        params = _dict(prop[1])
        cc = _text(params.get("cc"))  # RFC 8605
        if cc:
            return cc.upper()
        value = prop[3]
        if isinstance(value, list) and len(value) >= 7:
            country = _text(value[6])
            if country:
                return country.upper() if len(country) == 2 else country
    return None


def _entities(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every entity of an object, nested ones (a registrar's abuse contact) included."""
    for entity in _list(node.get("entities")):
        if isinstance(entity, dict):
            yield entity
            yield from _entities(entity)


def _with_role(node: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in _entities(node) if role in _list(e.get("roles"))]


def _abuse_email(node: dict[str, Any]) -> str | None:
    for entity in _with_role(node, "abuse"):
        email = _vcard_value(entity, "email")
        if email:
            return email
    return None


def _events(node: dict[str, Any]) -> dict[str, str]:
    events: dict[str, str] = {}
    for event in _list(node.get("events")):
        if isinstance(event, dict):
            action, date = _text(event.get("eventAction")), _text(event.get("eventDate"))
            if action and date:
                events.setdefault(action.lower(), date)
    return events


def _status(node: dict[str, Any]) -> list[str]:
    return [s.strip() for s in _list(node.get("status")) if _text(s)]


def parse_domain(name: str, document: dict[str, Any]) -> DomainRecord:
    record = DomainRecord(domain=(_text(document.get("ldhName")) or name).lower().rstrip("."))
    for registrar in _with_role(document, "registrar"):
        record.registrar = _vcard_value(registrar, "fn") or _text(registrar.get("handle"))
        if record.registrar:
            break
    for registrant in _with_role(document, "registrant"):
        record.registrant_country = _vcard_country(registrant)
        if record.registrant_country:
            break
    events = _events(document)
    record.created = parse_date(events.get("registration"))
    record.updated = parse_date(events.get("last changed"))
    record.expires = parse_date(events.get("expiration"))
    seen: set[str] = set()
    for server in _list(document.get("nameservers")):
        host = _text(_dict(server).get("ldhName"))
        if host:
            host = host.lower().rstrip(".")
            if host not in seen:
                seen.add(host)
                record.nameservers.append(host)
    record.status = _status(document)
    record.abuse_email = _abuse_email(document)
    return record


def _asn(document: dict[str, Any]) -> int | None:
    for value in _list(document.get("arin_originas0_originautnums")):
        if isinstance(value, int) and value >= 0:
            return value
        if isinstance(value, str) and value.upper().removeprefix("AS").isdigit():
            return int(value.upper().removeprefix("AS"))
    # Best effort: some registries only mention the origin AS in a remark.
    for remark in _list(document.get("remarks")):
        remark = _dict(remark)
        lines = [str(line) for line in _list(remark.get("description"))]
        text = " ".join([str(remark.get("title") or ""), *lines])
        if "origin" in text.lower() and (match := _ASN_IN_TEXT.search(text)):
            return int(match[1])
    return None


def parse_network(address: str, document: dict[str, Any]) -> NetworkRecord:
    start, end = _text(document.get("startAddress")), _text(document.get("endAddress"))
    record = NetworkRecord(
        address=address,
        name=_text(document.get("name")),
        handle=_text(document.get("handle")),
        start_address=normal_address(start) if start else None,
        end_address=normal_address(end) if end else None,
        country=(_text(document.get("country")) or "").upper() or None,
        asn=_asn(document),
        status=_status(document),
        abuse_email=_abuse_email(document),
    )
    for cidr in _list(document.get("cidr0_cidrs")):
        cidr = _dict(cidr)
        prefix = _text(cidr.get("v4prefix")) or _text(cidr.get("v6prefix"))
        if prefix and isinstance(cidr.get("length"), int):
            record.cidrs.append(f"{normal_address(prefix)}/{cidr['length']}")
    record.complete_range()
    for registrant in _with_role(document, "registrant"):
        record.organization = _vcard_value(registrant, "fn")
        if record.organization:
            break
    events = _events(document)
    record.created = parse_date(events.get("registration"))
    record.updated = parse_date(events.get("last changed"))
    return record
