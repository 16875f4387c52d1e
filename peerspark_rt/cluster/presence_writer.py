"""Presence writes, off every room's path.

Room actors must not await Redis, so they hand each change (this user's first local socket
entered a room, their last one left it) to this node's one writer, which applies them to the
cluster registry in order, each with a deadline, and reports back whether the change made the
user present somewhere for the first time (`add`) or gone everywhere (`remove`).

A write that fails is retried, in order, with backoff: the registry's scripts are idempotent
per node, so a retry after a timeout that did reach Redis changes nothing. But such a retry
cannot tell whether *it* was the first or the last, so the answer is then "changed" for an add
(a join announced twice is harmless: rooms tell members only what changes) and, for a remove,
whatever a fresh read of the registry says.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .presence import Presence

log = logging.getLogger(__name__)

# (op, room, user_id, username, changed)
ResultHook = Callable[[str, str, str, str, bool], None]

RETRY_BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass(slots=True)
class _Op:
    kind: Literal["add", "remove"]
    room: str
    user_id: str
    username: str


class PresenceWriter:
    def __init__(self, presence: Presence, on_result: ResultHook, *, timeout: float) -> None:
        self._presence = presence
        self._on_result = on_result
        self._timeout = timeout
        self._ops: collections.deque[_Op] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # writes that had to be retried (for /metrics)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="presence-writer")

    def add(self, room: str, user_id: str, username: str) -> None:
        self._submit(_Op("add", room, user_id, username))

    def remove(self, room: str, user_id: str, username: str) -> None:
        self._submit(_Op("remove", room, user_id, username))

    def _submit(self, op: _Op) -> None:
        self._ops.append(op)
        self._idle.clear()
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._ops)

    async def close(self, timeout: float) -> None:
        """Apply what is queued (a clean shutdown hands presence over at once), then stop."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            log.warning("%d presence writes left undone at shutdown", len(self._ops))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            if not self._ops:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            op = self._ops[0]
            changed = await self._apply(op)
            self._ops.popleft()
            try:
                self._on_result(op.kind, op.room, op.user_id, op.username, changed)
            except Exception:
                log.exception("presence result hook failed")

    async def _apply(self, op: _Op) -> bool:
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    if attempt and op.kind == "remove":
                        await self._presence.remove(op.room, op.user_id)
                        return not await self._presence.is_present(op.room, op.user_id)
                    if op.kind == "add":
                        first = await self._presence.add(op.room, op.user_id, op.username)
                        return first or attempt > 0
                    return await self._presence.remove(op.room, op.user_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (any failure is retried)
                self.failures += 1
                delay = RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)]
                if attempt == 0:
                    log.warning("presence %s failed (%s); retrying", op.kind, exc or type(exc))
                attempt += 1
                await asyncio.sleep(delay)
