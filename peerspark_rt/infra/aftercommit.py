"""Work that must wait until a transaction has committed (telling others, waking listeners).

A write queues what it will announce while its transaction is open; the queue runs only once
the transaction has committed, so nobody hears of something that was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from .dbtypes import Conn
from .pool import Database

log = logging.getLogger(__name__)

Effect = Callable[[], Awaitable[None]]


class OnCommit(Protocol):
    """Anything that runs queued effects after its transaction commits."""

    def add(self, effect: Effect) -> None: ...


class Deferred:
    """Effects queued during a transaction, run in order after it commits."""

    def __init__(self) -> None:
        self._effects: list[Effect] = []

    def add(self, effect: Effect) -> None:
        self._effects.append(effect)

    def mark(self) -> int:
        """A position to roll back to when a savepoint fails (see `discard_after`)."""
        return len(self._effects)

    def discard_after(self, mark: int) -> None:
        del self._effects[mark:]

    async def run(self) -> None:
        effects, self._effects = self._effects, []
        for effect in effects:
            try:
                await effect()
            except Exception:
                # The write has committed; a failed announcement must not turn it into an error.
                log.exception("after-commit effect failed")


@asynccontextmanager
async def unit(db: Database) -> AsyncIterator[tuple[Conn, Deferred]]:
    """A transaction plus the effects to run once it commits (none if it rolls back)."""
    deferred = Deferred()
    async with db.transaction() as conn:
        yield conn, deferred
    await deferred.run()
