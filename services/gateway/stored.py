"""What storing notifications in JetStream tells the operator, the same for every way in
(``POST /webhooks/sqreen``, ``POST /api/v1/notifications``): ``lookout_publishes`` by
outcome, a warning when a publish failed, and a warning plus
``lookout_notifications_unrouted`` for a notification that no target's route takes (stored,
but nobody will deliver it: never a silent drop)."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from services.gateway.state import Metrics
from shared.bus.publish import PublishAck
from shared.core import logging as log
from shared.core.settings import Settings
from shared.relay import schemas, streams
from shared.relay.config import relay
from shared.relay.routing import routes_everything, unrouted

_log = log.get("gateway")


class Outcome:
    """Counts one request's publishes and warns about unrouted notifications."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._targets = relay(settings).targets
        self._metrics = metrics
        self._all_routed = routes_everything(self._targets)
        self._stored = metrics.stream_publish(streams.NOTIFICATIONS, "stored")
        self._duplicate = metrics.stream_publish(streams.NOTIFICATIONS, "duplicate")
        self._failed = metrics.stream_publish(streams.NOTIFICATIONS, "failed")

    def count(
        self,
        notifications: Sequence[schemas.Notification],
        results: Sequence[PublishAck | BaseException],
        request_id: str,
    ) -> tuple[int, int]:
        """The number of failed and of duplicate publishes among ``results`` (one per
        notification), counted in ``lookout_publishes``; failures and the unrouted among the
        stored are warned about."""
        failed = duplicates = 0
        for result in results:
            if isinstance(result, BaseException):
                failed += 1
            elif result.duplicate:
                duplicates += 1
        if failed:
            first = next(r for r in results if isinstance(r, BaseException))
            _log.warning(
                "publish failed",
                request_id=request_id,
                error=str(first) or type(first).__name__,
                failed=failed,
                total=len(results),
            )
        stored = len(results) - failed - duplicates
        if stored:
            self._stored.inc(stored)
        if duplicates:
            self._duplicate.inc(duplicates)
        if failed:
            self._failed.inc(failed)
        if not self._all_routed:
            for n, result in zip(notifications, results, strict=True):
                stored_now = isinstance(result, PublishAck) and not result.duplicate
                if stored_now and unrouted(self._targets, n):
                    self._metrics.unrouted.labels(n.source).inc()
                    _log.warning(
                        "notification matches no target",
                        request_id=request_id,
                        notification_id=n.id,
                        source=n.source,
                        type=n.type,
                    )
        return failed, duplicates


OUTCOME = web.AppKey("outcome", Outcome)
