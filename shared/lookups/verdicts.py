"""How an indicator's results combine into its overall verdict, and why: the one rule the
API, the CSV and the CLI use (the web UI mirrors it in ``render.js``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from shared.lookups import catalog
from shared.lookups.schemas import LookupResult

# How an indicator's results combine into its overall verdict: the first one present in
# this order wins. A real finding outranks the absence of one; then "could not be checked"
# (``error``) and "not checked yet" (``pending``) outrank "checked, no opinion"
# (``unknown``), so nothing that failed ever looks like a quiet answer.
OverallVerdict = Literal[
    "malicious", "suspicious", "harmless", "undetected", "error", "pending", "unknown"
]
VERDICT_ORDER: tuple[OverallVerdict, ...] = (
    "malicious",
    "suspicious",
    "harmless",
    "undetected",
    "error",
    "pending",
    "unknown",
)


def overall_verdict(verdicts: Iterable[OverallVerdict]) -> OverallVerdict:
    """The first of :data:`VERDICT_ORDER` among ``verdicts`` (what each result counts as,
    see :func:`counts_as`); ``unknown`` when there is none."""
    present = set(verdicts)
    for verdict in VERDICT_ORDER:
        if verdict in present:
            return verdict
    return "unknown"


def counts_as(result: LookupResult) -> OverallVerdict | None:
    """What one result adds to its indicator's overall verdict: its verdict when ``done``;
    ``error`` when it could not be checked (``error``, ``quota_exhausted``); ``pending``
    while it waits (``pending``, ``queued``); nothing when ``not_configured`` (a missing
    API key never fails a job)."""
    if result.status == "done":
        return result.verdict
    if result.status in ("error", "quota_exhausted"):
        return "error"
    if result.status in ("pending", "queued"):
        return "pending"
    return None


def _reason(result: LookupResult) -> str:
    label = catalog.label(result.provider)
    if result.status == "done":
        said = result.summary or result.verdict
    elif result.status == "pending":
        said = "pending"
    else:
        said = result.error or result.summary or result.status.replace("_", " ")
    return f"{label}: {said}"


def judge(results: Iterable[LookupResult]) -> tuple[OverallVerdict, list[str]]:
    """An indicator's overall verdict and why: the providers whose results gave it, each
    as ``"<Provider>: <its summary or error>"`` (e.g. ``"Reputation: 9/74 engines"``,
    ``"Registry: cannot connect: Connection refused"``). The one rule the API, the CSV and
    the CLI use (the web UI mirrors it in ``render.js``).

    When no result counts (every provider not configured, or none applies) the verdict
    is ``unknown`` and the reasons are the not-configured providers' explanations, or
    :data:`NONE_APPLIES` when the job asks no provider that looks this kind up."""
    given = list(results)
    if not given:
        return "unknown", [NONE_APPLIES]
    counted = [(counts_as(r), r) for r in given]
    verdict = overall_verdict(v for v, _ in counted if v is not None)
    reasons = [_reason(r) for v, r in counted if v == verdict]
    if not reasons:
        reasons = [_reason(r) for v, r in counted if v is None]
    return verdict, reasons


NONE_APPLIES = "no provider of this job looks up this kind of indicator"
"""The reason of an indicator no provider of its job applies to (``providers`` chosen
for other kinds only, e.g. an address provider alone for a domain). Mirrored in
``render.js``."""
