"""``lookout history VALUE`` and ``lookout watch add|list|remove``: lookout's memory from a
terminal, through the bus (as ``lookout lookup``), reading what the API reads.

Exit status: 0 done; 1 nothing found (an indicator never looked up, a watch that does not
exist); 2 bad input or configuration; 3 bus unreachable or refusing the read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.bus import direct
from shared.bus.connect import BusUnavailable, connect
from shared.core import requestid
from shared.core.settings import Settings
from shared.lookups import catalog, history, indicators, watches
from shared.lookups import streams as lookup_streams

EXIT_STATUS = (
    "exit status: 0 done; 1 nothing found (never looked up, no such watch); 2 bad input or "
    "configuration; 3 bus unreachable"
)


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("value", metavar="VALUE", help="an indicator (defanged is fine)")
    parser.add_argument("--json", action="store_true", help="as GET /api/v1/indicators/VALUE")


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="watch indicators: look them up again every EVERY")
    add.add_argument("indicators", nargs="+", metavar="VALUE")
    add.add_argument("--every", required=True, help="e.g. 30m, 6h, 1d")
    add.add_argument("--providers", help="comma-separated subset, e.g. dns,virustotal")
    add.add_argument(
        "--notify-on",
        choices=watches.NOTIFY_ON,
        default="any_change",
        help="any_change (default): any verdict change; worse: only a worse overall verdict",
    )
    add.add_argument("--comment", default="", help="a note kept with the watch")
    listing = actions.add_parser("list", help="every watch with its schedule")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    remove = actions.add_parser("remove", help="stop watching")
    remove.add_argument("id", metavar="ID")


def _fail(message: str, status: int) -> int:
    print(f"lookout: {message}", file=sys.stderr)
    return status


async def history_main(settings: Settings, args: argparse.Namespace) -> int:
    parsed = indicators.parse_items([args.value])
    if parsed.rejected or len(parsed.indicators) != 1:
        why = parsed.rejected[0].reason if parsed.rejected else "give one indicator"
        return _fail(f"not an indicator: {why}", 2)
    item = parsed.indicators[0]
    try:
        nc = await connect(settings.effective_nats_url, "lookout-cli", wait=10)
    except BusUnavailable as exc:
        return _fail(f"{exc} (is `lookout run` running?)", 3)
    try:
        reader = direct.Reader(nc, settings.publish_timeout)
        await reader.start()
        entry = await history.read(reader, item.kind, item.value)
    except direct.ReadRefused as exc:
        return _fail(f"cannot read the history: {exc}", 3)
    finally:
        await nc.close()
    if entry is None:
        return _fail(f"{item.value} was never looked up (or its history expired)", 1)
    shown = history.as_json(entry)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    _print_history(shown)
    return 0


def _print_history(shown: dict[str, Any]) -> None:
    print(f"{shown['value']} ({shown['kind']})")
    print(f"  first seen  {shown['first_seen']}")
    print(f"  last seen   {shown['last_seen']}")
    print(f"  verdict     {shown['verdict']}: {'; '.join(shown['verdict_reasons'])}")
    print("\nPROVIDER        RESULT                                  CHECKED AT")
    for p in shown["providers"]:
        said = p["summary"] or p["verdict"] if p["status"] == "done" else p["status"]
        if p["status"] == "error" and p["error"]:
            said = f"error: {p['error']}"
        print(f"{p['label'][:14]:<15} {said[:39]:<39} {p['checked_at']}")
    print("\nVERDICT HISTORY (newest first)")
    for change in shown["verdict_history"]:
        print(f"  {change['at']}  {change['verdict']:<10}  job {change['job_id']}")
    print("\nJOBS (newest first)")
    for job in shown["jobs"]:
        note = f"  watch {job['watch']}" if job["watch"] else ""
        print(f"  {job['created_at']}  {job['id']}  {job['indicators']} indicator(s){note}")


async def watch_main(settings: Settings, args: argparse.Namespace) -> int:
    built: watches.Watch | None = None
    if args.action == "add":
        wanted = [p.strip() for p in (args.providers or "").split(",") if p.strip()]
        try:
            built = watches.build(
                watches.WatchInput(
                    indicators=args.indicators,
                    every=args.every,
                    providers=wanted,
                    notify_on=args.notify_on,
                    comment=args.comment,
                ),
                settings,
                requestid.new(),
            )
        except watches.Invalid as exc:
            for item in exc.rejected:
                print(f"lookout: {item['item']!r}: {item['reason']}", file=sys.stderr)
            running = ", ".join(catalog.active_names(settings))
            known = f" (running: {running})" if "providers" in str(exc) else ""
            return _fail(f"{exc}{known}", 2)
    elif args.action == "remove" and not _is_watch_id(args.id):
        return _fail(f"no watch {args.id!r}", 1)
    try:
        nc = await connect(settings.effective_nats_url, "lookout-cli", wait=10)
    except BusUnavailable as exc:
        return _fail(f"{exc} (is `lookout run` running?)", 3)
    try:
        js = nc.jetstream(timeout=settings.publish_timeout)
        await lookup_streams.provision(js, settings)
        reader = direct.Reader(nc, settings.publish_timeout)
        await reader.start()
        if built is not None:
            try:
                await watches.create(js, reader, built)
            except watches.TooMany as exc:
                return _fail(str(exc), 2)
            print(built.id)
            return 0
        if args.action == "remove":
            if not await watches.remove(js, reader, args.id):
                return _fail(f"no watch {args.id!r}", 1)
            return 0
        found = await watches.load_all(reader)
        states = await watches.states(reader) if found else {}
    except direct.ReadRefused as exc:
        return _fail(f"cannot read the watches: {exc}", 3)
    finally:
        await nc.close()
    shown = [watches.as_json(w, states.get(w.id)) for w in found]
    if args.json:
        for item in shown:
            print(json.dumps(item))
        return 0
    _print_watches(shown)
    return 0


def _is_watch_id(text: str) -> bool:
    import re

    return re.fullmatch(watches.WATCH_ID, text) is not None


def _print_watches(shown: list[dict[str, Any]]) -> None:
    rows = [
        [
            w["id"],
            w["every"],
            w["notify_on"],
            str(len(w["indicators"])),
            w["next_run_at"] or "-",
            w["last_run_at"] or "-",
            ", ".join(i["value"] for i in w["indicators"][:3])
            + (" …" if len(w["indicators"]) > 3 else ""),
        ]
        for w in shown
    ]
    header = ["ID", "EVERY", "NOTIFY ON", "INDICATORS", "NEXT RUN", "LAST RUN", "WATCHING"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
