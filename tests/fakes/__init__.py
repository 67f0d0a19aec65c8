"""Loopback servers that speak the contracts of the services lookout talks to.

Every HTTP fake extends :class:`fakes.base.RecordingFake` (recording, injected failures,
delays) and uses its rate limiters where the service has one; see ``fakes/base.py``."""

from __future__ import annotations

from fakes.base import LoopbackHttpFake

__all__ = ["LoopbackHttpFake"]
