"""``LOOKOUT_PUBLIC_URL``: the gateway's address as people reach it (behind a proxy, its
public URL), for the links lookout puts in what it sends (the sinks' "Silence similar"
links, the scheduler's indicator pages); default the gateway's own URL."""

from __future__ import annotations

from shared.core import env
from shared.core.settings import Section, Settings


def _default_url(settings: Settings) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"


def _load(settings: Settings) -> str:
    return env.base_url(settings.env, "LOOKOUT_PUBLIC_URL", None) or _default_url(settings)


PUBLIC_URL = Section("public_url", _load)
"""Read once per process, checked at start with every other section."""


def public_url(settings: Settings) -> str:
    """The gateway's URL as people reach it, without a trailing ``/``."""
    return settings.section(PUBLIC_URL)
