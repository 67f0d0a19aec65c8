"""``lookout run`` as an operator runs it: the whole stack as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from helpers import (
    LOOPBACK_ALLOW,
    SQREEN_SECRET,
    WHSEC,
    Receiver,
    post_webhook,
    sqreen_fixture,
    wait_for,
)

from shared.natsserver import free_port, port_is_free
from shared.schemas import PROVIDER_KINDS

LOOKOUT = str(Path(sys.executable).parent / "lookout")
PROVIDERS = [f"provider-{name}" for name in PROVIDER_KINDS]


def config_file(tmp_path: Path, receiver_url: str) -> Path:
    path = tmp_path / "lookout.toml"
    path.write_text(
        f"""
[[targets]]
name = "ops-http"
type = "http"
url = "{receiver_url}"
secret = "{WHSEC}"

[[targets]]
name = "audit"
type = "log"
"""
    )
    return path


def env_for(tmp_path: Path, receiver_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKOUT_", "NATS_"))}
    env.update(
        LOOKOUT_CONFIG=str(config_file(tmp_path, receiver_url)),
        LOOKOUT_DATA_DIR=str(tmp_path / "data"),
        LOOKOUT_HTTP_PORT=str(free_port()),
        LOOKOUT_NATS_PORT=str(free_port()),
        SQREEN_WEBHOOK_SECRET=SQREEN_SECRET,
        LOOKOUT_OUTBOUND_ALLOW=LOOPBACK_ALLOW,  # the receiver listens on loopback
    )
    return env


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def start_run(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """``lookout run`` with ``env`` in ``tmp_path``; its output (every service's) goes to
    the returned log file."""
    log_path = tmp_path / "run.log"
    proc = subprocess.Popen(
        [LOOKOUT, "run"],
        env=env,
        cwd=tmp_path,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return proc, log_path


@pytest.mark.slow
async def test_run_whole_stack(tmp_path: Path, receiver: Receiver) -> None:
    env = env_for(tmp_path, receiver.url)
    base = f"http://127.0.0.1:{env['LOOKOUT_HTTP_PORT']}"
    proc, log_path = start_run(env, tmp_path)
    try:
        await wait_for(lambda: "lookout is running" in log_path.read_text(), within=60)
        assert f"{base}/" in log_path.read_text()
        async with aiohttp.ClientSession() as session:
            for path in ("/healthz", "/readyz", "/", "/metrics"):
                async with session.get(base + path) as response:
                    assert response.status == 200, path
        # the embedded bus keeps its data under LOOKOUT_DATA_DIR
        assert (tmp_path / "data" / "nats" / "jetstream").is_dir()

        status, answer = await post_webhook(base, sqreen_fixture("v2_security_event.json"))
        assert status == 200
        await wait_for(lambda: len(receiver.requests) == 2, within=30)
        await wait_for(lambda: answer["ids"][0] in log_path.read_text(), within=30)  # log sink

        # a crashed service is restarted and picks up where it left off
        [sink] = [p for p in children_of(proc.pid) if "sink-ops-http" in cmdline(p)]
        os.kill(sink, signal.SIGKILL)
        await wait_for(lambda: "service exited, restarting" in log_path.read_text(), within=20)
        status, _ = await post_webhook(base, sqreen_fixture("v2_test.json"))
        assert status == 200
        await wait_for(lambda: len(receiver.requests) == 3, within=30)
        kids = children_of(proc.pid)
        names = sorted(cmdline(p).split()[-1] for p in kids if "services.cli" in cmdline(p))
        assert names == sorted(["gateway", *PROVIDERS, "sink-audit", "sink-ops-http"])
        assert any("nats-server" in cmdline(p) for p in kids)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert "embedded nats-server stopped" in log_path.read_text()
    for pid in kids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    assert port_is_free("127.0.0.1", int(env["LOOKOUT_NATS_PORT"]))
    assert port_is_free("127.0.0.1", int(env["LOOKOUT_HTTP_PORT"]))
    text = log_path.read_text()
    assert SQREEN_SECRET not in text
    assert WHSEC not in text
    assert WHSEC.removeprefix("whsec_") not in text


def test_services_lists_names(tmp_path: Path) -> None:
    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    out = subprocess.run([LOOKOUT, "services"], env=env, capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.split() == ["gateway", *PROVIDERS, "sink-ops-http", "sink-audit"]
    del env["LOOKOUT_CONFIG"]
    out = subprocess.run([LOOKOUT, "services"], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["gateway", *PROVIDERS, "sink-log"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"LOOKOUT_HTTP_PORT": "http"}, "LOOKOUT_HTTP_PORT must be an integer"),
        ({"LOOKOUT_HTTP_HOST": "0.0.0.0"}, "LOOKOUT_API_TOKENS"),
        ({"LOOKOUT_CONFIG": "/nonexistent.toml"}, "LOOKOUT_CONFIG: cannot read"),
    ],
)
def test_bad_config_stops_startup_with_a_clear_message(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    env = {**env_for(tmp_path, "http://127.0.0.1:9/x"), **change}
    for command in (["run"], ["service", "gateway"]):
        out = subprocess.run(
            [LOOKOUT, *command], env=env, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 2
        assert message in out.stderr
        assert "Traceback" not in out.stderr


def test_a_service_reads_only_its_own_targets_secrets(tmp_path: Path) -> None:
    """A sink's secret file missing stops that sink (and ``lookout run``), clearly, but not
    the services that never read it."""
    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    config = Path(env["LOOKOUT_CONFIG"])
    missing = tmp_path / "not-mounted" / "slack_webhook_url"
    config.write_text(
        config.read_text() + f'\n[[targets]]\nname = "chat"\ntype = "slack"\n'
        f'webhook_url_file = "{missing}"\n'
    )

    def lookout(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LOOKOUT, *args], env=env, capture_output=True, text=True, timeout=30)

    listed = lookout("services")
    assert listed.returncode == 0, listed.stderr
    assert "sink-chat" in listed.stdout.split()
    for command in (["service", "sink-chat"], ["run"]):
        out = lookout(*command)
        assert out.returncode == 2, command
        assert "(chat).webhook_url_file: cannot read" in out.stderr, command
        assert "Traceback" not in out.stderr


def test_unknown_service_name(tmp_path: Path) -> None:
    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    out = subprocess.run(
        [LOOKOUT, "service", "sink-nope"], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert "no target named 'nope'" in out.stderr


async def test_service_stops_on_sigterm_even_while_waiting_for_nats(tmp_path: Path) -> None:
    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    env["NATS_URL"] = f"nats://127.0.0.1:{free_port()}"  # nobody there
    proc = subprocess.Popen(
        [LOOKOUT, "service", "sink-audit"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    await asyncio.sleep(1.5)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 10
    assert b"waiting for nats" in (proc.stdout.read() if proc.stdout else b"")
