"""The ``lookout`` command.

``lookout run``            the whole stack (embedded NATS unless NATS_URL is set)
``lookout service NAME``   one service alone: gateway, sink-<target name>
``lookout services``       the service names the current configuration yields
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from shared import config, service
from shared import logging as log


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookout",
        description="Host lookups and a durable security-alert relay on NATS JetStream.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the whole stack on this machine")
    one = commands.add_parser("service", help="run one service (for containers and scaling)")
    one.add_argument("name", help="gateway or sink-<target name>; see 'lookout services'")
    commands.add_parser("services", help="list the services the configuration yields")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.load()
        if args.command == "services":
            from services.registry import service_names

            print("\n".join(service_names(settings)))
            return 0
        if args.command == "service":
            from services.registry import service_main

            return service.run(args.name, settings.log_level, service_main(settings, args.name))
        if args.command == "run":
            return _run_supervisor(settings)
    except config.ConfigError as exc:
        print(f"lookout: configuration error: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse rejects other commands


def _run_supervisor(settings: config.Settings) -> int:
    import signal

    settings.check_bind()

    from services.supervisor import supervise
    from shared.bus import BusUnavailable
    from shared.natsserver import NatsServerError

    log.setup("run", settings.log_level)

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await supervise(settings, stop)

    try:
        return asyncio.run(runner())
    except (NatsServerError, BusUnavailable) as exc:
        print(f"lookout: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
