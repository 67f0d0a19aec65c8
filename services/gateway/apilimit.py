"""Per-client rate limit on ``/api/*``: one token bucket per client, in this process.

A client is an API token, a web UI session, or, for anything not authenticated (no
credentials, wrong ones, the open loopback API), the remote address. Buckets refill at
``LOOKOUT_API_RATE`` tokens per second up to ``LOOKOUT_API_BURST``; 0 turns the limit off.

Memory is bounded: buckets are kept in least-recently-used order; a bucket idle long
enough to be full again is the same as a new one and is dropped, and beyond
``max_clients`` the least recently seen client is dropped whatever its state (it starts
again with a full bucket: lenient, never unbounded).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

MAX_CLIENTS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class ClientLimiter:
    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float | None = None) -> float:
        """Spend one token of ``client``: 0 when granted, else the seconds until one is."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[client] = bucket
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(client)
        self._evict(now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _evict(self, now: float) -> None:
        refill = self.burst / self.rate  # seconds after which any bucket is full again
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if len(buckets) > self.max_clients or now - oldest.updated >= refill:
                buckets.popitem(last=False)
            else:
                return


def too_many(wait: float) -> web.Response:
    """429 with an integer ``Retry-After`` (at least 1) and the reason as JSON."""
    seconds = max(1, math.ceil(wait))
    return web.json_response(
        {"error": f"rate limit exceeded: retry in {seconds}s", "retry_after": seconds},
        status=429,
        headers={"Retry-After": str(seconds)},
    )


API_LIMITER = web.AppKey("api_limiter", ClientLimiter)
