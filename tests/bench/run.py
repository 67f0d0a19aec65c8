"""``make bench``: webhook ingest throughput and latency, gateway vs baseline.

Runs the real gateway (``lookout service gateway``) and a minimal aiohttp handler that only
checks the HMAC and awaits a JetStream publish (``baseline.py``) against the same
nats-server, and loads each with wrk (``-t1 -c32``) in alternating rounds (A B C A B C …),
reporting medians, the ratio and each server's peak RSS. A second baseline publishes with
the gateway's ``shared.bus.publish.Publisher`` instead of ``js.publish``: the gateway against it
is the cost of the gateway's own work, apart from what its leaner publish saves. Bodies are
distinct signed Sqreen security_event messages as a Sqreen sender posts them
(``message_id`` null: the id is the event's), so every request is stored (no dedup
shortcut). Each server has a stream of its own, and the order of the three is rotated
from round to round.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.core.natsserver import NatsServer, find_binary, free_port

HERE = Path(__file__).parent
FIXTURE = HERE.parent / "fixtures" / "sqreen" / "v2_security_event.json"
SECRET = "bench-secret-4f9a"
LOOKOUT = str(Path(sys.executable).parent / "lookout")
BASELINE_LEAN = "baseline-publisher"  # the baseline publishing as the gateway does
DEDUP_WINDOW = "1"  # seconds


def make_bodies(path: Path, count: int) -> None:
    template = json.loads(FIXTURE.read_text())[0]
    with path.open("w") as out:
        for i in range(count):
            message = {**template, "message_id": None}
            message["message"] = {**template["message"], "event_id": f"evt-{i:07d}"}
            body = json.dumps([message], separators=(",", ":"))
            sig = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            out.write(f"{sig}\t{body}\n")


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status in (200, 405):
                    return
        except OSError as exc:
            if getattr(exc, "code", None) == 405:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(text: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        lat[pct] = float(value) * UNITS[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return {
        "rps": rps,
        "requests": total,
        "p50_ms": lat.get("50", float("nan")),
        "p99_ms": lat.get("99", float("nan")),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def run_wrk(port: int, seconds: int, connections: int, bodies: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(HERE / "bodies.lua"),
            f"http://127.0.0.1:{port}/webhooks/sqreen",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODIES": str(bodies)},
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = parse_wrk(out.stdout)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result["wrk_us"] = used / result["requests"] * 1e6
    return result


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bodies = tmp / "bodies.tsv"
        make_bodies(bodies, 50_000)
        server = NatsServer(tmp / "nats")
        server.start()
        gw_port = free_port()
        env = {
            **os.environ,
            "NATS_URL": server.url,
            "SQREEN_WEBHOOK_SECRET": SECRET,
            "LOOKOUT_HTTP_PORT": str(gw_port),
            # The same duplicate window for all three (a second: shorter than one cycle of
            # the bodies, so every request is stored; the default hour measured the same).
            "LOOKOUT_DEDUP_WINDOW": DEDUP_WINDOW,
        }
        # The gateway as deployed: the default log level, no configuration file.
        env.pop("LOOKOUT_CONFIG", None)
        env.pop("LOOKOUT_LOG_LEVEL", None)
        ports = {"baseline": free_port(), BASELINE_LEAN: free_port(), "gateway": gw_port}
        procs = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "baseline.py"),
                    "--port",
                    str(ports[name]),
                    "--nats",
                    server.url,
                    "--secret",
                    SECRET,
                    "--publisher",
                    publisher,
                    "--dedup-window",
                    DEDUP_WINDOW,
                ],
                stdout=subprocess.DEVNULL,
            )
            for name, publisher in (("baseline", "js"), (BASELINE_LEAN, "lookout"))
        }
        procs["gateway"] = subprocess.Popen(
            [LOOKOUT, "service", "gateway"], env=env, stdout=subprocess.DEVNULL
        )
        try:
            wait_http(f"http://127.0.0.1:{gw_port}/readyz")
            for name in ("baseline", BASELINE_LEAN):
                wait_http(f"http://127.0.0.1:{ports[name]}/webhooks/sqreen")
            time.sleep(1.0)
            assert server.process is not None
            nats_pid = server.process.pid
            results: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
            for port in ports.values():
                run_wrk(port, 2, args.connections, bodies)  # warm-up
            names = list(ports)
            for round_no in range(args.rounds):
                order = names[round_no % 3 :] + names[: round_no % 3]
                for name in order:
                    pid = procs[name].pid
                    before, nats_before = cpu_seconds(pid), cpu_seconds(nats_pid)
                    result = run_wrk(ports[name], args.seconds, args.connections, bodies)
                    # CPU per request: what req/s is the inverse of when the server has a
                    # core to itself, and unlike req/s not squeezed by other load.
                    result["cpu_us"] = (cpu_seconds(pid) - before) / result["requests"] * 1e6
                    result["nats_us"] = (
                        (cpu_seconds(nats_pid) - nats_before) / result["requests"] * 1e6
                    )
                    results[name].append(result)
                    print(
                        f"round {round_no + 1} {name:18}: {result['rps']:9.0f} req/s  "
                        f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                        f"CPU {result['cpu_us']:.0f} us/req (nats-server "
                        f"{result['nats_us']:.0f}, wrk {result['wrk_us']:.0f})  "
                        f"non-2xx {result['non2xx']:.0f}",
                        flush=True,
                    )
                per_round = {n: results[n][-1] for n in names}
                print(
                    f"round {round_no + 1} gateway/baseline: "
                    f"{per_round['gateway']['rps'] / per_round['baseline']['rps']:.2f} req/s, "
                    f"{per_round['baseline']['cpu_us'] / per_round['gateway']['cpu_us']:.2f} "
                    "CPU",
                    flush=True,
                )
            rss = {name: peak_rss_mb(proc.pid) for name, proc in procs.items()}
            rss["nats-server"] = peak_rss_mb(server.process.pid) if server.process else 0.0
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(10)
            server.stop()

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def per_round(numerator: str, denominator: str, key: str) -> float:
        """The median of the rounds' ratios: the servers of one round ran minutes apart at
        most, so a ratio within a round is less moved by the machine's other load than a
        ratio of medians taken over different rounds."""
        pairs = zip(results[numerator], results[denominator], strict=True)
        return statistics.median(a[key] / b[key] for a, b in pairs)

    ratio = per_round("gateway", "baseline", "rps")
    own = per_round("gateway", BASELINE_LEAN, "rps")
    cpu_ratio = per_round("baseline", "gateway", "cpu_us")
    nats_version = subprocess.run(
        [find_binary(), "--version"], capture_output=True, text=True
    ).stdout.strip()
    print()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{nats_version}, wrk -t1 -c{args.connections} -d{args.seconds}s, "
        f"{args.rounds} alternating rounds, medians"
    )
    print()
    print(
        "| handler | req/s | p50 ms | p99 ms | CPU µs/req | nats-server µs/req | wrk µs/req "
        "| peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in ("baseline", BASELINE_LEAN, "gateway"):
        print(
            f"| {name} | {med(name, 'rps'):.0f} | {med(name, 'p50_ms'):.2f} | "
            f"{med(name, 'p99_ms'):.2f} | {med(name, 'cpu_us'):.0f} | "
            f"{med(name, 'nats_us'):.0f} | {med(name, 'wrk_us'):.0f} | {rss[name]:.0f} |"
        )
    print(f"\nnats-server peak RSS: {rss['nats-server']:.0f} MB")
    print("ratios: medians of the rounds' ratios")
    print(f"ratio gateway/baseline (req/s): {ratio:.2f}  (goal >= 0.80)")
    print(
        f"ratio baseline/gateway CPU per request: {cpu_ratio:.2f}  (the req/s ratio on a "
        "quiet machine, where each server has a core to itself)"
    )
    print(
        f"ratio gateway/{BASELINE_LEAN} (req/s): {own:.2f}  (the gateway's own work, "
        "both publishing with shared.bus.publish.Publisher)"
    )
    failures = sum(r["non2xx"] for rs in results.values() for r in rs)
    if failures:
        print(f"WARNING: {failures:.0f} non-2xx answers during the runs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
