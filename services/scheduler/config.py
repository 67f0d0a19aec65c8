"""The scheduler service's settings: ``LOOKOUT_SCHEDULER_TICK`` (how often it looks for
watches that are due and renews its lease) and ``LOOKOUT_PUBLIC_URL`` (the gateway's address
as people reach it, for the links in its notifications)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.core import env
from shared.core.publicurl import public_url
from shared.core.settings import Section, Settings


@dataclass(frozen=True)
class SchedulerSettings:
    tick: float
    """Seconds between two looks for due watches (and lease renewals)."""
    public_url: str
    """The gateway's URL as people reach it, without a trailing ``/``."""

    @property
    def lease(self) -> float:
        """Seconds the active replica holds the lease without renewing it: three ticks
        and a second, so a replica that stops is replaced within that."""
        return 3 * self.tick + 1.0


def _load(settings: Settings) -> SchedulerSettings:
    return SchedulerSettings(
        tick=env.number(settings.env, "LOOKOUT_SCHEDULER_TICK", 5.0, 0.05, 60.0),
        public_url=public_url(settings),
    )


SECTION = Section("scheduler", _load)


def scheduler_settings(settings: Settings) -> SchedulerSettings:
    return settings.section(SECTION)
