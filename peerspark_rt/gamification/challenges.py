"""Challenges (README, "Challenges"): created by platform admins (global) or a pod's admins
(that pod's members only); joined and left by users; progress from the events after joining,
inside the challenge's window; completion ranks in order and pays its reward once."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..infra.pool import Database
from ..pods.service import PodService
from . import db as game_db
from .rules import ATTENDED_MINUTES, study_minutes

Measure = Callable[[str, float | None, object | None, int], int]


def _one(kind: str) -> Measure:
    return lambda k, _v, _s, _p: 1 if k == kind else 0


# What an event adds to a challenge's progress, by the challenge's metric.
CHALLENGE_METRICS: dict[str, Measure] = {
    "study_minutes": lambda k, v, s, _p: study_minutes(k, v, s),
    "points": lambda _k, _v, _s, p: p,
    "sessions_attended": lambda k, v, _s, _p: (
        1 if k == "session_left" and (v or 0) >= ATTENDED_MINUTES else 0
    ),
    "focus_blocks": _one("focus_block_completed"),
    "posts_created": _one("post_created"),
    "comments_created": _one("comment_created"),
    "answers_accepted": _one("answer_accepted"),
    "resources_shared": _one("resource_shared"),
}
DEFAULT_LENGTH = {
    "daily": dt.timedelta(days=1),
    "weekly": dt.timedelta(days=7),
    "monthly": dt.timedelta(days=30),
}
MAX_LENGTH = dt.timedelta(days=366)
MAX_TARGET = 1_000_000
MAX_REWARD = 10_000


def challenge_target(criteria: dict[str, Any]) -> int:
    return int(criteria.get("target", 1))


class ChallengeCriteria(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    metric: str
    target: int


class ChallengeCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    title: str
    challenge_type: Literal["daily", "weekly", "monthly", "special"]
    criteria: ChallengeCriteria
    description: str | None = None
    category: Literal["study_time", "streak", "social", "learning"] | None = None
    reward_points: int = 0
    reward_badge: str | None = None
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    max_participants: int | None = None
    pod_id: uuid.UUID | None = None


class ChallengeQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    status: Literal["active", "ended"] = "active"
    pod_id: uuid.UUID | None = None
    joined: bool = False
    limit: int = 50


class Participation(msgspec.Struct, rename="camel"):
    status: str
    progress: int
    target: int
    rank: int | None
    points_earned: int
    joined_at: str | None
    completed_at: str | None


class ChallengeView(msgspec.Struct, rename="camel"):
    """`status`: upcoming (before its start), active, ended."""

    id: str
    title: str
    description: str | None
    challenge_type: str
    category: str | None
    criteria: dict[str, Any]
    reward_points: int
    reward_badge: str | None
    start_date: str | None
    end_date: str | None
    max_participants: int | None
    current_participants: int
    is_global: bool
    pod_id: str | None
    status: str
    me: Participation | None


class Standing(msgspec.Struct, rename="camel"):
    user_id: str
    username: str
    status: str
    progress: int
    rank: int | None


class ChallengeDetail(msgspec.Struct, rename="camel"):
    challenge: ChallengeView
    standings: list[Standing]


class ChallengeList(msgspec.Struct, rename="camel"):
    challenges: list[ChallengeView]


def view(row: asyncpg.Record) -> ChallengeView:
    criteria = row["criteria"] if isinstance(row["criteria"], dict) else {}
    me = None
    if row["p_status"] is not None and row["p_status"] != "withdrawn":
        me = Participation(
            status=row["p_status"],
            progress=int(row["p_progress"] or 0),
            target=challenge_target(criteria),
            rank=row["p_rank"],
            points_earned=int(row["p_points"] or 0),
            joined_at=row["p_joined"].isoformat() if row["p_joined"] else None,
            completed_at=row["p_completed"].isoformat() if row["p_completed"] else None,
        )
    now = dt.datetime.now(dt.UTC)
    ended = row["end_date"] is not None and row["end_date"] <= now
    upcoming = row["start_date"] is not None and row["start_date"] > now
    return ChallengeView(
        id=str(row["id"]),
        title=row["title"],
        description=row["description"],
        challenge_type=row["challenge_type"],
        category=row["category"],
        criteria=criteria,
        reward_points=int(row["reward_points"] or 0),
        reward_badge=row["reward_badge"],
        start_date=row["start_date"].isoformat() if row["start_date"] else None,
        end_date=row["end_date"].isoformat() if row["end_date"] else None,
        max_participants=row["max_participants"],
        current_participants=int(row["current_participants"] or 0),
        is_global=bool(row["is_global"]),
        pod_id=str(row["pod_id"]) if row["pod_id"] else None,
        status="ended" if ended else "upcoming" if upcoming else (row["status"] or "active"),
        me=me,
    )


class Challenges:
    def __init__(self, db: Database, pods: PodService) -> None:
        self.db = db
        self.pods = pods

    async def create(self, principal: Principal, body: ChallengeCreate) -> ChallengeView:
        values = _validated(body)
        if body.pod_id is None:
            if not principal.is_platform_admin:
                raise Forbidden("global challenges are made by platform admins", code="not_admin")
        else:
            await self.pods.require_member(principal, body.pod_id, "admin")
        values["created_by"] = principal.user_id
        async with self.db.transaction() as conn:
            row = await game_db.insert_challenge(conn, values)
            full = await game_db.challenge_for(conn, row["id"], principal.user_id)
        if full is None:  # pragma: no cover (just stored)
            raise NotFound("challenge not found")
        return view(full)

    async def list(self, principal: Principal, query: ChallengeQuery) -> ChallengeList:
        if not 1 <= query.limit <= 100:
            raise Invalid("limit", "must be between 1 and 100")
        rows = await game_db.challenges_for(
            self.db.pool, principal.user_id, pod_id=query.pod_id, ended=query.status == "ended",
            joined=query.joined, limit=query.limit,
        )  # fmt: skip
        return ChallengeList([view(r) for r in rows])

    async def _visible(
        self, principal: Principal, challenge_id: uuid.UUID, *, lock: bool = False, conn: Any = None
    ) -> asyncpg.Record:
        row = await game_db.challenge_for(
            conn or self.db.pool, challenge_id, principal.user_id, lock=lock
        )
        if row is None:
            raise NotFound("challenge not found")
        if (
            row["pod_id"] is not None
            and row["member_status"] != "active"
            and row["p_status"] is None
        ):
            # a pod's challenges exist only for its members (and those who took part)
            raise NotFound("challenge not found")
        return row

    async def get(self, principal: Principal, challenge_id: uuid.UUID) -> ChallengeDetail:
        row = await self._visible(principal, challenge_id)
        standings = await game_db.challenge_standings(self.db.pool, challenge_id, 50)
        return ChallengeDetail(
            view(row),
            [
                Standing(str(s["user_id"]), s["username"], s["status"], int(s["progress_value"]),
                         s["rank"])
                for s in standings
            ],
        )  # fmt: skip

    async def join(self, principal: Principal, challenge_id: uuid.UUID) -> ChallengeView:
        async with self.db.transaction() as conn:
            row = await self._visible(principal, challenge_id, lock=True, conn=conn)
            if row["pod_id"] is not None and row["member_status"] != "active":
                raise Forbidden("only the pod's members take part", code="not_a_member")
            if row["p_status"] in ("active", "completed"):
                return view(row)
            if row["p_status"] == "failed":
                raise Conflict("this challenge is over for you", code="challenge_failed")
            now = dt.datetime.now(dt.UTC)
            if row["status"] != "active" or (row["end_date"] and row["end_date"] <= now):
                raise Conflict("this challenge has ended", code="challenge_ended")
            limit = row["max_participants"]
            if limit is not None and int(row["current_participants"] or 0) >= limit:
                raise Conflict("this challenge is full", code="challenge_full")
            await game_db.join_challenge(conn, challenge_id, principal.user_id)
            fresh = await game_db.challenge_for(conn, challenge_id, principal.user_id)
        if fresh is None:  # pragma: no cover
            raise NotFound("challenge not found")
        return view(fresh)

    async def leave(self, principal: Principal, challenge_id: uuid.UUID) -> None:
        async with self.db.transaction() as conn:
            row = await self._visible(principal, challenge_id, lock=True, conn=conn)
            if row["p_status"] == "completed":
                raise Conflict("a completed challenge cannot be left", code="challenge_completed")
            if not await game_db.leave_challenge(conn, challenge_id, principal.user_id):
                raise NotFound("you are not taking part in this challenge", code="not_joined")


def _validated(body: ChallengeCreate) -> dict[str, Any]:
    title = body.title.strip()
    if not 1 <= len(title) <= 255:
        raise Invalid("title", "must be 1 to 255 characters")
    if body.description is not None and len(body.description) > 5000:
        raise Invalid("description", "must be at most 5000 characters")
    if body.criteria.metric not in CHALLENGE_METRICS:
        raise Invalid("criteria.metric", f"must be one of {', '.join(sorted(CHALLENGE_METRICS))}")
    if not 1 <= body.criteria.target <= MAX_TARGET:
        raise Invalid("criteria.target", f"must be between 1 and {MAX_TARGET}")
    if not 0 <= body.reward_points <= MAX_REWARD:
        raise Invalid("rewardPoints", f"must be between 0 and {MAX_REWARD}")
    if body.reward_badge is not None and len(body.reward_badge) > 255:
        raise Invalid("rewardBadge", "must be at most 255 characters")
    if body.max_participants is not None and not 1 <= body.max_participants <= 1_000_000:
        raise Invalid("maxParticipants", "must be between 1 and 1000000")
    for name, value in (("startDate", body.start_date), ("endDate", body.end_date)):
        if value is not None and value.tzinfo is None:
            raise Invalid(name, "must include a time zone offset")
    now = dt.datetime.now(dt.UTC)
    start = body.start_date or now
    end = body.end_date
    if end is None:
        length = DEFAULT_LENGTH.get(body.challenge_type)
        if length is None:
            raise Invalid("endDate", "is required for a special challenge")
        end = start + length
    if end <= start:
        raise Invalid("endDate", "must be after startDate")
    if end <= now:
        raise Invalid("endDate", "must be in the future")
    if end - start > MAX_LENGTH:
        raise Invalid("endDate", "a challenge lasts at most a year")
    return {
        "title": title,
        "description": body.description,
        "challenge_type": body.challenge_type,
        "category": body.category,
        "criteria": {"metric": body.criteria.metric, "target": body.criteria.target},
        "reward_points": body.reward_points,
        "reward_badge": body.reward_badge,
        "start_date": start,
        "end_date": end,
        "max_participants": body.max_participants,
        "is_global": body.pod_id is None,
        "pod_id": body.pod_id,
    }


CHALLENGES = web.AppKey("challenges", Challenges)
