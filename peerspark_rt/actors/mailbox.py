"""A room actor's mailbox: what `asyncio.Queue` does for one reader, at a fraction of its size.

`asyncio.Queue` keeps three deques and an `Event` (a fourth), about 3 KB before its first item,
for things an actor never uses (a size bound, `join`/`task_done`, several readers). There is an
actor per room and a user room per connected user, so that was a tenth of an idle socket's
memory.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Unbounded FIFO with a single reader; `put_nowait` may be called from any callback."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def get_nowait(self) -> T:
        """The next item; IndexError when there is none."""
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def __len__(self) -> int:
        return len(self._items)
