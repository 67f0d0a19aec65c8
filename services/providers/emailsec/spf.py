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
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from shared.lookups.dns import DnsAnswer, Pending, Resolver, answers, cancel, start_query

from .spfrecord import (
    MAX_DNS_LOOKUPS,
    MAX_MX_HOSTS,
    MAX_RECORDS,
    MAX_RESOLVED,
    MAX_VOID_LOOKUPS,
    Analysis,
    Status,
    Term,
    analyse,
    expand,
    is_spf_record,
    parse_record,
    prefix_length,
)

__all__ = [
    "MAX_DNS_LOOKUPS",
    "MAX_MX_HOSTS",
    "MAX_VOID_LOOKUPS",
    "check_spf",
    "expand",
    "is_spf_record",
    "parse_record",
]

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
    analysis: Analysis | None = None

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
            if term.name == "all" or (term.name in ("ip4", "ip6") and prefix_length(term) == 0):
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
        analysis = node.analysis = analyse(record)
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
