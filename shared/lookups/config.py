"""The lookups' configuration: the ``[providers.<name>]`` tables of the TOML file."""

from __future__ import annotations

from typing import Annotated

import msgspec

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class Quota(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Requests a provider may make upstream, shared by all its replicas (0 = no limit)."""

    per_minute: Annotated[int, msgspec.Meta(ge=0)] = 0
    per_day: Annotated[int, msgspec.Meta(ge=0)] = 0


class ProviderConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    quota: Quota = Quota()
    cache_ttl: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Seconds every answer is cached, overriding the provider's own choice (DNS: the
    record TTL; WHOIS: 24 h, 1 h for "not registered"; reputation: 1 h); 0: never."""
    timeout: PositiveFloat = 20.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    quota_slack: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.0
    """Seconds added to the per-minute quota's 60-second window: the margin between how
    lookout counts and how the upstream does (whole seconds, clock skew)."""


class AbuseIpdbConfig(ProviderConfig, frozen=True):
    quota: Quota = Quota(per_day=1000)
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    max_age_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 90
    suspicious_score: Annotated[int, msgspec.Meta(ge=0, le=100)] = 25
    malicious_score: Annotated[int, msgspec.Meta(ge=0, le=100)] = 75


class VirusTotalConfig(ProviderConfig, frozen=True):
    # The public API's limits; a premium key raises them in [providers.virustotal.quota].
    quota: Quota = Quota(per_minute=4, per_day=500)
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4
    malicious_engines: Annotated[int, msgspec.Meta(ge=1)] = 3
    """At least this many engines saying malicious makes the verdict malicious (fewer:
    suspicious)."""


class ProvidersConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    dns: ProviderConfig = ProviderConfig()
    whois: ProviderConfig = ProviderConfig()
    emailsec: ProviderConfig = ProviderConfig()
    virustotal: VirusTotalConfig = VirusTotalConfig()
    abuseipdb: AbuseIpdbConfig = AbuseIpdbConfig()

    def get(self, name: str) -> ProviderConfig:
        value = getattr(self, name, None)
        return value if isinstance(value, ProviderConfig) else ProviderConfig()
