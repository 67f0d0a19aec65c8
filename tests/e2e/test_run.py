"""``lookout run`` as an operator runs it: the whole stack as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import (
    LOOPBACK_ALLOW,
    SQREEN_SECRET,
    WHSEC,
    Receiver,
    post_webhook,
    sqreen_fixture,
    wait_for,
)

from services import registry
from shared.core.natsserver import NatsServer, free_port, port_is_free

LOOKOUT = str(Path(sys.executable).parent / "lookout")
PROVIDERS = [f"provider-{name}" for name in registry.PROVIDERS]


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


HANG = 120
"""Seconds after which a command that should end is taken as hung: a bound for a hang, not
for speed (beside other tests starting whole stacks, a start can wait long for the CPU)."""


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
        await wait_for(lambda: "lookout is running" in log_path.read_text(), within=120)
        assert f"{base}/" in log_path.read_text()
        async with aiohttp.ClientSession() as session:
            for path in ("/healthz", "/readyz", "/", "/metrics"):
                async with session.get(base + path) as response:
                    assert response.status == 200, path
        # the embedded bus keeps its data under LOOKOUT_DATA_DIR, and says where
        assert (tmp_path / "data" / "nats" / "jetstream").is_dir()
        assert f"lookout: keeping its data in {tmp_path / 'data'} " in log_path.read_text()

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
        assert names == sorted(["gateway", "scheduler", *PROVIDERS, "sink-audit", "sink-ops-http"])
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


@pytest.mark.slow
async def test_sigterm_to_make_run_stops_everything(tmp_path: Path, receiver: Receiver) -> None:
    """``make run`` (the contract: "Ctrl-C / SIGTERM stops everything cleanly"): make
    passes SIGTERM to its recipe's process, which must be ``lookout run`` itself, not a
    shell around it (the shell died, the whole stack ran on, orphaned)."""
    env = env_for(tmp_path, receiver.url)
    # the project's own recipe, its lookout the one of this environment
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    [recipe] = re.findall(r"^run: .*\n\t(.*)$", makefile, re.MULTILINE)
    recipe = recipe.replace("$(BIN)/lookout", LOOKOUT)
    (tmp_path / "Makefile").write_text(f"LOOKOUT_DATA_DIR ?= data\nrun:\n\t{recipe}\n")
    log_path = tmp_path / "make.log"
    make = subprocess.Popen(
        ["make", "-s", "run"],
        env=env,
        cwd=tmp_path,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_for(lambda: "lookout is running" in log_path.read_text(), within=120)
        [run] = children_of(make.pid)
        stack = [run, *children_of(run)]
        assert len(stack) > 3
        make.send_signal(signal.SIGTERM)
        make.wait(30)

        def alive(pid: int) -> bool:
            try:
                return "zombie" not in Path(f"/proc/{pid}/status").read_text()
            except OSError:
                return False

        def gone() -> bool:
            return not any(alive(pid) for pid in stack)

        await wait_for(gone, within=30)
    finally:
        if make.poll() is None:
            make.kill()
    assert "embedded nats-server stopped" in log_path.read_text()
    assert port_is_free("127.0.0.1", int(env["LOOKOUT_HTTP_PORT"]))


def test_services_lists_names(tmp_path: Path) -> None:
    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    out = subprocess.run([LOOKOUT, "services"], env=env, capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.split() == ["gateway", "scheduler", *PROVIDERS, "sink-ops-http", "sink-audit"]
    del env["LOOKOUT_CONFIG"]
    out = subprocess.run([LOOKOUT, "services"], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["gateway", "scheduler", *PROVIDERS, "sink-log"]


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
    for command in (["run"], ["service", "gateway"], ["services"]):
        out = subprocess.run(
            [LOOKOUT, *command], env=env, capture_output=True, text=True, timeout=HANG
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
        return subprocess.run(
            [LOOKOUT, *args], env=env, capture_output=True, text=True, timeout=HANG
        )

    listed = lookout("services", "--skip-secrets")
    assert listed.returncode == 0, listed.stderr
    assert "sink-chat" in listed.stdout.split()
    for command in (["service", "sink-chat"], ["run"], ["services"]):
        out = lookout(*command)
        assert out.returncode == 2, command
        assert "(chat).webhook_url_file: cannot read" in out.stderr, command
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"LOOKOUT_HTTP_HOST": "0.0.0.0"}, "LOOKOUT_API_TOKENS is empty"),
        ({"LOOKOUT_METRICS_PORT": "65530"}, "LOOKOUT_METRICS_PORT=65530: "),
        ({"TOML": 'secret = "not-a-whsec-secret"'}, "(ops-http).secret: must start with 'whsec_'"),
        (
            {"APPEND": '[[targets]]\nname = "chat"\ntype = "slack"\nwebhook_url = "ftp://x"\n'},
            "target chat: webhook_url must be an absolute https URL",
        ),
    ],
)
def test_services_refuses_what_run_refuses(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    """``lookout services`` checks the configuration as ``lookout run`` does: same exit
    status, same message (it used to list the names of a configuration run refuses)."""
    env = {**env_for(tmp_path, "http://127.0.0.1:9/x"), **change}
    config = Path(env["LOOKOUT_CONFIG"])
    if "TOML" in change:
        config.write_text(config.read_text().replace(f'secret = "{WHSEC}"', change["TOML"]))
    if "APPEND" in change:
        config.write_text(config.read_text() + change["APPEND"])
        # and the sink alone says so in one line, instead of crashing with a traceback
        alone = subprocess.run(
            [LOOKOUT, "service", "sink-chat"], env=env, capture_output=True, text=True, timeout=HANG
        )
        assert alone.returncode == 2
        assert alone.stderr.strip().splitlines() == [
            f"lookout: sink-chat: configuration error: {message}"
        ]
    answers = {
        command: subprocess.run(
            [LOOKOUT, command], env=env, capture_output=True, text=True, timeout=HANG
        )
        for command in ("run", "services")
    }
    for command, out in answers.items():
        assert out.returncode == 2, command
        assert message in out.stderr, command
        assert out.stdout == "", command
    assert answers["run"].stderr == answers["services"].stderr


def test_unknown_service_name(tmp_path: Path) -> None:
    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    out = subprocess.run(
        [LOOKOUT, "service", "sink-nope"], env=env, capture_output=True, text=True, timeout=HANG
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
    assert proc.stdout is not None
    seen = b""
    while b"waiting for nats" not in seen:  # its signal handlers are in place by then
        line = proc.stdout.readline()
        assert line, f"ended without waiting for nats: {seen!r}"
        seen += line
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 10


# --------------------------------------------------------------------------- issue 12, C


class OtherProgram:
    """Another program on loopback answering 200 to every GET (``/readyz`` included)."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> OtherProgram:
        app = web.Application()

        async def answer(_: web.Request) -> web.Response:
            return web.Response(text="not lookout")

        app.router.add_get("/{tail:.*}", answer)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def lookout_exits(
    env: dict[str, str], *args: str, within: float = 60
) -> tuple[int, str, str]:
    """Run ``lookout ARGS`` to its end (killed after ``within`` seconds: the test fails)."""
    proc = await asyncio.create_subprocess_exec(
        LOOKOUT, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(
            f"lookout {' '.join(args)} still running after {within}s:\n{out.decode()}"
            f"\n{err.decode()}"
        ) from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_refuses_a_taken_http_port_in_one_line(tmp_path: Path) -> None:
    """Another program on LOOKOUT_HTTP_PORT: ``lookout run`` starts nothing, says so in one
    line naming the port, and exits non-zero (it used to print "lookout is running" for the
    other program's port and crash-loop the gateway)."""
    async with OtherProgram() as other:
        env = {**env_for(tmp_path, "http://127.0.0.1:9/x"), "LOOKOUT_HTTP_PORT": str(other.port)}
        code, out, err = await lookout_exits(env, "run")
    assert code == 2
    assert err.strip().splitlines() == [
        f"lookout: cannot listen on 127.0.0.1:{other.port}: address already in use by another "
        "program (set LOOKOUT_HTTP_PORT to a free port)"
    ]
    assert "lookout is running" not in out
    assert "Traceback" not in out + err
    assert not (tmp_path / "data" / "nats").exists(), "nothing started"
    assert port_is_free("127.0.0.1", int(env["LOOKOUT_NATS_PORT"]))


async def test_run_refuses_a_taken_nats_port_before_starting_anything(tmp_path: Path) -> None:
    async with OtherProgram() as other:
        env = {**env_for(tmp_path, "http://127.0.0.1:9/x"), "LOOKOUT_NATS_PORT": str(other.port)}
        code, out, err = await lookout_exits(env, "run")
    assert code == 2
    [line] = err.strip().splitlines()
    assert f"cannot listen on 127.0.0.1:{other.port}" in line
    assert "LOOKOUT_NATS_PORT" in line
    assert "NATS_URL" in line
    assert "Traceback" not in out + err


async def test_run_refuses_a_data_dir_it_cannot_create_in_one_line(tmp_path: Path) -> None:
    """LOOKOUT_DATA_DIR under a regular file: a configuration error naming the variable,
    exit 2, no traceback (it was a traceback and exit status 120)."""
    (tmp_path / "a-file").write_text("not a directory")
    env = {
        **env_for(tmp_path, "http://127.0.0.1:9/x"),
        "LOOKOUT_DATA_DIR": str(tmp_path / "a-file" / "data"),
    }
    code, out, err = await lookout_exits(env, "run")
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("lookout: configuration error: LOOKOUT_DATA_DIR: cannot keep data in ")
    assert "Traceback" not in out + err


@pytest.mark.parametrize("bus_up", [True, False])
async def test_gateway_alone_on_a_taken_port_says_so_in_one_line(
    tmp_path: Path, nats_server: Any, bus_up: bool
) -> None:
    """``lookout service gateway`` on a taken port: one line, no traceback, exit 2; and it
    ends even while it is still waiting for NATS (cancelling that wait used to hang)."""
    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    env["NATS_URL"] = nats_server.url if bus_up else f"nats://127.0.0.1:{free_port()}"
    async with OtherProgram() as other:
        env["LOOKOUT_HTTP_PORT"] = str(other.port)
        for _ in range(3):  # the hang was a race: try it a few times
            code, out, err = await lookout_exits(env, "service", "gateway", within=HANG)
            assert code == 2
            assert err.strip().splitlines() == [
                f"lookout: gateway: cannot listen on 127.0.0.1:{other.port}: address already "
                "in use by another program (set LOOKOUT_HTTP_PORT to a free port)"
            ]
            assert "Traceback" not in out + err
            assert "service crashed" not in out


async def test_run_stops_when_a_service_cannot_start(tmp_path: Path) -> None:
    """A service that exits with "cannot start" (status 2) on its first start is not
    restarted for ever: ``lookout run``'s watcher stops everything."""
    from services.supervisor import Child, _watch

    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    child = Child("sink-nope", env)  # no such target: a configuration error, status 2
    stop = asyncio.Event()
    await asyncio.wait_for(_watch(child, stop), 30)
    assert stop.is_set()
    assert child.cannot_start
    assert child.restarts == 0


def run_log_lines(log_path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


async def webhook_until_stored(base: str, body: bytes, within: float) -> None:
    """POST the webhook until it is answered 200 (stored), retrying 503s and refusals."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(aiohttp.ClientError, ValueError):
            status, _ = await post_webhook(base, body)
            if status == 200:
                return
            assert status == 503, status
        if time.monotonic() > deadline:
            raise AssertionError(f"webhook not stored within {within}s")
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_run_restarts_a_killed_nats_server(tmp_path: Path, receiver: Receiver) -> None:
    """kill -9 of the embedded nats-server under ``lookout run``: the exit is logged with
    the tail of its log, the server is started again on the same port and store, the
    services reconnect, and a webhook is stored and delivered again."""
    env = env_for(tmp_path, receiver.url)
    # One provider: the restart is about the bus and the relay, and thirteen provider
    # workers reconnecting at once on a loaded CI machine made the sink's turn come late.
    env["LOOKOUT_PROVIDERS"] = "dns"
    base = f"http://127.0.0.1:{env['LOOKOUT_HTTP_PORT']}"
    proc, log_path = start_run(env, tmp_path)
    try:
        await wait_for(lambda: "lookout is running" in log_path.read_text(), within=120)
        await webhook_until_stored(base, sqreen_fixture("v2_security_event.json"), 10)
        await wait_for(lambda: len(receiver.requests) == 2, within=30)  # two messages

        [nats] = [p for p in children_of(proc.pid) if "nats-server" in cmdline(p)]
        os.kill(nats, signal.SIGKILL)
        await wait_for(
            lambda: any(
                e.get("event") == "embedded nats-server restarted" for e in run_log_lines(log_path)
            ),
            within=30,
        )
        [exited] = [
            e
            for e in run_log_lines(log_path)
            if e.get("event") == "embedded nats-server exited, restarting"
        ]
        assert exited["code"] == -signal.SIGKILL
        assert "log_tail" in exited
        assert exited["log_tail"] != "(no log)"
        [again] = [p for p in children_of(proc.pid) if "nats-server" in cmdline(p)]
        assert again != nats
        assert f"--port {env['LOOKOUT_NATS_PORT']}" in cmdline(again)
        assert f"--store_dir {tmp_path / 'data' / 'nats'}" in cmdline(again)

        await webhook_until_stored(base, sqreen_fixture("v2_test.json"), 60)
        await wait_for(lambda: len(receiver.requests) == 3, within=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert port_is_free("127.0.0.1", int(env["LOOKOUT_NATS_PORT"]))


@pytest.mark.slow
async def test_run_with_credentials_in_every_nats_url(tmp_path: Path, receiver: Receiver) -> None:
    """``NATS_URL`` with several servers, each with credentials: ``lookout run`` runs (it
    died on a ValueError) and no password reaches its output."""
    password = "n4ts-Pa55word-of-the-test"
    server = NatsServer(
        tmp_path / "nats", port=free_port(), extra_args=["--user", "lookout", "--pass", password]
    )
    server.start()
    try:
        down = free_port()  # a second server that is not there: connects go to the first
        env = env_for(tmp_path, receiver.url)
        env["NATS_URL"] = (
            f"nats://lookout:{password}@127.0.0.1:{down},"
            f"nats://lookout:{password}@127.0.0.1:{server.port}"
        )
        base = f"http://127.0.0.1:{env['LOOKOUT_HTTP_PORT']}"
        proc, log_path = start_run(env, tmp_path)
        try:
            await wait_for(lambda: "lookout is running" in log_path.read_text(), within=120)
            text = log_path.read_text()
            assert f"nats://***@127.0.0.1:{down},nats://***@127.0.0.1:{server.port}" in text, (
                "the banner names both servers, without their credentials"
            )
            await webhook_until_stored(base, sqreen_fixture("v2_test.json"), 10)
            await wait_for(lambda: len(receiver.requests) == 1, within=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        assert code == 0
        text = log_path.read_text()
        assert password not in text
        assert "ValueError" not in text
    finally:
        server.stop()


async def test_run_keeps_its_data_in_one_place_whatever_the_directory(tmp_path: Path) -> None:
    """Without LOOKOUT_DATA_DIR, ``lookout run`` keeps JetStream under the XDG state
    directory, not under the directory it was started from, and says where at start."""
    env = env_for(tmp_path, "http://127.0.0.1:9/x")
    del env["LOOKOUT_DATA_DIR"]
    env.pop("XDG_STATE_HOME", None)
    env["HOME"] = str(tmp_path / "home")
    state = tmp_path / "home" / ".local" / "state" / "lookout"
    somewhere = tmp_path / "somewhere"
    somewhere.mkdir()
    proc, log_path = start_run(env, somewhere)
    try:
        await wait_for(lambda: (state / "nats" / "jetstream").is_dir(), within=60)
        assert log_path.read_text().startswith(f"lookout: keeping its data in {state} ")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert not (somewhere / ".lookout").exists()
