"""Where leaderboards are read from: Redis sorted sets when Redis is configured, else this
process (README, "Leaderboards").

One sorted set per metric x scope x period, keyed `<prefix>lb:{<metric>:<scope>:<period>}`
(the hash tag keeps a board and its `:ready` marker in one Redis Cluster slot). Members are
user ids, scores the user's total. A board is `ready` once it was rebuilt from PostgreSQL
(`leaderboard_scores`): a board without its marker (Redis flushed or restarted, a period
never read) is rebuilt before it is believed. Both expire with their period.

Writes are absolute totals read back from PostgreSQL in the award's transaction, written with
ZADD GT for totals that only grow (points, study time), so writes arriving out of order, or
racing a rebuild, leave the larger (the later) total; streaks go up and down and are set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..cluster.redis_client import RedisClient


@dataclass(frozen=True, slots=True)
class ScoreWrite:
    board: str  # "<metric>:<scope>:<period>"
    member: str
    score: float
    grows: bool  # totals that only grow (ZADD GT)
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class BoardRead:
    ready: bool
    top: list[tuple[str, float]]
    rank: int | None  # 0-based
    score: float | None
    size: int
    # (rank, member, score) of the ranks around the member's, when the store read them
    around: list[tuple[int, str, float]] | None = None


class ScoreStore(Protocol):
    async def write(self, writes: Sequence[ScoreWrite]) -> None: ...
    async def read(self, board: str, member: str, top: int, around: int = 0) -> BoardRead: ...
    async def window(self, board: str, start: int, stop: int) -> list[tuple[str, float]]: ...
    async def scores(self, board: str, members: Sequence[str]) -> list[float | None]: ...
    async def lock_rebuild(self, board: str) -> bool: ...
    async def release_rebuild(self, board: str) -> None: ...
    async def load(
        self, board: str, rows: Sequence[tuple[str, float]], *, grows: bool, first: bool
    ) -> None: ...
    async def finish_rebuild(self, board: str, expires_at: dt.datetime | None) -> None: ...


REBUILD_LOCK_SECONDS = 60
PURGE_EVERY = 1000  # (in-process boards) writes between sweeps for boards past their period

# One round trip for a whole read: whether the board is ready, its size, the top, the
# member's rank and score, and the ranks around theirs. (Lua arrays end at the first nil,
# so an unranked member is rank -1 and score "".)
READ_SCRIPT = """
local ready = redis.call('EXISTS', KEYS[2])
local size = redis.call('ZCARD', KEYS[1])
local top = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
local score = ''
local around = {}
if rank then
    score = redis.call('ZSCORE', KEYS[1], ARGV[1])
    local start = rank - tonumber(ARGV[3])
    if start < 0 then start = 0 end
    around = redis.call('ZREVRANGE', KEYS[1], start, rank + tonumber(ARGV[3]), 'WITHSCORES')
else
    rank = -1
end
return {ready, size, rank, score, top, around}
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[Any]) -> list[tuple[str, float]]:
    """[member, score, member, score...] as (member, score) pairs."""
    return [(_text(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]


class RedisScores:
    """Boards in Redis; every call has a deadline (`timeout`)."""

    def __init__(self, redis: RedisClient, prefix: str, *, timeout: float) -> None:
        self._redis = redis
        self._prefix = prefix + "lb:"
        self._timeout = timeout
        self._read = redis.register_script(READ_SCRIPT)

    def key(self, board: str) -> str:
        return f"{self._prefix}{{{board}}}"

    async def write(self, writes: Sequence[ScoreWrite]) -> None:
        if not writes:
            return
        async with asyncio.timeout(self._timeout):
            pipe = self._redis.pipeline(transaction=False)
            for w in writes:
                key = self.key(w.board)
                if w.grows:
                    pipe.zadd(key, {w.member: w.score}, gt=True)
                elif w.score > 0:
                    pipe.zadd(key, {w.member: w.score})
                else:
                    pipe.zrem(key, w.member)
                if w.expires_at is not None:
                    pipe.expireat(key, w.expires_at)
            await pipe.execute()

    async def read(self, board: str, member: str, top: int, around: int = 0) -> BoardRead:
        key = self.key(board)
        async with asyncio.timeout(self._timeout):
            reply: Any = await self._read(keys=[key, key + ":ready"], args=[member, top, around])
        ready, size, rank, score, rows, near = reply
        ranked = None if int(rank) < 0 else int(rank)
        neighbours = None
        if ranked is not None:
            start = max(0, ranked - around)
            neighbours = [(start + i, m, s) for i, (m, s) in enumerate(_pairs(near))]
        return BoardRead(
            ready=bool(ready),
            top=_pairs(rows),
            rank=ranked,
            score=None if ranked is None else float(score),
            size=int(size),
            around=neighbours,
        )

    async def window(self, board: str, start: int, stop: int) -> list[tuple[str, float]]:
        async with asyncio.timeout(self._timeout):
            rows: Any = await self._redis.zrevrange(
                self.key(board), max(0, start), stop, withscores=True
            )
        return [(_text(m), float(s)) for m, s in rows]

    async def scores(self, board: str, members: Sequence[str]) -> list[float | None]:
        if not members:
            return []
        async with asyncio.timeout(self._timeout):
            values = await self._redis.zmscore(self.key(board), list(members))
        return [None if v is None else float(v) for v in values]

    async def lock_rebuild(self, board: str) -> bool:
        async with asyncio.timeout(self._timeout):
            got = await self._redis.set(
                self.key(board) + ":rebuilding", b"1", nx=True, ex=REBUILD_LOCK_SECONDS
            )
        return bool(got)

    async def release_rebuild(self, board: str) -> None:
        async with asyncio.timeout(self._timeout):
            await self._redis.delete(self.key(board) + ":rebuilding")

    async def load(
        self, board: str, rows: Sequence[tuple[str, float]], *, grows: bool, first: bool
    ) -> None:
        key = self.key(board)
        async with asyncio.timeout(self._timeout * 5):
            pipe = self._redis.pipeline(transaction=False)
            if first and not grows:
                pipe.delete(key)
            if rows:
                pipe.zadd(key, dict(rows), gt=grows)
            await pipe.execute()

    async def finish_rebuild(self, board: str, expires_at: dt.datetime | None) -> None:
        key = self.key(board)
        async with asyncio.timeout(self._timeout):
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(key + ":ready", b"1")
            if expires_at is not None:
                pipe.expireat(key + ":ready", expires_at)
                pipe.expireat(key, expires_at)
            pipe.delete(key + ":rebuilding")
            await pipe.execute()


class LocalScores:
    """Boards in this process (one node without Redis): dicts, sorted when read."""

    def __init__(self) -> None:
        self._boards: dict[str, dict[str, float]] = {}
        self._sorted: dict[str, list[tuple[str, float]]] = {}
        self._ready: set[str] = set()
        self._expires: dict[str, float] = {}
        self._rebuilding: set[str] = set()
        self._writes = 0

    def _board(self, board: str) -> dict[str, float]:
        deadline = self._expires.get(board)
        if deadline is not None and deadline <= time.time():
            self._boards.pop(board, None)
            self._sorted.pop(board, None)
            self._ready.discard(board)
            del self._expires[board]
        return self._boards.setdefault(board, {})

    def _ranked(self, board: str) -> list[tuple[str, float]]:
        ranked = self._sorted.get(board)
        if ranked is None:
            # Redis' order: score, then member, both descending
            ranked = sorted(self._board(board).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
            self._sorted[board] = ranked
        return ranked

    def _purge(self) -> None:
        """Drop the boards whose period is over (boards nobody reads again would stay)."""
        now = time.time()
        for board in [b for b, deadline in self._expires.items() if deadline <= now]:
            self._board(board)

    async def write(self, writes: Sequence[ScoreWrite]) -> None:
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self._purge()
        for w in writes:
            members = self._board(w.board)
            old = members.get(w.member)
            if w.grows:
                if old is None or w.score > old:
                    members[w.member] = w.score
            elif w.score > 0:
                members[w.member] = w.score
            else:
                members.pop(w.member, None)
            if w.expires_at is not None:
                self._expires[w.board] = w.expires_at.timestamp()
            self._sorted.pop(w.board, None)

    async def read(self, board: str, member: str, top: int, around: int = 0) -> BoardRead:
        members = self._board(board)
        ranked = self._ranked(board)
        score = members.get(member)
        rank = None
        if score is not None:
            rank = ranked.index((member, score))
        return BoardRead(board in self._ready, ranked[:top], rank, score, len(ranked))

    async def window(self, board: str, start: int, stop: int) -> list[tuple[str, float]]:
        return self._ranked(board)[max(0, start) : stop + 1]

    async def scores(self, board: str, members: Sequence[str]) -> list[float | None]:
        stored = self._board(board)
        return [stored.get(m) for m in members]

    async def lock_rebuild(self, board: str) -> bool:
        if board in self._rebuilding:
            return False
        self._rebuilding.add(board)
        return True

    async def release_rebuild(self, board: str) -> None:
        self._rebuilding.discard(board)

    async def load(
        self, board: str, rows: Sequence[tuple[str, float]], *, grows: bool, first: bool
    ) -> None:
        if first and not grows:
            self._boards[board] = {}
        await self.write([ScoreWrite(board, m, s, grows, None) for m, s in rows])

    async def finish_rebuild(self, board: str, expires_at: dt.datetime | None) -> None:
        self._ready.add(board)
        if expires_at is not None:
            self._expires[board] = expires_at.timestamp()
        self._rebuilding.discard(board)
