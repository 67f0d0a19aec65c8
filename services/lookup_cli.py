"""``lookout lookup``: look indicators up through the bus, from a terminal or a script.

Exit status: 0 when no indicator is malicious, 1 when at least one is (so it can gate a
script), 2 for bad input or configuration, 3 when the bus is unreachable or the results
did not all arrive within ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.kv import KeyValue

from shared import bus, indicators, jobs, requestid, schemas
from shared.config import Settings
from shared.providers import overall_verdict
from shared.schemas import PROVIDER_KINDS, LookupResult

COLOURS = {
    "malicious": "\033[1;31m",
    "suspicious": "\033[33m",
    "harmless": "\033[32m",
    "undetected": "\033[90m",
    "unknown": "\033[90m",
    "error": "\033[35m",
}
RESET = "\033[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "hosts",
        nargs="*",
        metavar="HOST",
        help="IPs, domains, URLs, emails (defanged is fine); - reads stdin",
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


def _read(args: argparse.Namespace) -> indicators.Parsed:
    items = [h for h in args.hosts if h != "-"]
    parts = [indicators.parse_items(items)] if items else []
    if "-" in args.hosts:
        parts.append(indicators.extract_stream(sys.stdin))
    if args.file:
        try:
            with open(args.file, encoding="utf-8", errors="replace") as handle:
                parts.append(indicators.extract_stream(handle))
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
    return indicators.Parsed(indicators=found, rejected=rejected)


def _paint(text: str, verdict: str, colour: bool) -> str:
    return f"{COLOURS.get(verdict, '')}{text}{RESET}" if colour else text


def _table(view: jobs.JobView, out: TextIO, colour: bool) -> None:
    providers = [p for p in PROVIDER_KINDS if any(p in ps for ps in view.job.providers.values())]
    rows = []
    for item, results in view.rows():
        verdict = overall_verdict([r.verdict for r in results if r.status == "done"])
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
        rows.append((item.value, verdict, cells))
    width = [max([len("INDICATOR"), *(min(len(r[0]), 60) for r in rows)]), len("suspicious")]
    cols = [
        min(30, max([len(p), *(len(r[2][i][0]) for r in rows)])) for i, p in enumerate(providers)
    ]
    header = [
        "INDICATOR".ljust(width[0]),
        "VERDICT".ljust(width[1]),
        *(p.upper().ljust(w) for p, w in zip(providers, cols, strict=True)),
    ]
    print("  ".join(header).rstrip(), file=out)
    for value, verdict, cells in rows:
        line = [value[:60].ljust(width[0]), _paint(verdict.ljust(width[1]), verdict, colour)]
        for (text, v), w in zip(cells, cols, strict=True):
            shown = text if len(text) <= w else text[: w - 1] + "…"
            line.append(_paint(shown.ljust(w), v, colour))
        print("  ".join(line).rstrip(), file=out)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    parsed = _read(args)
    for rejected in parsed.rejected:
        print(f"lookout: skipped {rejected.item!r}: {rejected.reason}", file=sys.stderr)
    if not parsed.indicators:
        print(
            "lookout: no indicator to look up (give HOSTs, --file F or - for stdin)",
            file=sys.stderr,
        )
        return 2
    if len(parsed.indicators) > settings.max_indicators:
        print(
            f"lookout: {len(parsed.indicators)} indicators; at most "
            f"{settings.max_indicators} per job (LOOKOUT_MAX_INDICATORS)",
            file=sys.stderr,
        )
        return 2
    wanted = [p.strip() for p in (args.providers or "").split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PROVIDER_KINDS]
    if unknown:
        print(
            f"lookout: unknown providers {', '.join(unknown)} (known: {', '.join(PROVIDER_KINDS)})",
            file=sys.stderr,
        )
        return 2
    try:
        nc = await bus.connect(settings.effective_nats_url, "lookout-cli", wait=10)
    except bus.BusUnavailable as exc:
        print(f"lookout: {exc} (is `lookout run` running?)", file=sys.stderr)
        return 3
    try:
        js = nc.jetstream(timeout=settings.publish_timeout)
        await bus.provision_lookups(js, settings)
        try:
            job = await jobs.submit(
                js, settings, parsed, wanted, args.fresh, request_id=requestid.new()
            )
        except jobs.SubmitError as exc:
            print(f"lookout: {exc}", file=sys.stderr)
            return 3
        results = await js.key_value(bus.RESULTS_BUCKET)
        view = jobs.JobView(job)
        expected = sum(len(job.providers.get(i.kind, [])) for i in job.indicators)
        progress = sys.stderr.isatty() and not (args.json or args.csv)
        found, watcher = await jobs.snapshot(results, job.id)
        deadline = time.monotonic() + args.timeout
        try:
            for result in found:
                view.add(result)
            while not view.complete and time.monotonic() < deadline:
                if progress:
                    done = sum(
                        1
                        for _, rs in view.rows()
                        for r in rs
                        if r.status not in ("pending", "queued")
                    )
                    print(f"\r{done}/{expected} results", end="", file=sys.stderr, flush=True)
                entry = await _next_result(watcher, min(1.0, deadline - time.monotonic()))
                if entry is not None:
                    view.add(entry)
        finally:
            await jobs.stop(watcher)
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
    if not view.complete:
        print(
            f"lookout: not every result arrived within {args.timeout:g}s "
            f"(job {job.id}; GET /api/v1/lookups/{job.id} has the rest)",
            file=sys.stderr,
        )
        return 3
    verdicts = [entry["verdict"] for entry in view.as_json()["indicators"]]
    return 1 if "malicious" in verdicts else 0


async def _next_result(watcher: KeyValue.KeyWatcher, timeout: float) -> LookupResult | None:
    """The next stored result, or None when nothing arrived within ``timeout``."""
    try:
        entry = await jobs.next_entry(watcher, max(0.05, timeout))
    except NatsTimeoutError:
        return None
    if entry is None or not entry.value:
        return None
    try:
        return schemas.decode_lookup_result(entry.value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
