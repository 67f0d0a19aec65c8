"""The recipes of docs/ARCHITECTURE.md, followed to the letter in a copy of this checkout.

The test copies the code, the deployment files and the tests, writes the files of the
minimal provider, target type and source type exactly as the recipes' code blocks give
them, adds each name to its table of ``services/registry.py`` and a target of the new
type to the compose example, and runs ``python -m services.deploygen``. Nothing else is
edited. Then, in the copy: the lint and type checks pass on the new packages;
``lookout services`` lists the provider and the sink; the deployment files have their
entries and secrets, and the deploy, registry and import-graph tests pass as they are; a
gateway, the provider's worker and the sink started from the copy on a real nats-server
offer the provider in ``GET /api/v1/providers`` and the lookup form, answer a lookup with
it, deliver a notification through the new target, and take a webhook of the new source
type (refusing one without its token).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from helpers import api, wait_for

from shared.core.natsserver import NatsServer, free_port

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "docs" / "ARCHITECTURE.md"
BIN = Path(sys.executable).parent
PYTHON: list[Path] = []
"""The copy's interpreter: a venv whose ``services`` and ``shared`` are the copy's and whose
other packages are this one's (without this checkout's editable install, so that no
subprocess, the ``lookout`` script included, can run this checkout's code instead)."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def recipe_files() -> dict[str, str]:
    """The ```python blocks of the recipes whose first line names a file: path → text."""
    files: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", RECIPES.read_text(), re.S):
        first, _, rest = block.partition("\n")
        if first.startswith("# services/"):
            files[first.removeprefix("# ")] = rest
    return files


def register(registry: Path, table: str, name: str) -> None:
    """Add ``name`` at the end of ``table`` in services/registry.py, as the recipe says."""
    text = registry.read_text()
    pattern = re.compile(rf"(?ms)^({table} = \()(.*?)(\)$)")
    assert pattern.search(text), f"no {table} in {registry}"
    registry.write_text(
        pattern.sub(lambda m: f'{m[1]}{m[2].strip().rstrip(",")}, "{name}"{m[3]}', text, 1)
    )


def register_source_type(registry: Path, name: str) -> None:
    """Add ``name`` at the end of the ``SOURCE_TYPES`` dict, as the recipe says."""
    text = registry.read_text()
    pattern = re.compile(r"(?ms)^(SOURCE_TYPES = \{)(.*?)(^\})")
    assert pattern.search(text), f"no SOURCE_TYPES in {registry}"
    line = f'    "{name}": "services.gateway.sources.{name}",\n'
    registry.write_text(pattern.sub(lambda m: f"{m[1]}{m[2]}{line}{m[3]}", text, 1))


def run(
    copy: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYTHON[0]), *args],
        cwd=copy,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout, copied, with the recipes followed."""
    copy = tmp_path_factory.mktemp("recipe") / "lookout"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
    for folder in ("services", "shared", "tests"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
    shutil.copytree(ROOT / "deploy", copy / "deploy", ignore=shutil.ignore_patterns("*.txt"))
    for name in ("docker-compose.yml", "pyproject.toml", "Makefile", ".gitignore", ".dockerignore"):
        shutil.copy(ROOT / name, copy / name)

    venv = copy.parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "recipe.pth").write_text(f"{copy}\n{sysconfig.get_paths()['purelib']}\n")
    PYTHON[:] = [venv / "bin" / "python"]

    files = recipe_files()
    assert set(files) == {
        "services/providers/demo/config.py",
        "services/providers/demo/__init__.py",
        "services/sinks/demo/config.py",
        "services/sinks/demo/__init__.py",
        "services/gateway/sources/demo.py",
    }, "the recipes' code blocks"
    for path, text in files.items():
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        (copy / path).write_text(text)
    register(copy / "services/registry.py", "PROVIDERS", "demo")
    register(copy / "services/registry.py", "TARGET_TYPES", "demo")
    register_source_type(copy / "services/registry.py", "demo")
    for config_file, secrets in (
        ("deploy/lookout.example.toml", "/run/secrets"),
        ("deploy/k8s/lookout.toml", "/etc/lookout/secrets"),
    ):
        (copy / config_file).write_text(
            (copy / config_file).read_text()
            + "\n# A target of the new type.\n[[targets]]\n"
            + 'name = "demo-out"\ntype = "demo"\npath = "/tmp/demo.jsonl"\n'
            + f'key_file = "{secrets}/demo_key"\n'
        )

    stale = run(copy, "-m", "services.deploygen", "--check")
    assert stale.returncode == 1, stale.stderr
    assert "stale: docker-compose.yml" in stale.stderr, stale.stderr
    wrote = run(copy, "-m", "services.deploygen")
    assert wrote.returncode == 0, wrote.stderr
    assert run(copy, "-m", "services.deploygen", "--check").returncode == 0
    return copy


def test_the_copy_runs_its_own_code(copy: Path) -> None:
    where = run(copy, "-c", "import services, shared; print(services.__file__, shared.__file__)")
    assert where.stdout.split() == [
        str(copy / "services/__init__.py"),
        str(copy / "shared/__init__.py"),
    ], where.stderr


def test_the_recipes_code_is_clean(copy: Path) -> None:
    new = [str(copy / p) for p in recipe_files()]
    for check in (["check"], ["format", "--check"]):
        ruff = subprocess.run(
            [str(BIN / "ruff"), *check, *new], cwd=copy, capture_output=True, text=True, check=False
        )
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    mypy = subprocess.run(
        [str(BIN / "mypy"), "--strict", "--cache-dir", str(copy / ".mypy_cache"), *new],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr


def test_lookout_services_lists_them(copy: Path) -> None:
    listed = run(
        copy,
        "-m",
        "services.cli",
        "services",
        "--skip-secrets",
        env={"LOOKOUT_CONFIG": str(copy / "deploy/lookout.example.toml")},
    )
    assert listed.returncode == 0, listed.stderr
    assert "provider-demo" in listed.stdout.split()
    assert "sink-demo-out" in listed.stdout.split()


def test_the_deployment_files_have_them(copy: Path) -> None:
    compose = yaml.safe_load((copy / "docker-compose.yml").read_text())
    provider = compose["services"]["provider-demo"]
    assert provider["command"] == ["service", "provider-demo"]
    assert provider["secrets"] == ["demo_api_key"]
    assert provider["environment"]["DEMO_API_KEY_FILE"].endswith("/run/secrets/demo_api_key}")
    sink = compose["services"]["sink-demo-out"]
    assert sink["secrets"] == ["demo_key"]
    assert set(compose["secrets"]) >= {"demo_api_key", "demo_key"}
    providers = [
        d["metadata"]["name"]
        for d in yaml.safe_load_all((copy / "deploy/k8s/providers.yaml").read_text())
        if d
    ]
    assert providers.count("lookout-provider-demo") == 2  # the Deployment and its budget
    kustomization = (copy / "deploy/k8s/kustomization.yaml").read_text()
    assert "- demo_api_key=secrets/demo_api_key.txt" in kustomization
    for example in (
        "deploy/secrets/demo_api_key.txt.example",
        "deploy/secrets/demo_key.txt.example",
        "deploy/k8s/secrets/demo_api_key.txt.example",
        "deploy/k8s/secrets/demo_key.txt.example",
    ):
        assert (copy / example).read_text().strip(), example
    assert "\n# DEMO_API_KEY_FILE=\n" in (copy / "deploy/env.example").read_text()


def test_the_deploy_registry_and_import_tests_pass_unchanged(copy: Path) -> None:
    tests = run(
        copy,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n0",  # a few fast files: in this process, not in workers
        "tests/unit/test_deploy.py",
        "tests/unit/test_deploygen.py",
        "tests/unit/test_registry.py",
        "tests/unit/test_import_graph.py",
        "tests/unit/test_provider_display.py",
        env={"HOME": str(copy)},
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]


@contextlib.contextmanager
def services(copy: Path, env: dict[str, str], *names: str) -> Iterator[list[subprocess.Popen[str]]]:
    """``lookout service NAME`` for each name, from the copy, stopped at the end."""
    started: list[subprocess.Popen[str]] = []
    try:
        for name in names:
            started.append(
                subprocess.Popen(
                    [str(PYTHON[0]), "-m", "services.cli", "service", name],
                    cwd=copy,
                    env={"PATH": os.environ.get("PATH", ""), **env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_a_gateway_and_workers_from_the_copy_serve_them(
    copy: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    out = tmp_path / "delivered.jsonl"
    key_file = tmp_path / "demo_key"
    key_file.write_text("k3y-for-the-recipe\n")
    config_file = tmp_path / "lookout.toml"
    token_file = tmp_path / "demo_token"
    token_file.write_text("t0ken-for-the-recipe\n")
    config_file.write_text(
        f'[[targets]]\nname = "demo-run"\ntype = "demo"\npath = {json.dumps(str(out))}\n'
        f"key_file = {json.dumps(str(key_file))}\n"
        f'[[sources]]\nname = "demo-in"\ntype = "demo"\n'
        f"token_file = {json.dumps(str(token_file))}\n"
    )
    port = free_port()
    env = {
        "NATS_URL": nats_server.url,
        "LOOKOUT_CONFIG": str(config_file),
        "LOOKOUT_HTTP_PORT": str(port),
        "LOOKOUT_DATA_DIR": str(tmp_path / "data"),
        "DEMO_API_KEY": "demo-key-123",
    }
    base = f"http://127.0.0.1:{port}"
    with services(copy, env, "gateway", "provider-demo", "sink-demo-run") as running:

        async def ready() -> bool:
            for process in running:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                async with aiohttp.ClientSession() as session, session.get(f"{base}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(ready, within=60, every=0.2)
        code, listed = await api("GET", f"{base}/api/v1/providers")
        assert code == 200
        demo: dict[str, Any] = listed["providers"][-1]
        assert (demo["name"], demo["label"], demo["kinds"]) == (
            "demo",
            "Demo Intel",
            ["domain", "url"],
        )
        assert demo["details"]["sections"][0]["title"] == "Sightings"
        assert demo["links"] == {"domain": "https://demo.example/lookup/{value}"}
        async with aiohttp.ClientSession() as session, session.get(f"{base}/") as page:
            assert 'value="demo" checked> Demo Intel</label>' in await page.text()

        code, job = await api(
            "POST", f"{base}/api/v1/lookups", json={"text": "example.com", "providers": ["demo"]}
        )
        assert code == 202, job
        answered: dict[str, Any] = {}

        async def looked_up() -> bool:
            _, shown = await api("GET", f"{base}/api/v1/lookups/{job['id']}")
            answered.update(shown)
            return all(r["status"] == "done" for r in shown["results"])

        await wait_for(looked_up, within=60, every=0.2)
        (result,) = answered["results"]
        assert (result["provider"], result["verdict"], result["summary"]) == (
            "demo",
            "harmless",
            "not listed",
        )

        code, posted = await api(
            "POST",
            f"{base}/api/v1/notifications",
            json={"type": "alert", "source": "recipe", "data": {"risk": 80}},
        )
        assert code == 202, posted
        await wait_for(lambda: out.is_file() and bool(out.read_text()), within=60, every=0.2)
        line, mac = out.read_text().strip().rsplit(" ", 1)
        assert json.loads(line)["source"] == "recipe"
        key = b"k3y-for-the-recipe"
        assert mac == hmac.new(key, line.encode(), hashlib.sha256).hexdigest()

        # The source type: refused without its token, taken with it, delivered by the sink.
        hook = f"{base}/webhooks/demo-in"
        event = {"id": "evt-42", "type": "disk_full", "risk": 90}
        code, refused = await api("POST", hook, json=event, headers={"X-Demo-Token": "wrong"})
        assert (code, refused["error"]) == (401, "X-Demo-Token does not match"), refused
        code, taken = await api(
            "POST", hook, json=event, headers={"X-Demo-Token": "t0ken-for-the-recipe"}
        )
        assert code in (200, 202), taken

        def delivered() -> list[dict[str, Any]]:
            lines = out.read_text().strip().splitlines()
            return [json.loads(x.rsplit(" ", 1)[0]) for x in lines]

        await wait_for(lambda: len(delivered()) == 2, within=60, every=0.2)
        hooked = delivered()[1]
        assert (hooked["source"], hooked["type"], hooked["id"]) == (
            "demo-in",
            "disk_full",
            "evt-42",
        )
        await asyncio.sleep(0)
