"""``lookout lookup``: look indicators up through the bus, from a terminal or a script.

Exit status (the first that applies): 2 for bad input or configuration; 3 when the bus is
unreachable; 1 when at least one indicator is malicious (so it can gate a script), even if
other results failed; 3 when a result could not be checked (``error``, ``quota_exhausted``)
or the results did not all arrive within ``--timeout``; else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import TextIO

from nats.aio.client import Client as NATS

from shared.bus import direct
from shared.bus.connect import BusUnavailable, connect
from shared.core import requestid
from shared.core.settings import Settings
from shared.lookups import catalog, indicators, jobs
from shared.lookups import streams as lookup_streams
from shared.lookups.config import lookups
from shared.lookups.verdicts import counts_as, judge

EXIT_STATUS = (
    "exit status, the first that applies: 2 bad input or configuration; 3 bus unreachable; "
    "1 an indicator is malicious (even if other results failed); 3 a result could not be "
    "checked (error, quota_exhausted) or did not arrive within --timeout; else 0"
)

COLOURS = {
    "malicious": "\033[1;31m",
    "suspicious": "\033[33m",
    "harmless": "\033[32m",
    "undetected": "\033[90m",
    "unknown": "\033[90m",
    "pending": "\033[90m",
    "error": "\033[35m",
}
RESET = "\033[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "hosts",
        nargs="*",
        metavar="HOST",
        help="IPs, domains, URLs, emails, file hashes (defanged is fine); - reads stdin",
    )
    parser.add_argument("--file", "-f", help="read indicators from a text or CSV file")
    parser.add_argument("--providers", help="comma-separated subset, e.g. dns,virustotal")
    parser.add_argument("--fresh", action="store_true", help="bypass the cache")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="the whole job as JSON")
    output.add_argument("--csv", action="store_true", help="one CSV row per indicator")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for every result (default 300)",
    )


SHOWN_SKIPPED = 50
"""Skipped items and lines listed on stderr; past that, only how many more."""


def _lines(
    name: str, lines: Iterable[str], parts: list[indicators.Parsed], skipped: list[str]
) -> None:
    """Free text read line by line; every non-empty line nothing was read from is told."""
    parsed, empty = indicators.extract_lines(lines)
    parts.append(parsed)
    skipped.extend(f"{name} line {s.line} {s.text!r}: {s.reason}" for s in empty)


def _read(args: argparse.Namespace) -> tuple[indicators.Parsed, list[str]]:
    """The indicators, and what was skipped (rejected items, lines without any) with why."""
    items = [h for h in args.hosts if h != "-"]
    parts = [indicators.parse_items(items)] if items else []
    lines: list[str] = []
    if "-" in args.hosts:
        _lines("stdin", sys.stdin, parts, lines)
    if args.file:
        try:
            with open(args.file, encoding="utf-8", errors="replace") as handle:
                _lines(args.file, handle, parts, lines)
        except OSError as exc:  # bad input: exit 2, not 1 (which means "malicious found")
            print(f"lookout: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            raise SystemExit(2) from None
    seen: set[tuple[str, str]] = set()
    found, rejected = [], []
    for part in parts:
        for item in part.indicators:
            if (item.kind, item.value) not in seen:
                seen.add((item.kind, item.value))
                found.append(item)
        rejected.extend(part.rejected)
    skipped = [f"{r.item!r}: {r.reason}" for r in rejected] + lines
    return indicators.Parsed(indicators=found, rejected=rejected), skipped


def _paint(text: str, verdict: str, colour: bool) -> str:
    return f"{COLOURS.get(verdict, '')}{text}{RESET}" if colour else text


def _table(view: jobs.JobView, out: TextIO, colour: bool) -> None:
    providers = [p for p in catalog.names() if any(p in ps for ps in view.job.providers.values())]
    rows = []
    for item, results in view.rows():
        verdict, reasons = judge(results)
        by = {r.provider: r for r in results}
        cells = []
        for p in providers:
            r = by.get(p)
            if r is None:
                cells.append(("", "unknown"))
            elif r.status == "done":
                cells.append((r.summary or r.verdict, r.verdict))
            else:
                cells.append(
                    (
                        r.status + (f": {r.error}" if r.error else ""),
                        "error" if r.status == "error" else "unknown",
                    )
                )
        rows.append((item.value, verdict, cells, "; ".join(reasons)))
    width = [max([len("INDICATOR"), *(min(len(r[0]), 60) for r in rows)]), len("suspicious")]
    cols = [
        min(30, max([len(p), *(len(r[2][i][0]) for r in rows)])) for i, p in enumerate(providers)
    ]
    header = [
        "INDICATOR".ljust(width[0]),
        "VERDICT".ljust(width[1]),
        *(p.upper().ljust(w) for p, w in zip(providers, cols, strict=True)),
        "WHY",
    ]
    print("  ".join(header).rstrip(), file=out)
    for value, verdict, cells, why in rows:
        line = [value[:60].ljust(width[0]), _paint(verdict.ljust(width[1]), verdict, colour)]
        for (text, v), w in zip(cells, cols, strict=True):
            shown = text if len(text) <= w else text[: w - 1] + "…"
            line.append(_paint(shown.ljust(w), v, colour))
        line.append(why)  # the last column: never cut
        print("  ".join(line).rstrip(), file=out)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    parsed, skipped = _read(args)
    for what in skipped[:SHOWN_SKIPPED]:
        print(f"lookout: skipped {what}", file=sys.stderr)
    if len(skipped) > SHOWN_SKIPPED:
        print(f"lookout: … and {len(skipped) - SHOWN_SKIPPED} more skipped", file=sys.stderr)
    if not parsed.indicators:
        print(
            "lookout: no indicator to look up (give HOSTs, --file F or - for stdin)",
            file=sys.stderr,
        )
        return 2
    if len(parsed.indicators) > lookups(settings).max_indicators:
        print(
            f"lookout: {len(parsed.indicators)} indicators; at most "
            f"{lookups(settings).max_indicators} per job (LOOKOUT_MAX_INDICATORS)",
            file=sys.stderr,
        )
        return 2
    wanted = [p.strip() for p in (args.providers or "").split(",") if p.strip()]
    active = catalog.active_names(settings)
    unknown = [p for p in wanted if p not in active]
    if unknown:
        print(
            f"lookout: unknown or turned-off providers {', '.join(unknown)} "
            f"(known: {', '.join(active)})",
            file=sys.stderr,
        )
        return 2
    try:
        nc = await connect(settings.effective_nats_url, "lookout-cli", wait=10)
    except BusUnavailable as exc:
        print(f"lookout: {exc} (is `lookout run` running?)", file=sys.stderr)
        return 3
    try:
        js = nc.jetstream(timeout=settings.publish_timeout)
        await lookup_streams.provision(js, settings)
        try:
            job = await jobs.submit(
                js, settings, parsed, wanted, args.fresh, request_id=requestid.new()
            )
        except jobs.SubmitError as exc:
            print(f"lookout: {exc}", file=sys.stderr)
            return 3
        view = jobs.JobView(job)
        expected = sum(len(job.providers.get(i.kind, [])) for i in job.indicators)
        progress = sys.stderr.isatty() and not (args.json or args.csv)
        deadline = time.monotonic() + args.timeout
        try:
            await _follow(nc, settings, view, deadline, expected if progress else None)
        except direct.ReadRefused as exc:
            print(f"lookout: cannot read the results: {exc}", file=sys.stderr)
            return 3
        if progress:
            print("\r" + " " * 30 + "\r", end="", file=sys.stderr, flush=True)
    finally:
        await nc.close()

    if args.json:
        print(json.dumps(view.as_json(), indent=2))
    elif args.csv:
        sys.stdout.write(jobs.csv_text(view))
    else:
        _table(view, sys.stdout, colour=sys.stdout.isatty())
        print(f"job {job.id}", file=sys.stderr)
    return _exit_status(view, job.id, args.timeout)


def _exit_status(view: jobs.JobView, job_id: str, timeout: float) -> int:
    """1 when an indicator is malicious (whatever else happened: the finding is certain);
    else 3 when a result could not be checked (``error``, ``quota_exhausted``) or did not
    arrive within ``timeout``; else 0. Each non-zero cause is told on stderr."""
    rows = view.rows()
    failed = [r for _, results in rows for r in results if counts_as(r) == "error"]
    if failed:
        print(
            f"lookout: {len(failed)} result{'s' if len(failed) != 1 else ''} could not be "
            f"checked (e.g. {failed[0].provider} for {failed[0].indicator}: "
            f"{failed[0].error or failed[0].summary or failed[0].status})",
            file=sys.stderr,
        )
    if not view.complete:
        print(
            f"lookout: not every result arrived within {timeout:g}s "
            f"(job {job_id}; GET /api/v1/lookups/{job_id} has the rest)",
            file=sys.stderr,
        )
    if any(judge(results)[0] == "malicious" for _, results in rows):
        return 1
    return 3 if failed or not view.complete else 0


RESYNC_AFTER = 5.0
"""Seconds without a new result after which the stored results are read again (for one
the subscription missed, e.g. while reconnecting)."""


async def _follow(
    nc: NATS, settings: Settings, view: jobs.JobView, deadline: float, expected: int | None
) -> None:
    """Fill ``view`` with the job's results until it is complete or ``deadline`` passes;
    with ``expected``, show the progress on stderr. Reads make no consumer (a core NATS
    subscription and direct gets: see shared.bus.direct)."""
    reader = direct.Reader(nc, settings.publish_timeout)
    await reader.start()
    follower = jobs.Follower(nc, reader, view.job.id)
    try:
        for stored in await follower.start():
            view.add(stored)
        quiet_since = time.monotonic()
        while not view.complete and time.monotonic() < deadline:
            if expected is not None:
                print(f"\r{view.finished}/{expected} results", end="", file=sys.stderr, flush=True)
            results = await follower.next(max(0.05, min(1.0, deadline - time.monotonic())))
            for result in results:
                view.add(result)
            if results:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= RESYNC_AFTER:
                quiet_since = time.monotonic()
                for stored in await follower.resync():
                    view.add(stored)
    finally:
        await follower.stop()
