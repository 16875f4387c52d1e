"""Notifications: stored in PostgreSQL, then pushed live to every device in `user:<id>`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..db import notifications as notifications_db
from ..db.pool import Database
from ..db.types import Conn
from ..protocol import Notification
from .live import LiveEvents


@dataclass(frozen=True, slots=True)
class NewNotification:
    recipient_id: uuid.UUID
    notification_type: str
    title: str
    message: str | None = None
    action_url: str | None = None
    metadata: dict[str, Any] | None = None
    sender_id: uuid.UUID | None = None
    priority: str = "normal"


class NotificationService:
    def __init__(self, db: Database, live: LiveEvents) -> None:
        self.db = db
        self.live = live

    async def store(self, conn: Conn, new: NewNotification) -> asyncpg.Record | None:
        """Insert inside the caller's transaction; call `push` with the result after it commits.
        Returns None when nothing is to be stored (e.g. the recipient turned this type off)."""
        return await notifications_db.insert(
            conn,
            recipient_id=new.recipient_id,
            notification_type=new.notification_type,
            title=new.title,
            message=new.message,
            action_url=new.action_url,
            metadata=new.metadata or {},
            sender_id=new.sender_id,
            priority=new.priority,
        )

    async def push(self, row: asyncpg.Record | None) -> None:
        """Send a stored notification, with the fresh unread count, to the user's devices."""
        if row is None:
            return
        recipient = row["recipient_id"]
        unread = await notifications_db.unread_count(self.db.pool, recipient)
        room = f"user:{recipient}"
        await self.live.publish(
            room,
            Notification(
                room=room,
                id=str(row["id"]),
                type=row["notification_type"],
                title=row["title"],
                message=row["message"],
                action_url=row["action_url"],
                metadata=row["metadata"] or None,
                created_at=row["created_at"].isoformat(),
                unread_count=unread,
            ),
        )

    async def notify(self, new: NewNotification) -> asyncpg.Record | None:
        async with self.db.transaction() as conn:
            row = await self.store(conn, new)
        await self.push(row)
        return row
