"""DMARC policy of a domain per RFC 7489.

Policy discovery (§6.6.3): the TXT records at ``_dmarc.<domain>`` that start with the version
tag ``v=DMARC1`` (case-sensitive value; blanks around ``=`` allowed by the grammar) are kept;
none -> the same at ``_dmarc.<organisational domain>`` (ICANN section of the public suffix
list) when that is another name; more than one -> an error (no DMARC processing applies).
A DNS failure (timeout, SERVFAIL) is a ``temperror`` and stops the discovery.

Tags (§6.3) are parsed and validated; tag names and keyword values are case-insensitive (ABNF
strings). An external report destination (a ``mailto:`` address in another organisational
domain) is checked for its authorisation record ``<domain>._report._dmarc.<destination>``
(§7.1); a missing one is a warning.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final, Literal

from publicsuffixlist import PublicSuffixList

from shared.lookups.dns import Resolver, answers, start_query

__all__ = ["check_dmarc", "is_dmarc_record", "organisational_domain", "parse_tags"]

Status = Literal["ok", "none", "permerror", "temperror"]

POLICIES: Final = ("none", "quarantine", "reject")
MAX_EXTERNAL_CHECKS: Final = 10
"""At most this many external report destinations are checked for authorisation."""
KNOWN_TAGS: Final = frozenset(
    {"v", "p", "sp", "pct", "rua", "ruf", "adkim", "aspf", "fo", "rf", "ri"}
)
_VERSION_RE: Final = re.compile(r"v[ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)")
_TAG_RE: Final = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_]*)[ \t]*=[ \t]*(?P<value>.*)", re.S)
_URI_RE: Final = re.compile(
    r"(?P<uri>(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):[^!,\s]+)(?:!(?P<size>[0-9]+[kmgtKMGT]?))?"
)
_MAILBOX_RE: Final = re.compile(r"[^@\s]+@(?P<domain>[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+)\.?")
_KEYWORD_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True)


def organisational_domain(domain: str) -> str | None:
    """The registrable domain of ``domain`` (``mail.example.co.uk`` -> ``example.co.uk``);
    None when ``domain`` is itself a public suffix."""
    return _organisational(domain.rstrip(".").lower())


@lru_cache(maxsize=4096)
def _organisational(domain: str) -> str | None:
    result: str | None = _psl().privatesuffix(domain)
    return result


def clear_cache() -> None:
    """Forget the organisational domains found so far."""
    _organisational.cache_clear()


def is_dmarc_record(text: str) -> bool:
    """Whether a TXT string is a DMARC record: its first tag is ``v=DMARC1``."""
    return _VERSION_RE.match(text) is not None


def parse_tags(record: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """(tags, errors, warnings) of a DMARC record. Values are normalised: keywords lower-case,
    ``pct``/``ri`` integers, ``rua``/``ruf``/``fo``/``rf`` lists."""
    tags: dict[str, Any] = {}
    errors: list[str] = []
    warnings: list[str] = []
    parts = [part.strip(" \t") for part in record.split(";")]
    for position, part in enumerate(parts):
        if not part:
            continue
        match = _TAG_RE.fullmatch(part)
        if match is None:
            errors.append(f"invalid tag '{part}'")
            continue
        name, value = match["name"].lower(), match["value"].strip(" \t")
        if name in tags:
            errors.append(f"tag '{name}' appears more than once")
            continue
        if name == "v" and position != 0:
            errors.append("v= must be the first tag")
            continue
        if name not in KNOWN_TAGS:
            warnings.append(f"unknown tag '{name}' (ignored)")
            tags[name] = value
            continue
        parsed, error = _parse_value(name, value)
        if error is not None:
            errors.append(error)
            continue
        tags[name] = parsed
    return tags, errors, warnings


def _parse_value(name: str, value: str) -> tuple[Any, str | None]:
    lowered = value.lower()
    if name == "v":
        return value, None
    if name in ("p", "sp"):
        if lowered not in POLICIES:
            return None, f"invalid {name}= value '{value}' (none, quarantine or reject)"
        return lowered, None
    if name == "pct":
        if not value.isdigit() or not 0 <= int(value) <= 100:
            return None, f"invalid pct= value '{value}' (an integer from 0 to 100)"
        return int(value), None
    if name in ("adkim", "aspf"):
        if lowered not in ("r", "s"):
            return None, f"invalid {name}= value '{value}' (r or s)"
        return lowered, None
    if name == "ri":
        if not value.isdigit() or int(value) > 0xFFFFFFFF:
            return None, f"invalid ri= value '{value}' (seconds)"
        return int(value), None
    if name == "fo":
        options = [option.strip(" \t").lower() for option in value.split(":")]
        if not all(option in ("0", "1", "d", "s") for option in options):
            return None, f"invalid fo= value '{value}' (0, 1, d, s separated by ':')"
        return options, None
    if name == "rf":
        formats = [item.strip(" \t").lower() for item in value.split(":")]
        if not all(_KEYWORD_RE.fullmatch(item) for item in formats):
            return None, f"invalid rf= value '{value}'"
        return formats, None
    # rua / ruf
    uris = [item.strip(" \t") for item in value.split(",")]
    if not value or not all(uris):
        return None, f"{name}= needs at least one URI"
    for uri in uris:
        if _URI_RE.fullmatch(uri) is None:
            return None, f"invalid {name}= URI '{uri}'"
    return uris, None


def _report_domains(uris: list[str]) -> tuple[list[str], list[str]]:
    """(domains of the mailto: addresses, warnings about the URIs)."""
    domains: list[str] = []
    warnings: list[str] = []
    for uri in uris:
        match = _URI_RE.fullmatch(uri)
        if match is None:  # pragma: no cover - validated by parse_tags
            continue
        if match["scheme"].lower() != "mailto":
            warnings.append(f"'{uri}' is not a mailto: URI (receivers send reports by e-mail)")
            continue
        mailbox = _MAILBOX_RE.fullmatch(match["uri"][len("mailto:") :])
        if mailbox is None:
            warnings.append(f"'{uri}' is not a valid e-mail address")
            continue
        domains.append(mailbox["domain"].rstrip(".").lower())
    return domains, warnings


def _empty(domain: str) -> dict[str, Any]:
    return {
        "domain": domain,
        "record": None,
        "found_at": None,
        "valid": False,
        "status": "none",
        "policy": None,
        "subdomain_policy": None,
        "effective_policy": None,
        "pct": None,
        "tags": {},
        "errors": [],
        "warnings": [],
    }


async def _discover(
    domain: str, resolver: Resolver, result: dict[str, Any]
) -> tuple[str, list[str]] | None:
    """(name where found, DMARC records there); None with ``result`` updated otherwise."""
    names = [f"_dmarc.{domain}"]
    organisational = organisational_domain(domain)
    if organisational is not None and organisational != domain:
        names.append(f"_dmarc.{organisational}")
    for name in names:
        answer = await resolver.query(name, "TXT")
        if not answer.answered and answer.rcode != "BADNAME":
            result["status"] = "temperror"
            result["errors"].append(f"DNS {answer.rcode} for TXT {name}")
            return None
        records = [text for text in answer.records if is_dmarc_record(text)]
        if records:
            return name, records
    return None


async def check_dmarc(domain: str, resolver: Resolver) -> dict[str, Any]:
    """The DMARC policy that applies to mail from ``domain``; see the module doc."""
    domain = domain.strip().rstrip(".").lower()
    result = _empty(domain)
    found = await _discover(domain, resolver, result)
    if found is None:
        return result
    found_at, records = found
    result["found_at"] = found_at
    if len(records) > 1:
        result["status"] = "permerror"
        result["records"] = records
        result["errors"].append(f"multiple DMARC records at {found_at} ({len(records)})")
        return result
    record = records[0]
    result["record"] = record
    tags, errors, warnings = parse_tags(record)
    result["tags"] = tags
    policy: str | None = tags.get("p")
    if "p" not in tags and not any(error.startswith("invalid p=") for error in errors):
        errors.append("the required p= tag is missing")
    p_problems = [
        e for e in errors if e == "the required p= tag is missing" or e.startswith("invalid p=")
    ]
    if policy is None and p_problems and tags.get("rua"):
        # RFC 7489 §6.6.3: without a valid p= but with a valid rua=, receivers act as if
        # p=none was published (so reports still flow): a warning, not an error.
        for problem in p_problems:
            errors.remove(problem)
            warnings.append(f"{problem}: receivers treat the record as p=none (RFC 7489 §6.6.3)")
        policy = "none"
    subdomain_policy: str | None = tags.get("sp", policy)
    pct: int = tags.get("pct", 100)
    owner = found_at.removeprefix("_dmarc.")
    effective = policy if owner == domain else subdomain_policy
    result.update(
        {
            "policy": policy,
            "subdomain_policy": subdomain_policy,
            "effective_policy": effective,
            "pct": pct,
            "adkim": tags.get("adkim", "r"),
            "aspf": tags.get("aspf", "r"),
        }
    )
    if policy == "none":
        warnings.append("p=none: monitoring only, failing mail is not quarantined or rejected")
    if subdomain_policy == "none" and policy in ("quarantine", "reject"):
        warnings.append("sp=none: mail from subdomains is not protected")
    if pct < 100:
        warnings.append(f"pct={pct}: the policy applies to {pct}% of failing mail only")
    if not tags.get("rua"):
        warnings.append("no rua= tag: no aggregate reports are sent")
    warnings.extend(await _check_destinations(owner, tags, resolver))
    result["errors"].extend(errors)
    result["warnings"].extend(dict.fromkeys(warnings))
    result["status"] = "permerror" if result["errors"] else "ok"
    result["valid"] = result["status"] == "ok"
    return result


async def _check_destinations(owner: str, tags: dict[str, Any], resolver: Resolver) -> list[str]:
    """Warnings about rua/ruf destinations, including unauthorised external ones (§7.1)."""
    warnings: list[str] = []
    domains: list[str] = []
    for name in ("rua", "ruf"):
        found, problems = _report_domains(tags.get(name) or [])
        domains.extend(found)
        warnings.extend(problems)
    own = organisational_domain(owner) or owner
    external = [
        destination
        for destination in dict.fromkeys(domains)
        if (organisational_domain(destination) or destination) != own
    ][:MAX_EXTERNAL_CHECKS]
    names = [f"{owner}._report._dmarc.{destination}" for destination in external]
    replies = await answers([start_query(resolver, name, "TXT") for name in names])  # all at once
    for destination, name, answer in zip(external, names, replies, strict=True):
        if answer.answered and not any(is_dmarc_record(text) for text in answer.records):
            warnings.append(
                f"{destination} has not authorised reports about {owner} (no DMARC1 TXT at {name})"
            )
    return warnings
