"""``lookout silence add|list|expire``: silences straight on the bus, as the API keeps them
(:mod:`shared.relay.silences`). Made here, a silence's author is ``local``.

Exit status: 0 done; 1 the bus or the silence could not be reached (or none has that id);
2 a silence lookout refuses (the reason on stderr)."""

from __future__ import annotations

import argparse
import json
import sys

from shared.core.settings import Settings
from shared.relay import silences
from shared.relay.silences import Silence, SilenceError, SilenceInput


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="silence matching notifications for a while",
        description="Hold back every notification all the given matchers take, until the "
        "silence ends. At least one matcher. --source and --type are kept as notifications "
        "hold them (SSHBruteForce: sshbruteforce); --ip takes an address or a network.",
    )
    for name in silences.MATCHERS:
        what = "one of its addresses is, or is in," if name == "ip" else f"its {name} is"
        add.add_argument(f"--{name}", metavar="VALUE", help=f"{what} VALUE")
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument("--duration", help="how long from now: 2h, 90m, 1h30m, 1d, 1w")
    end.add_argument("--ends-at", metavar="TIME", help="when it ends (RFC 3339)")
    add.add_argument("--comment", default="", help="why")
    listing = actions.add_parser("list", help="active silences, then recently expired ones")
    listing.add_argument("--active", action="store_true", help="only the active ones")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    expire = actions.add_parser("expire", help="end a silence now")
    expire.add_argument("id", help="the silence's id")


def _matchers(silence: Silence) -> str:
    return " ".join(f"{name}={value}" for name, value in silence.matchers.items())


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from shared.bus import direct
    from shared.bus.connect import BusUnavailable, connect
    from shared.bus.manage import ensure_bucket

    made: Silence | None = None
    if args.action == "add":
        given = {n: getattr(args, n) for n in silences.MATCHERS if getattr(args, n) is not None}
        try:
            made = silences.make(
                SilenceInput(
                    matchers=given,
                    duration=args.duration,
                    ends_at=args.ends_at,
                    comment=args.comment,
                ),
                "local",
            )
        except SilenceError as exc:
            print(f"lookout: {exc}", file=sys.stderr)
            return 2
    elif args.action == "expire" and not silences.valid_id(args.id):
        print(f"lookout: {args.id!r} is not a silence id (a UUID)", file=sys.stderr)
        return 2
    try:
        nc = await connect(settings.effective_nats_url, "lookout-cli", wait=10)
    except BusUnavailable as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 1
    try:
        js = nc.jetstream(timeout=settings.publish_timeout)
        await ensure_bucket(js, silences.bucket_config(), settings.stream_replicas)
        reader = direct.Reader(nc, settings.publish_timeout)
        await reader.start()
        if made is not None:
            await silences.save(js, made)
            print(made.id)
            print(f"silenced until {made.ends_at}: {_matchers(made)}", file=sys.stderr)
            return 0
        if args.action == "expire":
            try:
                ended = await silences.expire(js, reader, args.id, "local")
            except SilenceError as exc:
                print(f"lookout: {exc}", file=sys.stderr)
                return 1
            if ended is None:
                print(f"lookout: no silence {args.id}", file=sys.stderr)
                return 1
            print(f"expired {ended.id} at {ended.ends_at}")
            return 0
        return _list(silences.ordered(await silences.stored(reader)), args)
    except direct.ReadRefused as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()


def _list(found: list[Silence], args: argparse.Namespace) -> int:
    shown = [silences.view(s) for s in found]
    if args.active:
        shown = [s for s in shown if s["state"] == "active"]
    if args.json:
        for item in shown:
            print(json.dumps(item))
        return 0
    rows = [
        [
            s["id"],
            s["state"],
            s["ends_at"],
            s["created_by"],
            " ".join(f"{k}={v}" for k, v in s["matchers"].items()),
            s["comment"],
        ]
        for s in shown
    ]
    header = ["ID", "STATE", "ENDS AT", "BY", "MATCHERS", "COMMENT"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return 0
