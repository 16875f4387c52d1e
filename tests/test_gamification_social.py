"""Follows (friends are mutual follows) and the weekly leagues' week-end step."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

import asyncpg

from peerspark_rt.analytics.events import Kind
from peerspark_rt.gamification.leagues import LEAGUES
from peerspark_rt.gamification.rules import LEAGUE_TIERS, week_key
from tests.gamification import act
from tests.helpers import Api


async def test_follow_unfollow_and_the_lists(api: Api) -> None:
    ann, bob, cat = await api.register(), await api.register(), await api.register()
    first = await api.post(f"/api/users/{bob.id}/follow", ann)
    assert first.status == 200
    assert first.body == {"userId": bob.id, "following": True, "followedBy": False,
                          "mutual": False}  # fmt: skip
    assert (await api.post(f"/api/users/{bob.id}/follow", ann)).status == 200  # idempotent
    back = await api.post(f"/api/users/{ann.id}/follow", bob)
    assert back.body["mutual"] is True
    assert (await api.post(f"/api/users/{bob.id}/follow", cat)).status == 200
    page = await api.get(f"/api/users/{bob.id}/followers", ann, params={"limit": "1"})
    assert page.status == 200
    assert [u["id"] for u in page.body["users"]] == [cat.id]  # newest first
    rest = await api.get(
        f"/api/users/{bob.id}/followers", ann,
        params={"limit": "1", "cursor": page.body["nextCursor"]},
    )  # fmt: skip
    assert [u["id"] for u in rest.body["users"]] == [ann.id]
    assert rest.body["nextCursor"] is None
    following = await api.get(f"/api/users/{ann.id}/following", cat)
    assert [u["username"] for u in following.body["users"]] == [bob.username]
    gone = await api.delete(f"/api/users/{bob.id}/follow", ann)
    assert gone.body == {"userId": bob.id, "following": False, "followedBy": True,
                         "mutual": False}  # fmt: skip
    assert (await api.delete(f"/api/users/{bob.id}/follow", ann)).status == 200
    # refusals
    me = await api.post(f"/api/users/{ann.id}/follow", ann)
    assert (me.status, me.error_field()) == (422, "userId")
    for path in (f"/api/users/{uuid.uuid4()}/follow", "/api/users/nobody/follow"):
        assert (await api.post(path, ann)).status == 404
    assert (await api.get(f"/api/users/{uuid.uuid4()}/followers", ann)).status == 404
    assert (await api.get(f"/api/users/{uuid.uuid4()}/following", ann)).status == 404
    bad = await api.get(f"/api/users/{bob.id}/followers", ann, params={"cursor": "xyz"})
    assert (bad.status, bad.error_field()) == (422, "cursor")
    wrong = await api.get(
        f"/api/users/{bob.id}/following", ann, params={"cursor": page.body["nextCursor"]}
    )
    assert (wrong.status, wrong.error_field()) == (422, "cursor")
    assert (await api.get(f"/api/users/{bob.id}/followers", ann,
                          params={"limit": "0"})).status == 422  # fmt: skip
    assert (await api.post(f"/api/users/{bob.id}/follow")).status == 401


async def test_the_week_end_promotes_the_top_and_demotes_the_bottom_once(
    api: Api, db: asyncpg.Connection
) -> None:
    users = [await api.register() for _ in range(12)]
    ids = [uuid.UUID(u.id) for u in users]
    # they were in the Gold league (tier 2) when last week began
    await db.execute(
        """INSERT INTO user_gamification (user_id, league_tier)
           SELECT u, 2 FROM unnest($1::uuid[]) AS u
           ON CONFLICT (user_id) DO UPDATE SET league_tier = 2""",
        ids,
    )
    # A week of its own, long past: the test database is shared, and a week another test (or
    # a job worker) closed before these users were added would have nothing left to close.
    last_week = dt.datetime.now(dt.UTC) - dt.timedelta(weeks=60 + secrets.randbelow(2000))
    for n, user in enumerate(users):
        # user n studied 5 * (n + 1) minutes last week: n + 1 points
        await act(api, user, Kind.SESSION_LEFT, minutes=5 * (n + 1), at=last_week,
                  session_id=uuid.uuid4())  # fmt: skip
    week = week_key(last_week)
    leagues = await db.fetch(
        "SELECT DISTINCT tier, league FROM league_members WHERE week = $1 AND user_id = ANY($2)",
        week,
        ids,
    )
    assert [(r["tier"], r["league"]) for r in leagues] == [(2, 0)]  # one league of 12
    assert await api.app[LEAGUES].close() >= 1
    tiers = {
        r["user_id"]: r["league_tier"]
        for r in await db.fetch(
            "SELECT user_id, league_tier FROM user_gamification WHERE user_id = ANY($1)", ids
        )
    }
    best_first = list(reversed(ids))
    assert [tiers[u] for u in best_first] == [3] * 5 + [2] * 2 + [1] * 5
    top = await api.get("/api/notifications", users[-1])
    note = next(n for n in top.body["notifications"] if n["type"] == "league_result")
    assert note["title"] == f"Promoted to the {LEAGUE_TIERS[3]} league!"
    assert note["metadata"]["place"] == 1
    bottom = await api.get("/api/notifications", users[0])
    note = next(n for n in bottom.body["notifications"] if n["type"] == "league_result")
    assert note["title"] == f"Moved down to the {LEAGUE_TIERS[1]} league"
    middle = await api.get("/api/notifications", users[5])
    assert "league_result" not in [n["type"] for n in middle.body["notifications"]]
    # the week closes once
    assert await api.app[LEAGUES].close_week(week) is False
    # this week: a user's first points put them in a league of their (new) tier
    await act(api, users[-1], Kind.POST_CREATED)
    standings = await api.get("/api/gamification/league", users[-1])
    assert standings.status == 200
    assert (standings.body["tier"], standings.body["tierName"]) == (3, LEAGUE_TIERS[3])
    assert users[-1].id in [m["userId"] for m in standings.body["members"]]
    # a newcomer's sign-in points put them in the first tier
    newcomer = await api.register()
    await act(api, newcomer, Kind.AI_QUERY)
    first = await api.get("/api/gamification/league", newcomer)
    assert (first.body["tier"], first.body["tierName"]) == (0, LEAGUE_TIERS[0])
    assert (await api.get("/api/gamification/league")).status == 401
