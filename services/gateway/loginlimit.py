"""The failed-login throttle of the web UI's ``POST /login``, in this gateway process.

- **Per client** (its remote address; an IPv6 client by its /64, which one host usually
  holds whole): the first :data:`FREE_FAILURES` failed logins answer 401 as before; each
  further one locks the client out for ``BASE_LOCKOUT * 2 ** (failures - FREE_FAILURES)``
  seconds (1 s, 2 s, 4 s… up to :data:`MAX_LOCKOUT`). During a lockout every attempt of
  the client answers 429 with ``Retry-After`` **without the token being looked at**: the
  right token is refused too, so a guess can never be confirmed while locked out. Refused
  attempts do not count. A successful login forgets the client's failures, and so does
  :data:`FORGET_AFTER` without a failure.
- **Global**: at most :data:`GLOBAL_RATE` failed logins per second over all clients
  (bursts of :data:`GLOBAL_BURST`; an :class:`~services.gateway.apilimit.ClientLimiter`
  with one bucket). When a failure finds the bucket empty, every login attempt, from any
  client, answers 429 until the bucket holds a token again: guessing from many addresses
  is capped too. Sessions already open and bearer tokens are not affected.

The decision and the count happen without an await in between (:meth:`LoginThrottle.check`
right before the token is compared, :meth:`LoginThrottle.failed` right after), so a burst
of concurrent attempts cannot slip past the count.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

from services.gateway.apilimit import ClientLimiter

FREE_FAILURES = 5
BASE_LOCKOUT = 1.0
MAX_LOCKOUT = 900.0
FORGET_AFTER = 3600.0
GLOBAL_RATE = 1.0
GLOBAL_BURST = 20
MAX_CLIENTS = 10_000
_GLOBAL = "failed-logins"


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    locked_until: float


def client_of(remote: str | None) -> str:
    """The key a client's failures are counted under: its address, an IPv6 one by /64."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address)


class LoginThrottle:
    def __init__(
        self,
        *,
        free_failures: int = FREE_FAILURES,
        base_lockout: float = BASE_LOCKOUT,
        max_lockout: float = MAX_LOCKOUT,
        global_rate: float = GLOBAL_RATE,
        global_burst: int = GLOBAL_BURST,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.free_failures = free_failures
        self.base_lockout = base_lockout
        self.max_lockout = max_lockout
        self.max_clients = max_clients
        self._global = ClientLimiter(global_rate, global_burst)
        self._global_until = 0.0
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def check(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may try a token now, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        wait = self._global_until - now
        failures = self._clients.get(client)
        if failures is not None:
            wait = max(wait, failures.locked_until - now)
        return max(0.0, wait)

    def failed(self, client: str, now: float | None = None) -> float:
        """Count a failed login of ``client``; the lockout it starts (0: none)."""
        now = time.monotonic() if now is None else now
        self._evict(now)
        failures = self._clients.pop(client, None)
        if failures is None:
            failures = _Failures(0, now, 0.0)
        failures.count += 1
        failures.last = now
        lockout = 0.0
        if failures.count >= self.free_failures:
            excess = min(failures.count - self.free_failures, 62)
            lockout = min(self.max_lockout, self.base_lockout * 2.0**excess)
            failures.locked_until = now + lockout
        self._clients[client] = failures  # most recent last
        wait = self._global.take(_GLOBAL, now)
        if wait > 0:
            self._global_until = max(self._global_until, now + wait)
        return lockout

    def succeeded(self, client: str) -> None:
        """A successful login forgets the client's failures."""
        self._clients.pop(client, None)

    def _evict(self, now: float) -> None:
        clients = self._clients
        while clients:
            oldest = next(iter(clients.values()))
            forgotten = now - oldest.last >= FORGET_AFTER and oldest.locked_until <= now
            if len(clients) >= self.max_clients or forgotten:
                clients.popitem(last=False)
            else:
                return


LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
