"""Leaderboards (README, "Leaderboards"): reading a board with the caller's rank and
neighbours, rebuilding a board from PostgreSQL, and the writes each award makes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from ..errors import Invalid
from ..infra.dbtypes import Conn
from ..infra.pool import Database
from . import db as game_db
from .rules import period_of
from .scores import BoardRead, ScoreStore, ScoreWrite

log = logging.getLogger(__name__)

REBUILD_PAGE = 10_000
NEIGHBOURS = 2  # ranks shown on each side of the caller
MAX_SUBSET = 1000  # friends or pod members ranked at most
GRACE = dt.timedelta(hours=1)  # a board outlives its period by this much

METRIC_COLUMN = {"points": "points", "study-time": "study", "streak": "streak"}


class LeaderboardQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    type: Literal["global", "pod", "friends"] = "global"
    timeframe: Literal["daily", "weekly", "monthly", "all-time"] | None = None
    # the spec's name for `timeframe`
    period: Literal["daily", "weekly", "monthly", "all-time"] | None = None
    metric: Literal["points", "study-time", "streak"] = "points"
    pod_id: uuid.UUID | None = None
    limit: int = 50


class LeaderboardEntry(msgspec.Struct, rename="camel"):
    rank: int
    user_id: str
    username: str | None
    first_name: str | None
    last_name: str | None
    avatar_url: str | None
    score: int
    is_me: bool


class Leaderboard(msgspec.Struct, rename="camel"):
    type: str
    timeframe: str
    metric: str
    period: str
    pod_id: str | None
    total: int
    entries: list[LeaderboardEntry]
    me: LeaderboardEntry | None
    neighbours: list[LeaderboardEntry]
    source: str  # "redis", "memory" or "database" (a board being rebuilt, or Redis down)


@dataclass(frozen=True, slots=True)
class Ranked:
    """A board as read: the top, the caller's (0-based) rank and score, the neighbours."""

    top: list[tuple[str, float]]
    rank: int | None
    score: float | None
    neighbours: list[tuple[int, str, float]]
    size: int
    source: str


def board_name(metric: str, scope: str, period: str) -> str:
    return f"{metric}:{scope}:{period}"


def writes_for(
    user_id: uuid.UUID,
    totals: Sequence[tuple[str, str, str, int]],
    streak: int | None,
    at: dt.datetime,
) -> list[ScoreWrite]:
    """The board writes of an award: the new totals (metric, scope, period, score) and, when it
    changed, the streak."""
    member = str(user_id)
    ends = {period_of(t, at).key: period_of(t, at).ends_at for t in ("daily", "weekly", "monthly")}
    out = []
    for metric, scope, period, score in totals:
        end = ends.get(period)
        out.append(
            ScoreWrite(
                board_name(metric, scope, period),
                member,
                float(score),
                True,
                None if end is None else end + GRACE,
            )
        )
    if streak is not None:
        out.append(
            ScoreWrite(board_name("streak", "global", "all"), member, float(streak), False, None)
        )
    return out


class Boards:
    """Reads boards from the store, rebuilding one from PostgreSQL when it is not ready."""

    def __init__(self, db: Database, store: ScoreStore, kind: str) -> None:
        self.db = db
        self.store = store
        self.kind = kind  # "redis" or "memory"
        self._rebuilds: set[asyncio.Task[None]] = set()

    async def _start_rebuild(
        self, metric: str, scope: str, period: str, ends_at: dt.datetime | None
    ) -> None:
        """Rebuild a board in the background if no one is at it (a board of a million users
        takes seconds: no request waits for it; they are answered from PostgreSQL meanwhile)."""
        board = board_name(metric, scope, period)
        if not await self.store.lock_rebuild(board):
            return

        async def run() -> None:
            try:
                loaded = await self.rebuild(metric, scope, period, ends_at)
                log.info("leaderboard rebuilt", extra={"board": board, "rows": loaded})
            except Exception:
                # logged; a later read tries again (the Redis lock lapses if this fails too)
                log.exception("leaderboard rebuild failed: %s", board)
                with contextlib.suppress(Exception):
                    await self.store.release_rebuild(board)

        task = asyncio.create_task(run(), name=f"leaderboard-rebuild:{board}")
        self._rebuilds.add(task)
        task.add_done_callback(self._rebuilds.discard)

    async def close(self) -> None:
        for task in list(self._rebuilds):
            task.cancel()

    async def write(self, writes: Sequence[ScoreWrite]) -> None:
        try:
            await self.store.write(writes)
        except Exception as exc:  # noqa: BLE001 (PostgreSQL has the totals; a board catches up)
            log.warning("leaderboard write failed: %s", exc or type(exc).__name__)

    async def rebuild(
        self, metric: str, scope: str, period: str, ends_at: dt.datetime | None
    ) -> int:
        """Load a board from PostgreSQL (pages of REBUILD_PAGE) and mark it ready."""
        board = board_name(metric, scope, period)
        grows = metric != "streak"
        after: uuid.UUID | None = None
        loaded = 0
        first = True
        while True:
            if metric == "streak":
                rows = await game_db.streaks_page(self.db.pool, after, REBUILD_PAGE)
            else:
                rows = await game_db.scores_page(
                    self.db.pool, metric, scope, period, after, REBUILD_PAGE
                )
            await self.store.load(
                board, [(str(r["user_id"]), float(r["score"])) for r in rows], grows=grows,
                first=first,
            )  # fmt: skip
            first = False
            loaded += len(rows)
            if len(rows) < REBUILD_PAGE:
                break
            after = rows[-1]["user_id"]
        await self.store.finish_rebuild(board, None if ends_at is None else ends_at + GRACE)
        return loaded

    async def forget(self, conn: Conn, user_id: uuid.UUID) -> Callable[[], Awaitable[None]]:
        """A deleted account leaves every board it is on (read in the deleting transaction;
        the boards are cleared once it committed)."""
        member = str(user_id)
        names = {board_name(*b) for b in await game_db.boards_of(conn, user_id)}
        names.add(board_name("streak", "global", "all"))
        gone = [ScoreWrite(name, member, 0.0, False, None) for name in sorted(names)]

        async def clear() -> None:
            await self.store.write(gone)

        return clear

    async def ranked(
        self,
        metric: str,
        scope: str,
        period: str,
        ends_at: dt.datetime | None,
        member: uuid.UUID,
        top: int,
    ) -> Ranked:
        """The top `top` of a board, the member's rank and score and their neighbours."""
        board = board_name(metric, scope, period)
        try:
            read = await self.store.read(board, str(member), top, NEIGHBOURS)
            if not read.ready:
                await self._start_rebuild(metric, scope, period, ends_at)
                return await self._from_database(metric, scope, period, member, top)
            return await self._with_neighbours(board, read)
        except Exception as exc:  # noqa: BLE001 (a board that fails is read from PostgreSQL)
            log.warning(
                "leaderboard read failed, reading PostgreSQL: %s", exc or type(exc).__name__
            )
            return await self._from_database(metric, scope, period, member, top)

    async def _with_neighbours(self, board: str, read: BoardRead) -> Ranked:
        neighbours: list[tuple[int, str, float]] = []
        if read.around is not None:
            neighbours = read.around
        elif read.rank is not None:
            start = max(0, read.rank - NEIGHBOURS)
            stop = read.rank + NEIGHBOURS
            if stop < len(read.top):
                rows = read.top[start : stop + 1]
            else:
                rows = await self.store.window(board, start, stop)
            neighbours = [(start + i, m, s) for i, (m, s) in enumerate(rows)]
        return Ranked(read.top, read.rank, read.score, neighbours, read.size, self.kind)

    async def _from_database(
        self, metric: str, scope: str, period: str, member: uuid.UUID, top: int
    ) -> Ranked:
        rows = await game_db.ranked_scores(self.db.pool, metric, scope, period, top)
        mine = await game_db.rank_of(self.db.pool, metric, scope, period, member)
        ranked = [(str(r["user_id"]), float(r["score"])) for r in rows]
        neighbours: list[tuple[int, str, float]] = []
        rank = score = None
        if mine is not None:
            rank, score_int = mine
            score = float(score_int)
            around = await game_db.ranked_scores(
                self.db.pool, metric, scope, period, rank + NEIGHBOURS + 1
            )
            start = max(0, rank - NEIGHBOURS)
            neighbours = [
                (i, str(r["user_id"]), float(r["score"]))
                for i, r in enumerate(around)
                if i >= start
            ]
        return Ranked(ranked, rank, score, neighbours, len(ranked), "database")

    async def subset(
        self, metric: str, period: str, ends_at: dt.datetime | None, members: Sequence[uuid.UUID],
        me: uuid.UUID, top: int,
    ) -> Ranked:  # fmt: skip
        """A board of some users only (friends, a pod's streaks): their global scores, ranked
        among themselves."""
        board = board_name(metric, "global", period)
        names = [str(m) for m in members]
        source = self.kind
        try:
            read = await self.store.read(board, str(me), 1)
            if not read.ready:
                await self._start_rebuild(metric, "global", period, ends_at)
                raise LookupError("the board is being rebuilt")
            values = await self.store.scores(board, names)
        except Exception as exc:  # noqa: BLE001 (a board that fails is read from PostgreSQL)
            if not isinstance(exc, LookupError):
                log.warning(
                    "leaderboard read failed, reading PostgreSQL: %s", exc or type(exc).__name__
                )
            found = await game_db.scores_of(self.db.pool, metric, "global", period, members)
            values = [float(found[m]) if m in found else None for m in members]
            source = "database"
        scored = [(n, v) for n, v in zip(names, values, strict=True) if v is not None and v > 0]
        scored.sort(key=lambda kv: (kv[1], kv[0]), reverse=True)
        rank = next((i for i, (n, _) in enumerate(scored) if n == str(me)), None)
        neighbours: list[tuple[int, str, float]] = []
        score = None
        if rank is not None:
            score = scored[rank][1]
            start = max(0, rank - NEIGHBOURS)
            neighbours = [
                (start + i, n, s) for i, (n, s) in enumerate(scored[start : rank + NEIGHBOURS + 1])
            ]
        return Ranked(scored[:top], rank, score, neighbours, len(scored), source)


def validate(query: LeaderboardQuery) -> str:
    """The timeframe asked for (`timeframe`, or the spec's `period`); Invalid on a bad mix."""
    if query.timeframe is not None and query.period is not None and query.timeframe != query.period:
        raise Invalid("period", "disagrees with timeframe (give one of them)")
    if not 1 <= query.limit <= 100:
        raise Invalid("limit", "must be between 1 and 100")
    if query.type == "pod" and query.pod_id is None:
        raise Invalid("podId", "is required for a pod leaderboard")
    if query.type != "pod" and query.pod_id is not None:
        raise Invalid("podId", "is only for type=pod")
    return query.timeframe or query.period or "weekly"
