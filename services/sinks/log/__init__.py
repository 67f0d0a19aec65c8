"""The ``log`` target: one structured JSON line per notification."""

from __future__ import annotations

from services.sinks.log.config import LogTargetConfig
from shared.core import logging as log
from shared.core.settings import Settings
from shared.relay.target import Delivery, Target

CONFIG = LogTargetConfig
"""The ``[[targets]]`` table of a ``log`` target (registered by the launcher)."""


class LogTarget(Target):
    def __init__(self, config: LogTargetConfig) -> None:
        self.name = config.name
        self.level = config.level
        self.log = log.get("notification").bind(target=config.name)

    async def deliver(self, delivery: Delivery) -> None:
        n = delivery.notification
        reading = delivery.reading
        attrs = reading.attributes
        readable, data = reading.loaded
        if not readable:  # not from the gateway: log it as the text it is
            data = bytes(n.data).decode("utf-8", "replace")
        getattr(self.log, self.level)(
            "notification",
            notification_id=n.id,
            type=n.type,
            source=n.source,
            timestamp=n.timestamp,
            subject=delivery.subject,
            risk=attrs.risk,
            application=attrs.application,
            environment=attrs.environment,
            request_id=delivery.request_id,
            data=data,
        )


def build(config: LogTargetConfig, _settings: Settings) -> LogTarget:
    return LogTarget(config)
