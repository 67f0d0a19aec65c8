"""Queries started now and read later: how an evaluator asks many questions at once of
:class:`~shared.lookups.dns.client.DnsClient` (or of any :class:`Resolver`, a test double
included) without a task per question."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeAlias

from shared.lookups.dns.answer import DnsAnswer

__all__ = ["Pending", "Resolver", "Submitter", "answer", "answers", "cancel", "start_query"]

Pending: TypeAlias = "DnsAnswer | asyncio.Future[DnsAnswer]"
"""A query started by :func:`start_query`: its answer, or a future of it."""


class Resolver(Protocol):
    """What an evaluator needs: :class:`~shared.lookups.dns.client.DnsClient` or a test
    double."""

    async def query(self, name: str, rdtype: str) -> DnsAnswer: ...


class Submitter:
    """A resolver that starts a query without a coroutine (:meth:`submit`): the client,
    and its views."""

    def submit(self, name: str, rdtype: str) -> Pending:
        """The answer at once when it is known, else a future of it, this caller's own."""
        raise NotImplementedError

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        pending = self.submit(name, rdtype)
        return pending if isinstance(pending, DnsAnswer) else await pending


def start_query(resolver: Resolver, name: str, rdtype: str) -> Pending:
    """Start a query without waiting for it: :meth:`Submitter.submit` for the client (no
    task), a task running ``resolver.query()`` for anything else."""
    if isinstance(resolver, Submitter):
        return resolver.submit(name, rdtype)
    return asyncio.ensure_future(resolver.query(name, rdtype))


async def answer(pending: Pending) -> DnsAnswer:
    """The answer of a query started by :func:`start_query`, waited for if need be."""
    return pending if isinstance(pending, DnsAnswer) else await pending


async def answers(pendings: Sequence[Pending]) -> list[DnsAnswer]:
    """The answers of queries started by :func:`start_query`, in their order; if the wait
    ends otherwise (the caller is cancelled…), every one of them is cancelled.

    Futures are awaited last-started first: answers come in about the order asked, so that
    one wait usually covers them all."""
    try:
        for pending in reversed(pendings):
            if not isinstance(pending, DnsAnswer) and not pending.done():
                await pending
        return [p if isinstance(p, DnsAnswer) else p.result() for p in pendings]
    except BaseException:
        cancel(pendings)
        raise


def cancel(pendings: Iterable[DnsAnswer | asyncio.Future[Any]]) -> None:
    """Cancel the futures among ``pendings`` (a done one ignores it)."""
    for pending in pendings:
        if isinstance(pending, asyncio.Future):
            pending.cancel()
