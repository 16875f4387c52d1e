"""Achievement criteria (README, "Achievements"): a row's `criteria` is JSON like
`{"metric": "sessions_attended", "gte": 10}`; a metric names a figure of the user's, which
kinds of events can change it, and how it is read."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..infra.dbtypes import Conn
from . import db as game_db
from .rules import ATTENDED_MINUTES, POINTS, STREAK_KINDS

Reader = Callable[[Conn, uuid.UUID, dict[str, Any], asyncpg.Record], Awaitable[float]]


@dataclass(frozen=True, slots=True)
class Metric:
    triggers: frozenset[str]  # event kinds after which it is evaluated ("challenge" too)
    read: Reader


def _count(kind: str) -> Metric:
    async def read(conn: Conn, user: uuid.UUID, _c: dict[str, Any], _s: asyncpg.Record) -> float:
        return float(await game_db.event_count(conn, user, kind))

    return Metric(frozenset({kind}), read)


async def _sessions(conn: Conn, user: uuid.UUID, c: dict[str, Any], _s: asyncpg.Record) -> float:
    minutes = c.get("minMinutes", ATTENDED_MINUTES)
    if not isinstance(minutes, int | float) or isinstance(minutes, bool):
        minutes = ATTENDED_MINUTES
    return float(await game_db.distinct_sessions(conn, user, float(minutes)))


async def _focus(conn: Conn, user: uuid.UUID, _c: dict[str, Any], _s: asyncpg.Record) -> float:
    return await game_db.event_value_sum(conn, user, "focus_block_completed")


async def _helpful(conn: Conn, user: uuid.UUID, c: dict[str, Any], _s: asyncpg.Record) -> float:
    return float(
        await game_db.helpful_resources(
            conn, user, float(c.get("minAverage", 4.5)), int(c.get("minRatings", 5))
        )
    )


def _state(column: str) -> Reader:
    async def read(_conn: Conn, _u: uuid.UUID, _c: dict[str, Any], s: asyncpg.Record) -> float:
        return float(s[column] or 0)

    return read


METRICS: dict[str, Metric] = {
    "sessions_attended": Metric(frozenset({"session_left"}), _sessions),
    "focus_minutes": Metric(frozenset({"focus_block_completed"}), _focus),
    "answers_accepted": _count("answer_accepted"),
    "posts_created": _count("post_created"),
    "comments_created": _count("comment_created"),
    "likes_received": _count("like_received"),
    "resources_shared": _count("resource_shared"),
    # a resource of the user's rated minAverage+ by minRatings+ people (evaluated for the
    # resource's owner when someone rates it)
    "helpful_resources": Metric(frozenset({"resource_rated"}), _helpful),
    "longest_streak": Metric(STREAK_KINDS, _state("longest_streak")),
    "level": Metric(frozenset(POINTS) | {"achievement", "challenge"}, _state("level")),
    "total_points": Metric(
        frozenset(POINTS) | {"achievement", "challenge"}, _state("total_points")
    ),
    "challenges_completed": Metric(frozenset({"challenge"}), _state("challenges_completed")),
}


@dataclass(frozen=True, slots=True)
class Criteria:
    metric: str
    target: float
    raw: dict[str, Any]


def parse(raw: Any) -> Criteria | None:
    """A row's criteria, or None when it is not one this version understands (such a row is
    never unlocked, and shows no progress)."""
    if not isinstance(raw, dict):
        return None
    metric = raw.get("metric")
    target = raw.get("gte")
    if metric not in METRICS or not isinstance(target, int | float) or isinstance(target, bool):
        return None
    return Criteria(str(metric), float(target), raw)
