"""Typed readers of environment variables: each one names the variable in its error."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from shared.core.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def base_url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = env.get(name) or default
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an absolute http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def host_port(env: Mapping[str, str], name: str, default_port: int) -> tuple[str, int] | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    host, sep, port_text = raw.rpartition(":")
    if not sep or "]" in port_text:
        host, port_text = raw, str(default_port)
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{name} must be host:port, got {raw!r}")
    return host, int(port_text)


def integer(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def networks(
    env: Mapping[str, str], name: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDR networks or single addresses (``10.0.0.0/8,::1``)."""
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in (part.strip() for part in env.get(name, "").split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{name}: {item!r} is not an IP address or CIDR network "
                "(expected e.g. 127.0.0.0/8,10.0.0.0/8,::1)"
            ) from None
    return tuple(networks)


def host_names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated host names or IP addresses, without port (``lookout.example.org,
    10.0.0.5,[2001:db8::5]``): lower-case, no trailing dot, IPv6 compressed, unbracketed."""
    names: list[str] = []
    for item in (part.strip() for part in env.get(name, "").split(",")):
        if not item:
            continue
        value = item.lower().rstrip(".")
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        try:
            names.append(str(ipaddress.ip_address(value)))
            continue
        except ValueError:
            pass
        labels = value.split(".")
        if not all(
            re.fullmatch(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", label) for label in labels
        ):
            raise ConfigError(
                f"{name}: {item!r} is not a host name or IP address (no port, no scheme; "
                "expected e.g. lookout.example.org,10.0.0.5,[2001:db8::5])"
            )
        names.append(value)
    return tuple(names)


def nameservers(raw: str) -> tuple[tuple[str, int], ...]:
    """``127.0.0.1:5353,9.9.9.9,[2620:fe::fe]:53`` → ((host, port), …)."""
    servers: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, port = item, 53
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                port = _port(rest.removeprefix(":"), item)
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
            port = _port(port_text, item)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"LOOKOUT_DNS_NAMESERVERS: {item!r} is not an IP address (with optional :port)"
            ) from None
        servers.append((host, port))
    return tuple(servers)


def _port(text: str, item: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"LOOKOUT_DNS_NAMESERVERS: bad port in {item!r}")
    return int(text)


def optional_port(env: Mapping[str, str], name: str) -> int | None:
    if (env.get(name) or "").strip() == "":
        return None
    return integer({name: env[name].strip()}, name, 0, 0, 65535)
