"""A provider's display declaration (shared/lookups/display.py): what the web UI's one
renderer follows. A declaration it could not follow is refused when the provider is
registered, naming the provider, so a mistake shows at start rather than as a blank panel."""

from __future__ import annotations

from typing import Any, cast

import pytest

from services import registry
from shared.lookups import catalog
from shared.lookups import config as lookups_config
from shared.lookups.catalog import ProviderSpec
from shared.lookups.display import FORMATS, Details, DetailSection, Field


@pytest.fixture(autouse=True)
def _restore_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "_specs", dict(catalog._specs))
    monkeypatch.setattr(lookups_config, "_tables", dict(lookups_config._tables))


def spec(**kwargs: Any) -> ProviderSpec:
    return ProviderSpec(name="echo", label="Echo", kinds=frozenset({"domain"}), **kwargs)


def test_every_registered_provider_declares_what_the_ui_follows() -> None:
    for name in registry.PROVIDERS:
        found = catalog.get(name)
        assert found is not None
        for section in found.details.sections:
            assert section.fields, f"{name}: section {section.title!r} has no field"
            for each in section.fields:
                assert each.format in FORMATS, (name, each)
        assert set(found.links) <= found.kinds, name


@pytest.mark.parametrize(
    ("kwargs", "refusal"),
    [
        (
            {"details": Details((DetailSection("S", (Field("x", "x", cast(Any, "html")),)),))},
            "provider echo: field 'x' has format 'html'",
        ),
        ({"links": {"ipv4": "https://echo.example/{value}"}}, "a link for 'ipv4'"),
        ({"links": {"domain": "http://echo.example/{value}"}}, "must start with https://"),
        ({"links": {"domain": "javascript:alert('{value}')"}}, "must start with https://"),
        ({"links": {"domain": "https://echo.example/{secret}"}}, r"names \['secret'\]"),
    ],
)
def test_a_declaration_the_ui_cannot_follow_is_refused(kwargs: Any, refusal: str) -> None:
    with pytest.raises(ValueError, match=refusal):
        catalog.register(spec(**kwargs))
    assert catalog.get("echo") is None


def test_a_declaration_travels_whole() -> None:
    declared = spec(
        details=Details(
            (
                DetailSection(
                    "Seen", (Field("First", "seen.first", "date", missing="never"),), "seen"
                ),
            )
        ),
        links={"domain": "https://echo.example/d/{value}?h={host}"},
    )
    catalog.register(declared)
    assert declared.details.as_json() == {
        "sections": [
            {
                "title": "Seen",
                "when": "seen",
                "fields": [
                    {
                        "label": "First",
                        "path": "seen.first",
                        "format": "date",
                        "template": "",
                        "missing": "never",
                    }
                ],
            }
        ],
        "notes": [],
    }
