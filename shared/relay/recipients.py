"""Which recipients a notification already reached, for targets that send to several."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecipientProgress:
    """Per notification, the recipients it has already been settled for (sent, or refused
    for good), for the life of the process and for the last ``size`` notifications, so a
    redelivery reaches only the ones still missing it. Used by targets that send to several
    recipients one by one (mail, text messages)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._settled: OrderedDict[str, set[str]] = OrderedDict()

    def settled(self, key: str) -> set[str]:
        done = self._settled.get(key)
        if done is None:
            return set()
        self._settled.move_to_end(key)
        return done

    def add(self, key: str, recipients: Iterable[str]) -> None:
        added = set(recipients)
        if not added:
            return
        self._settled.setdefault(key, set()).update(added)
        self._settled.move_to_end(key)
        while len(self._settled) > self._size:
            self._settled.popitem(last=False)
