"""The deploy files: deploy/Dockerfile, docker-compose.yml, deploy/k8s and `make up`/`down`.

No Docker engine or cluster is needed. Each file is parsed and held against what the code
does: service names come from the real ``lookout services`` run with the configuration and
environment each container gets, environment variables must be ones ``shared.core.settings.load``
looks up, and every file a container reads (config, secrets) must be mounted in it. The
container paths are mapped onto the committed files (``*.example`` for secrets).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.gateway import sqreen
from services.providers.abuseipdb.config import abuseipdb_settings
from services.providers.virustotal.config import virustotal_settings
from services.registry import build_target
from shared.core import secrets
from shared.core import settings as config
from shared.lookups import catalog
from shared.relay.config import relay

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / "env.example"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


# --------------------------------------------------------------------------- helpers


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name looked up in it, set or not."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.looked_up: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.looked_up.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def variables_read(env: Mapping[str, str]) -> set[str]:
    """The variables ``shared.core.settings.load`` looks up when given ``env`` (``*_FILE`` too)."""
    recording = RecordingEnv(env)
    config.load(recording, secrets_of=())  # target secrets are files named in the TOML
    return recording.looked_up


def example_of(path: Path) -> Path:
    """The committed example of a git-ignored secret file."""
    return path.with_name(path.name + ".example")


def ignore_patterns(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether a .gitignore/.dockerignore pattern list (no negations) matches a path."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.strip("/")
        if "/" in bare:
            if any(fnmatch(prefix, bare) for prefix in prefixes):
                return True
        elif any(fnmatch(part, bare.removeprefix("**/")) for part in parts):
            return True
    return False


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")


# --------------------------------------------------------------------------- compose

_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``… with ``variables``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("plain"):
            return variables.get(match.group("plain"), "")
        braced = _BRACED.fullmatch(match.group("braced"))
        assert braced, f"unsupported interpolation {match.group(0)!r}"
        name, op, arg = braced.group("name", "op", "arg")
        value = variables.get(name)
        if op is None:
            return value or ""
        is_set = bool(value) if op.startswith(":") else value is not None
        if op.endswith("-"):
            return value if is_set and value is not None else arg
        if op.endswith("+"):
            return arg if is_set else ""
        assert is_set, f"{name} must be set: {arg}"
        return value or ""

    return _INTERPOLATION.sub(one, text)


def interpolation_names(tree: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(tree, str):
        for match in _INTERPOLATION.finditer(tree):
            if match.group("plain"):
                names.add(match.group("plain"))
            elif match.group("braced") is not None:
                braced = _BRACED.fullmatch(match.group("braced"))
                assert braced, f"unsupported interpolation {match.group(0)!r}"
                names.add(braced.group("name"))
    elif isinstance(tree, dict):
        for value in tree.values():
            names |= interpolation_names(value)
    elif isinstance(tree, list):
        for item in tree:
            names |= interpolation_names(item)
    return names


def _interpolate_tree(tree: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(tree, str):
        return interpolate(tree, variables)
    if isinstance(tree, dict):
        return {key: _interpolate_tree(value, variables) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_interpolate_tree(item, variables) for item in tree]
    return tree


@cache
def raw_compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


def compose(variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as compose sees it: anchors merged, ``${…}`` interpolated."""
    doc: dict[str, Any] = _interpolate_tree(raw_compose(), variables or {})
    return doc


def env_example() -> dict[str, str]:
    """The active assignments of deploy/env.example."""
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def is_lookout_service(service: Mapping[str, Any]) -> bool:
    build = service.get("build")
    if not isinstance(build, dict):
        return False
    context, name = str(build.get("context", ".")), str(build.get("dockerfile", "Dockerfile"))
    return (ROOT / context / name).resolve() == DOCKERFILE.resolve()


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def compose_data_mounts(service: Mapping[str, Any]) -> set[str]:
    """Container paths a compose service can write to (tmpfs and volumes)."""
    tmpfs = service.get("tmpfs") or []
    mounts = {entry.split(":")[0] for entry in ([tmpfs] if isinstance(tmpfs, str) else tmpfs)}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            if len(parts) >= 2 and "ro" not in parts[2:]:
                mounts.add(parts[1])
        elif not volume.get("read_only"):
            mounts.add(volume["target"])
    return mounts


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class Container:
    """One deployable unit: a compose service or a Deployment's container."""

    origin: str  # "compose" or "k8s"
    name: str  # compose service name or Deployment name
    args: list[str]  # the command after ENTRYPOINT ["lookout"]
    env: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)  # container path → same content

    @property
    def ident(self) -> str:
        return f"{self.origin}:{self.name}"

    @property
    def own_targets(self) -> tuple[str, ...]:
        """The targets whose secrets this container's service reads: a sink its own."""
        service = self.args[-1] if self.args else ""
        return (service.removeprefix("sink-"),) if service.startswith("sink-") else ()


def compose_containers(variables: Mapping[str, str] | None = None) -> list[Container]:
    doc = compose(variables)
    top_secrets: dict[str, Any] = doc.get("secrets") or {}
    containers: list[Container] = []
    for name, service in doc["services"].items():
        if not is_lookout_service(service):
            continue
        files: dict[str, Path] = {}
        for volume in service.get("volumes") or []:
            if isinstance(volume, str):
                host, _, rest = volume.partition(":")
                target = rest.split(":")[0]
            else:
                host, target = volume.get("source", ""), volume["target"]
            if host.startswith((".", "/")):
                files[target] = (ROOT / host).resolve()
        for secret in service.get("secrets") or []:
            source = secret if isinstance(secret, str) else secret["source"]
            target = secret if isinstance(secret, str) else secret.get("target", source)
            path = target if target.startswith("/") else f"/run/secrets/{target}"
            assert source in top_secrets, f"service {name}: secret {source} is not declared"
            files[path] = example_of(ROOT / top_secrets[source]["file"])
        command = service.get("command") or []
        containers.append(
            Container(
                "compose",
                name,
                command.split() if isinstance(command, str) else list(command),
                compose_environment(service),
                files,
            )
        )
    return containers


@cache
def kustomization() -> dict[str, Any]:
    doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


@cache
def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for resource in kustomization().get("resources") or []:
        if not (K8S / resource).is_file():
            continue  # test_kustomization_lists_only_existing_files names it
        for doc in yaml.safe_load_all((K8S / resource).read_text()):
            if doc is not None:
                docs.append(doc)
    return docs


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_documents() if doc.get("kind") == kind]


def _generator_files(generators: list[dict[str, Any]], secret: bool) -> dict[str, dict[str, Path]]:
    out: dict[str, dict[str, Path]] = {}
    for generator in generators:
        files: dict[str, Path] = {}
        for entry in generator.get("files") or []:
            key, _, path = entry.rpartition("=")
            local = K8S / path
            files[key or local.name] = example_of(local) if secret else local
        out[generator["name"]] = files
    return out


def k8s_containers() -> list[Container]:
    kust = kustomization()
    sources = {
        "configMap": _generator_files(kust.get("configMapGenerator") or [], secret=False),
        "secret": _generator_files(kust.get("secretGenerator") or [], secret=True),
    }
    containers: list[Container] = []
    for deployment in k8s_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
        for container in pod["containers"]:
            files: dict[str, Path] = {}
            for mount in container.get("volumeMounts") or []:
                volume = volumes[mount["name"]]
                for kind, name_key in (("configMap", "name"), ("secret", "secretName")):
                    if kind not in volume:
                        continue
                    source = sources[kind][volume[kind][name_key]]
                    items = volume[kind].get("items")
                    chosen = (
                        {i["key"]: i["path"] for i in items} if items else {k: k for k in source}
                    )
                    for key, path in chosen.items():
                        assert key in source, f"{kind} {volume[kind][name_key]} has no key {key}"
                        files[f"{mount['mountPath'].rstrip('/')}/{path}"] = source[key]
            env: dict[str, str] = {}
            for item in container.get("env") or []:
                assert "value" in item, f"{item['name']}: only plain values are checked here"
                env[item["name"]] = str(item["value"])
            containers.append(
                Container("k8s", deployment["metadata"]["name"], container["args"], env, files)
            )
    return containers


def localize(container: Container, workdir: Path) -> dict[str, str]:
    """The container's environment with container paths replaced by the files that hold the
    same content here; the TOML config is rewritten likewise. Fails, naming the container,
    when it reads a file that is not mounted in it."""
    env: dict[str, str] = {}
    for key, value in container.env.items():
        if not (key.endswith("_FILE") or key == "LOOKOUT_CONFIG") or not value:
            env[key] = value
            continue
        assert value in container.files, (
            f"{container.ident}: {key}={value} but nothing is mounted there "
            f"(mounted: {sorted(container.files)})"
        )
        local = container.files[value]
        assert local.is_file(), f"{container.ident}: {local} (mounted as {value}) is missing"
        env[key] = str(
            _localize_config(container, local, workdir)
            if key == "LOOKOUT_CONFIG"
            else edited(local, workdir)
        )
    return env


OWN_KEY = "whsec_" + base64.b64encode(b"a key of its owner, not the example").decode()


def edited(example: Path, workdir: Path) -> Path:
    """A copy of a secret example as its owner edits it: the public placeholder replaced
    (lookout refuses it, shared.core.secrets.PLACEHOLDER), the rest as it was."""
    text = example.read_text()
    if text.startswith("whsec_"):
        text = OWN_KEY + "\n"
    copy = workdir / "secrets" / example.name
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(text.replace(secrets.PLACEHOLDER, "its-owners-own-value"))
    return copy


def _localize_config(container: Container, path: Path, workdir: Path) -> Path:
    text = path.read_text()
    for index, target in enumerate(tomllib.loads(text).get("targets", [])):
        for key, value in target.items():
            if not key.endswith("_file") or target.get("name") not in container.own_targets:
                continue  # another sink's secret: this service never reads it
            assert value in container.files, (
                f"{container.ident}: {path.name} targets[{index}] ({target.get('name')}) "
                f"reads {key} = {value!r}, which is not mounted in it "
                f"(mounted: {sorted(container.files)})"
            )
            own = edited(container.files[value], workdir)
            text = text.replace(json.dumps(value), json.dumps(str(own)))
    local = workdir / f"{container.origin}-{container.name}.toml"
    local.write_text(text)
    return local


def lookout_cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """The real ``lookout`` console script (or ``python -m services.cli``) with only ``env``."""
    script = Path(sys.executable).with_name("lookout")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]
    return subprocess.run(
        [*command, *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@cache
def all_containers() -> tuple[Container, ...]:
    return (*compose_containers(), *k8s_containers())


def container_ids(service: str | None = None) -> list[str]:
    """For parametrize: every container (running ``service``); a file that cannot be read
    gives one id whose test then fails with the reason, instead of a collection error."""
    try:
        found = all_containers()
    except Exception as exc:
        return [f"unreadable: {type(exc).__name__}"]
    return [c.ident for c in found if service is None or c.args[-1:] == [service]]


def container(ident: str) -> Container:
    for each in all_containers():
        if each.ident == ident:
            return each
    pytest.fail(f"no container {ident}")


@dataclass(frozen=True)
class Outcome:
    """What ``lookout services`` printed for one container, or why it could not run."""

    env: dict[str, str]
    problem: str | None = None
    services: tuple[str, ...] = ()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every container's ``lookout services``, run concurrently. Containers whose
    environment and config file are the same (e.g. the sinks) share one run."""
    workdir = tmp_path_factory.mktemp("deploy")
    prepared: dict[str, dict[str, str]] = {}
    results: dict[str, Outcome] = {}
    for each in all_containers():
        try:
            prepared[each.ident] = localize(each, workdir)
        except AssertionError as exc:
            results[each.ident] = Outcome({}, problem=str(exc))

    def inputs(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        config_file = env.get("LOOKOUT_CONFIG")
        text = Path(config_file).read_text() if config_file else ""
        return tuple(sorted({**env, "LOOKOUT_CONFIG": text}.items()))

    distinct = {inputs(env): env for env in prepared.values()}

    def run(env: Mapping[str, str]) -> tuple[str | None, tuple[str, ...]]:
        # --skip-secrets: a container mounts its own service's secrets only
        answer = lookout_cli("services", "--skip-secrets", env=env)
        if answer.returncode != 0:
            return f"`lookout services` exited {answer.returncode}: {answer.stderr.strip()}", ()
        return None, tuple(answer.stdout.split())

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        ran = dict(zip(distinct, pool.map(run, distinct.values()), strict=True))
    for ident, env in prepared.items():
        problem, services = ran[inputs(env)]
        results[ident] = Outcome(env, problem=problem, services=services)
    return results


def outcome(outcomes: dict[str, Outcome], ident: str) -> Outcome:
    found = outcomes.get(ident) or pytest.fail(f"no container {ident}")
    if found.problem is not None:
        prefix = "" if found.problem.startswith(ident) else f"{ident}: "
        pytest.fail(prefix + found.problem)
    return found


# --------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} must be in exec (JSON) form"
        return [str(item) for item in value]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for match in re.finditer(r'(\w+)=("[^"]*"|\S+)', instruction.args):
                values[match.group(1)] = match.group(2).strip('"')
        return values


@cache
def dockerfile() -> list[Stage]:
    """deploy/Dockerfile as stages of instructions (continuations joined, comments out)."""
    stages: list[Stage] = []
    logical = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, args = (logical + line).partition(" ")
        logical = ""
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", instruction.args, re.I)
            assert match, f"cannot read FROM {instruction.args}"
            stages.append(Stage(match.group(1), match.group(2)))
        else:
            assert stages, f"{instruction.keyword} before FROM"
            stages[-1].instructions.append(instruction)
    return stages


def image_user_uid() -> int:
    user = dockerfile()[-1].last("USER").args.split(":")[0]
    assert user.isdigit(), f"USER {user}: use a numeric uid (Kubernetes runAsNonRoot checks it)"
    return int(user)


def image_env() -> dict[str, str]:
    return dockerfile()[-1].env()


def test_dockerfile_builds_the_wheel_of_this_project() -> None:
    stages = dockerfile()
    assert len(stages) >= 2, "multi-stage: build the wheel, then a slim runtime"
    build = stages[0]
    assert build.name, "the build stage needs a name (FROM … AS build) for COPY/--mount from"
    copied = {
        Path(part).name
        for instruction in build.all("COPY")
        for part in instruction.args.split()[:-1]
        if not part.startswith("--")
    }
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    needed |= set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert needed <= copied, f"the wheel needs {sorted(needed - copied)} in the build stage"
    runs = " ".join(i.args for i in build.all("RUN"))
    assert re.search(r"pip wheel --no-deps\b.* \.(\s|$)|-m build\b", runs), runs


def test_dockerfile_runtime_stage() -> None:
    stages = dockerfile()
    build, runtime = stages[0], stages[-1]
    for stage in stages:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", stage.base), stage.base
        assert "@" not in stage.base
    installs = [
        i
        for i in runtime.all("RUN") + runtime.all("COPY")
        if re.search(rf"from={re.escape(str(build.name))}\b", i.args)
    ]
    assert installs, "the runtime stage takes the wheel from the build stage"
    runs = " ".join(i.args for i in runtime.all("RUN"))
    venv = re.search(r"python -m venv (\S+)", runs)
    assert venv, "install into a venv"
    assert re.search(rf"{re.escape(venv.group(1))}/bin/pip install \S*lookout-\S*\.whl", runs)
    assert "--no-deps" not in runs.split("pip install", 1)[1].split("&&")[0], "deps too"

    uid = image_user_uid()
    assert uid >= 1000, "a non-root, non-system uid"
    assert re.search(rf"useradd\b[^&]*--uid {uid}\b", runs), "the user exists with that uid"
    data_dir = image_env()["LOOKOUT_DATA_DIR"]
    assert re.search(rf"chown {uid}(:\d+)? {re.escape(data_dir)}", runs), "writable data dir"

    assert runtime.last("ENTRYPOINT").exec_form() == ["lookout"]
    assert "lookout" in PYPROJECT["project"]["scripts"]
    assert runtime.last("CMD").exec_form() == ["service", "gateway"]
    assert runtime.last("EXPOSE").args.split() == [str(config.Settings().http_port)]
    assert "/healthz" in runtime.last("HEALTHCHECK").args

    labels = " ".join(i.args for i in runtime.all("LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert f'licenses="{PYPROJECT["project"]["license"]}"' in labels
    version = re.search(r"VERSION=(\S+)", " ".join(i.args for i in runtime.all("ARG")))
    assert version, "ARG VERSION=… for the version label"
    assert version.group(1) == PYPROJECT["project"]["version"], "ARG VERSION"


def test_dockerfile_environment_is_read_by_config() -> None:
    env = {k: v for k, v in image_env().items() if k.startswith(("LOOKOUT_", "NATS_"))}
    assert env
    unknown = set(env) - variables_read(env)
    assert not unknown, f"the Dockerfile sets variables lookout never reads: {sorted(unknown)}"


@contextmanager
def health_server(status: int | None) -> Iterator[int]:
    """A port where GET /healthz answers ``status``; ``None``: nothing listens there."""
    answer = status or 200

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    if status is None:
        server.server_close()
        yield port
        return
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("cmdline", "status", "healthy"),
    [
        (["lookout", "service", "gateway"], 200, True),
        (["lookout", "service", "gateway"], 503, False),
        (["lookout", "service", "gateway"], None, False),  # nothing listens
        (["lookout", "service", "provider-dns"], None, True),  # no HTTP: process up is enough
        (["lookout", "service", "sink-gateway-alerts"], None, True),
    ],
)
def test_dockerfile_healthcheck_asks_the_gateway(
    tmp_path: Path, cmdline: list[str], status: int | None, healthy: bool
) -> None:
    check = dockerfile()[-1].last("HEALTHCHECK").args
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    proc_cmdline = tmp_path / "cmdline"
    proc_cmdline.write_bytes(b"\0".join(part.encode() for part in cmdline) + b"\0")
    code = command[2].replace("/proc/1/cmdline", str(proc_cmdline))
    with health_server(status) as port:
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={"LOOKOUT_HTTP_PORT": str(port)},
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert (result.returncode == 0) == healthy, result.stderr


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest() -> None:
    patterns = ignore_patterns(ROOT / ".dockerignore")
    build = dockerfile()[0]
    for instruction in build.all("COPY"):
        for source in instruction.args.split()[:-1]:
            if not source.startswith("--"):
                assert not ignored(source.rstrip("/"), patterns), f"{source} is needed"
    for local in (
        ".git",
        ".venv",
        ".lookout",
        ".env",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "shared/__pycache__/x.pyc",
        "tests/bench/results/x.json",
        "deploy/secrets/x.txt",
    ):
        assert ignored(local, patterns), f"{local} would be sent to the Docker daemon"


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return False
    return info.returncode == 0


@pytest.mark.skipif(not _docker_engine(), reason="no Docker engine (daemon) to build the image")
@pytest.mark.slow
def test_image_builds_and_lists_the_services() -> None:
    tag = "lookout:deploy-test"
    build = subprocess.run(
        ["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run(
        ["docker", "run", "--rm", "--read-only", tag, "services"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "gateway" in run.stdout.split()
    user = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert user.stdout.strip() == str(image_user_uid())


# --------------------------------------------------------------------------- services


@pytest.mark.parametrize("ident", container_ids())
def test_command_is_a_service_of_the_mounted_config(
    outcomes: dict[str, Outcome], ident: str
) -> None:
    """`lookout service NAME` where NAME is printed by `lookout services` in that container."""
    args = container(ident).args
    services = outcome(outcomes, ident).services
    assert len(args) == 2, f"{ident}: command {args} should be: service NAME"
    assert args[0] == "service", f"{ident}: command {args} should be: service NAME"
    assert args[1] in services, f"{ident}: {args[1]!r} is not one of {services}"


@pytest.mark.parametrize("ident", container_ids())
def test_every_variable_set_is_read_by_config(outcomes: dict[str, Outcome], ident: str) -> None:
    env = outcome(outcomes, ident).env
    unknown = set(env) - variables_read(env)
    assert not unknown, f"{ident} sets variables lookout never reads: {sorted(unknown)}"


@pytest.mark.parametrize("ident", container_ids())
def test_config_loads_and_the_own_target_builds(outcomes: dict[str, Outcome], ident: str) -> None:
    """The config loads as the service loads it (with only its own target's secrets), and a
    sink's target builds from what is mounted in its container (e.g. the Slack URL)."""
    each = container(ident)
    settings = config.load(outcome(outcomes, ident).env, secrets_of=each.own_targets)
    assert settings.config_path is not None, f"{ident}: no LOOKOUT_CONFIG"
    assert settings.nats_url, f"{ident}: NATS_URL must point at the NATS service"
    for name in each.own_targets:
        build_target(relay(settings).target(name), settings)


SERVICE_SECRETS = {
    "gateway": {"SQREEN_WEBHOOK_SECRET_FILE", "LOOKOUT_API_TOKENS_FILE"},
    # a provider reads the secret variables its SPEC declares (and its settings read)
    **{
        f"provider-{spec.name}": {f"{var.name}_FILE" for var in spec.env if var.secret}
        for spec in catalog.specs()
    },
}


def test_the_providers_secrets_are_their_keys() -> None:
    assert SERVICE_SECRETS["provider-virustotal"] == {"VIRUSTOTAL_API_KEY_FILE"}
    assert SERVICE_SECRETS["provider-abuseipdb"] == {"ABUSEIPDB_API_KEY_FILE"}
    for name in ("dns", "whois", "emailsec"):
        assert SERVICE_SECRETS[f"provider-{name}"] == set(), name


@pytest.mark.parametrize("ident", container_ids())
def test_each_container_mounts_only_the_secrets_its_service_reads(ident: str) -> None:
    """Least privilege: a file mounted as a secret is one the service reads, through a
    ``*_FILE`` variable it is given or a ``<field>_file`` of its own target."""
    each = container(ident)
    config_file = each.env.get("LOOKOUT_CONFIG", "")
    read: set[str] = set()
    for name, value in each.env.items():
        if name.endswith("_FILE") and value:
            assert name in SERVICE_SECRETS.get(each.args[-1], set()), (
                f"{ident}: {name} is a secret {each.args[-1]} does not use"
            )
            read.add(value)
    if config_file in each.files:
        for target in tomllib.loads(each.files[config_file].read_text()).get("targets", []):
            if target.get("name") in each.own_targets:
                read.update(v for k, v in target.items() if k.endswith("_file"))
    secret_mounts = {
        path for path in each.files if path.startswith(("/run/secrets/", "/etc/lookout/secrets/"))
    }
    assert secret_mounts <= read, f"{ident} mounts secrets it never reads: {secret_mounts - read}"


@pytest.mark.parametrize("origin", ["compose", "k8s"])
def test_every_service_of_the_config_is_deployed(outcomes: dict[str, Outcome], origin: str) -> None:
    mine = [c for c in all_containers() if c.origin == origin]
    printed = {outcome(outcomes, c.ident).services for c in mine}
    assert len(printed) == 1, f"{origin}: containers see different configurations: {printed}"
    deployed = sorted(c.args[-1] for c in mine)
    assert deployed == sorted(printed.pop()), f"{origin}: deployed {deployed}"


def test_compose_and_k8s_run_the_same_services() -> None:
    def names(origin: str) -> list[str]:
        return sorted(c.args[-1] for c in all_containers() if c.origin == origin)

    assert names("compose") == names("k8s")


# The variables a production gateway must set itself rather than inherit a default: the
# per-client /api rate limit (on) and the body limits the Ingress/proxy is sized after.
GATEWAY_LIMITS = (
    "LOOKOUT_API_RATE",
    "LOOKOUT_API_BURST",
    "LOOKOUT_MAX_BODY_BYTES",
    "LOOKOUT_MAX_JSON_BYTES",
)


def gateway_security_problems(each: Container) -> list[str]:
    """What a gateway container misses: API tokens from a mounted secret file (never a
    plain value), the rate limit on, the body limits explicit."""
    problems: list[str] = []
    if "LOOKOUT_API_TOKENS" in each.env:
        problems.append("LOOKOUT_API_TOKENS as a plain value (use LOOKOUT_API_TOKENS_FILE)")
    tokens_file = each.env.get("LOOKOUT_API_TOKENS_FILE")
    mounted = each.files.get(tokens_file) if tokens_file else None
    if not tokens_file:
        problems.append("no LOOKOUT_API_TOKENS_FILE")
    elif mounted is None:
        problems.append(f"LOOKOUT_API_TOKENS_FILE={tokens_file} is not mounted")
    elif not mounted.name.endswith(".example"):  # secrets map onto the committed examples
        problems.append(f"{tokens_file} is not mounted from a secret")
    problems += [f"{name} is not set" for name in GATEWAY_LIMITS if not each.env.get(name)]
    if each.env.get("LOOKOUT_API_RATE", "").strip() in ("0", "0.0"):
        problems.append("LOOKOUT_API_RATE=0 turns the /api rate limit off")
    return problems


@pytest.mark.parametrize("ident", container_ids("gateway"))
def test_gateway_sets_its_security_variables(outcomes: dict[str, Outcome], ident: str) -> None:
    problems = gateway_security_problems(container(ident))
    assert not problems, f"{ident}: " + "; ".join(problems)
    settings = config.load(outcome(outcomes, ident).env, secrets_of=())
    assert settings.api_tokens, ident
    assert settings.api_rate > 0, ident
    assert settings.max_json_bytes <= settings.max_body_bytes, ident


def test_gateway_check_catches_a_missing_secret_or_limit() -> None:
    (gateway,) = [c for c in k8s_containers() if c.args[-1:] == ["gateway"]]
    assert gateway_security_problems(gateway) == []
    tokens_file = gateway.env["LOOKOUT_API_TOKENS_FILE"]
    for name in ("LOOKOUT_API_TOKENS_FILE", *GATEWAY_LIMITS):
        env = {k: v for k, v in gateway.env.items() if k != name}
        assert gateway_security_problems(replace(gateway, env=env)), name
    unmounted = {k: v for k, v in gateway.files.items() if k != tokens_file}
    assert gateway_security_problems(replace(gateway, files=unmounted))
    plain = replace(gateway, env={**gateway.env, "LOOKOUT_API_TOKENS": "t"})
    assert gateway_security_problems(plain)
    off = replace(gateway, env={**gateway.env, "LOOKOUT_API_RATE": "0"})
    assert gateway_security_problems(off)


@pytest.mark.parametrize("origin", ["compose", "k8s"])
def test_sinks_refuse_private_networks_unless_allowed(origin: str) -> None:
    """Every sink sets LOOKOUT_OUTBOUND_ALLOW explicitly, empty by default (only public
    addresses), so the place to open it for an internal receiver is in view."""
    sinks = [c for c in all_containers() if c.origin == origin and c.args[-1].startswith("sink-")]
    assert sinks
    for each in sinks:
        assert "LOOKOUT_OUTBOUND_ALLOW" in each.env, f"{each.ident}: LOOKOUT_OUTBOUND_ALLOW"
        assert each.env["LOOKOUT_OUTBOUND_ALLOW"] == "", f"{each.ident}: private ranges open"
    assert env_example()["LOOKOUT_OUTBOUND_ALLOW"] == ""


def _size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)", text.strip().lower())
    assert match, f"not an nginx size: {text!r}"
    return int(match.group(1)) * 1024 ** "_kmg".index(match.group(2) or "_")


def test_k8s_ingress_limits_the_api_not_the_webhooks() -> None:
    """A cluster-wide limit at the Ingress (the gateway's is per process): on /api, never
    on /webhooks (Sqreen retries refused deliveries, but lookout never limits them)."""
    (gateway,) = [c for c in k8s_containers() if c.args[-1:] == ["gateway"]]
    body_limit = int(gateway.env["LOOKOUT_MAX_BODY_BYTES"])
    prefix = "nginx.ingress.kubernetes.io/"
    by_path: dict[str, dict[str, str]] = {}
    for ingress in k8s_kind("Ingress"):
        annotations = ingress["metadata"].get("annotations") or {}
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                by_path[path["path"]] = annotations
    assert {"/api", "/webhooks"} <= set(by_path)
    api_rps = by_path["/api"].get(prefix + "limit-rps")
    assert api_rps, "no limit-rps on the Ingress for /api"
    assert int(api_rps) >= 1, api_rps
    assert prefix + "limit-rps" not in by_path["/webhooks"], "the webhooks are rate-limited"
    for path in ("/api", "/webhooks"):
        size = by_path[path].get(prefix + "proxy-body-size")
        assert size, f"{path}: no proxy-body-size"
        assert _size(size) >= body_limit, f"{path}: proxy-body-size {size}"


@pytest.mark.parametrize("ident", container_ids("gateway"))
def test_gateway_listens_for_the_cluster_with_tokens(
    outcomes: dict[str, Outcome], ident: str
) -> None:
    settings = config.load(outcome(outcomes, ident).env, secrets_of=())
    assert not is_loopback(settings.http_host), f"{ident}: unreachable from other containers"
    settings.check_bind()
    assert settings.api_tokens, f"{ident}: LOOKOUT_API_TOKENS(_FILE)"
    assert sqreen.secrets(settings), f"{ident}: SQREEN_WEBHOOK_SECRET(_FILE)"


# --------------------------------------------------------------------------- compose


def test_compose_services() -> None:
    doc = compose()
    assert set(doc) <= {"name", "services", "secrets", "volumes", "networks", "configs"} | {
        key for key in doc if key.startswith("x-")
    }
    for name, service in doc["services"].items():
        assert name == "nats" or is_lookout_service(service), f"{name}: neither nats nor lookout"
    lookout = [s for s in doc["services"].values() if is_lookout_service(s)]
    assert len({s["image"] for s in lookout}) == 1, "one image, built once, for every service"
    for name, service in doc["services"].items():
        if name != "nats":
            assert service["depends_on"]["nats"]["condition"] == "service_healthy", name


def test_compose_nats() -> None:
    doc = compose()
    nats = doc["services"]["nats"]
    assert re.fullmatch(r"nats:2\.\d+(\.\d+)?-alpine", nats["image"])
    command = nats["command"]
    assert "-js" in command
    store = command[command.index("-sd") + 1]
    assert command[command.index("-m") + 1] == "8222"
    volumes = {v.split(":")[1]: v.split(":")[0] for v in nats["volumes"]}
    assert volumes[store] in doc["volumes"], "JetStream on a named volume"
    assert "8222/healthz" in " ".join(nats["healthcheck"]["test"])
    for each in compose_containers():
        url = each.env["NATS_URL"]
        assert re.fullmatch(r"nats://nats:4222", url), f"{each.ident}: NATS_URL={url}"


def test_compose_containers_are_locked_down() -> None:
    doc = compose()
    for name, service in doc["services"].items():
        if not is_lookout_service(service):
            continue
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        data_dir = compose_environment(service).get("LOOKOUT_DATA_DIR") or image_env().get(
            "LOOKOUT_DATA_DIR"
        )
        assert data_dir in compose_data_mounts(service), f"{name}: {data_dir} not writable"
        assert "/tmp" in compose_data_mounts(service), name


def test_compose_gateway_port_and_healthcheck() -> None:
    gateway = compose()["services"]["gateway"]
    port = compose_environment(gateway)["LOOKOUT_HTTP_PORT"]
    assert any(str(p).endswith(f":{port}") for p in gateway["ports"]), gateway["ports"]
    check = " ".join(gateway["healthcheck"]["test"])
    assert f":{port}/healthz" in check


def test_compose_secrets_are_ignored_files_with_committed_examples() -> None:
    gitignore = ignore_patterns(ROOT / ".gitignore")
    dockerignore = ignore_patterns(ROOT / ".dockerignore")
    secrets = compose()["secrets"]
    assert secrets
    for name, secret in secrets.items():
        path = (ROOT / secret["file"]).resolve()
        relative = path.relative_to(ROOT).as_posix()
        assert example_of(path).read_text().strip(), f"{name}: {example_of(path)}"
        assert ignored(relative, gitignore), f"{relative} must be git-ignored"
        assert ignored(relative, dockerignore), f"{relative} must stay out of the build context"
    used = {
        s if isinstance(s, str) else s["source"]
        for service in compose()["services"].values()
        for s in service.get("secrets") or []
    }
    assert used == set(secrets), f"declared but unused: {set(secrets) - used}"


def test_compose_variables_are_documented_in_env_example() -> None:
    documented = set(re.findall(r"(?m)^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text()))
    used = interpolation_names(raw_compose())
    assert used == documented, (
        f"undocumented: {sorted(used - documented)}; unused: {sorted(documented - used)}"
    )
    assert ignored(".env", ignore_patterns(ROOT / ".gitignore"))


def test_compose_with_the_example_env_file(tmp_path: Path) -> None:
    variables = env_example()
    assert variables
    for each in compose_containers(variables):
        env = localize(each, tmp_path)
        config.load(env, secrets_of=each.own_targets)
        assert not set(env) - variables_read(env), each.ident


def test_compose_without_provider_keys(tmp_path: Path) -> None:
    """`VIRUSTOTAL_API_KEY_FILE=` in .env runs the provider unconfigured, as env.example says."""
    variables = {"VIRUSTOTAL_API_KEY_FILE": "", "ABUSEIPDB_API_KEY_FILE": ""}
    for each in compose_containers(variables):
        settings = config.load(localize(each, tmp_path), secrets_of=each.own_targets)
        assert virustotal_settings(settings).api_key is None, each.ident
        assert abuseipdb_settings(settings).api_key is None, each.ident


# --------------------------------------------------------------------------- kubernetes


def test_kustomization_lists_only_existing_files() -> None:
    kust = kustomization()
    assert kust["resources"]
    for resource in kust["resources"]:
        path = K8S / resource
        assert path.is_file() or (path / "kustomization.yaml").is_file(), resource
    gitignore = ignore_patterns(ROOT / ".gitignore")
    for generator in kust.get("configMapGenerator") or []:
        for entry in generator["files"]:
            assert (K8S / entry.rpartition("=")[2]).is_file(), entry
    for generator in kust.get("secretGenerator") or []:
        for entry in generator["files"]:
            path = K8S / entry.rpartition("=")[2]
            assert example_of(path).read_text().strip(), f"{entry}: no {example_of(path).name}"
            relative = path.relative_to(ROOT).as_posix()
            assert ignored(relative, gitignore), f"{relative} must be git-ignored"


def test_k8s_manifests_parse() -> None:
    docs = k8s_documents()
    for doc in docs:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc["metadata"].get("name"), doc
    kinds = {doc["kind"] for doc in docs}
    assert {"Namespace", "Deployment", "Service", "Ingress", "PodDisruptionBudget"} <= kinds
    (namespace,) = k8s_kind("Namespace")
    assert kustomization()["namespace"] == namespace["metadata"]["name"]
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    assert isinstance(values, dict)


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_k8s_deployments_are_locked_down() -> None:
    uid = image_user_uid()
    image_names = {image["name"] for image in kustomization().get("images") or []}
    for deployment in k8s_kind("Deployment"):
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        assert spec["replicas"] >= (2 if name.endswith("gateway") else 1), name
        assert _matches(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for each in pod["containers"]:
            security = each["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(each["resources"][kind]), f"{name} {kind}"
            assert each["image"] in image_names, f"{name}: image not set by kustomization"
            env = {item["name"]: item.get("value") for item in each.get("env") or []}
            data_dir = env.get("LOOKOUT_DATA_DIR") or image_env()["LOOKOUT_DATA_DIR"]
            empty = {
                mount["mountPath"]
                for mount in each["volumeMounts"]
                if "emptyDir" in volumes[mount["name"]]
            }
            assert {data_dir, "/tmp"} <= empty, f"{name}: writable dirs {empty}"


def test_k8s_workers_have_probes_on_their_metrics_listener() -> None:
    """Providers, sinks and the scheduler answer ``/readyz`` (connected to NATS) and
    ``/healthz`` on their metrics listener: readiness and liveness probes use them."""
    workers = [d for d in k8s_kind("Deployment") if not d["metadata"]["name"].endswith("gateway")]
    assert len(workers) > 3
    for worker in workers:
        (main,) = worker["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value") for item in main["env"]}
        name = worker["metadata"]["name"]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            assert main[probe]["httpGet"]["path"] == path, (name, probe)
            assert str(main[probe]["httpGet"]["port"]) == env["LOOKOUT_METRICS_PORT"], name


def test_k8s_gateway_probes_service_and_ingress() -> None:
    (gateway,) = [d for d in k8s_kind("Deployment") if d["metadata"]["name"].endswith("gateway")]
    template = gateway["spec"]["template"]
    (main,) = template["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in main["env"]}
    (port,) = [p for p in main["ports"] if str(p["containerPort"]) == env["LOOKOUT_HTTP_PORT"]]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert main[probe]["httpGet"]["path"] == path, probe
        assert main[probe]["httpGet"]["port"] in (port["name"], port["containerPort"]), probe
    services = [
        s
        for s in k8s_kind("Service")
        if _matches(s["spec"]["selector"], template["metadata"]["labels"])
    ]
    assert len(services) == 1, "one Service for the gateway"
    service = services[0]
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert all(
        p["targetPort"] in (port["name"], port["containerPort"]) for p in service_ports.values()
    )
    backends = [
        path["backend"]["service"]
        for ingress in k8s_kind("Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends
    for backend in backends:
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"].get("name") in service_ports or backend["port"].get("number") in {
            p["port"] for p in service_ports.values()
        }


def test_k8s_every_deployment_has_a_disruption_budget() -> None:
    budgets = k8s_kind("PodDisruptionBudget")
    for deployment in k8s_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [b for b in budgets if _matches(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(mine) == 1, f"{deployment['metadata']['name']}: {len(mine)} budgets"
    assert len(budgets) == len(k8s_kind("Deployment"))


def test_nats_helm_values() -> None:
    text = (K8S / "nats-values.yaml").read_text()
    values = yaml.safe_load(text)
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    jetstream = values["config"]["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert "lookout provisions its JetStream streams" in " ".join(text.split())
    urls = {c.env["NATS_URL"] for c in all_containers() if c.origin == "k8s"}
    assert urls == {"nats://nats.nats.svc:4222"}, "the chart's Service (release nats, ns nats)"


def _kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(_kustomize() is None, reason="neither kustomize nor kubectl is installed")
def test_kustomize_build(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("*.txt"))
    for example in (copy / "secrets").glob("*.example"):
        shutil.copy(example, example.with_suffix(""))
    command = _kustomize()
    assert command is not None
    result = subprocess.run(
        [*command, str(copy)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    namespace = kustomization()["namespace"]
    generated = {
        doc["kind"]: doc["metadata"]["name"]
        for doc in docs
        if doc["kind"] in ("ConfigMap", "Secret")
    }
    assert set(generated) == {"ConfigMap", "Secret"}
    images = {f"{i['newName']}:{i['newTag']}" for i in kustomization()["images"]}
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        names = {v.get("configMap", v.get("secret", {})).get("name") for v in pod["volumes"]}
        names |= {v.get("secret", {}).get("secretName") for v in pod["volumes"]}
        # every Deployment reads the config; those that mount secrets use the hashed name
        assert generated["ConfigMap"] in names, doc["metadata"]["name"]
        stale = {n for n in names if n and n.startswith("lookout-") and n not in generated.values()}
        assert not stale, f"{doc['metadata']['name']}: not the generated names: {stale}"
        assert {c["image"] for c in pod["containers"]} <= images


# --------------------------------------------------------------------------- Makefile


@pytest.fixture
def make_dir(tmp_path: Path) -> Path:
    """The Makefile with deploy/secrets examples, in a scratch directory."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "deploy").mkdir()
    shutil.copytree(DEPLOY / "secrets", tmp_path / "deploy" / "secrets")
    for real in (tmp_path / "deploy" / "secrets").glob("*.txt"):
        real.unlink()
    return tmp_path


def _make(directory: Path, target: str, path: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make is not None
    return subprocess.run(
        [make, "-s", "-C", str(directory), target],
        env={"PATH": path, "HOME": str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_up_and_down(make_dir: Path) -> None:
    phony = " ".join(re.findall(r"(?m)^\.PHONY:(.*)$", (ROOT / "Makefile").read_text()))
    assert {"up", "down"} <= set(phony.split())

    empty = make_dir / "empty-bin"
    empty.mkdir()
    for target in ("up", "down"):
        result = _make(make_dir, target, str(empty))
        assert result.returncode != 0
        assert "needs Docker" in result.stdout + result.stderr, target

    fake = make_dir / "bin"
    fake.mkdir()
    calls = make_dir / "docker-calls"
    docker = fake / "docker"
    docker.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    docker.chmod(0o755)
    path = f"{fake}:/usr/bin:/bin"

    result = _make(make_dir, "up", path)
    assert result.returncode != 0, "secret files are missing"
    assert "lookout_api_tokens.txt" in result.stdout + result.stderr
    assert "compose up" not in (calls.read_text() if calls.exists() else "")

    for example in (make_dir / "deploy" / "secrets").glob("*.example"):
        shutil.copy(example, example.with_suffix(""))
    result = _make(make_dir, "up", path)
    assert result.returncode != 0, "the copies still hold the public placeholder"
    assert "lookout_api_tokens.txt" in result.stdout + result.stderr
    assert "compose up" not in (calls.read_text() if calls.exists() else "")

    for copy in (make_dir / "deploy" / "secrets").glob("*.txt"):
        copy.write_text(copy.read_text().replace(secrets.PLACEHOLDER, "its-owners-own-value"))
    assert _make(make_dir, "up", path).returncode == 0
    assert _make(make_dir, "down", path).returncode == 0
    lines = calls.read_text().splitlines()
    assert "compose up -d --build" in lines
    assert "compose down" in lines


INTERNAL_PATHS = {"/healthz", "/readyz", "/metrics"}
"""Served to the kubelet and Prometheus inside the cluster, never through the Ingress."""


def _ingress_serves(path: str) -> bool:
    """Whether one of the Ingresses routes ``path`` (Kubernetes Exact/Prefix semantics:
    a Prefix matches whole path elements)."""
    for ingress in k8s_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for entry in rule["http"]["paths"]:
                wanted, kind = entry["path"], entry["pathType"]
                if kind == "Exact" and path == wanted:
                    return True
                prefix = wanted.rstrip("/")
                if kind == "Prefix" and (
                    wanted == "/" or path == prefix or path.startswith(prefix + "/")
                ):
                    return True
    return False


def test_k8s_ingress_serves_every_public_route_and_no_internal_one() -> None:
    """Every route of the gateway a browser or a sender needs (the UI's pages, login,
    static files, the API and its documents, the webhooks) goes through the Ingresses;
    the probes and /metrics do not."""
    from services.gateway.app import create_app

    app = create_app(config.load(env={}))
    paths = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        paths.add(re.sub(r"\{[^}]*\}", "x", path))
    paths.add("/api/v1/lookups")  # the API sub-application's routes, under its prefix
    assert {"/", "/login", "/static/x", "/webhooks/sqreen"} <= paths
    for path in sorted(paths - INTERNAL_PATHS):
        assert _ingress_serves(path), f"{path} is not routed by any Ingress"
    for path in INTERNAL_PATHS:
        assert not _ingress_serves(path), f"{path} is exposed through an Ingress"
