"""Follows (README, "Follows"): one-way; two people who follow each other are friends (the
friends leaderboard)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from aiohttp import web

from ..accounts.auth import Principal
from ..errors import Invalid, NotFound
from ..infra import cursor as cursors
from ..infra.pool import Database
from . import db as game_db


class FollowQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    limit: int = 20
    cursor: str | None = None


class FollowState(msgspec.Struct, rename="camel"):
    user_id: str
    following: bool
    followed_by: bool
    mutual: bool


class FollowUser(msgspec.Struct, rename="camel"):
    id: str
    username: str
    first_name: str | None
    last_name: str | None
    avatar_url: str | None
    since: str


class FollowPage(msgspec.Struct, rename="camel"):
    users: list[FollowUser]
    next_cursor: str | None


class Follows:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def follow(self, principal: Principal, user_id: uuid.UUID, *, on: bool) -> FollowState:
        if user_id == principal.user_id:
            raise Invalid("userId", "you cannot follow yourself", code="self_follow")
        async with self.db.transaction() as conn:
            if not await game_db.user_exists(conn, user_id):
                raise NotFound("user not found")
            if on:
                await game_db.follow(conn, principal.user_id, user_id)
            else:
                await game_db.unfollow(conn, principal.user_id, user_id)
            mine, theirs = await game_db.follows_each_other(conn, principal.user_id, user_id)
        return FollowState(str(user_id), mine, theirs, mine and theirs)

    async def page(self, user_id: uuid.UUID, query: FollowQuery, *, followers: bool) -> FollowPage:
        if not 1 <= query.limit <= 100:
            raise Invalid("limit", "must be between 1 and 100")
        listing = "followers" if followers else "following"
        after = None
        if query.cursor is not None:
            at, who = cursors.decode(query.cursor, listing, (dt.datetime, uuid.UUID))
            after = (at, who)
        if not await game_db.user_exists(self.db.pool, user_id):
            raise NotFound("user not found")
        rows = await game_db.follow_page(
            self.db.pool, user_id, followers=followers, after=after, limit=query.limit + 1
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        users = [
            FollowUser(str(r["id"]), r["username"], r["first_name"], r["last_name"],
                       r["avatar_url"], r["created_at"].isoformat())
            for r in rows
        ]  # fmt: skip
        next_cursor = (
            cursors.encode(listing, (rows[-1]["created_at"], rows[-1]["id"])) if more else None
        )
        return FollowPage(users, next_cursor)


FOLLOWS = web.AppKey("follows", Follows)
