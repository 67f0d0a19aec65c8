"""What the ``dnsbl`` provider declares, its ``[providers.dnsbl]`` table (which zones, what
their answers mean) and its setting ``SPAMHAUS_DQS_KEY`` (or ``_FILE``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import msgspec

from shared.core.errors import ConfigError
from shared.core.secrets import Secret, secret
from shared.core.settings import Section, Settings
from shared.lookups.catalog import EnvVar, ProviderSpec
from shared.lookups.config import ProviderConfig, provider_config
from shared.lookups.display import Details, DetailSection, Field, Note

ZoneVerdict = Literal["malicious", "suspicious", "undetected"]


class Code(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one answer (an A record of ``127.x.y.z``) of a zone means."""

    meaning: str
    verdict: ZoneVerdict = "suspicious"


class DnsblConfig(ProviderConfig, frozen=True):
    ip_zones: tuple[str, ...] = ("zen.spamhaus.org",)
    """Zones addresses are asked of: ``<reversed octets or nibbles>.<zone>`` A."""
    name_zones: tuple[str, ...] = ("dbl.spamhaus.org",)
    """Zones names (a domain, a URL's host, an email's domain) are asked of: ``<name>.<zone>`` A."""
    codes: dict[str, dict[str, Code]] = msgspec.field(default_factory=dict)
    """Per zone, per answer (``"127.0.0.2"``): its meaning and verdict; they replace the
    built-in tables of Spamhaus' zones. An answer no table knows is ``suspicious``."""

    def __post_init__(self) -> None:
        for zone in (*self.ip_zones, *self.name_zones):
            if not _ZONE.fullmatch(zone):
                raise ValueError(f"not a DNS zone name: {zone!r}")
        for zone, table in self.codes.items():
            for code in table:
                if not _CODE.fullmatch(code):
                    raise ValueError(f"codes.{zone}: {code!r} is not an answer address (127.x.y.z)")


_ZONE = re.compile(r"(?=.{1,200}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z][a-z0-9-]*")
_CODE = re.compile(r"127\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_DQS_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
"""A key is one label of the names asked (Spamhaus issues 26 letters and digits)."""

SPAMHAUS_PUBLIC = ".spamhaus.org"
SPAMHAUS_DQS = ".dq.spamhaus.net"


@dataclass(frozen=True)
class DnsblSettings:
    dqs_key: Secret | None
    config: DnsblConfig


def _load(settings: Settings) -> DnsblSettings:
    key = secret(settings.env, "SPAMHAUS_DQS_KEY")
    if key is not None and not _DQS_KEY.fullmatch(key.reveal()):
        raise ConfigError(
            "SPAMHAUS_DQS_KEY: not a Data Query Service key (letters and digits, "
            "26 characters as Spamhaus issues them)"
        )
    return DnsblSettings(dqs_key=key, config=provider_config(settings, "dnsbl", DnsblConfig))


SECTION = Section("providers.dnsbl", _load)


def dnsbl_settings(settings: Settings) -> DnsblSettings:
    return settings.section(SECTION)


SPEC = ProviderSpec(
    name="dnsbl",
    label="DNSBL",
    kinds=frozenset({"ipv4", "ipv6", "domain", "url", "email"}),
    config=DnsblConfig,
    env=(
        EnvVar(
            "SPAMHAUS_DQS_KEY",
            "Spamhaus Data Query Service key (optional: without it the public mirrors are "
            "asked, which refuse queries through public resolvers)",
            secret=True,
            link="https://www.spamhaus.com/free-trial/sign-up-for-a-free-data-query-service-account/",
            without="the provider asks the public mirrors",
        ),
    ),
    settings=SECTION,
    details=Details(
        notes=(
            Note(
                "policy_only",
                "Only a policy listing (e.g. PBL: end-user address space), not a finding.",
                equals=True,
            ),
        ),
        sections=(
            DetailSection(
                "Listings",
                (
                    Field("Asked", "queried", "mono"),
                    Field(
                        "",
                        "zones",
                        "list",
                        template="{zone}: {summary}",
                    ),
                ),
            ),
        ),
    ),
    links={
        "ipv4": "https://check.spamhaus.org/results/?query={value}",
        "ipv6": "https://check.spamhaus.org/results/?query={value}",
        "domain": "https://check.spamhaus.org/results/?query={value}",
        "url": "https://check.spamhaus.org/results/?query={host}",
        "email": "https://check.spamhaus.org/results/?query={host}",
    },
)
