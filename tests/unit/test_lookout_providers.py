"""``LOOKOUT_PROVIDERS`` and ``[providers.<name>] enabled``: which providers are on, read
the same way in every process; an unknown name is a configuration error at start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services import registry
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.lookups import catalog

LOOKOUT = str(Path(sys.executable).parent / "lookout")


def providers_of(settings: config.Settings) -> list[str]:
    return [
        s.removeprefix("provider-") for s in registry.service_names(settings) if "provider-" in s
    ]


def test_every_provider_is_on_by_default() -> None:
    settings = config.load({})
    assert catalog.active_names(settings) == registry.PROVIDERS
    assert providers_of(settings) == list(registry.PROVIDERS)


def test_lookout_providers_names_the_ones_to_run_in_registry_order() -> None:
    settings = config.load({"LOOKOUT_PROVIDERS": " virustotal, DNS ,,"})
    assert catalog.active_names(settings) == ("dns", "virustotal")
    assert providers_of(settings) == ["dns", "virustotal"]
    assert [s.name for s in catalog.active(settings)] == ["dns", "virustotal"]


def test_a_table_turns_one_off(tmp_path: Path) -> None:
    path = tmp_path / "lookout.toml"
    path.write_text("[providers.whois]\nenabled = false\n")
    settings = config.load({"LOOKOUT_CONFIG": str(path)})
    assert "whois" not in catalog.active_names(settings)
    assert "dns" in catalog.active_names(settings)
    both = config.load({"LOOKOUT_CONFIG": str(path), "LOOKOUT_PROVIDERS": "whois,dns"})
    assert catalog.active_names(both) == ("dns",)
    with pytest.raises(ConfigError, match="no provider named 'whoami'"):
        registry.provider_main(settings, "whoami")


def test_a_provider_service_that_is_off_idles_until_stopped() -> None:
    """``lookout service provider-<off>`` (what a compose file or a Deployment listing every
    provider runs) neither exits, which would restart it again and again, nor connects to
    the bus: it says once that it is off and ends cleanly when told to stop."""
    with socket.socket() as listener:  # a "nats-server" that counts who connects
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.0)
        port = listener.getsockname()[1]
        env = {**os.environ, "LOOKOUT_PROVIDERS": "dns", "NATS_URL": f"nats://127.0.0.1:{port}"}
        env.pop("LOOKOUT_CONFIG", None)
        service = subprocess.Popen(
            [LOOKOUT, "service", "provider-whois"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert service.stdout is not None
            said = service.stdout.readline()  # blocks until it logs; EOF if it exited
            assert "provider turned off" in said
            assert service.poll() is None  # still running
            with pytest.raises(BlockingIOError):
                listener.accept()
        finally:
            service.send_signal(signal.SIGTERM)
            code = service.wait(timeout=30)
        assert code == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dns,virustotl", r"LOOKOUT_PROVIDERS: unknown provider 'virustotl' \(providers: dns, "),
        (" , ", "LOOKOUT_PROVIDERS names no provider"),
    ],
)
def test_an_unknown_name_is_a_configuration_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load({"LOOKOUT_PROVIDERS": value})


def test_lookout_services_leaves_out_the_providers_that_are_off() -> None:
    env = {**os.environ, "LOOKOUT_PROVIDERS": "dns,abuseipdb"}
    env.pop("LOOKOUT_CONFIG", None)
    listed = subprocess.run(
        [LOOKOUT, "services"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert [n for n in listed.stdout.split() if n.startswith("provider-")] == [
        "provider-dns",
        "provider-abuseipdb",
    ]
    env["LOOKOUT_PROVIDERS"] = "dns,nope"
    refused = subprocess.run(
        [LOOKOUT, "services"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "unknown provider 'nope'" in refused.stderr
