"""A small connection pool under concurrent writes: every request finishes, because nothing
holds one connection while it waits for another; and a pool that stays exhausted answers 503
instead of hanging."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg

from peerspark_rt.infra.pool import DB
from tests.helpers import Api
from tests.social import join, post

T = TypeVar("T")


def words() -> str:
    """Text unlike any other (moderation holds posts that repeat the author's recent ones)."""
    return " ".join(secrets.token_hex(5) for _ in range(4))


async def finishes(api: Api, work: Awaitable[T], seconds: float = 30) -> T:
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        # A deadlocked pool never lets the app shut down: end its connections, then fail.
        api.app[DB].pool.terminate()
        raise AssertionError(f"the requests did not finish within {seconds} s") from None


async def test_concurrent_writes_finish_with_a_pool_of_two(make_client: Any) -> None:
    api: Api = await make_client(
        database_pool_size=2,
        moderation_posts_per_hour=1000,
        moderation_blocked_words=("casino",),
    )
    owner, member = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join(api, member, pod)
    target = await post(api, owner, words(), podId=pod["id"])

    def new_post(i: int) -> Awaitable[Any]:
        author = owner if i % 2 else member
        return api.post("/api/posts", author, json={"content": words(), "podId": pod["id"]})

    def held_post() -> Awaitable[Any]:
        body = {"content": f"casino night {words()}", "podId": pod["id"]}
        return api.post("/api/posts", member, json=body)

    def comment() -> Awaitable[Any]:
        return api.post(f"/api/posts/{target['id']}/comments", member, json={"content": words()})

    def pod_resource() -> Awaitable[Any]:
        body = {"title": words(), "resourceType": "note", "podId": pod["id"]}
        return api.post("/api/resources", member, json=body)

    def sync(n: int) -> Awaitable[Any]:
        actions = [
            {
                "clientActionId": f"s{n}-post",
                "type": "create_post",
                "data": {"content": words(), "podId": pod["id"]},
            },
            {
                "clientActionId": f"s{n}-comment",
                "type": "create_comment",
                "data": {"postId": target["id"], "content": words()},
            },
            {
                "clientActionId": f"s{n}-held",
                "type": "create_post",
                "data": {"content": f"casino {words()}", "podId": pod["id"]},
            },
            {"clientActionId": f"s{n}-like", "type": "like_post", "data": {"postId": target["id"]}},
        ]
        return api.post("/api/mobile/sync", owner, json={"pendingActions": actions})

    work = [
        *(new_post(i) for i in range(20)),
        *(held_post() for _ in range(3)),
        *(comment() for _ in range(5)),
        *(pod_resource() for _ in range(5)),
        *(sync(n) for n in range(3)),
    ]
    results = await finishes(api, asyncio.gather(*work))
    posts, held, comments = results[:20], results[20:23], results[23:28]
    resources, syncs = results[28:33], results[33:]
    assert [r.status for r in posts] == [201] * 20, [r.body for r in posts if r.status != 201]
    assert {(r.status, r.body["error"]["code"]) for r in held} == {(422, "held_for_review")}
    assert [r.status for r in comments + resources] == [201] * 10
    for resp in syncs:
        assert resp.status == 200, resp.body
        outcome = {r["clientActionId"].split("-")[1]: r for r in resp.body["syncResults"]}
        assert outcome["post"]["status"] == "ok", outcome["post"]
        assert outcome["comment"]["status"] == "ok", outcome["comment"]
        assert outcome["like"]["status"] == "ok", outcome["like"]
        assert outcome["held"]["error"]["code"] == "held_for_review"
    feed = await api.get(f"/api/feed?podId={pod['id']}&limit=50", member)
    assert len(feed.body["posts"]) == 1 + 20 + 3


async def test_an_exhausted_pool_answers_503_instead_of_hanging(make_client: Any) -> None:
    api: Api = await make_client(database_pool_size=2)
    user = await api.register()
    pool = api.app[DB].pool
    pool.acquire_timeout = 0.5
    held = [await pool.acquire() for _ in range(2)]
    try:
        started = time.monotonic()
        resp = await finishes(api, api.post("/api/posts", user, json={"content": words()}))
        assert resp.status == 503, resp.body
        assert resp.body["error"]["code"] == "database_busy"
        assert "no database connection became free" in resp.body["error"]["message"]
        assert time.monotonic() - started < 5
    finally:
        for conn in held:
            await pool.release(conn)
    resp = await api.post("/api/posts", user, json={"content": words()})
    assert resp.status == 201, resp.body


async def test_a_new_connection_reads_extension_types_without_asking_the_catalog(
    pg_dsn: str,
) -> None:
    """A citext column (usernames, emails: nearly every page shows one) on a connection's first
    statement costs no type introspection: asyncpg's catalog walk took 8-16 ms of the database
    per new connection, on the request that happened to open it."""
    from peerspark_rt.infra.pool import Database

    db = await Database.connect(pg_dsn, max_size=1)
    try:
        async with db.connection() as conn:
            sent: list[str] = []
            conn.add_query_logger(lambda record: sent.append(" ".join(record.query.split())))
            name = "SELECT 'Ada'::citext AS name"
            assert await conn.fetchval(name) == "Ada"
            await asyncio.sleep(0.05)  # (asyncpg calls query loggers soon, not at once)
            assert sent == [name]
    finally:
        await db.close()


async def test_a_busy_pool_serves_its_callers_in_the_order_they_came(pg_dsn: str) -> None:
    """Waiting for a connection is first come, first served while new callers keep arriving:
    asyncpg's queue let a caller that asked just as a connection came back take it from the
    waiter it was meant for, which then queued again at the back (under load a session check
    waited up to 0.5 s while the median waited 5 ms)."""
    from peerspark_rt.infra.pool import Database

    # (all three open from the start: a connection still being opened is legitimately late)
    db = await Database.connect(pg_dsn, max_size=3, min_size=3)
    asked: list[tuple[int, int]] = []
    served: list[tuple[int, int]] = []

    async def caller(n: int) -> None:
        for round_ in range(20):
            asked.append((n, round_))
            async with db.connection() as conn:
                served.append((n, round_))
                await conn.fetchval("SELECT 1")

    try:
        await asyncio.gather(*(caller(n) for n in range(30)))
    finally:
        await db.close()
    place = {who: i for i, who in enumerate(asked)}
    overtaken = sum(
        1 for i, who in enumerate(served) if any(place[o] > place[who] for o in served[:i])
    )
    assert overtaken == 0


async def test_a_connection_released_twice_frees_one_place(pg_dsn: str) -> None:
    """asyncpg ignores a second release of a connection; so does the order of service: had it
    given back a second place, more callers than there are connections would pass the gate
    and meet asyncpg's unfair queue again."""
    from peerspark_rt.infra.pool import Database

    db = await Database.connect(pg_dsn, max_size=2, min_size=2)
    try:
        conn = await db.pool.acquire()
        await db.pool.release(conn)
        await db.pool.release(conn)
        gate = db.pool._gate  # type: ignore[attr-defined]
        async with db.connection(), db.connection():
            assert gate.locked()  # both places taken: a third caller waits its turn
        assert not gate.locked()
    finally:
        await db.close()


async def test_citext_is_found_in_whichever_schema_holds_it(pg_admin_dsn: str) -> None:
    """Managed PostgreSQL services often keep extensions in a schema of their own (on the
    database's search path): the node still starts there, and still reads citext without
    asking the catalog on a request's time."""
    import secrets

    from peerspark_rt.infra.pool import Database
    from tests.conftest import _create_database, _drop_database, _with_database

    name = f"peerspark_ext_{secrets.token_hex(4)}"
    await _create_database(pg_admin_dsn, name)
    try:
        dsn = _with_database(pg_admin_dsn, name)
        setup = await asyncpg.connect(dsn)
        try:
            await setup.execute("CREATE SCHEMA extensions")
            await setup.execute("CREATE EXTENSION citext SCHEMA extensions")
            await setup.execute(f'ALTER DATABASE "{name}" SET search_path = public, extensions')
        finally:
            await setup.close()
        db = await Database.connect(dsn, max_size=1)
        try:
            async with db.connection() as conn:
                sent: list[str] = []
                conn.add_query_logger(lambda record: sent.append(record.query))
                assert await conn.fetchval("SELECT 'Ada'::citext") == "Ada"
                await asyncio.sleep(0.05)  # (asyncpg calls query loggers soon, not at once)
                assert sent == ["SELECT 'Ada'::citext"]
        finally:
            await db.close()
    finally:
        await _drop_database(pg_admin_dsn, name)
