"""``python -m services.deploygen``: the provider and sink entries of docker-compose.yml and
deploy/k8s, their secrets and deploy/env.example come from one template per kind of
service, the providers' SPECs and the deployments' configuration files. The committed
files are what it writes (a test fails while one is stale, naming the command), and a
provider or a target added where the recipe says gets its entries with nothing written
by hand. tests/unit/test_deploy.py holds the files themselves to what lookout does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services import deploygen
from shared.core.errors import ConfigError
from shared.lookups import catalog
from shared.lookups import config as lookups_config
from shared.lookups.catalog import EnvVar, ProviderSpec

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "python -m services.deploygen"


def paths(root: Path) -> deploygen.Paths:
    return deploygen.Paths(
        root, root / "deploy" / "lookout.example.toml", root / "deploy" / "k8s" / "lookout.toml"
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The deployment files of this checkout (no real secret), in a scratch directory."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("*.txt"))
    return tmp_path


@pytest.fixture
def echo_provider(monkeypatch: pytest.MonkeyPatch) -> ProviderSpec:
    """One more provider, as its registration line would add it (restored afterwards)."""
    monkeypatch.setattr(catalog, "_specs", dict(catalog._specs))
    monkeypatch.setattr(lookups_config, "_tables", dict(lookups_config._tables))
    monkeypatch.setattr(deploygen.registry, "register", lambda: None)  # keep echo registered
    spec = ProviderSpec(
        name="echo",
        label="Echo Intel",
        kinds=frozenset({"domain"}),
        env=(
            EnvVar("ECHO_API_KEY", "API key", secret=True, link="https://echo.example/keys"),
            EnvVar("ECHO_URL", "API base URL", default="https://api.echo.example/v1"),
        ),
    )
    catalog.register(spec)
    return spec


def test_committed_files_are_current() -> None:
    stale = deploygen.stale(paths(ROOT))
    assert not stale, f"stale: {', '.join(stale)}: run {REGENERATE}"


def test_the_command_checks_and_writes(tree: Path) -> None:
    command = [sys.executable, "-m", "services.deploygen", "--root", str(tree)]
    check = [*command, "--check"]
    assert subprocess.run(check, cwd=ROOT, capture_output=True, check=False).returncode == 0

    providers = tree / "deploy/k8s/providers.yaml"
    providers.write_text(providers.read_text().replace("replicas: 2", "replicas: 1", 1))
    (tree / "deploy/secrets/virustotal_api_key.txt.example").unlink()
    (tree / "deploy/k8s/secrets/gone_key.txt.example").write_text("left behind\n")
    compose = tree / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("  sink-slack:\n", "  sink-slack2:\n"))
    found = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, check=False)
    assert found.returncode == 1
    for name in (
        "deploy/k8s/providers.yaml",
        "deploy/secrets/virustotal_api_key.txt.example",
        "deploy/k8s/secrets/gone_key.txt.example (remove)",
        "docker-compose.yml",
    ):
        assert f"stale: {name}\n" in found.stderr, found.stderr
    assert f"run: {REGENERATE}" in found.stderr

    wrote = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert wrote.returncode == 0, wrote.stderr
    assert "removed deploy/k8s/secrets/gone_key.txt.example" in wrote.stdout
    assert subprocess.run(check, cwd=ROOT, capture_output=True, check=False).returncode == 0
    for name in ("deploy/k8s/providers.yaml", "docker-compose.yml"):
        assert (tree / name).read_text() == (ROOT / name).read_text(), name
    assert not (tree / "deploy/k8s/secrets/gone_key.txt.example").exists()


def test_the_hand_written_parts_stay(tree: Path) -> None:
    """Only the lines between the markers are the command's: the gateway, NATS and the
    shared settings are left as they are written."""
    compose = tree / "docker-compose.yml"
    text = compose.read_text().replace("LOOKOUT_API_BURST:-100", "LOOKOUT_API_BURST:-150")
    compose.write_text(text)
    deploygen.write(paths(tree))
    assert "LOOKOUT_API_BURST:-150" in compose.read_text()
    compose.write_text(text.replace("# <<< generated: services", "# the end"))
    with pytest.raises(ConfigError, match="no lines '# >>> generated: services'"):
        deploygen.render(paths(tree))


def _compose(root: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((root / "docker-compose.yml").read_text())
    return doc


def _k8s(root: Path, name: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((root / "deploy/k8s" / name).read_text())
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs if d}


def test_a_registered_provider_gets_its_services_secrets_and_settings(
    tree: Path, echo_provider: ProviderSpec
) -> None:
    deploygen.write(paths(tree))
    service = _compose(tree)["services"]["provider-echo"]
    assert service["command"] == ["service", "provider-echo"]
    assert service["secrets"] == ["echo_api_key"]
    assert service["environment"]["ECHO_API_KEY_FILE"] == (
        "${ECHO_API_KEY_FILE-/run/secrets/echo_api_key}"
    )
    assert service["environment"]["ECHO_URL"] == "${ECHO_URL:-https://api.echo.example/v1}"
    assert service["environment"]["LOOKOUT_DNS_TIMEOUT"]  # the providers' shared settings
    assert _compose(tree)["secrets"]["echo_api_key"] == {
        "file": "./deploy/secrets/echo_api_key.txt"
    }
    env = (tree / "deploy/env.example").read_text()
    assert "\nECHO_URL=https://api.echo.example/v1\n" in env
    assert "\n# ECHO_API_KEY_FILE=\n" in env
    assert "get one at https://echo.example/keys" in env

    k8s = _k8s(tree, "providers.yaml")
    deployment = k8s["Deployment/lookout-provider-echo"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["service", "provider-echo"]
    env_k8s = {e["name"]: e["value"] for e in container["env"]}
    assert env_k8s["ECHO_API_KEY_FILE"] == "/etc/lookout/secrets/echo_api_key"
    (secrets,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert secrets["secret"]["items"] == [{"key": "echo_api_key", "path": "echo_api_key"}]
    assert "PodDisruptionBudget/lookout-provider-echo" in k8s
    kustomization = yaml.safe_load((tree / "deploy/k8s/kustomization.yaml").read_text())
    assert "echo_api_key=secrets/echo_api_key.txt" in kustomization["secretGenerator"][0]["files"]
    for folder in ("deploy/secrets", "deploy/k8s/secrets"):
        example = tree / folder / "echo_api_key.txt.example"
        assert example.read_text() == "example-only-change-me-echo-api-key\n"

    # a provider without variables shares the providers' settings and mounts nothing
    assert _compose(tree)["services"]["provider-dns"]["environment"]["LOOKOUT_DNS_TIMEOUT"]
    dns = _k8s(tree, "providers.yaml")["Deployment/lookout-provider-dns"]
    assert all(v["name"] != "secrets" for v in dns["spec"]["template"]["spec"]["volumes"])


def test_a_target_added_to_the_configuration_gets_its_sink(tree: Path) -> None:
    config = tree / "deploy/lookout.example.toml"
    config.write_text(
        config.read_text()
        + '\n[[targets]]\nname = "team-chat"\ntype = "teams"\n'
        + 'webhook_url_file = "/run/secrets/teams_webhook_url"\n'
    )
    deploygen.write(paths(tree))
    service = _compose(tree)["services"]["sink-team-chat"]
    assert service["command"] == ["service", "sink-team-chat"]
    assert service["secrets"] == ["teams_webhook_url"]
    example = (tree / "deploy/secrets/teams_webhook_url.txt.example").read_text()
    assert example.startswith("https://")  # the target type's own placeholder: it builds
    assert not (tree / "deploy/k8s/secrets/teams_webhook_url.txt.example").exists()
    assert "Deployment/lookout-sink-team-chat" not in _k8s(tree, "sinks.yaml")

    config.write_text(config.read_text().replace("/run/secrets/teams", "/etc/teams"))
    with pytest.raises(
        ConfigError, match=r"team-chat: webhook_url_file = '/etc/teams_webhook_url'"
    ):
        deploygen.render(paths(tree))
    config.write_text(config.read_text().replace("/etc/teams", "/run/secrets/teams"))
    deploygen.render(paths(tree))
    k8s = tree / "deploy/k8s/lookout.toml"
    k8s.write_text(k8s.read_text() + '\n[[targets]]\nname = "team_chat"\ntype = "log"\n')
    with pytest.raises(ConfigError, match="sink 'team_chat' cannot name a Kubernetes Deployment"):
        deploygen.render(paths(tree))


def test_k8s_sinks_of_paced_targets_say_so(tree: Path) -> None:
    text = (tree / "deploy/k8s/sinks.yaml").read_text()
    slack = text[text.index("name: lookout-sink-slack") :]
    assert "replicas: 2  # per_second and a 429's pause hold across replicas" in slack
    log = text[text.index("name: lookout-sink-log") : text.index("name: lookout-sink-ops-http")]
    assert "per_second" not in log


def test_a_template_naming_nothing_known_is_refused() -> None:
    assert deploygen.fill("a: {{x}}\n  {{block}}\nb\n", {"x": "1", "block": ["c", "d"]}) == (
        "a: 1\n  c\n  d\nb\n"
    )
    assert deploygen.fill("  {{block}}\nb\n", {"block": []}) == "b\n"
    with pytest.raises(ConfigError, match=r"nothing to put in \{\{y\}\}"):
        deploygen.fill("a: {{y}}\n", {"x": "1"})


def test_a_source_added_to_the_configuration_gets_its_secret_mounted_in_the_gateway(
    tree: Path,
) -> None:
    """A [[sources]] entry's secret file is read by the gateway: its compose service and its
    Deployment mount it (the Sqreen secret and the API tokens they mount anyway)."""
    for config_file, mount in (
        ("deploy/lookout.example.toml", "/run/secrets"),
        ("deploy/k8s/lookout.toml", "/etc/lookout/secrets"),
    ):
        path = tree / config_file
        path.write_text(
            path.read_text()
            + f'\n[[sources]]\nname = "gh"\ntype = "github"\nsecret_file = "{mount}/gh_secret"\n'
            + f'[[sources]]\nname = "am"\ntype = "generic"\nsecret_file = "{mount}/gh_secret"\n'
            + '[[sources]]\nname = "sqreen"\ntype = "sqreen"\n'
            + f'secret_file = "{mount}/sqreen_webhook_secret"\n'
        )
    deploygen.write(paths(tree))
    compose = _compose(tree)
    assert compose["services"]["gateway"]["secrets"] == [
        "lookout_api_tokens",
        "sqreen_webhook_secret",
        "gh_secret",
    ]
    assert compose["secrets"]["gh_secret"] == {"file": "./deploy/secrets/gh_secret.txt"}
    gateway = next(
        d for d in yaml.safe_load_all((tree / "deploy/k8s/gateway.yaml").read_text()) if d
    )
    (volume,) = [
        v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"
    ]
    assert [item["key"] for item in volume["secret"]["items"]] == [
        "lookout_api_tokens",
        "sqreen_webhook_secret",
        "gh_secret",
    ]
    kustomization = (tree / "deploy/k8s/kustomization.yaml").read_text()
    assert kustomization.count("- gh_secret=secrets/gh_secret.txt") == 1
    for folder in ("deploy/secrets", "deploy/k8s/secrets"):
        assert (tree / folder / "gh_secret.txt.example").read_text().strip()
    assert deploygen.stale(paths(tree)) == []

    path = tree / "deploy/lookout.example.toml"
    path.write_text(path.read_text().replace("/run/secrets/gh_secret", "/etc/gh_secret"))
    with pytest.raises(ConfigError, match=r"source gh: secret_file = '/etc/gh_secret' must"):
        deploygen.render(paths(tree))
