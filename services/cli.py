"""The ``lookout`` command.

``lookout run``            the whole stack (embedded NATS unless NATS_URL is set)
``lookout service NAME``   one service alone: gateway, scheduler, provider-<name>,
                           sink-<target name>
``lookout services``       the service names the configuration yields (checked as run does)
``lookout lookup HOST…``    look indicators up through the bus (see lookup_cli for exits)
``lookout history VALUE``  what lookout found about an indicator over time
``lookout watch add|list|remove``   watch lists: indicators looked up again on a schedule
``lookout deadletters list [TARGET]``   every target's count, or what TARGET gave up on
``lookout deadletters replay TARGET``   deliver it again
``lookout silence add|list|expire``      silences (see silence_cli)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from services import registry
from services.lookup_cli import EXIT_STATUS as LOOKUP_EXIT_STATUS
from services.lookup_cli import add_arguments as add_lookup_arguments
from services.memory_cli import EXIT_STATUS as MEMORY_EXIT_STATUS
from services.memory_cli import add_history_arguments, add_watch_arguments
from services.silence_cli import add_arguments as add_silence_arguments
from shared.core import logging as log
from shared.core import service
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.relay.config import NAME_RE, relay

if TYPE_CHECKING:
    from shared.relay import deadletters as deadletters_t


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookout",
        description="Host lookups and a durable security-alert relay on NATS JetStream.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the whole stack on this machine")
    one = commands.add_parser("service", help="run one service (for containers and scaling)")
    one.add_argument(
        "name",
        help="gateway, scheduler, provider-<name> or sink-<target name>; see 'lookout services'",
    )
    names = commands.add_parser(
        "services",
        help="list the services the configuration yields",
        description="List the services the configuration yields, after checking it as "
        "'lookout run' does (exit 2 and the reason when run would refuse it).",
    )
    names.add_argument(
        "--skip-secrets",
        action="store_true",
        help="read no target's secrets (in a container that mounts only its own)",
    )
    lookup = commands.add_parser(
        "lookup",
        help="look indicators up through the bus (exit 1 when any is malicious)",
        description="Look indicators up through the bus.",
        epilog=f"{LOOKUP_EXIT_STATUS[0].upper()}{LOOKUP_EXIT_STATUS[1:]}.",
    )
    add_lookup_arguments(lookup)
    past = commands.add_parser(
        "history",
        help="what lookout found about an indicator over time",
        description="An indicator's history: its latest result per provider, its verdict "
        "changes and the jobs it was in (as GET /api/v1/indicators/VALUE).",
        epilog=f"{MEMORY_EXIT_STATUS[0].upper()}{MEMORY_EXIT_STATUS[1:]}.",
    )
    add_history_arguments(past)
    watch = commands.add_parser(
        "watch",
        help="watch lists: indicators looked up again on a schedule",
        description="Watch lists: the scheduler service looks their indicators up again "
        "every EVERY and notifies (notification.lookout.verdict_changed) when a verdict "
        "changes.",
        epilog=f"{MEMORY_EXIT_STATUS[0].upper()}{MEMORY_EXIT_STATUS[1:]}.",
    )
    add_watch_arguments(watch)
    dead = commands.add_parser("deadletters", help="list or replay a target's dead letters")
    actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="the notifications TARGET gave up on; without TARGET, every target's count",
    )
    listing.add_argument("target", nargs="?", metavar="TARGET")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument(
        "--limit", type=_positive, metavar="N", help="only TARGET's newest N dead letters"
    )
    again = actions.add_parser(
        "replay", help="deliver them to TARGET again: every one, or the one --id names"
    )
    again.add_argument("target")
    which = again.add_mutually_exclusive_group()
    which.add_argument("--id", help="a notification id or dead-letter sequence number")
    which.add_argument(
        "--all", action="store_true", help="every dead letter of TARGET (also without --id)"
    )
    silence = commands.add_parser(
        "silence", help="hold matching notifications back for a while: add, list, expire"
    )
    add_silence_arguments(silence)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`lookout … | head`): no traceback; what is still buffered
        # goes nowhere (Python's own advice for SIGPIPE), and the status says so.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13  # as a program ended by SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
    registry.register()  # first: every process knows the same integrations
    args = _parser().parse_args(argv)
    try:
        settings = config.load(secrets_of=_secret_scope(args))
        if args.command == "services":
            from services.supervisor import check_config

            # what `lookout run` refuses, this refuses too
            check_config(settings, targets=not args.skip_secrets)
            print("\n".join(registry.service_names(settings)))
            return 0
        if args.command == "service":
            return service.run(
                args.name, settings.log_level, registry.service_main(settings, args.name)
            )
        if args.command == "run":
            return _run_supervisor(settings)
        if args.command == "lookup":
            from services import lookup_cli

            return asyncio.run(lookup_cli.run(settings, args))
        if args.command == "deadletters":
            return asyncio.run(_deadletters(settings, args))
        if args.command in ("history", "watch"):
            from services import memory_cli

            main = memory_cli.history_main if args.command == "history" else memory_cli.watch_main
            return asyncio.run(main(settings, args))
        if args.command == "silence":
            from services import silence_cli

            return asyncio.run(silence_cli.run(settings, args))
    except ConfigError as exc:
        print(f"lookout: configuration error: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse rejects other commands


def _secret_scope(args: argparse.Namespace) -> tuple[str, ...] | None:
    """Whose target secrets this command reads: a sink its own target's, other services
    and commands none (so a deployment mounts each secret only where it is used);
    ``lookout run`` every one, to refuse a bad configuration before starting anything, and
    ``lookout services`` as run does (unless told to skip them)."""
    if args.command == "run" or (args.command == "services" and not args.skip_secrets):
        return None
    if args.command == "service" and args.name.startswith("sink-"):
        return (args.name.removeprefix("sink-"),)
    return ()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, not {text!r}")
    return value


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell (the last one is not padded)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


async def _deadletters(settings: config.Settings, args: argparse.Namespace) -> int:
    from shared.bus import direct
    from shared.bus.connect import BusUnavailable, connect
    from shared.relay import deadletters, streams

    if args.action == "replay":
        relay(settings).target(args.target)  # a replay needs the target's consumer: must exist
    elif args.target is None and args.limit is not None:
        print("lookout: --limit needs a TARGET", file=sys.stderr)
        return 2
    elif args.target is not None and not NAME_RE.fullmatch(args.target):
        print(
            f"lookout: {args.target!r} is not a target name (lower-case letters, digits, "
            "'_' and '-', at most 63)",
            file=sys.stderr,
        )
        return 2
    try:
        nc = await connect(settings.effective_nats_url, "lookout-cli", wait=10)
    except BusUnavailable as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 1
    try:
        js = nc.jetstream(timeout=settings.publish_timeout)
        await streams.ensure_streams(js, settings)
        reader = direct.Reader(nc, settings.publish_timeout)
        await reader.start()
        if args.action == "list" and args.target is None:
            return _list_targets(
                deadletters.per_target(settings, await deadletters.counts(js)), args
            )
        if args.action == "list":
            if args.limit is None:
                found = await deadletters.entries(reader, args.target)
                total = len(found)
            else:
                newest, total = await deadletters.newest(reader, args.target, args.limit)
                found = newest[::-1]
            return _list_entries(settings, args, found, total)
        found = await deadletters.entries(reader, args.target)
        chosen = deadletters.select(found, args.id)
        if not chosen:
            what = f"matching {args.id!r}" if args.id else "at all"
            print(f"lookout: no dead letter of {args.target} {what}", file=sys.stderr)
            return 1
        outcomes = await deadletters.replay(js, settings, args.target, chosen)
        for outcome in outcomes:
            if outcome.replayed:
                print(f"replayed {outcome.seq} ({outcome.notification_id}) to {args.target}")
            else:
                print(f"skipped {outcome.seq}: {outcome.reason}", file=sys.stderr)
        return 0 if all(o.replayed for o in outcomes) else 1
    except direct.ReadRefused as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()


def _list_targets(targets: list[deadletters_t.TargetCount], args: argparse.Namespace) -> int:
    """Every configured target and any other with dead letters, with its count."""
    import json

    if args.json:
        for t in targets:
            print(
                json.dumps(
                    {"name": t.name, "type": t.type, "configured": t.configured, "count": t.count}
                )
            )
        return 0
    _print_table(
        ["TARGET", "TYPE", "CONFIGURED", "DEAD LETTERS"],
        [[t.name, t.type or "-", "yes" if t.configured else "no", str(t.count)] for t in targets],
    )
    return 0


def _list_entries(
    settings: config.Settings,
    args: argparse.Namespace,
    found: list[deadletters_t.Entry],
    total: int,
) -> int:
    """A target's dead letters, oldest first; exit 2 for a target that is neither
    configured nor has any (as the API's 404)."""
    import json

    from shared.relay import deadletters

    if not total and deadletters.target_type(settings, args.target) is None:
        print(
            f"lookout: no target named {args.target!r} is configured, and none has dead "
            "letters under that name (`lookout deadletters list` shows every target)",
            file=sys.stderr,
        )
        return 2
    if args.json:
        for entry in found:
            print(json.dumps({"seq": entry.seq, **_builtins(entry.record)}))
        return 0
    rows = []
    for entry in found:
        r = entry.record
        note = r.notification
        rows.append(
            [
                str(entry.seq),
                r.failed_at,
                note.id if note else "(invalid message)",
                f"{note.source}/{note.type}" if note else "-",
                str(r.attempts),
                r.error,
            ]
        )
    _print_table(["SEQ", "FAILED AT", "ID", "SOURCE/TYPE", "ATTEMPTS", "ERROR"], rows)
    shown = "" if len(found) == total else f" ({len(found)} newest shown)"
    print(f"{total} dead letter(s) for {args.target}{shown}", file=sys.stderr)
    return 0


def _builtins(value: object) -> dict[str, object]:
    import msgspec

    # Through JSON, so the original message (kept as raw JSON) comes out as data.
    out: dict[str, object] = msgspec.json.decode(msgspec.json.encode(value))
    return out


def _run_supervisor(settings: config.Settings) -> int:
    import signal

    from services.supervisor import check_config, supervise

    check_config(settings)  # before anything starts
    from shared.bus.connect import BusUnavailable
    from shared.core.natsserver import NatsServerError
    from shared.core.service import EXIT_CANNOT_START, CannotStart

    log.setup("run", settings.log_level)

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await supervise(settings, stop)

    try:
        return asyncio.run(runner())
    except CannotStart as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    except (NatsServerError, BusUnavailable) as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
