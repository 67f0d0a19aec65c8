"""``lookout run``: the whole stack on one machine.

Starts the embedded nats-server (unless ``NATS_URL`` is set), provisions streams and
consumers, then every service as its own process; restarts a service that crashes (with
backoff) and stops everything, nats-server last, on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import aiohttp

from services.gateway import hooks as gateway_hooks
from services.gateway import state as gateway_state
from services.registry import build_target, service_names
from shared.bus.connect import connect
from shared.core import logging as log
from shared.core.errors import ConfigError
from shared.core.metrics import url_host
from shared.core.natsserver import NatsServer, NatsServerError, die_with_parent
from shared.core.natsurl import safe_url
from shared.core.service import EXIT_CANNOT_START, check_port
from shared.core.settings import Settings
from shared.relay.config import relay

_log = log.get("run")
STOP_GRACE = 15.0


@dataclass
class Child:
    name: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = field(default=1.0)
    cannot_start: bool = False
    relays: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "service",
            self.name,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        out, err = self.process.stdout, self.process.stderr
        assert out is not None
        assert err is not None
        self.relays = [  # to this process's own file descriptors 1 and 2
            asyncio.create_task(relay_lines(out, 1)),
            asyncio.create_task(relay_lines(err, 2)),
        ]
        self.started = time.monotonic()

    async def relayed(self) -> None:
        """Wait until the last lines of the process that ended are written out."""
        relays, self.relays = self.relays, []
        if relays:
            _, late = await asyncio.wait(relays, timeout=5.0)
            for task in late:  # someone else holds the pipe open: stop reading it
                task.cancel()

    async def stop(self) -> None:
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            _log.warning("service did not stop in time, killing it", service=self.name)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await self.relayed()


RELAY_CHUNK = 65536


async def relay_lines(stream: asyncio.StreamReader, fd: int) -> None:
    """Copy a service's output to ``fd`` in whole lines, each write ending with a newline.

    Every service writes its log lines to a pipe of its own and ``lookout run`` alone
    writes to its stdout, one write per batch of whole lines: lines of several services
    never cut into one another, even lines longer than a pipe writes atomically
    (PIPE_BUF, 4 KiB) or written with PYTHONUNBUFFERED. A last line without its newline
    gets one. When ``fd`` fails (a closed pipe), the output is read and dropped, so a
    service never blocks on a full pipe."""
    pending = b""
    writable = True
    while chunk := await stream.read(RELAY_CHUNK):
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            writable = writable and _write_all(fd, pending[:cut])
            pending = pending[cut:]
    if pending and writable:
        _write_all(fd, pending + b"\n")


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return False
    return True


async def _watch(child: Child, stop: asyncio.Event) -> None:
    """Keep one service running until ``stop``; restart it with backoff when it dies."""
    while not stop.is_set():
        await child.start()
        assert child.process is not None
        waiter = asyncio.ensure_future(child.process.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stop.is_set():
            waiter.cancel()
            return
        await child.relayed()  # its last words (a traceback, a reason) before ours
        code = child.process.returncode
        if code == EXIT_CANNOT_START and child.restarts == 0:
            # It said why on stderr (a port taken…): restarting changes nothing.
            child.cannot_start = True
            _log.error("service cannot start, stopping everything", service=child.name)
            stop.set()
            return
        if time.monotonic() - child.started > 60:
            child.backoff = 1.0
        child.restarts += 1
        _log.error(
            "service exited, restarting",
            service=child.name,
            code=code,
            restart_in=child.backoff,
            restarts=child.restarts,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), child.backoff)
        child.backoff = min(child.backoff * 2, 30.0)


async def _wait_ready(url: str, stop: asyncio.Event, within: float = 60.0) -> bool:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline and not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return True
            await asyncio.sleep(0.2)
    return False


def _display_host(host: str) -> str:
    """``host`` for a URL to open: a wildcard bind shown as the loopback address."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else url_host(host)


def _child_envs(settings: Settings, env: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Each service's environment. With ``LOOKOUT_METRICS_PORT`` set, the workers get
    consecutive metrics ports after it (base+1, base+2, …; 0: each a free port of its own);
    the gateway serves ``/metrics`` on its HTTP port."""
    names = service_names(settings)
    base = settings.metrics_port
    if base is None:
        return [(name, env) for name in names]
    workers = [name for name in names if name != "gateway"]
    if base and base + len(workers) > 65535:
        raise ConfigError(
            f"LOOKOUT_METRICS_PORT={base}: {len(workers)} workers need ports up to "
            f"{base + len(workers)}, above 65535"
        )
    out: list[tuple[str, dict[str, str]]] = []
    offset = 0
    for name in names:
        if name == "gateway":
            child_env = {k: v for k, v in env.items() if k != "LOOKOUT_METRICS_PORT"}
        else:
            offset += 1
            child_env = {**env, "LOOKOUT_METRICS_PORT": str(base + offset if base else 0)}
        out.append((name, child_env))
    return out


def _print_metrics_ports(settings: Settings, children: list[Child]) -> None:
    if settings.metrics_port is None:
        return
    host = _display_host(settings.metrics_host)
    gateway = f"http://{_display_host(settings.http_host)}:{settings.http_port}/metrics"
    lines = [f"  {'gateway':<24} {gateway}"]
    for child in children:
        port = child.env.get("LOOKOUT_METRICS_PORT")
        if child.name != "gateway" and port is not None:
            where = f"http://{host}:{port}/metrics" if port != "0" else "a free port (logged)"
            lines.append(f"  {child.name:<24} {where}")
    print("metrics:\n" + "\n".join(lines), flush=True)


def _check_ports(settings: Settings, children: list[Child]) -> None:
    """Refuse to start (:class:`CannotStart`, one line naming the port and the setting)
    when a port lookout is to listen on is taken: before anything starts, rather than a
    gateway that crash-loops while another program answers on its port."""
    check_port(settings.http_host, settings.http_port, "LOOKOUT_HTTP_PORT")
    if settings.nats_url is None:
        check_port(
            "127.0.0.1",
            settings.nats_port,
            "LOOKOUT_NATS_PORT",
            "for the embedded nats-server: set LOOKOUT_NATS_PORT to a free port, "
            "or NATS_URL to use that server",
        )
    for child in children:
        port = child.env.get("LOOKOUT_METRICS_PORT")
        if child.name != "gateway" and port is not None:
            check_port(settings.metrics_host, int(port), "LOOKOUT_METRICS_PORT")


NATS_BACKOFF = (0.5, 30.0)
"""First and longest wait before the embedded nats-server is started again."""


async def _watch_nats(server: NatsServer, stop: asyncio.Event) -> None:
    """Keep the embedded nats-server running until ``stop``: when it dies, log its exit
    with the tail of its log and start it again, with backoff, on the same port and store
    directory. The services' connections reconnect by themselves."""
    backoff, longest = NATS_BACKOFF
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
        if stop.is_set() or not server.exited():
            continue
        if time.monotonic() - started > 60:
            backoff = NATS_BACKOFF[0]
        _log.error(
            "embedded nats-server exited, restarting",
            code=server.returncode,
            restart_in=backoff,
            log_tail=server.log_tail(),
        )
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            if stop.is_set():
                return
            backoff = min(backoff * 2, longest)
            try:
                await server.restart()
            except NatsServerError as exc:
                _log.error(
                    "embedded nats-server did not start again, retrying",
                    error=str(exc),
                    restart_in=backoff,
                )
                continue
            started = time.monotonic()
            _log.info("embedded nats-server restarted", url=server.url, pid=server.pid)
            break


def check_config(settings: Settings, *, targets: bool = True) -> None:
    """What ``lookout run`` refuses in a loaded configuration beyond :func:`config.load`
    (:class:`ConfigError`): a public bind without API tokens, metrics ports past 65535 and,
    with ``targets`` (every target's secrets read), what each target checks when it is
    built (a webhook URL that is not http(s), a malformed routing key…), which would
    otherwise stop that sink only once it runs; and what the gateway checks of the
    sources (``[[sources]]``: their secrets, the reserved name ``sqreen``).
    ``lookout services`` checks the same."""
    settings.check_bind()
    _child_envs(settings, {})
    if targets:
        for target in relay(settings).targets:
            build_target(target, settings)  # no I/O: sessions open when the sink starts
        gateway_hooks.configured(settings)  # no I/O either: the sources' receivers


async def supervise(settings: Settings, stop: asyncio.Event) -> int:
    check_config(settings)
    server: NatsServer | None = None
    env = dict(os.environ)
    children = [Child(name, child_env) for name, child_env in _child_envs(settings, env)]
    _check_ports(settings, children)
    nats_watcher: asyncio.Task[None] | None = None
    if settings.nats_url is None:
        data_dir = settings.data_dir.resolve()
        try:
            (data_dir / "nats").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"LOOKOUT_DATA_DIR: cannot keep data in {data_dir}: {exc.strerror or exc}"
            ) from None
        print(f"lookout: keeping its data in {data_dir} (LOOKOUT_DATA_DIR)", flush=True)
        server = NatsServer(data_dir / "nats", port=settings.nats_port)
        server.start()  # blocking, on purpose: on the main thread (see die_with_parent)
        env["NATS_URL"] = server.url
        for child in children:
            child.env["NATS_URL"] = server.url
        _log.info("embedded nats-server started", url=server.url, store=str(server.store_dir))
        nats_watcher = asyncio.create_task(_watch_nats(server, stop))
    url = env.get("NATS_URL") or settings.effective_nats_url
    try:
        nc = await connect(url, "lookout-run", wait=30)
        try:
            await gateway_state.provision(nc.jetstream(), settings)
        finally:
            await nc.close()
        _print_metrics_ports(settings, children)
        watchers = [asyncio.create_task(_watch(child, stop)) for child in children]
        base = f"http://{_display_host(settings.http_host)}:{settings.http_port}"
        if await _wait_ready(f"{base}/readyz", stop):
            print(
                f"\nlookout is running: {base}/  (NATS {safe_url(url)}; Ctrl-C stops)\n",
                flush=True,
            )
        elif not stop.is_set():
            _log.error("gateway not ready after 60s; still trying", url=f"{base}/readyz")
        await stop.wait()
        _log.info("stopping services")
        await asyncio.gather(*(child.stop() for child in children))
        await asyncio.gather(*watchers, return_exceptions=True)
    finally:
        if nats_watcher is not None:
            nats_watcher.cancel()
            await asyncio.gather(nats_watcher, return_exceptions=True)
        if server is not None:
            server.stop()
            _log.info("embedded nats-server stopped")
    unable = [child for child in children if child.cannot_start]
    if unable:
        names = ", ".join(child.name for child in unable)
        print(f"lookout: {names} cannot start (see the message above); stopped", file=sys.stderr)
        return EXIT_CANNOT_START
    return 0
