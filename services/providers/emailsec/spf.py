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

Levels of the tree are fetched concurrently; the counts do not depend on timing. Domain
specs with macros are expanded only for ``%{d}`` (the current domain); a spec that needs the
sender (``%{i}``, ``%{s}``…) counts its lookup but is not resolved.

Terms are numbered from 1 (``v=spf1`` is term 0); offsets are 0-based character positions in
the record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .dnsclient import DnsAnswer, Resolver

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
    terms: list[Term] = []
    tokens = list(re.finditer(r"[^ ]+", record))
    for index, match in enumerate(tokens[1:], start=1):
        terms.append(_parse_term(match.group(), index, match.start()))
    return terms


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
            ipaddress.IPv4Address(address)
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
    for char in text:
        if not 0x21 <= ord(char) <= 0x7E:
            return f"invalid character {char!r}"
    return None


def _domain_spec_error(spec: str, *, exp: bool = False) -> str | None:
    """None when ``spec`` is a valid domain-spec: macro-string domain-end (RFC 7208 §7.1)."""
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
    result = "".join(out).rstrip(".").lower()
    while len(result) > 253 and "." in result:  # RFC 7208 §7.3: drop labels from the left
        result = result.split(".", 1)[1]
    return result


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
    terms: list[Term] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    temperrors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    all_term: Term | None = None
    redirect: Node | None = None
    candidates: list[str] = field(default_factory=list)

    @property
    def dns_lookups(self) -> int:
        return sum(term.lookups for term in self.terms)

    @property
    def void_lookups(self) -> int:
        return sum(1 for term in self.terms if term.void)

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
        out.update(
            {
                "record": self.record,
                "status": self.status,
                "terms": [term.to_dict() for term in self.terms],
                "includes": [child.to_dict() for child in self.children],
                "dns_lookups": self.dns_lookups,
                "void_lookups": self.void_lookups,
                "all": self.effective_all() if self.record is not None else None,
            }
        )
        if self.candidates:
            out["records"] = list(self.candidates)
        if self.errors:
            out["errors"] = list(self.errors)
        if self.temperrors:
            out["temperrors"] = list(self.temperrors)
        return out


def _prefix(term: Term) -> int | None:
    return term.cidr4 if term.name == "ip4" else term.cidr6


def _child_for(node: Node, term: Term) -> Node | None:
    for child in node.children:
        if child.parent_term is term:
            return child
    return None


class _Evaluation:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.records = 1  # the root
        self.resolved = 0
        self.truncated = False

    async def fetch(self, node: Node) -> None:
        """Fetch and parse the node's SPF record (status, record, terms)."""
        answer = await self.resolver.query(node.domain, "TXT")
        term = node.parent_term
        if not answer.answered and answer.rcode != "BADNAME":
            node.status = "temperror"
            node.temperrors.append(f"DNS {answer.rcode} for TXT {node.domain}")
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
                node.errors.append(f"{what} target {node.domain}: {why}")
            return
        if len(records) > 1:
            node.status = "permerror"
            node.errors.append("multiple SPF records")
            node.candidates = records
            return
        node.record = records[0]
        node.terms = parse_record(node.record)
        if len(node.record) > 255:
            node.warnings.append(
                f"the record is {len(node.record)} characters long, so it is split into "
                "several strings (valid, but some tools mishandle it)"
            )

    def plan(self, node: Node, next_level: list[Node], tasks: list[asyncio.Task[None]]) -> None:
        """Check the parsed record, start the resolutions of its terms and queue its
        children (include and redirect targets) for the next level. Called in tree order."""
        if node.status != "ok":
            return
        syntax = [term for term in node.terms if term.error is not None]
        for term in syntax:
            node.errors.append(f"{term.describe()}: {term.error}")
        for name in ("redirect", "exp"):
            found = [t for t in node.terms if t.kind == "modifier" and t.name == name]
            if len(found) > 1:
                node.errors.append(f"{name}= appears {len(found)} times (at most once)")
        if node.errors:
            node.status = "permerror"  # RFC 7208 §4.6: a syntax error stops everything
            return
        mechanisms = [t for t in node.terms if t.kind == "mechanism"]
        node.all_term = next((t for t in mechanisms if t.name == "all"), None)
        redirect = next((t for t in node.terms if t.name == "redirect"), None)
        if node.all_term is not None:
            after = mechanisms[mechanisms.index(node.all_term) + 1 :]
            if after:
                node.warnings.append(
                    f"terms after '{node.all_term.text}' are never evaluated: "
                    + " ".join(t.text for t in after)
                )
                # RFC 7208 §5.1: never tested, so they cost no lookup (§4.6.4 counts the
                # terms used during evaluation) and are not resolved.
                for term in after:
                    term.lookups = 0
                    term.info["note"] = "after 'all': never evaluated"
                mechanisms = mechanisms[: len(mechanisms) - len(after)]
            if redirect is not None:
                node.warnings.append("redirect= is ignored: the record has an 'all' mechanism")
        elif node.via == "root" and redirect is None:
            node.warnings.append(
                "no 'all' mechanism and no redirect=: the default result is neutral ('?all')"
            )
        for term in mechanisms:
            if term.name == "ptr":
                node.warnings.append(
                    f"'{term.text}' uses the deprecated 'ptr' mechanism (RFC 7208 §5.5)"
                )
            elif term.name == "include":
                self._follow(node, term, "include", next_level)
            elif term.name in ("a", "mx", "exists"):
                target = expand(term.value or "%{d}", node.domain)
                if target is None:
                    term.info["note"] = "depends on the sender: not resolved"
                elif self.resolved >= MAX_RESOLVED:
                    term.info["note"] = "not resolved (evaluation limit)"
                    self.truncated = True
                else:
                    self.resolved += 1
                    term.info["target"] = target
                    tasks.append(asyncio.ensure_future(self._resolve(node, term, target)))
            elif term.name in ("ip4", "ip6") and term.qualifier == "+":
                size = term.info.get("size")
                if _prefix(term) == 0:
                    node.warnings.append(f"'{term.text}' authorises every address")
                elif term.name == "ip4" and isinstance(size, int) and size > 65536:
                    node.warnings.append(f"'{term.text}' authorises {size} addresses")
        if node.all_term is None and redirect is not None:
            redirect.lookups = 1
            child = self._follow(node, redirect, "redirect", next_level)
            node.redirect = child

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
            node.errors.append(f"{via} loop: {loop}")
            node.status = "permerror"
            return None
        child = Node(domain=target, via=via, chain=(*node.chain, target), parent_term=term)
        node.children.append(child)
        if self.records >= MAX_RECORDS:
            child.status = "skipped"
            self.truncated = True
            return child
        self.records += 1  # reserved now, in tree order, so the bound is deterministic
        next_level.append(child)
        return child

    async def _resolve(self, node: Node, term: Term, target: str) -> None:
        answers: list[DnsAnswer]
        if term.name == "a":
            answers = list(
                await asyncio.gather(
                    self.resolver.query(target, "A"), self.resolver.query(target, "AAAA")
                )
            )
        elif term.name == "mx":
            answers = [await self.resolver.query(target, "MX")]
        else:
            answers = [await self.resolver.query(target, "A")]
        failed = [a for a in answers if not a.answered and a.rcode != "BADNAME"]
        if failed:
            node.temperrors.append(f"'{term.text}': DNS {failed[0].rcode} for {target}")
            term.info["rcode"] = failed[0].rcode
            return
        term.void = all(a.void for a in answers)
        if term.name == "mx":
            hosts = [record.split(" ", 1)[-1] for record in answers[0].records]
            hosts = [host for host in hosts if host not in (".", "")]  # null MX (RFC 7505)
            term.info["mx_hosts"] = hosts
            term.info["address_lookups"] = len(hosts)
            if len(hosts) > MAX_MX_HOSTS:
                node.errors.append(
                    f"'{term.text}': {target} has {len(hosts)} MX hosts (> {MAX_MX_HOSTS})"
                )
        else:
            term.info["addresses"] = [record for answer in answers for record in answer.records]

    async def fetch_level(self, level: list[Node]) -> None:
        await asyncio.gather(*(self.fetch(node) for node in level))


def _walk(node: Node) -> list[Node]:
    nodes = [node]
    for child in node.children:
        nodes.extend(_walk(child))
    return nodes


async def check_spf(domain: str, resolver: Resolver) -> dict[str, Any]:
    """Evaluate the SPF record of ``domain``; see the module doc for the output."""
    domain = domain.strip().rstrip(".").lower()
    evaluation = _Evaluation(resolver)
    root = Node(domain=domain, via="root", chain=(domain,))
    tasks: list[asyncio.Task[None]] = []  # resolutions of a/mx/exists, run as they come
    try:
        level = [root]
        while level:
            await evaluation.fetch_level(level)
            next_level: list[Node] = []
            for node in level:
                evaluation.plan(node, next_level, tasks)
            level = next_level
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()  # only on error or cancellation: a done task ignores it
    # The MX-host limit is only known once the resolutions are done.
    for node in _walk(root):
        if node.errors and node.status == "ok":
            node.status = "permerror"
    return _result(root, evaluation)


def _result(root: Node, evaluation: _Evaluation) -> dict[str, Any]:
    nodes = [node for node in _walk(root) if node.status != "skipped"]
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
        inside = node.record is not None or bool(node.candidates)
        prefix = f"{node.domain}: " if node.via != "root" and inside else ""
        errors.extend(_prefixed(prefix, node.errors))
        temperrors.extend(_prefixed(prefix, node.temperrors))
        warnings.extend(_prefixed(prefix, node.warnings))
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


def _prefixed(prefix: str, items: list[str]) -> list[str]:
    return [f"{prefix}{item}" for item in items]
