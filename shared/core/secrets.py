"""Secrets: values that never show themselves.

Every secret may be given directly (``NAME``) or read from a file (``NAME_FILE``), the way
Docker and Kubernetes mount secrets. Secrets are wrapped in :class:`Secret`, whose ``repr``
and ``str`` never show the value, and every secret value is registered with the log
redactor as soon as it is read.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from shared.core import logging as log
from shared.core.errors import ConfigError


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        log.register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


PLACEHOLDER: Final = "example-only-change-me"
"""What every secret of the shipped examples holds (``deploy/**/*.txt.example``), as text
or inside a prefixed base64 key (``<prefix>_<base64>``): a copy never edited. It is
public, so lookout refuses it wherever a secret is read rather than let it guard an API,
sign webhooks or stand for a key."""


def _decoded_tail(value: str) -> str:
    """What a prefixed base64 key (``<prefix>_<base64>``) decodes to; empty otherwise."""
    tail = value.partition("_")[2]
    try:
        return b64decode(tail + "=" * (-len(tail) % 4)).decode("utf-8", "replace").lower()
    except (binascii.Error, ValueError):
        return ""


def refuse_placeholder(value: str, label: str) -> str:
    """``value``, unless it is (or holds) the examples' :data:`PLACEHOLDER`: then a
    :class:`ConfigError` naming ``label``, never the value."""
    if PLACEHOLDER in value.lower() or PLACEHOLDER in _decoded_tail(value):
        raise ConfigError(
            f"{label}: still the placeholder of the shipped example ({PLACEHOLDER}…), which "
            "is public: put a secret of your own there"
        )
    return value


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """``NAME`` or the contents of the file named by ``NAME_FILE`` (not both)."""
    file_var = f"{name}_FILE"
    if env.get(name) and env.get(file_var):
        raise ConfigError(f"set either {name} or {file_var}, not both")
    path = env.get(file_var)
    if path:
        return read_secret_file(path, file_var)
    value = env.get(name) or None
    return refuse_placeholder(value, name) if value else None


def read_secret_file(path: str, label: str) -> str:
    """A secret file's stripped contents; ``label`` names the setting in any error."""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{label}: {path} is empty")
    return refuse_placeholder(value, f"{label}: {path}")


def secret_list(env: Mapping[str, str], name: str) -> tuple[Secret, ...]:
    raw = read_secret(env, name)
    if raw is None:
        return ()
    return tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())


def secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = read_secret(env, name)
    return Secret(value) if value else None
