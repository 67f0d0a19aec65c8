"""The launcher's registry: one line per integration, each package declaring itself; a
target type or a source profile registered there is all the relay needs to know of it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from services import registry
from services.sinks.log.config import LogTargetConfig
from shared.core import settings as config
from shared.core.errors import ConfigError
from shared.core.secrets import Secret
from shared.lookups import catalog
from shared.relay import config as relay_config
from shared.relay import sources
from shared.relay.config import Match, TargetConfig, relay
from shared.relay.grouping import Member, digest
from shared.relay.routing import matches
from shared.relay.schemas import Notification
from shared.relay.sources import Attributes, Fields, SourceProfile, number
from shared.relay.target import Delivery
from shared.relay.templates import Rendered, render

ROOT = Path(__file__).resolve().parents[2]


def packages(folder: str) -> list[str]:
    return sorted(p.name for p in (ROOT / folder).iterdir() if (p / "__init__.py").is_file())


def test_the_tables_name_every_integration_package_and_each_declares_itself() -> None:
    assert sorted(registry.PROVIDERS) == packages("services/providers")
    assert sorted(registry.TARGET_TYPES) == packages("services/sinks")
    for name in registry.PROVIDERS:
        module = importlib.import_module(f"services.providers.{name}")
        assert module.SPEC.name == name
        assert catalog.get(name) is module.SPEC
        assert callable(module.build)
    assert catalog.names() == registry.PROVIDERS
    for name in registry.TARGET_TYPES:
        module = importlib.import_module(f"services.sinks.{name}")
        assert relay_config.target_type(module.CONFIG) == name
        assert relay_config.target_types()[name] is module.CONFIG
        assert callable(module.build)
    for source, module_name in registry.SOURCES.items():
        assert sources.profile(source) is importlib.import_module(module_name).PROFILE
    registry.register()  # again: nothing changes (every process may call it more than once)
    assert catalog.names() == registry.PROVIDERS
    assert list(relay_config.target_types()) == list(registry.TARGET_TYPES)


class EchoTargetConfig(TargetConfig, frozen=True, kw_only=True, tag="echo"):
    secrets: ClassVar[tuple[str, ...]] = ("token",)
    required_secrets: ClassVar[tuple[str, ...]] = ("token",)

    token: str | None = None
    token_file: str | None = None
    greeting: str = "hi"

    def missing_secret(self, field_name: str) -> str:
        return "an echo target needs a token"


def test_a_registered_target_type_is_a_type_of_the_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lookout.toml"
    path.write_text('[[targets]]\nname = "e"\ntype = "echo"\ngreeting = "hello"\n')
    env = {"LOOKOUT_CONFIG": str(path)}
    with pytest.raises(ConfigError, match="Invalid value 'echo'"):
        config.load(env)
    monkeypatch.setattr(relay_config, "_types", dict(relay_config._types))
    relay_config.register_target_type(EchoTargetConfig)
    with pytest.raises(ConfigError, match=r"targets\[0\] \(e\): an echo target needs a token"):
        config.load(env)
    path.write_text(path.read_text() + 'token = "tok-123456"\n')
    settings = config.load(env)
    (echo,) = relay(settings).targets
    assert isinstance(echo, EchoTargetConfig)
    assert (echo.type, echo.greeting) == ("echo", "hello")
    assert relay(settings).secret("e", "token") == Secret("tok-123456")


def test_without_targets_the_fallback_type_is_active() -> None:
    assert registry.FALLBACK_TARGET == "log"
    assert [(t.name, type(t)) for t in relay(config.load({})).targets] == [("log", LogTargetConfig)]


def note(source: str, data: dict[str, Any], kind: str = "alert", ident: str = "1") -> Notification:
    return Notification(
        id=ident,
        type=kind,
        source=source,
        timestamp="2026-01-01T00:00:00Z",
        data=msgspec.Raw(msgspec.json.encode(data)),
    )


class NestedProfile(SourceProfile):
    """A source that keeps its fields under ``alert`` and calls its risk ``severity``."""

    templates: ClassVar[dict[str, tuple[str, str]]] = {
        "alert": ("Alert {{ risk }}: {{ description }}", "{{ message.text }}")
    }

    def message(self, data: Any) -> dict[str, Any]:
        inner = data.get("alert") if isinstance(data, dict) else None
        return inner if isinstance(inner, dict) else {}

    def attributes(self, message: dict[str, Any]) -> Attributes:
        return Attributes(risk=number(message.get("severity")))

    def fields(self, message: dict[str, Any]) -> Fields:
        return Fields(ips=[], accounts=[], url=None, description=message.get("summary", ""))


def test_a_registered_source_profile_routes_and_renders_its_notifications(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alert = note("nested", {"alert": {"severity": 70, "summary": "disk full", "text": "t"}})
    # the generic profile reads top-level fields only: no risk here, the generic template
    assert sources.attributes(alert) == Attributes()
    assert render(alert).title == "[nested] alert"
    assert not matches(Match(min_risk=50), alert)
    monkeypatch.setattr(sources, "_profiles", dict(sources._profiles))
    sources.register("nested", NestedProfile())
    assert sources.attributes(alert).risk == 70
    assert matches(Match(min_risk=50), alert)
    assert render(alert) == Rendered("Alert 70: disk full", "t")


def test_another_source_is_read_by_the_generic_profile_whatever_it_carries() -> None:
    """A source's own field names stay its own: Sqreen's ``risk_coefficient`` is read for
    Sqreen notifications, top-level ``risk`` for the others."""
    fields = {"message": {"risk_coefficient": 80, "application_name": "shop"}, "risk": 20}
    assert sources.attributes(note("sqreen", fields)) == Attributes(80, "shop", None)
    assert sources.attributes(note("ids", fields)) == Attributes(20, None, None)


def members(source: str) -> list[Member]:
    notes = [note(source, {"risk": 10 * i}, "port_scan", f"n{i}") for i in range(1, 3)]
    return [
        Member(msg=None, delivery=Delivery(n, n.subject, 1), attrs=sources.attributes(n))  # type: ignore[arg-type]
        for n in notes
    ]


def test_a_digest_names_its_source_unless_its_profile_says_not() -> None:
    target = LogTargetConfig(name="log")
    scanned = render(digest(target, members("scanner"), 30.0).notification).title
    assert scanned == "2 port scan notifications from scanner: risk up to 20"
    sqreen = render(digest(target, members("sqreen"), 30.0).notification).title
    assert sqreen == "2 port scan notifications: risk up to 20"
