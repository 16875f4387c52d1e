"""The chat store's one statement against a concurrent batch of the same room (another node's,
or a retry racing its original): the later batch waits for the room's lock, numbers after
the earlier one, and returns a message the earlier one stored meanwhile as that message."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from peerspark_rt.infra.pool import Database
from peerspark_rt.sessions import db as sessions_db
from tests.helpers import Api, open_session

KIND = "message_sent"


def message(session_id: uuid.UUID, sender_id: uuid.UUID, body: str, cid: str | None) -> Any:
    return {
        "session_id": session_id,
        "sender_id": sender_id,
        "message_type": "text",
        "content": body,
        "client_message_id": cid,
        "record": True,
    }


async def race(
    pg_dsn: str, first: dict[str, Any], second: dict[str, Any]
) -> tuple[sessions_db.StoredBatch, sessions_db.StoredBatch]:
    """`first` stored in a transaction that stays open until `second`'s statement waits for
    the room's lock; then it commits and `second` goes on."""
    store = await Database.connect(pg_dsn, max_size=2)  # (with the product's codecs)
    try:
        async with store.connection() as a, store.connection() as b:
            b_pid = b.get_server_pid()
            async with a.transaction():
                stored_first = await sessions_db.store_batch(a, [first], event_kind=KIND)
                later = asyncio.create_task(sessions_db.store_batch(b, [second], event_kind=KIND))
                for _ in range(200):
                    waiting = await a.fetchval(
                        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                        b_pid,
                    )
                    if waiting:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the second batch never waited for the room's lock")
            return stored_first, await asyncio.wait_for(later, 10)
    finally:
        await store.close()


async def a_room(api: Api) -> tuple[uuid.UUID, uuid.UUID]:
    """A new open session's id, and its organizer's (who sends)."""
    owner = await api.register()
    room = await open_session(api, owner)
    return uuid.UUID(room.partition(":")[2]), uuid.UUID(owner.id)


def stored(
    first: sessions_db.StoredBatch, second: sessions_db.StoredBatch
) -> tuple[sessions_db.StoredMessage, sessions_db.StoredMessage]:
    a, b = first.results[0], second.results[0]
    assert a is not None
    assert b is not None
    return a, b


async def last_seq(db: asyncpg.Connection, session_id: uuid.UUID) -> int:
    seq: int = await db.fetchval(
        "SELECT last_seq FROM session_seqs WHERE session_id = $1", session_id
    )
    return seq


async def test_a_batch_that_waited_for_the_room_numbers_after_the_one_it_waited_for(
    api: Api, pg_dsn: str, db: asyncpg.Connection
) -> None:
    session_id, sender = await a_room(api)
    first, second = await race(
        pg_dsn, message(session_id, sender, "one", "c1"), message(session_id, sender, "two", "c2")
    )
    a, b = stored(first, second)
    assert (b.seq, b.duplicate) == (a.seq + 1, False)
    assert await last_seq(db, session_id) == b.seq
    assert [
        r["seq"]
        for r in await db.fetch(
            "SELECT seq FROM session_messages WHERE session_id = $1 ORDER BY seq", session_id
        )
    ] == [a.seq, b.seq]


async def test_a_retry_racing_its_original_comes_back_as_the_original(
    api: Api, pg_dsn: str, db: asyncpg.Connection
) -> None:
    session_id, sender = await a_room(api)
    original = message(session_id, sender, "hello", "same-cid")
    first, second = await race(pg_dsn, original, dict(original))
    a, b = stored(first, second)
    assert (b.id, b.seq, b.duplicate) == (a.id, a.seq, True)
    assert second.events == []  # the retry wrote no second event
    assert (
        await db.fetchval("SELECT count(*) FROM session_messages WHERE session_id = $1", session_id)
        == 1
    )
    assert await last_seq(db, session_id) == a.seq
    assert (
        await db.fetchval(
            "SELECT count(*) FROM analytics_events WHERE event = $1 AND dedupe_key = $2",
            KIND,
            str(a.id),
        )
        == 1
    )
