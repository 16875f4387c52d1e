"""The chat store's connections are prepared when they open: a room's first message after a
node starts (or after its store connection was replaced) waits for no parsing and no type
introspection on the path every message takes before anyone sees it; and preparing writes
nothing."""

from __future__ import annotations

import asyncio

from peerspark_rt.infra.pool import Database
from peerspark_rt.sessions.chat import warm_store

TABLES = ("session_messages", "session_seqs", "analytics_events", "analytics_dirty")


async def _counts(db: Database) -> dict[str, int]:
    return {t: int(await db.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}  # noqa: S608 (constant names)


def test_a_store_connection_opens_with_the_stores_statements_prepared(pg_dsn: str) -> None:
    async def scenario() -> tuple[list[str], dict[str, int], dict[str, int]]:
        plain = await Database.connect(pg_dsn, max_size=1)
        try:
            before = await _counts(plain)
            store = await Database.connect(pg_dsn, max_size=1, warm=warm_store, max_inactive=0)
            try:
                async with store.connection() as conn:
                    prepared = [
                        " ".join(str(r["statement"]).split())
                        for r in await conn.fetch("SELECT statement FROM pg_prepared_statements")
                    ]
            finally:
                await store.close()
            return prepared, before, await _counts(plain)
        finally:
            await plain.close()

    prepared, before, after = asyncio.run(scenario())
    # one statement stores a batch: its rooms locked, its messages and their events written
    store = [
        text
        for text in prepared
        if "ORDER BY session_id FOR UPDATE" in text
        and "INSERT INTO session_messages" in text
        and "INSERT INTO analytics_events" in text
    ]
    assert len(store) == 1, prepared
    assert after == before  # nothing read into being, nothing written


def test_kept_connections_are_all_opened_warm_and_probed_while_idle(pg_dsn: str) -> None:
    """A pool whose connections are never closed for being idle opens all of them at once
    (each warm before its first message), and has the server probe them while idle (TCP
    keepalives), so a NAT or load balancer between node and database does not drop a quiet
    connection unseen and leave the next batch to time out on it."""

    async def scenario() -> tuple[int, list[str], list[int]]:
        store = await Database.connect(
            pg_dsn, max_size=2, min_size=2, warm=warm_store, max_inactive=0
        )
        try:
            size = store.pool.get_size()
            async with store.connection() as a, store.connection() as b:
                idle = [str(await c.fetchval("SHOW tcp_keepalives_idle")) for c in (a, b)]
                prepared = [
                    int(
                        await c.fetchval(
                            # (split, so that this statement does not count itself)
                            "SELECT count(*) FROM pg_prepared_statements"
                            " WHERE strpos(statement, 'INSERT INTO session' || '_messages') > 0"
                        )
                    )
                    for c in (a, b)
                ]
            return size, idle, prepared
        finally:
            await store.close()

    size, idle, prepared = asyncio.run(scenario())
    assert size == 2
    assert idle == ["60", "60"]
    assert prepared == [1, 1]
