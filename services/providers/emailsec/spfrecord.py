"""SPF records read on their own (RFC 7208): parsing term by term, macro expansion, and what
a record says whatever the domain publishing it, worked out once per record text and kept
(:data:`ANALYSIS_CACHE_SIZE` records). The evaluation of a domain's tree is in
:mod:`services.providers.emailsec.spf`.

Terms are numbered from 1 (``v=spf1`` is term 0); offsets are 0-based character positions in
the record.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

MAX_DNS_LOOKUPS: Final = 10
MAX_VOID_LOOKUPS: Final = 2
MAX_MX_HOSTS: Final = 10
MAX_RECORDS: Final = 50
"""Safety bound: SPF records fetched per evaluation (each one is a lookup past the first,
so reaching it means far more than 10 lookups anyway)."""
MAX_RESOLVED: Final = 60
"""Safety bound: ``a``/``mx``/``exists`` targets resolved per evaluation."""

Status = Literal["ok", "none", "permerror", "temperror", "skipped"]

MECHANISMS: Final = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
LOOKUP_MECHANISMS: Final = frozenset({"include", "a", "mx", "ptr", "exists"})
_QUALIFIERS: Final = "+-~?"
_MODIFIER_RE: Final = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9\-_.]*)=(?P<value>.*)", re.S)
_MECHANISM_RE: Final = re.compile(
    r"(?P<q>[+\-~?]?)(?P<name>[A-Za-z][A-Za-z0-9]*)(?P<rest>.*)", re.S
)
_DUAL_CIDR_RE: Final = re.compile(r"(?::(?P<spec>.*?))?(?:/(?P<c4>\d+))?(?://(?P<c6>\d+))?", re.S)
_CIDR_NUMBER_RE: Final = re.compile(r"0|[1-9][0-9]{0,2}")
_MACRO_RE: Final = re.compile(
    r"%(?:\{(?P<letter>[A-Za-z])(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delims>[.\-+,/_=]*)\}"
    r"|(?P<escape>[%_-]))"
)
_MACRO_LETTERS: Final = frozenset("slodiphv")
_EXP_ONLY_LETTERS: Final = frozenset("crt")
_TOPLABEL_RE: Final = re.compile(
    r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9]"
)
_LABEL_RE: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?")
_TERMS_RE: Final = re.compile(r"[^ ]+")
_VISIBLE_RE: Final = re.compile(r"[\x21-\x7e]*")
# A plain multi-label name with a top label, optional final dot (label lengths but the top
# one's and the total length are checked apart): what _domain_spec_error accepts without
# macros.
_PLAIN_DOMAIN_RE: Final = re.compile(rf"(?:{_LABEL_RE.pattern}\.)+(?:{_TOPLABEL_RE.pattern})\.?")
# What ipaddress.IPv4Address accepts: four decimal octets 0-255, ASCII digits, no leading 0.
_IPV4_RE: Final = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    r"(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)
ANALYSIS_CACHE_SIZE: Final = 1024
"""SPF records whose analysis is kept (by record text): the shared include records of big
providers are met again and again, a domain's own record rarely."""


def prefix_length(term: Term) -> int | None:
    """The CIDR prefix length of an ``ip4``/``ip6`` term."""
    return term.cidr4 if term.name == "ip4" else term.cidr6


def is_spf_record(text: str) -> bool:
    """Whether a TXT string is an SPF record: version ``v=spf1`` (any case) then SP or end."""
    head = text[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Term:
    index: int
    offset: int
    text: str
    kind: Literal["mechanism", "modifier"] = "mechanism"
    name: str = ""
    qualifier: str = ""
    value: str | None = None
    cidr4: int | None = None
    cidr6: int | None = None
    error: str | None = None
    lookups: int = 0
    void: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"term {self.index} '{self.text}' at char {self.offset}"

    def copy(self) -> Term:
        """A new term with the same fields (its own ``info``)."""
        return Term(
            self.index,
            self.offset,
            self.text,
            self.kind,
            self.name,
            self.qualifier,
            self.value,
            self.cidr4,
            self.cidr6,
            self.error,
            self.lookups,
            self.void,
            dict(self.info),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "offset": self.offset,
            "term": self.text,
            "type": self.kind,
            "name": self.name,
        }
        if self.kind == "mechanism":
            out["qualifier"] = self.qualifier
        out["value"] = self.value
        if self.cidr4 is not None:
            out["cidr4"] = self.cidr4
        if self.cidr6 is not None:
            out["cidr6"] = self.cidr6
        out["lookups"] = self.lookups
        if self.void:
            out["void"] = True
        if self.error is not None:
            out["error"] = self.error
        out.update(self.info)
        return out


def parse_record(record: str) -> list[Term]:
    """The terms of an SPF record (its version section excluded), each with its syntax error
    if it has one. Terms are separated by spaces (RFC 7208 §12: ``1*SP``)."""
    return [
        _parse_term(match.group(), index, match.start())
        for index, match in enumerate(_TERMS_RE.finditer(record))
        if index
    ]


def _parse_term(text: str, index: int, offset: int) -> Term:
    term = Term(index=index, offset=offset, text=text)
    modifier = _MODIFIER_RE.fullmatch(text)
    if modifier is not None:
        term.kind = "modifier"
        term.name = modifier["name"].lower()
        term.value = modifier["value"]
        if term.name in ("redirect", "exp"):
            if not term.value:
                term.error = f"{term.name}= needs a domain"
            else:
                term.error = _domain_spec_error(term.value, exp=False)
        else:
            term.error = _macro_string_error(term.value, exp=True)
        return term
    mechanism = _MECHANISM_RE.fullmatch(text)
    if mechanism is None:
        if len(text) > 1 and text[0] not in _QUALIFIERS and text[1].isalpha():
            term.error = f"invalid qualifier '{text[0]}'"
        else:
            term.error = "invalid term"
        return term
    term.qualifier = mechanism["q"] or "+"
    term.name = name = mechanism["name"].lower()
    rest: str = mechanism["rest"]
    if name not in MECHANISMS:
        term.error = f"unknown mechanism '{mechanism['name']}'"
        return term
    if name in LOOKUP_MECHANISMS:
        term.lookups = 1
    if name == "all":
        if rest:
            term.error = "'all' takes no argument"
    elif name in ("include", "exists"):
        if not rest.startswith(":") or len(rest) == 1:
            term.error = f"'{name}' needs a domain ('{name}:example.com')"
        else:
            term.value = rest[1:]
            term.error = _domain_spec_error(term.value)
    elif name == "ptr":
        if rest:
            if not rest.startswith(":") or len(rest) == 1:
                term.error = "invalid 'ptr' argument"
            else:
                term.value = rest[1:]
                term.error = _domain_spec_error(term.value)
    elif name in ("a", "mx"):
        _parse_a_mx(term, rest)
    elif name == "ip4":
        _parse_ip(term, rest, version=4)
    else:
        _parse_ip(term, rest, version=6)
    return term


def _parse_a_mx(term: Term, rest: str) -> None:
    if rest and rest[0] not in ":/":
        term.error = f"invalid '{term.name}' argument"
        return
    match = _DUAL_CIDR_RE.fullmatch(rest)
    if match is None:
        term.error = "invalid prefix length"
        return
    spec, c4, c6 = match["spec"], match["c4"], match["c6"]
    if spec is not None:
        if not spec:
            term.error = f"'{term.name}:' needs a domain"
            return
        term.value = spec
        error = _domain_spec_error(spec)
        if error is not None:
            term.error = error
            return
    if c4 is not None:
        term.cidr4 = _cidr(c4, 32)
        if term.cidr4 is None:
            term.error = "invalid IPv4 prefix length"
            return
    if c6 is not None:
        term.cidr6 = _cidr(c6, 128)
        if term.cidr6 is None:
            term.error = "invalid IPv6 prefix length"


def _parse_ip(term: Term, rest: str, *, version: int) -> None:
    label = "IPv4" if version == 4 else "IPv6"
    if not rest.startswith(":") or len(rest) == 1:
        term.error = f"'ip{version}' needs a network ('ip{version}:...')"
        return
    term.value = rest[1:]
    address, slash, length = term.value.partition("/")
    try:
        if "%" in address:
            raise ValueError(address)
        if version == 4:
            if _IPV4_RE.fullmatch(address) is None:
                raise ValueError(address)
        else:
            ipaddress.IPv6Address(address)
    except ValueError:
        term.error = f"invalid {label} network"
        return
    if slash:
        cidr = _cidr(length, 32 if version == 4 else 128)
        if cidr is None:
            term.error = f"invalid {label} prefix length"
            return
        if version == 4:
            term.cidr4 = cidr
        else:
            term.cidr6 = cidr
    if version == 4:
        term.info["size"] = 2 ** (32 - (32 if term.cidr4 is None else term.cidr4))


def _cidr(text: str, maximum: int) -> int | None:
    if _CIDR_NUMBER_RE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= maximum else None


def _macro_string_error(text: str, *, exp: bool) -> str | None:
    """None when ``text`` is a valid macro-string (RFC 7208 §7.1)."""
    position = 0
    for match in _MACRO_RE.finditer(text):
        error = _literal_error(text[position : match.start()])
        if error is not None:
            return error
        letter = (match["letter"] or "").lower()
        if letter:
            if letter in _EXP_ONLY_LETTERS and not exp:
                return f"macro '{match.group()}' is only allowed in exp="
            if letter not in _MACRO_LETTERS and letter not in _EXP_ONLY_LETTERS:
                return f"invalid macro '{match.group()}'"
            if match["digits"] and int(match["digits"]) == 0:
                return f"invalid macro '{match.group()}' (zero labels)"
        position = match.end()
    return _literal_error(text[position:])


def _literal_error(text: str) -> str | None:
    if "%" in text:
        at = text.index("%")
        return f"invalid macro '{text[at : at + 3]}'"
    if _VISIBLE_RE.fullmatch(text) is not None:
        return None
    for char in text:
        if not 0x21 <= ord(char) <= 0x7E:
            return f"invalid character {char!r}"
    return None


def _domain_spec_error(spec: str, *, exp: bool = False) -> str | None:
    """None when ``spec`` is a valid domain-spec: macro-string domain-end (RFC 7208 §7.1)."""
    if _PLAIN_DOMAIN_RE.fullmatch(spec) is not None:  # the common case, in one match
        stripped = spec[:-1] if spec.endswith(".") else spec
        if len(stripped) <= 253 and len(stripped) - stripped.rindex(".") <= 64:
            return None
    return _domain_spec_error_general(spec, exp=exp)


def _domain_spec_error_general(spec: str, *, exp: bool = False) -> str | None:
    error = _macro_string_error(spec, exp=exp)
    if error is not None:
        return error
    stripped = spec[:-1] if spec.endswith(".") else spec
    macros = list(_MACRO_RE.finditer(stripped))
    last_macro = macros[-1] if macros else None
    if last_macro is not None and last_macro.end() == len(stripped) and last_macro["letter"]:
        return None  # domain-end = macro-expand
    if last_macro is None:
        # Plain name: must be a valid multi-label DNS name with a top label.
        labels = stripped.split(".")
        if (
            len(labels) < 2
            or len(stripped) > 253
            or not all(_LABEL_RE.fullmatch(label) for label in labels[:-1])
            or _TOPLABEL_RE.fullmatch(labels[-1]) is None
            or len(labels[-1]) > 63
        ):
            return f"invalid domain '{spec}'"
        return None
    tail = stripped.rsplit(".", 1)
    if len(tail) < 2 or _TOPLABEL_RE.fullmatch(tail[1]) is None:
        return f"invalid domain '{spec}'"
    return None


def expand(spec: str, domain: str) -> str | None:
    """Expand the macros of a domain-spec for ``domain``; None when it needs the sender or
    the client (anything but ``%{d}``)."""
    if spec == "%{d}":  # the implicit target of a bare 'a' or 'mx'
        return _shorten(domain.rstrip(".").lower())
    if "%" not in spec:
        return _shorten(spec.rstrip(".").lower())
    out: list[str] = []
    position = 0
    for match in _MACRO_RE.finditer(spec):
        out.append(spec[position : match.start()])
        position = match.end()
        escape = match["escape"]
        if escape:
            out.append({"%": "%", "_": " ", "-": "%20"}[escape])
            continue
        if match["letter"].lower() != "d":
            return None
        delimiters = match["delims"] or "."
        parts = re.split("[" + re.escape(delimiters) + "]", domain)
        if match["reverse"]:
            parts.reverse()
        if match["digits"]:
            parts = parts[-int(match["digits"]) :]
        out.append(".".join(parts))
    out.append(spec[position:])
    return _shorten("".join(out).rstrip(".").lower())


def _shorten(result: str) -> str:
    while len(result) > 253 and "." in result:  # RFC 7208 §7.3: drop labels from the left
        result = result.split(".", 1)[1]
    return result


# --------------------------------------------------------------------------------------------
# What a record says whatever the domain publishing it (cached by record text)
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Analysis:
    """The parsed terms of one SPF record text and everything :meth:`_Evaluation.plan`
    derives from them alone: syntax errors, warnings, which terms are evaluated. Shared by
    every node with that record: its terms are never modified, the ones that get per-node
    state (``include``/``a``/``mx``/``exists`` before ``all``, an effective ``redirect=``)
    are copied for each node."""

    terms: tuple[Term, ...]
    errors: tuple[str, ...]
    """Syntax errors and repeated modifiers: the record is a permerror (RFC 7208 §4.6)."""
    warnings: tuple[str, ...]
    root_warnings: tuple[str, ...]
    """The warnings when the record is the domain's own (a missing 'all' is one there)."""
    all_index: int | None
    evaluated: tuple[int, ...]
    """``include``/``a``/``mx``/``exists`` before ``all``, in order."""
    redirect_index: int | None
    """A ``redirect=`` that is followed (no ``all``)."""
    copied: tuple[int, ...]
    lookups: int
    dicts: tuple[dict[str, Any] | None, ...] | None = None
    """``to_dict()`` of the shared terms (None for the copied ones), once the record is met
    a second time (most records are a domain's own, met once)."""
    outputs: int = 0

    def shared_dicts(self) -> tuple[dict[str, Any] | None, ...] | None:
        """The cached ``to_dict()`` of the shared terms (to copy), None the first time."""
        if self.dicts is None:
            self.outputs += 1
            if self.outputs < 2:
                return None
            self.dicts = tuple(
                None if i in self.copied else term.to_dict() for i, term in enumerate(self.terms)
            )
        return self.dicts


@functools.lru_cache(maxsize=ANALYSIS_CACHE_SIZE)
def analyse(record: str) -> Analysis:
    terms = parse_record(record)
    errors = [f"{term.describe()}: {term.error}" for term in terms if term.error is not None]
    for name in ("redirect", "exp"):
        found = [t for t in terms if t.kind == "modifier" and t.name == name]
        if len(found) > 1:
            errors.append(f"{name}= appears {len(found)} times (at most once)")
    if errors:  # RFC 7208 §4.6: a syntax error stops everything
        shared = tuple(terms)
        return Analysis(shared, tuple(errors), (), (), None, (), None, (), _sum(shared))
    head: list[str] = []
    tail: list[str] = []
    mechanisms = [i for i, t in enumerate(terms) if t.kind == "mechanism"]
    all_index = next((i for i in mechanisms if terms[i].name == "all"), None)
    redirect_index = next((i for i, t in enumerate(terms) if t.name == "redirect"), None)
    missing_all = False
    if all_index is not None:
        after = mechanisms[mechanisms.index(all_index) + 1 :]
        if after:
            head.append(
                f"terms after '{terms[all_index].text}' are never evaluated: "
                + " ".join(terms[i].text for i in after)
            )
            # RFC 7208 §5.1: never tested, so they cost no lookup (§4.6.4 counts the
            # terms used during evaluation) and are not resolved.
            for i in after:
                terms[i].lookups = 0
                terms[i].info["note"] = "after 'all': never evaluated"
            mechanisms = mechanisms[: len(mechanisms) - len(after)]
        if redirect_index is not None:
            head.append("redirect= is ignored: the record has an 'all' mechanism")
            redirect_index = None
    elif redirect_index is None:
        missing_all = True
    evaluated: list[int] = []
    for i in mechanisms:
        term = terms[i]
        if term.name == "ptr":
            tail.append(f"'{term.text}' uses the deprecated 'ptr' mechanism (RFC 7208 §5.5)")
        elif term.name in ("include", "a", "mx", "exists"):
            evaluated.append(i)
        elif term.name in ("ip4", "ip6") and term.qualifier == "+":
            size = term.info.get("size")
            if prefix_length(term) == 0:
                tail.append(f"'{term.text}' authorises every address")
            elif term.name == "ip4" and isinstance(size, int) and size > 65536:
                tail.append(f"'{term.text}' authorises {size} addresses")
    if redirect_index is not None:
        terms[redirect_index].lookups = 1
    copied = tuple(evaluated) if redirect_index is None else (*evaluated, redirect_index)
    shared = tuple(terms)
    warnings = (*head, *tail)
    root_warnings = warnings
    if missing_all:
        root_warnings = (
            *head,
            "no 'all' mechanism and no redirect=: the default result is neutral ('?all')",
            *tail,
        )
    return Analysis(
        shared,
        (),
        warnings,
        root_warnings,
        all_index,
        tuple(evaluated),
        redirect_index,
        copied,
        _sum(shared),
    )


def _sum(terms: tuple[Term, ...]) -> int:
    return sum(term.lookups for term in terms)


def clear_analysis_cache() -> None:
    """Forget the analysed records (for benchmarks that must carry nothing over)."""
    analyse.cache_clear()
