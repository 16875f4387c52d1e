"""Side effects that must wait for a commit: live events and notification pushes.

A write stores everything (rows, notifications) in one transaction and queues what it will tell
other people; the queue runs only once the transaction has committed, so nobody is told about
something that was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from ..infra.dbtypes import Conn
from ..infra.live import LiveEvents
from ..infra.pool import Database
from .service import NotificationService

log = logging.getLogger(__name__)

Effect = Callable[[], Awaitable[None]]


class AfterCommit:
    """Effects queued during a transaction, run in order after it commits."""

    def __init__(self, live: LiveEvents, notifications: NotificationService) -> None:
        self._live = live
        self._notifications = notifications
        self._effects: list[Effect] = []

    def event(self, room: str, kind: str, data: dict[str, Any]) -> None:
        async def run() -> None:
            await self._live.event(room, kind, data)

        self._effects.append(run)

    def push(self, row: asyncpg.Record | None) -> None:
        if row is None:
            return

        async def run() -> None:
            await self._notifications.push(row)

        self._effects.append(run)

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
                # The write has committed; a failed broadcast must not turn it into an error.
                log.exception("after-commit effect failed")


class Units:
    """Opens units of work: a transaction plus the effects to run once it commits."""

    def __init__(self, db: Database, live: LiveEvents, notifications: NotificationService) -> None:
        self.db = db
        self.live = live
        self.notifications = notifications

    def effects(self) -> AfterCommit:
        return AfterCommit(self.live, self.notifications)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[tuple[Conn, AfterCommit]]:
        effects = self.effects()
        async with self.db.transaction() as conn:
            yield conn, effects
        await effects.run()
