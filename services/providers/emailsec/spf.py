"""SPF posture of a domain per RFC 7208, evaluated as a tree.

This audits a domain's SPF record rather than checking one sender: there is no client IP,
so every branch is followed (a real ``check_host()`` stops at the first match). The record
of the domain is fetched, parsed term by term (syntax errors are reported with the term's
number and character offset), and every ``include:`` and effective ``redirect=`` is
followed recursively; ``a``, ``mx`` and ``exists`` targets are resolved to find void
lookups. Counting follows RFC 7208 §4.6.4:

* ``include``, ``a``, ``mx``, ``ptr``, ``exists`` and a followed ``redirect`` count one DNS
  lookup each, over the whole tree (``ip4``, ``ip6``, ``all`` and ``exp`` count nothing);
  more than 10 is a permerror;
* each ``mx`` may name at most 10 MX hosts (their address lookups count against a separate
  limit of 10 per ``mx``); more is a permerror. The hosts' addresses are not resolved here;
* void lookups (NXDOMAIN, or NOERROR without an answer) of those terms, including an include
  or redirect target with no TXT at all, may be at most 2; more is a permerror.

Levels of the tree are fetched concurrently (the queries of a level, and the resolutions
of ``a``/``mx``/``exists`` terms, are all started before any answer is awaited; answers are
then read in tree order); the counts do not depend on timing. What a record says whatever
the domain that publishes it (its terms, syntax errors, warnings) is worked out once per
record text and kept (:data:`ANALYSIS_CACHE_SIZE` records): the records of big providers,
included by many domains, are not parsed again for each.

Domain specs with macros are expanded only for ``%{d}`` (the current domain); a spec that
needs the sender (``%{i}``, ``%{s}``…) counts its lookup but is not resolved.

Terms are numbered from 1 (``v=spf1`` is term 0); offsets are 0-based character positions in
the record.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from .dnsclient import DnsAnswer, Pending, Resolver, answers, cancel, start_query

__all__ = [
    "MAX_DNS_LOOKUPS",
    "MAX_MX_HOSTS",
    "MAX_VOID_LOOKUPS",
    "check_spf",
    "is_spf_record",
    "parse_record",
]

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
class _Analysis:
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
def _analyse(record: str) -> _Analysis:
    terms = parse_record(record)
    errors = [f"{term.describe()}: {term.error}" for term in terms if term.error is not None]
    for name in ("redirect", "exp"):
        found = [t for t in terms if t.kind == "modifier" and t.name == name]
        if len(found) > 1:
            errors.append(f"{name}= appears {len(found)} times (at most once)")
    if errors:  # RFC 7208 §4.6: a syntax error stops everything
        shared = tuple(terms)
        return _Analysis(shared, tuple(errors), (), (), None, (), None, (), _sum(shared))
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
            if _prefix(term) == 0:
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
    return _Analysis(
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
    _analyse.cache_clear()


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    domain: str
    via: Literal["root", "include", "redirect"]
    chain: tuple[str, ...]
    parent_term: Term | None = None
    record: str | None = None
    status: Status = "ok"
    # The lists start as one shared empty tuple (most stay empty), replaced by a list when
    # something is added: see _grown().
    terms: list[Term] = field(default_factory=list)
    children: list[Node] | tuple[()] = ()
    errors: list[str] | tuple[()] = ()
    temperrors: list[str] | tuple[()] = ()
    warnings: list[str] | tuple[()] = ()
    all_term: Term | None = None
    redirect: Node | None = None
    candidates: list[str] = field(default_factory=list)
    analysis: _Analysis | None = None

    @property
    def dns_lookups(self) -> int:
        return 0 if self.analysis is None else self.analysis.lookups

    @property
    def void_lookups(self) -> int:
        """Void lookups of the node's terms (once its evaluation is over)."""
        if self.analysis is None:
            return 0
        terms = self.terms
        return sum(1 for i in self.analysis.copied if terms[i].void)

    def effective_all(self) -> str | None:
        if self.all_term is not None:
            return f"{self.all_term.qualifier}all"
        if self.redirect is not None and self.redirect.status == "ok":
            return self.redirect.effective_all()
        return None

    def passes_all(self) -> bool:
        """Whether this record matches (with ``+``) every possible sender."""
        for term in self.terms:
            if term.qualifier != "+":
                continue
            if term.name == "all" or (term.name in ("ip4", "ip6") and _prefix(term) == 0):
                return True
            if term.name == "include":
                child = _child_for(self, term)
                if child is not None and child.status == "ok" and child.passes_all():
                    return True
        return (
            self.all_term is None
            and self.redirect is not None
            and self.redirect.status == "ok"
            and self.redirect.passes_all()
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"domain": self.domain, "via": self.via}
        if self.parent_term is not None and self.via == "include":
            out["qualifier"] = self.parent_term.qualifier
        terms: list[dict[str, Any]] = []
        if self.analysis is not None:
            dicts = self.analysis.shared_dicts()
            if dicts is None:
                terms = [term.to_dict() for term in self.terms]
            else:
                for term, shared in zip(self.terms, dicts, strict=True):
                    terms.append(term.to_dict() if shared is None else shared.copy())
        out["record"] = self.record
        out["status"] = self.status
        out["terms"] = terms
        out["includes"] = [child.to_dict() for child in self.children]
        out["dns_lookups"] = self.dns_lookups
        out["void_lookups"] = self.void_lookups
        out["all"] = self.effective_all() if self.record is not None else None
        if self.candidates:
            out["records"] = list(self.candidates)
        if self.errors:
            out["errors"] = list(self.errors)
        if self.temperrors:
            out["temperrors"] = list(self.temperrors)
        return out


_T = TypeVar("_T")


def _grown(items: list[_T] | tuple[()], item: _T) -> list[_T]:
    """``items`` with ``item`` appended: the list itself, or a new one in place of the
    shared empty tuple a :class:`Node` starts with."""
    if items:
        items.append(item)
        return items
    return [item]


def _prefix(term: Term) -> int | None:
    return term.cidr4 if term.name == "ip4" else term.cidr6


def _child_for(node: Node, term: Term) -> Node | None:
    for child in node.children:
        if child.parent_term is term:
            return child
    return None


_Resolution = tuple[Node, Term, str, tuple[Pending, ...]]
"""An ``a``/``mx``/``exists`` term being resolved: node, term, target, its queries."""


class _Evaluation:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.records = 1  # the root
        self.resolved = 0
        self.truncated = False
        self.resolutions: list[_Resolution] = []
        self.started: list[asyncio.Future[DnsAnswer]] = []
        """Queries not answered from the cache at once, to cancel if the evaluation is."""

    def start(self, name: str, rdtype: str) -> Pending:
        pending = start_query(self.resolver, name, rdtype)
        if not isinstance(pending, DnsAnswer):
            self.started.append(pending)
        return pending

    def fetched(self, node: Node, answer: DnsAnswer) -> None:
        """Read the node's SPF record from its TXT answer (status, record, terms)."""
        term = node.parent_term
        if not answer.answered and answer.rcode != "BADNAME":
            node.status = "temperror"
            node.temperrors = _grown(node.temperrors, f"DNS {answer.rcode} for TXT {node.domain}")
            return
        if term is not None and answer.void:
            term.void = True
        records = [text for text in answer.records if is_spf_record(text)]
        if not records:
            node.status = "none"
            if term is not None:  # RFC 7208 §5.2 and §6.1: "none" there is a permerror
                what = "include" if node.via == "include" else "redirect"
                why = {"NXDOMAIN": "domain does not exist", "BADNAME": "invalid name"}.get(
                    answer.rcode, "no SPF record"
                )
                node.status = "permerror"
                node.errors = _grown(node.errors, f"{what} target {node.domain}: {why}")
            return
        if len(records) > 1:
            node.status = "permerror"
            node.errors = _grown(node.errors, "multiple SPF records")
            node.candidates = records
            return
        record = node.record = records[0]
        analysis = node.analysis = _analyse(record)
        terms = list(analysis.terms)
        for i in analysis.copied:
            terms[i] = terms[i].copy()
        node.terms = terms
        if len(record) > 255:
            node.warnings = _grown(
                node.warnings,
                f"the record is {len(record)} characters long, so it is split into "
                "several strings (valid, but some tools mishandle it)",
            )

    def plan(self, node: Node, next_level: list[Node]) -> None:
        """Check the parsed record, start the resolutions of its terms and queue its
        children (include and redirect targets) for the next level. Called in tree order."""
        analysis = node.analysis
        if node.status != "ok" or analysis is None:
            return
        if analysis.errors:
            node.errors = [*node.errors, *analysis.errors]
            node.status = "permerror"
            return
        warnings = analysis.root_warnings if node.via == "root" else analysis.warnings
        if warnings:
            node.warnings = [*node.warnings, *warnings]
        terms = node.terms
        if analysis.all_index is not None:
            node.all_term = terms[analysis.all_index]
        for i in analysis.evaluated:
            term = terms[i]
            if term.name == "include":
                self._follow(node, term, "include", next_level)
                continue
            target = expand(term.value or "%{d}", node.domain)
            if target is None:
                term.info["note"] = "depends on the sender: not resolved"
            elif self.resolved >= MAX_RESOLVED:
                term.info["note"] = "not resolved (evaluation limit)"
                self.truncated = True
            else:
                self.resolved += 1
                term.info["target"] = target
                queries: tuple[Pending, ...]
                if term.name == "a":
                    queries = (self.start(target, "A"), self.start(target, "AAAA"))
                else:
                    queries = (self.start(target, "MX" if term.name == "mx" else "A"),)
                self.resolutions.append((node, term, target, queries))
        if analysis.redirect_index is not None:
            node.redirect = self._follow(
                node, terms[analysis.redirect_index], "redirect", next_level
            )

    def _follow(
        self, node: Node, term: Term, via: Literal["include", "redirect"], next_level: list[Node]
    ) -> Node | None:
        target = expand(term.value or "", node.domain)
        if target is None:
            term.info["note"] = "depends on the sender: not followed"
            return None
        term.info["target"] = target
        if target in node.chain:
            loop = " -> ".join((*node.chain, target))
            node.errors = _grown(node.errors, f"{via} loop: {loop}")
            node.status = "permerror"
            return None
        child = Node(domain=target, via=via, chain=(*node.chain, target), parent_term=term)
        node.children = _grown(node.children, child)
        if self.records >= MAX_RECORDS:
            child.status = "skipped"
            self.truncated = True
            return child
        self.records += 1  # reserved now, in tree order, so the bound is deterministic
        next_level.append(child)
        return child

    def record_resolution(
        self, node: Node, term: Term, target: str, answers: list[DnsAnswer]
    ) -> None:
        """Record what the resolution of an ``a``/``mx``/``exists`` term found."""
        failed = [a for a in answers if not a.answered and a.rcode != "BADNAME"]
        if failed:
            node.temperrors = _grown(
                node.temperrors, f"'{term.text}': DNS {failed[0].rcode} for {target}"
            )
            term.info["rcode"] = failed[0].rcode
            return
        term.void = all(a.void for a in answers)
        if term.name == "mx":
            hosts = [record.split(" ", 1)[-1] for record in answers[0].records]
            hosts = [host for host in hosts if host not in (".", "")]  # null MX (RFC 7505)
            term.info["mx_hosts"] = hosts
            term.info["address_lookups"] = len(hosts)
            if len(hosts) > MAX_MX_HOSTS:
                node.errors = _grown(
                    node.errors,
                    f"'{term.text}': {target} has {len(hosts)} MX hosts (> {MAX_MX_HOSTS})",
                )
        else:
            term.info["addresses"] = [record for answer in answers for record in answer.records]


def _walk(node: Node, into: list[Node]) -> list[Node]:
    into.append(node)
    for child in node.children:
        _walk(child, into)
    return into


async def check_spf(domain: str, resolver: Resolver) -> dict[str, Any]:
    """Evaluate the SPF record of ``domain``; see the module doc for the output."""
    domain = domain.strip().rstrip(".").lower()
    evaluation = _Evaluation(resolver)
    root = Node(domain=domain, via="root", chain=(domain,))
    # Every query of a level is started before any answer is awaited, and the resolutions
    # of a/mx/exists run while the next levels are fetched; answers are read in tree order.
    try:
        level = [root]
        while level:
            txts = await answers([evaluation.start(node.domain, "TXT") for node in level])
            for node, answer in zip(level, txts, strict=True):
                evaluation.fetched(node, answer)
            next_level: list[Node] = []
            for node in level:
                evaluation.plan(node, next_level)
            level = next_level
        resolutions = evaluation.resolutions
        resolved = iter(await answers([q for _, _, _, queries in resolutions for q in queries]))
        for node, term, target, queries in resolutions:
            evaluation.record_resolution(node, term, target, [next(resolved) for _ in queries])
    except BaseException:
        cancel(evaluation.started)
        raise
    nodes = _walk(root, [])
    for node in nodes:
        # The MX-host limit is only known once the resolutions are done.
        if node.errors and node.status == "ok":
            node.status = "permerror"
    return _result(root, nodes, evaluation)


def _result(root: Node, walked: list[Node], evaluation: _Evaluation) -> dict[str, Any]:
    nodes = [node for node in walked if node.status != "skipped"]
    lookups = sum(node.dns_lookups for node in nodes)
    voids = sum(node.void_lookups for node in nodes)
    errors: list[str] = []
    temperrors: list[str] = []
    warnings: list[str] = []
    at_least = "at least " if evaluation.truncated else ""
    if lookups > MAX_DNS_LOOKUPS:
        errors.append(f"too many DNS lookups ({at_least}{lookups} > {MAX_DNS_LOOKUPS})")
    if voids > MAX_VOID_LOOKUPS:
        errors.append(f"too many void DNS lookups ({voids} > {MAX_VOID_LOOKUPS})")
    for node in nodes:
        # Errors about fetching a record name it already; those inside a record get its domain.
        if node.via == "root" or (node.record is None and not node.candidates):
            errors.extend(node.errors)
            temperrors.extend(node.temperrors)
            warnings.extend(node.warnings)
        else:
            prefix = f"{node.domain}: "
            errors.extend(prefix + item for item in node.errors)
            temperrors.extend(prefix + item for item in node.temperrors)
            warnings.extend(prefix + item for item in node.warnings)
        if node.via != "root" and node.record is not None and node.all_term is not None:
            qualifier = node.all_term.qualifier
            if qualifier == "+":
                warnings.append(
                    f"{node.domain}: '+all' in an included record: "
                    f"'{node.parent_term.text if node.parent_term else node.domain}' "
                    "matches every sender"
                )
    if evaluation.truncated:
        warnings.append("evaluation stopped early: the record tree is very large")
    effective_all = root.effective_all() if root.record is not None else None
    if effective_all == "+all":
        warnings.insert(0, f"'+all' lets any server send mail as {root.domain}")
    elif effective_all == "?all":
        warnings.insert(0, "'?all' is neutral: mail from any server is neither passed nor failed")
    status: Status
    if root.status == "none":
        status = "none"
    elif errors:
        status = "permerror"
    elif temperrors or root.status == "temperror":
        status = "temperror"
    else:
        status = "ok"
    return {
        "record": root.record,
        "valid": status == "ok",
        "status": status,
        "dns_lookups": lookups,
        "void_lookups": voids,
        "errors": errors,
        "temperrors": temperrors,
        "warnings": list(dict.fromkeys(warnings)),
        "all": effective_all,
        "pass_all": root.status == "ok" and root.record is not None and root.passes_all(),
        "tree": root.to_dict(),
    }
