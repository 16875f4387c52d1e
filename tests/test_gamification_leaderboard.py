"""Leaderboards from Redis sorted sets (a private Redis, so FLUSHALL harms nobody), equal to a
recomputation from the points ledger, also after Redis lost everything; the caller's rank and
neighbours outside the top; pod, friends, study-time and streak boards; in-process without
Redis; refusals."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis as redis_sync

from peerspark_rt.analytics.events import Kind
from peerspark_rt.config import SETTINGS
from peerspark_rt.gamification.rules import period_of
from tests.gamification import act, settled
from tests.helpers import PASSWORD, Api, User, unique
from tests.social import post


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is needed for a Redis of the test's own")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir: Path = tmp_path_factory.mktemp("lb-redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis_sync.Redis.from_url(url).ping()
            break
        except redis_sync.RedisError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


async def board(api: Api, user: User, **params: Any) -> dict[str, Any]:
    resp = await api.get("/api/leaderboard", user, params={k: str(v) for k, v in params.items()})
    assert resp.status == 200, resp.body
    result: dict[str, Any] = resp.body
    return result


async def recomputed(
    db: asyncpg.Connection, since: dt.datetime | None = None, pod: str | None = None,
    column: str = "points",
) -> list[tuple[str, int]]:  # fmt: skip
    """The ranking straight from the points ledger (ties as Redis orders them)."""
    rows = await db.fetch(
        f"""SELECT user_id, SUM({column}) AS score FROM point_awards
            WHERE ($1::timestamptz IS NULL OR awarded_at >= $1)
              AND ($2::uuid IS NULL OR pod_id = $2)
            GROUP BY user_id HAVING SUM({column}) > 0
            ORDER BY SUM({column}) DESC, user_id DESC""",  # noqa: S608 (a constant column)
        since,
        uuid.UUID(pod) if pod else None,
    )
    return [(str(r["user_id"]), int(r["score"])) for r in rows]


async def from_redis(api: Api, user: User, source: str = "redis", **params: Any) -> dict[str, Any]:
    """The board once the store has it (a board not ready is answered from PostgreSQL while
    it is rebuilt in the background)."""
    for _ in range(100):
        body = await board(api, user, **params)
        if body["source"] == source:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the board never came from {source}: {body['source']}")


def ranking(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(e["userId"], e["score"]) for e in body["entries"]]


async def test_ranks_equal_the_ledger_also_after_redis_is_flushed(
    make_client: Callable[..., Any], private_redis: str, db: asyncpg.Connection
) -> None:
    api: Api = await make_client(redis_url=private_redis)
    users = [await api.register() for _ in range(4)]
    pod = await api.create_pod(users[0], isPublic=True)
    for n, user in enumerate(users):
        if n:
            assert (await api.post(f"/api/pods/{pod['id']}/join", user, json={})).status == 200
        for k in range(n + 1):
            await post(api, user, unique(f"note {k} "), podId=pod["id"])
    await settled(api)
    expected = await recomputed(db)
    # the first read finds no board in Redis: PostgreSQL answers while it is rebuilt
    first = await board(api, users[0], timeframe="all-time", metric="points", limit=100)
    assert first["source"] == "database"
    assert ranking(first) == expected[:100]
    top = await from_redis(api, users[0], timeframe="all-time", metric="points", limit=100)
    assert ranking(top) == expected[:100]
    assert top["total"] == len(expected)
    week_start = dt.datetime.fromisoformat(
        period_of("weekly", dt.datetime.now(dt.UTC)).ends_at.isoformat()  # type: ignore[union-attr]
    ) - dt.timedelta(days=7)
    weekly = await from_redis(api, users[0], timeframe="weekly", limit=100)
    assert ranking(weekly) == (await recomputed(db, since=week_start))[:100]
    assert weekly["period"] == period_of("weekly", dt.datetime.now(dt.UTC)).key
    # the pod's board counts the points earned in the pod
    in_pod = await from_redis(api, users[1], type="pod", podId=pod["id"], timeframe="all-time")
    assert ranking(in_pod) == await recomputed(db, pod=pod["id"])
    assert [e["username"] for e in in_pod["entries"]] == [u.username for u in reversed(users)]

    # one sorted set per metric x scope x period, expiring an hour after its period ends
    prefix = api.app[SETTINGS].redis_key_prefix
    plain = redis_sync.Redis.from_url(private_redis)
    now = dt.datetime.now(dt.UTC)
    week = period_of("weekly", now)
    assert week.ends_at is not None
    ttl = plain.ttl(f"{prefix}lb:{{points:global:{week.key}}}")
    expected_ttl = (week.ends_at + dt.timedelta(hours=1) - now).total_seconds()
    assert abs(ttl - expected_ttl) < 60
    assert plain.ttl(f"{prefix}lb:{{points:global:all}}") == -1  # all time: no expiry
    assert plain.zcard(f"{prefix}lb:{{points:{pod['id']}:all}}") == len(users)

    # Redis loses everything (a restart without persistence): the board is rebuilt
    redis_sync.Redis.from_url(private_redis).flushall()
    meanwhile = await board(api, users[0], timeframe="all-time", limit=100)
    assert meanwhile["source"] == "database"
    assert ranking(meanwhile) == expected[:100]
    again = await from_redis(api, users[0], timeframe="all-time", limit=100)
    assert ranking(again) == expected[:100]
    assert ranking(await from_redis(api, users[1], type="pod", podId=pod["id"],
                                    timeframe="all-time")) == ranking(in_pod)  # fmt: skip
    # and it keeps following new points
    await post(api, users[0], unique("one more "), podId=pod["id"])
    await settled(api)
    assert (
        ranking(await board(api, users[0], timeframe="all-time", limit=100))
        == (await recomputed(db))[:100]
    )


async def test_own_rank_and_neighbours_outside_the_top(
    make_client: Callable[..., Any], private_redis: str, db: asyncpg.Connection
) -> None:
    api: Api = await make_client(redis_url=private_redis)
    users = [await api.register() for _ in range(5)]
    for n, user in enumerate(users):
        for k in range(n + 1):
            await post(api, user, unique(f"note {k} "))
    await settled(api)
    expected = await recomputed(db)
    me = users[1]
    mine = next(i for i, (u, _) in enumerate(expected) if u == me.id)

    def check_me(body: dict[str, Any]) -> None:
        assert len(body["entries"]) == 1
        assert body["me"]["rank"] == mine + 1
        assert body["me"]["isMe"]
        assert body["me"]["score"] == dict(expected)[me.id]
        around = expected[max(0, mine - 2) : mine + 3]
        assert [(e["userId"], e["score"]) for e in body["neighbours"]] == around
        assert [e["rank"] for e in body["neighbours"]] == list(
            range(max(0, mine - 2) + 1, max(0, mine - 2) + 1 + len(around))
        )

    # while the board is rebuilt (PostgreSQL answers), and from Redis
    rebuilding = await board(api, me, timeframe="all-time", limit=1)
    assert rebuilding["source"] == "database"
    check_me(rebuilding)
    check_me(await from_redis(api, me, timeframe="all-time", limit=1))
    # a user with no points this period is not ranked
    newcomer = await api.register()
    await settled(api)
    daily = await board(api, newcomer, timeframe="daily", metric="study-time")
    assert daily["me"] is None
    assert daily["neighbours"] == []


async def test_a_deleted_account_leaves_every_board(
    make_client: Callable[..., Any], private_redis: str, db: asyncpg.Connection
) -> None:
    api: Api = await make_client(redis_url=private_redis)
    stay, leave = await api.register(), await api.register()
    pod = await api.create_pod(leave, isPublic=True)
    assert (await api.post(f"/api/pods/{pod['id']}/join", stay, json={})).status == 200
    for user, n in ((stay, 1), (leave, 3)):
        for k in range(n):
            await post(api, user, unique(f"n{k} "), podId=pod["id"])
    await settled(api)
    for params in ({"timeframe": "all-time"}, {"timeframe": "weekly"}):
        before = await from_redis(api, stay, limit=100, **params)
        assert leave.id in {e["userId"] for e in before["entries"]}
    gone = await api.delete("/api/users/me", leave, json={"password": PASSWORD})
    assert gone.status == 204, gone.body
    for params in ({"timeframe": "all-time"}, {"timeframe": "weekly"}):
        after = await from_redis(api, stay, limit=100, **params)
        assert leave.id not in {e["userId"] for e in after["entries"]}, params
        assert all(e["username"] is not None for e in after["entries"])
    assert (
        ranking(await from_redis(api, stay, timeframe="all-time", limit=100))
        == (await recomputed(db))[:100]
    )


async def test_friends_are_mutual_follows(api: Api) -> None:
    ann, bob, cat, dan = [await api.register() for _ in range(4)]
    for user, n in ((ann, 1), (bob, 2), (cat, 3), (dan, 4)):
        for k in range(n):
            await post(api, user, unique(f"n{k} "))
    await settled(api)
    for a, b in ((ann, bob), (bob, ann), (ann, cat)):  # cat does not follow back
        assert (await api.post(f"/api/users/{b.id}/follow", a)).status == 200
    body = await from_redis(api, ann, "memory", type="friends", timeframe="all-time")
    assert [e["userId"] for e in body["entries"]] == [bob.id, ann.id]
    assert body["me"]["rank"] == 2


async def test_study_time_and_streak_boards(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    pod = await api.create_pod(ann, isPublic=True)
    assert (await api.post(f"/api/pods/{pod['id']}/join", bob, json={})).status == 200
    await act(api, ann, Kind.SESSION_LEFT, minutes=30, session_id=uuid.uuid4(), pod_id=pod["id"])
    await act(api, bob, Kind.SESSION_LEFT, minutes=50, session_id=uuid.uuid4(), pod_id=pod["id"])
    study = await board(api, ann, type="pod", podId=pod["id"], metric="study-time",
                        timeframe="daily")  # fmt: skip
    assert [(e["userId"], e["score"]) for e in study["entries"]] == [(bob.id, 50), (ann.id, 30)]
    streaks = await board(api, ann, type="pod", podId=pod["id"], metric="streak")
    assert streaks["timeframe"] == "all-time"
    assert {e["userId"]: e["score"] for e in streaks["entries"]} == {ann.id: 1, bob.id: 1}
    glob = await board(api, bob, metric="streak")
    assert glob["me"]["score"] == 1


async def test_refusals(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    private = await api.create_pod(ann, isPublic=False)
    cases = [
        ({"type": "pod"}, 422, "podId"),
        ({"type": "global", "podId": private["id"]}, 422, "podId"),
        ({"timeframe": "yearly"}, 422, "timeframe"),
        ({"metric": "karma"}, 422, "metric"),
        ({"timeframe": "daily", "period": "weekly"}, 422, "period"),
        ({"limit": "0"}, 422, "limit"),
    ]
    for params, status, field in cases:
        resp = await api.get("/api/leaderboard", ann, params=params)
        assert (resp.status, resp.error_field()) == (status, field), params
    hidden = await api.get("/api/leaderboard", bob, params={"type": "pod", "podId": private["id"]})
    assert hidden.status == 404
    unknown = await api.get(
        "/api/leaderboard", ann, params={"type": "pod", "podId": str(uuid.uuid4())}
    )
    assert unknown.status == 404
    # the spec's name for the timeframe
    spec = await api.get("/api/leaderboard", ann, params={"period": "monthly"})
    assert (spec.status, spec.body["timeframe"]) == (200, "monthly")
    assert (await api.get("/api/leaderboard")).status == 401
