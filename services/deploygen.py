"""``python -m services.deploygen``: the deployment files' provider and sink entries, made
from one template per kind of service.

Nobody writes a provider's or a sink's entry by hand. The providers come from the
launcher's registry (``services/registry.py``) and what each declares in its ``SPEC``: its
environment variables, with their defaults, and which of them are secrets. The sinks come
from the targets of the configuration each deployment mounts
(``deploy/lookout.example.toml`` for compose, ``deploy/k8s/lookout.toml`` for Kubernetes):
one sink per ``[[targets]]`` entry, mounting the secret files its ``<field>_file`` keys
name. Each entry is one template of ``deploy/templates/`` filled in:

- ``compose-provider.yml``, ``compose-sink.yml``: a service of ``docker-compose.yml``;
- ``k8s-provider.yaml``, ``k8s-sink.yaml``: a Deployment and its PodDisruptionBudget, all of
  ``deploy/k8s/providers.yaml`` and ``deploy/k8s/sinks.yaml``.

Around them it writes the secrets they mount (``docker-compose.yml``'s ``secrets``, the
``secretGenerator`` of ``deploy/k8s/kustomization.yaml``, a placeholder
``<name>.txt.example`` for each in ``deploy/secrets`` and ``deploy/k8s/secrets``) and the
providers' variables in ``deploy/env.example``; and the gateway mounts the secret files the
``[[sources]]`` name (its secrets in ``docker-compose.yml`` and ``deploy/k8s/gateway.yaml``).
In a file that is also written by hand
(the gateway, NATS, the shared settings), only the lines between ``# >>> generated: <part>``
and ``# <<< generated: <part>`` are its own.

``--check`` writes nothing and exits 1 naming each stale file (``tests/unit/test_deploygen.py``
fails the same way). ``--compose-config`` and ``--k8s-config`` make the sinks of another
configuration file.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from services import registry
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.lookups import catalog
from shared.relay.config import TargetConfig, relay
from shared.relay.inbound import inbound

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m services.deploygen"
COMPOSE_SECRETS = "/run/secrets/"
K8S_SECRETS = "/etc/lookout/secrets/"
GATEWAY_SECRETS = ("lookout_api_tokens", "sqreen_webhook_secret")
"""The secrets the gateway's hand-written entries mount (API tokens, the Sqreen secret)."""
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_BLOCK = re.compile(r"^(\s*)\{\{(\w+)\}\}\s*$")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SECRET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
"""A secret's file name: a key of the Kubernetes Secret and a compose secret too."""


@dataclass(frozen=True)
class Secret:
    """A secret file a service mounts: its name (the file ``<name>.txt`` and the key of
    the Secret), what a placeholder holds, and the variable that names it, if any."""

    name: str
    example: str
    variable: str | None = None
    without: str = ""
    """What the provider does without it (see ``EnvVar.without``)."""


@dataclass(frozen=True)
class Paths:
    root: Path
    compose_config: Path
    k8s_config: Path

    @property
    def templates(self) -> Path:
        return self.root / "deploy" / "templates"


def placeholder(name: str) -> str:
    return f"example-only-change-me-{name.replace('_', '-')}"


def fill(template: str, values: Mapping[str, str | list[str]]) -> str:
    """``template`` with ``{{name}}`` replaced: a line holding only ``{{name}}`` by the
    lines of a list value, each indented as the placeholder was (none: the line goes),
    any other ``{{name}}`` by a string value."""
    out: list[str] = []
    for line in template.splitlines():
        block = _BLOCK.match(line)
        lines = values.get(block.group(2)) if block else None
        if block and isinstance(lines, list):
            out.extend(block.group(1) + item if item else "" for item in lines)
            continue

        def one(match: re.Match[str]) -> str:
            value = values.get(match.group(1))
            if not isinstance(value, str):
                raise ConfigError(f"template: nothing to put in {{{{{match.group(1)}}}}}")
            return value

        out.append(_PLACEHOLDER.sub(one, line))
    return "\n".join(out) + "\n"


def _template(paths: Paths, name: str) -> str:
    return (paths.templates / name).read_text("utf-8")


def _split(template: str) -> tuple[str, str]:
    """A Kubernetes template's header comment and its documents (from the first ``---``)."""
    at = template.index("---\n")
    return template[:at], template[at:]


def _compose_value(value: str) -> str:
    return value.replace("$", "$$")


# --------------------------------------------------------------------------- what runs


def provider_secrets() -> dict[str, list[Secret]]:
    """Per provider, the secret files its SPEC's secret variables are read from."""
    return {
        spec.name: [
            Secret(var.name.lower(), placeholder(var.name.lower()), var.name, var.without)
            for var in spec.env
            if var.secret
        ]
        for spec in catalog.specs()
    }


def _settings(config_file: Path) -> config.Settings:
    try:
        return config.load({"LOOKOUT_CONFIG": str(config_file)}, secrets_of=())
    except ConfigError as exc:
        raise ConfigError(f"{config_file}: {exc}") from None


def _mounted(config_file: Path, what: str, field: str, path: str, mount: str) -> str:
    """The secret's name: ``path`` (a ``<field>_file`` value) must be a file directly in
    ``mount``, where the deployments mount secrets."""
    name = path.removeprefix(mount)
    if not path.startswith(mount) or not _SECRET_NAME.fullmatch(name):
        raise ConfigError(
            f"{config_file}: {what}: {field}_file = {path!r} must name a file directly in "
            f"{mount} (where its deployment mounts secrets; letters, digits, '.', '_' and '-')"
        )
    return name


def sink_secrets(config_file: Path, mount: str) -> dict[str, list[Secret]]:
    """Per target of ``config_file``, the secret files its ``<field>_file`` keys name, each
    of which must be a file directly under ``mount``."""
    out: dict[str, list[Secret]] = {}
    for target in relay(_settings(config_file)).targets:
        found: list[Secret] = []
        for field in type(target).secrets:
            path = getattr(target, f"{field}_file", None)
            if path:
                name = _mounted(config_file, f"target {target.name}", field, path, mount)
                found.append(Secret(name, _example(target, field, name)))
        out[target.name] = found
    return out


def source_secrets(config_file: Path, mount: str) -> list[Secret]:
    """The secret files the ``[[sources]]`` of ``config_file`` name (``<field>_file``), each
    directly under ``mount``: the gateway reads them, so its service mounts them (besides
    :data:`GATEWAY_SECRETS`, which it mounts anyway)."""
    found: list[Secret] = []
    for source in inbound(_settings(config_file)).sources:
        for field in source.secrets:
            path = getattr(source, f"{field}_file", None)
            if path:
                name = _mounted(config_file, f"source {source.name}", field, path, mount)
                if name not in GATEWAY_SECRETS:
                    found.append(Secret(name, placeholder(name)))
    return found


def _example(target: TargetConfig, field: str, name: str) -> str:
    return type(target).secret_examples.get(field) or placeholder(name)


def _k8s_name(kind: str, name: str) -> str:
    full = f"lookout-{kind}-{name}"
    if not _K8S_NAME.fullmatch(full) or len(full) > 63:
        raise ConfigError(
            f"{kind} {name!r} cannot name a Kubernetes Deployment ({full!r}: lower-case "
            "letters, digits and '-', at most 63 characters)"
        )
    return full


# --------------------------------------------------------------------------- compose


def compose_services(paths: Paths, targets: Mapping[str, list[Secret]]) -> list[str]:
    providers = _template(paths, "compose-provider.yml")
    sinks = _template(paths, "compose-sink.yml")
    secrets = provider_secrets()
    lines = [
        f"# Made by `{COMMAND}` from deploy/templates/compose-*.yml:",
        "# every provider of services/registry.py, one sink per [[targets]] entry of",
        "# deploy/lookout.example.toml.",
        "",
    ]
    for spec in catalog.specs():
        own = [var for var in spec.env if not var.secret]
        mine = secrets[spec.name]
        environment = ["environment: *provider-env"]
        if own or mine:
            environment = ["environment:", "  <<: *provider-env"]
            for secret in mine:
                var = f"{secret.variable}_FILE"
                environment += [
                    f"  # {var}= (empty) in .env: none, {secret.without}",
                    f"  {var}: ${{{var}-{COMPOSE_SECRETS}{secret.name}}}",
                ]
            for setting in own:
                value = _compose_value(setting.default)
                environment.append(f"  {setting.name}: ${{{setting.name}:-{value}}}")
        block = fill(
            providers,
            {"name": spec.name, "environment": environment, "secrets": _secret_list(mine)},
        )
        lines += [*block.rstrip("\n").splitlines(), ""]
    for name, mine in targets.items():
        block = fill(sinks, {"name": name, "secrets": _secret_list(mine)})
        lines += [*block.rstrip("\n").splitlines(), ""]
    return lines[:-1]


def _secret_list(secrets: list[Secret]) -> list[str]:
    return ["secrets:", *(f"  - {s.name}" for s in secrets)] if secrets else []


def compose_secrets(secrets: Mapping[str, Secret]) -> list[str]:
    return [
        line for name in secrets for line in (f"{name}:", f"  file: ./deploy/secrets/{name}.txt")
    ]


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, 92, initial_indent="# ", subsequent_indent="# ")


def env_example() -> list[str]:
    lines = [f"# Each provider's own settings, from its SPEC (made by `{COMMAND}`)."]
    for spec in catalog.specs():
        for var in spec.env:
            if var.secret:
                secret = var.name.lower()
                get = f"; get one at {var.link}" if var.link else ""
                lines += _comment(
                    f"{spec.label}: {var.hint}{get}. Read from deploy/secrets/{secret}.txt; "
                    f"without one, uncomment the line below: {var.without}; the file must "
                    "still exist for compose."
                )
                lines.append(f"# {var.name}_FILE=")
            else:
                lines += [*_comment(f"{spec.label}: {var.hint}"), f"{var.name}={var.default}"]
    return lines


# --------------------------------------------------------------------------- kubernetes


def _secret_env(secrets: list[Secret]) -> list[str]:
    return [
        line
        for s in secrets
        if s.variable
        for line in (f"- name: {s.variable}_FILE", f"  value: {K8S_SECRETS}{s.name}")
    ]


def _secret_mount(secrets: list[Secret]) -> list[str]:
    if not secrets:
        return []
    return ["- name: secrets", f"  mountPath: {K8S_SECRETS.rstrip('/')}", "  readOnly: true"]


def _secret_volume(secrets: list[Secret]) -> list[str]:
    if not secrets:
        return []
    return [
        "- name: secrets",
        "  secret:",
        "    secretName: lookout-secrets",
        "    defaultMode: 288  # 0440: the lookout group (fsGroup) reads, nobody writes",
        "    items:",
        *(line for s in secrets for line in (f"      - key: {s.name}", f"        path: {s.name}")),
    ]


def k8s_file(
    paths: Paths,
    kind: str,
    services: Mapping[str, list[Secret]],
    source: str,
    notes: Mapping[str, str] | None = None,
) -> str:
    """A Deployment and its budget per service of ``kind`` (``provider`` or ``sink``)."""
    header, body = _split(_template(paths, f"k8s-{kind}.yaml"))
    parts = [
        *_comment(
            f"Made by `{COMMAND}` from deploy/templates/k8s-{kind}.yaml and {source}: "
            "edit those and run it again."
        ),
        header.rstrip("\n"),
    ]
    for name, secrets in services.items():
        _k8s_name(kind, name)
        values: dict[str, str | list[str]] = {
            "service": f"{kind}-{name}",
            "secret_env": _secret_env(secrets),
            "secret_mount": _secret_mount(secrets),
            "secret_volume": _secret_volume(secrets),
            "replicas_note": (notes or {}).get(name, ""),
        }
        parts.append(fill(body, values).rstrip("\n"))
    return "\n".join(parts) + "\n"


def paced_targets(config_file: Path) -> dict[str, str]:
    """A note on the replicas of each sink whose target is paced across them."""
    settings = config.load({"LOOKOUT_CONFIG": str(config_file)}, secrets_of=())
    return {
        t.name: "  # per_second and a 429's pause hold across replicas (KV bucket sink_pace)"
        for t in relay(settings).targets
        if t.send_rate
    }


def kustomize_secrets(secrets: Mapping[str, Secret]) -> list[str]:
    return [f"- {name}=secrets/{name}.txt" for name in secrets]


# --------------------------------------------------------------------------- the files


def replace_part(text: str, part: str, lines: list[str], where: str) -> str:
    """``text`` with the lines between its markers of ``part`` replaced by ``lines``,
    indented as the opening marker is."""
    begin = re.compile(rf"^([ \t]*)# >>> generated: {re.escape(part)}\b.*$", re.M)
    end = re.compile(rf"^[ \t]*# <<< generated: {re.escape(part)}\b.*$", re.M)
    opening = begin.search(text)
    closing = end.search(text, opening.end()) if opening else None
    if opening is None or closing is None:
        raise ConfigError(
            f"{where}: no lines '# >>> generated: {part}' … '# <<< generated: {part}' "
            "to write between"
        )
    indent = opening.group(1)
    body = "".join(f"{indent}{line}\n" if line else "\n" for line in lines)
    return text[: opening.end() + 1] + body + text[closing.start() :]


def _unique(groups: Mapping[str, list[Secret]]) -> dict[str, Secret]:
    found: dict[str, Secret] = {}
    for secrets in groups.values():
        for secret in secrets:
            found.setdefault(secret.name, secret)
    return found


def render(paths: Paths) -> dict[Path, str]:
    """Every file this command writes, by its path under ``paths.root``, with its text."""
    registry.register()
    root = paths.root
    providers = provider_secrets()
    compose_targets = sink_secrets(paths.compose_config, COMPOSE_SECRETS)
    k8s_targets = sink_secrets(paths.k8s_config, K8S_SECRETS)
    compose_sources = source_secrets(paths.compose_config, COMPOSE_SECRETS)
    k8s_sources = source_secrets(paths.k8s_config, K8S_SECRETS)
    compose_all = _unique(
        {
            **providers,
            **{f"sink {k}": v for k, v in compose_targets.items()},
            "gateway": compose_sources,
        }
    )
    k8s_all = _unique(
        {**providers, **{f"sink {k}": v for k, v in k8s_targets.items()}, "gateway": k8s_sources}
    )

    compose_file = root / "docker-compose.yml"
    compose = compose_file.read_text("utf-8")
    compose = replace_part(
        compose, "services", compose_services(paths, compose_targets), compose_file.name
    )
    compose = replace_part(compose, "secrets", compose_secrets(compose_all), compose_file.name)
    compose = replace_part(
        compose,
        "gateway secrets",
        [f"- {secret.name}" for secret in _unique({"": compose_sources}).values()],
        compose_file.name,
    )
    gateway_file = root / "deploy" / "k8s" / "gateway.yaml"
    gateway = replace_part(
        gateway_file.read_text("utf-8"),
        "source secrets",
        [
            line
            for secret in _unique({"": k8s_sources}).values()
            for line in (f"- key: {secret.name}", f"  path: {secret.name}")
        ],
        gateway_file.name,
    )
    env_file = root / "deploy" / "env.example"
    env = replace_part(env_file.read_text("utf-8"), "providers", env_example(), "env.example")
    kustomization_file = root / "deploy" / "k8s" / "kustomization.yaml"
    kustomization = replace_part(
        kustomization_file.read_text("utf-8"),
        "secrets",
        kustomize_secrets(k8s_all),
        "kustomization.yaml",
    )
    out: dict[Path, str] = {
        compose_file: compose,
        gateway_file: gateway,
        env_file: env,
        kustomization_file: kustomization,
        root / "deploy/k8s/providers.yaml": k8s_file(
            paths, "provider", providers, "the providers of services/registry.py"
        ),
        root / "deploy/k8s/sinks.yaml": k8s_file(
            paths,
            "sink",
            k8s_targets,
            "the [[targets]] of deploy/k8s/lookout.toml",
            paced_targets(paths.k8s_config),
        ),
    }
    for folder, secrets in (("deploy/secrets", compose_all), ("deploy/k8s/secrets", k8s_all)):
        for name, secret in secrets.items():
            out[root / folder / f"{name}.txt.example"] = secret.example + "\n"
    return out


def stale_examples(paths: Paths, files: Mapping[Path, str]) -> list[Path]:
    """Secret examples no deployment mounts any more: neither ``docker-compose.yml``'s
    ``secrets`` nor the kustomization's ``secretGenerator`` names their file."""
    used = {
        paths.root / "deploy/secrets" / name
        for name in re.findall(
            r"(?m)^\s*file: \./deploy/secrets/(\S+)$", files[paths.root / "docker-compose.yml"]
        )
    }
    used |= {
        paths.root / "deploy/k8s/secrets" / name
        for name in re.findall(
            r"(?m)^\s*- (?:\S+=)?secrets/(\S+)$",
            files[paths.root / "deploy/k8s/kustomization.yaml"],
        )
    }
    found = [
        *(paths.root / "deploy/secrets").glob("*.txt.example"),
        *(paths.root / "deploy/k8s/secrets").glob("*.txt.example"),
    ]
    return sorted(p for p in found if p not in files and p.with_suffix("") not in used)


def stale(paths: Paths) -> list[str]:
    """What differs from what this command would write (relative paths; empty: current)."""
    files = render(paths)
    out = [
        path.relative_to(paths.root).as_posix()
        for path, text in files.items()
        if not path.is_file() or path.read_text("utf-8") != text
    ]
    out += [
        f"{p.relative_to(paths.root).as_posix()} (remove)" for p in stale_examples(paths, files)
    ]
    return out


def write(paths: Paths) -> list[str]:
    """Write every file; remove the secret examples nothing mounts. What changed."""
    files = render(paths)
    changed: list[str] = []
    for path, text in files.items():
        if not path.is_file() or path.read_text("utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
            changed.append(f"wrote {path.relative_to(paths.root).as_posix()}")
    for path in stale_examples(paths, files):
        path.unlink()
        changed.append(f"removed {path.relative_to(paths.root).as_posix()}")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Write the provider and sink entries of docker-compose.yml and "
        "deploy/k8s, their secrets and deploy/env.example, from deploy/templates/, the "
        "providers' SPECs and the targets of the deployments' configuration files.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: this)")
    parser.add_argument(
        "--compose-config",
        type=Path,
        help="the configuration compose mounts (default: deploy/lookout.example.toml)",
    )
    parser.add_argument(
        "--k8s-config",
        type=Path,
        help="the configuration of deploy/k8s (default: deploy/k8s/lookout.toml)",
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    paths = Paths(
        root,
        args.compose_config or root / "deploy" / "lookout.example.toml",
        args.k8s_config or root / "deploy" / "k8s" / "lookout.toml",
    )
    try:
        if args.check:
            found = stale(paths)
            for name in found:
                print(f"stale: {name}", file=sys.stderr)
            if found:
                print(f"run: {COMMAND}", file=sys.stderr)
            return 1 if found else 0
        for line in write(paths):
            print(line)
    except (ConfigError, OSError) as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
