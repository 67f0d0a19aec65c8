"""The error every part of lookout raises for configuration that cannot work."""

from __future__ import annotations


class ConfigError(Exception):
    """Configuration that cannot work; the message names the variable or key to fix.

    The CLI prints it and exits with status 2 instead of a traceback."""
