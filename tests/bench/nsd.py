"""NSD serving zone texts on a loopback port, for the benchmarks: a real authoritative
server in C that keeps up with every provider process asking at once (the Python zone
server of the test suite drops queries under that load). ``make bench`` checks NSD is
installed (``apt-get install nsd``); it runs as the current user on a free port, so it
needs no root and no port 53 (unless asked for it: the SPF/DMARC benchmark's baseline,
checkdmarc, only asks port 53).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.message
import dns.query
import dns.rcode

HOST = "127.0.0.1"


def free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP on ``HOST`` (NSD listens on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for NSD")


class Nsd:
    """``with Nsd(directory, {"example.com": zone_text}) as nsd:`` then ask
    ``nsd.nameserver`` (``"127.0.0.1:PORT"``, the format of ``LOOKOUT_DNS_NAMESERVERS``).
    Rate limiting is off; answers carry no NS/glue (``minimal-responses``), as from the
    recursive resolvers lookout asks in production."""

    def __init__(
        self,
        directory: Path,
        zones: Mapping[str, str | Path],
        *,
        probe: str,
        probe_type: str = "A",
        port: int | None = None,
        minimal: bool = True,
    ) -> None:
        """``zones``: each zone's text, or the path of its zone file. ``port``: a free one
        when None. ``minimal``: answers without NS/glue."""
        if shutil.which("nsd") is None:
            raise RuntimeError("the benchmark needs nsd (apt-get install nsd)")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_udp_and_tcp_port() if port is None else port
        self.probe = probe
        """A name with a ``probe_type`` record, asked until NSD answers it."""
        self.probe_type = probe_type
        lines = [
            "server:",
            f"    ip-address: {HOST}",
            f"    port: {self.port}",
            "    do-ip6: no",
            "    server-count: 1",
            "    reuseport: no",
            '    username: ""',
            '    chroot: ""',
            f'    zonesdir: "{directory}"',
            f'    pidfile: "{directory}/nsd.pid"',
            '    database: ""',
            f'    zonelistfile: "{directory}/zone.list"',
            f'    xfrdfile: "{directory}/xfrd.state"',
            f'    xfrdir: "{directory}"',
            f'    logfile: "{directory}/nsd.log"',
            "    verbosity: 1",
            "    hide-version: yes",
            "    rrl-ratelimit: 0",
            "    rrl-whitelist-ratelimit: 0",
            f"    minimal-responses: {'yes' if minimal else 'no'}",
            "    receive-buffer-size: 8388608",
            "    send-buffer-size: 8388608",
            "remote-control:",
            "    control-enable: no",
        ]
        for name, zone in zones.items():
            if isinstance(zone, str):
                path = directory / f"{name}.zone"
                path.write_text(zone)
            else:
                path = zone
            lines += ["zone:", f"    name: {name}", f'    zonefile: "{path}"']
        self.conf = directory / "nsd.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def pids(self) -> list[int]:
        """NSD's main process and its children (the server process answers queries)."""
        if self.proc is None:
            return []
        out = [self.proc.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                        out.append(int(entry.name))
        return out

    @property
    def nameserver(self) -> str:
        return f"{HOST}:{self.port}"

    def peak_rss_mb(self) -> float:
        """The largest peak resident size of NSD's processes, in MiB."""
        peak = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        return peak / 1024

    def __enter__(self) -> Self:
        self.start()
        return self

    def start(self) -> None:
        check = subprocess.run(
            ["nsd-checkconf", str(self.conf)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"nsd-checkconf: {check.stdout}{check.stderr}")
        self.proc = subprocess.Popen(
            ["nsd", "-d", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "nsd.stderr").open("wb"),
        )
        deadline = time.monotonic() + 60
        query = dns.message.make_query(self.probe, self.probe_type)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.directory / "nsd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"nsd exited ({self.proc.returncode}): {log}")
            with contextlib.suppress(Exception):
                answer = dns.query.udp(query, HOST, timeout=0.5, port=self.port)
                if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("nsd did not answer in time")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    @staticmethod
    def version() -> str:
        out = subprocess.run(["nsd", "-v"], capture_output=True, text=True, check=False)
        return (out.stdout + out.stderr).splitlines()[0].strip()
