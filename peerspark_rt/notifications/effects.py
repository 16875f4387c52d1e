"""Side effects that must wait for a commit: live events and notification pushes.

A write stores everything (rows, notifications) in one transaction and queues what it will tell
other people; the queue runs only once the transaction has committed, so nobody is told about
something that was rolled back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from ..analytics.events import Analytics
from ..infra.aftercommit import Deferred
from ..infra.dbtypes import Conn
from ..infra.live import LiveEvents
from ..infra.pool import Database
from .service import NotificationService


class AfterCommit(Deferred):
    """Effects queued during a transaction, run in order after it commits; with shorthands
    for live events and notification pushes."""

    def __init__(self, live: LiveEvents, notifications: NotificationService) -> None:
        super().__init__()
        self._live = live
        self._notifications = notifications

    def event(self, room: str, kind: str, data: dict[str, Any]) -> None:
        async def run() -> None:
            await self._live.event(room, kind, data)

        self.add(run)

    def push(self, row: asyncpg.Record | None) -> None:
        if row is None:
            return

        async def run() -> None:
            await self._notifications.push(row)

        self.add(run)


class Units:
    """Opens units of work: a transaction plus the effects to run once it commits; and what
    a unit's acts use: live events, notifications, the analytics event log."""

    def __init__(
        self,
        db: Database,
        live: LiveEvents,
        notifications: NotificationService,
        analytics: Analytics,
    ) -> None:
        self.db = db
        self.live = live
        self.notifications = notifications
        self.analytics = analytics

    def effects(self) -> AfterCommit:
        return AfterCommit(self.live, self.notifications)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[tuple[Conn, AfterCommit]]:
        effects = self.effects()
        async with self.db.transaction() as conn:
            yield conn, effects
        await effects.run()
