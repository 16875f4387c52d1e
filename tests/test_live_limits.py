"""The live core at its edges, on one node over real sockets: catch-ups bigger than any queue,
a poison value inside a batch, frames nested thousands deep, a database that goes away, a room
whose state cannot be read, a session held by a slow transaction, and the limits a socket
lives within."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from peerspark_rt import protocol
from peerspark_rt.client import LiveClient, LiveError
from peerspark_rt.errors import Invalid
from peerspark_rt.sessions import db as sessions_db
from peerspark_rt.sessions.chat import CHAT
from peerspark_rt.sessions.realtime import SessionHistory
from tests.faults import TcpProxy
from tests.helpers import Api, frame_of, messages_from, open_session

FAST = {"ws_send_rate": 100_000, "ws_send_burst": 100_000}


async def send_many(client: LiveClient, room: str, count: int, prefix: str) -> None:
    """`count` messages, many in flight at once (as a busy room or a reconnect sends them)."""
    for start in range(0, count, 100):
        await asyncio.gather(
            *(client.send(room, f"{prefix} {i}") for i in range(start, min(start + 100, count)))
        )


# --- a resume of any size ----------------------------------------------------------------


async def test_a_resume_bigger_than_any_queue_arrives_whole_and_once(make_client: Any) -> None:
    """3,000 messages missed: far more than a socket's outbound bound holds at once. The
    replay goes only as fast as the socket drains, so it arrives whole, in order, once."""
    api = await make_client(ws_outbound_bytes=64 * 1024, **FAST)
    writer, reader = await api.register(), await api.register()
    room = await open_session(api, writer, reader)
    w = await api.live(writer)
    await w.join(room)
    await send_many(w, room, 3000, "missed")
    back = await api.live(reader)
    joined = await back.join(room, since=0)
    assert joined.last_seq == 3000
    got = await messages_from(back, 3000, timeout=60)
    assert [m.seq for m in got] == list(range(1, 3001))
    assert got[0].body == "missed 0"
    # live messages after the catch-up follow it, once
    await w.send(room, "live")
    assert [(m.seq, m.body) for m in await messages_from(back, 1)] == [(3001, "live")]
    await back.ping()
    with pytest.raises(TimeoutError):
        await frame_of(back, protocol.Message, timeout=0.3)
    assert back.close_code is None


async def test_a_resume_beyond_the_limit_is_told_too_old(make_client: Any) -> None:
    api = await make_client(ws_max_resume=100, **FAST)
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    await send_many(live, room, 150, "m")
    late = await api.live(user)
    joined = await late.join(room, since=10)
    assert joined.last_seq == 150
    error = await frame_of(late, protocol.Error)
    assert error.code == "resume_too_old"
    assert error.room == room
    assert "150" in error.message
    # the socket is fine: a resume within the limit works on it
    await late.resume(room, 140)
    assert [m.seq for m in await messages_from(late, 10)] == list(range(141, 151))


# --- one bad message fails alone -----------------------------------------------------------


async def test_control_characters_and_deep_nesting_are_refused_by_field(api: Api) -> None:
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"body": "a\x00b"}, "body"),
        ({"body": "bell\x07"}, "body"),
        ({"body": "ok", "cid": "c\x00d"}, "cid"),
        ({"body": "ok", "kind": "file", "file_url": "https://x.example/\x00"}, "fileUrl"),
        ({"body": "ok", "meta": {"k": "v\x00"}}, "meta"),
        ({"body": "ok", "meta": {"k\x1b": "v"}}, "meta"),
        ({"body": "ok", "meta": {"n": 2**70}}, "meta"),
    ]
    for fields, name in cases:
        with pytest.raises(LiveError) as info:
            await live.send(room, **fields)
        assert info.value.code == "validation_error"
        assert info.value.frame.message.startswith(name), info.value.frame.message
    # nested 10,000 deep: refused at decode, the socket stays
    deep = "[" * 10_000 + "]" * 10_000
    await live.send_raw(
        f'{{"t":"send","room":"{room}","cid":"deep","body":"x","meta":{{"a":{deep}}}}}'
    )
    error = await frame_of(live, protocol.Error, code="invalid_frame")
    assert "nested" in error.message
    # 20 deep decodes, but is more than free-form metadata may be
    nested: Any = "leaf"
    for _ in range(20):
        nested = {"a": nested}
    with pytest.raises(LiveError) as info:
        await live.send(room, "ok", meta=nested)
    assert "nested too deeply" in info.value.frame.message
    assert (await live.send(room, "tab\tand newline\n are fine")).seq == 1
    assert await live.ping() < 5


async def test_a_poison_value_fails_alone_and_its_batch_neighbours_are_stored(
    api: Api, db: asyncpg.Connection
) -> None:
    """The database refuses one message of a group commit (here a NUL, which validation would
    stop at the door; the store must not depend on that): the batch is split until the
    offender is alone, it fails for good, and the others, in two rooms, are stored in order."""
    chat = api.app[CHAT]
    ann, bob = await api.register(), await api.register()
    room_a = await open_session(api, ann, bob)
    room_b = await open_session(api, bob, ann)
    ids = [uuid.UUID(room_a[8:]), uuid.UUID(room_b[8:])]
    plan = [(0, "a1"), (1, "b1"), (0, "bad\x00"), (1, "b2"), (0, "a2")]
    results = await asyncio.gather(
        *(
            chat._store(uuid.UUID(ann.id), ann.username, ids[r], "text", body, None, None, None)
            for r, body in plan
        ),
        return_exceptions=True,
    )
    assert isinstance(results[2], Invalid)
    stored_ok = [r for r in results if not isinstance(r, BaseException)]
    assert [(p.frame.room, p.frame.seq, p.frame.body) for p in stored_ok] == [
        (room_a, 1, "a1"),
        (room_b, 1, "b1"),
        (room_b, 2, "b2"),
        (room_a, 2, "a2"),
    ]
    stored = await db.fetch(
        "SELECT session_id, seq, content FROM session_messages WHERE session_id = ANY($1)"
        " ORDER BY session_id, seq",
        ids,
    )
    assert sorted((r["seq"], r["content"]) for r in stored) == [
        (1, "a1"),
        (1, "b1"),
        (2, "a2"),
        (2, "b2"),
    ]


# --- the database goes away ---------------------------------------------------------------


@pytest.fixture
async def pg_proxy(pg_dsn: str) -> AsyncIterator[TcpProxy]:
    host_port = pg_dsn.split("@")[-1].split("/")[0]
    host, _, port = host_port.partition(":")
    proxy = await TcpProxy(host, int(port or 5432)).start()
    yield proxy
    await proxy.close()


async def test_a_database_outage_does_not_close_sockets_that_keep_sending(
    make_client: Any, pg_dsn: str, pg_proxy: TcpProxy
) -> None:
    api = await make_client(database_url=pg_proxy.dsn(pg_dsn), **FAST)
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    pg_proxy.cut()
    for i in range(15):  # more than the ten bad frames in a row that close a socket
        with pytest.raises(LiveError) as info:
            await live.send(room, f"during {i}", cid=f"out-{i}")
        assert info.value.code in ("unavailable", "database_busy")
    pg_proxy.restore()
    ack = None
    for _ in range(50):  # the pool reconnects
        try:
            ack = await live.send(room, "after", cid="after")
            break
        except LiveError:
            await asyncio.sleep(0.1)
    assert ack is not None
    assert ack.seq == 1
    assert live.close_code is None


# --- unknown state is not zero ------------------------------------------------------------


async def test_a_room_that_cannot_read_its_sequence_holds_joins_until_it_can(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a room's sequence fails (the store is away just then): joiners are told to
    retry, never told the room starts at 0 (which would replay its whole history as a gap)."""
    user = await api.register()
    room = await open_session(api, user)
    first = await api.live(user)
    await first.join(room)
    await send_many(first, room, 30, "m")
    failures = {"left": 2}
    real = SessionHistory.last_seq

    async def flaky(self: SessionHistory, name: str) -> int:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("the store is away")
        return await real(self, name)

    monkeypatch.setattr(SessionHistory, "last_seq", flaky)
    monkeypatch.setattr("peerspark_rt.actors.room.LINGER", 0.05)
    await first.close()
    await asyncio.sleep(0.3)  # the room retires (nobody left in it); the next join starts anew
    live = await api.live(user)
    with pytest.raises(LiveError) as info:
        await live.join(room)
    assert info.value.code == "unavailable"
    joined = None
    for _ in range(50):
        try:
            joined = await live.join(room)
            break
        except LiveError as exc:
            if exc.code != "unavailable":
                raise
            await asyncio.sleep(0.2)
    assert joined is not None
    assert joined.last_seq == 30
    other = await api.live(user)
    await other.join(room)
    await other.send(room, "next")
    assert [(m.seq, m.body) for m in await messages_from(live, 1)] == [(31, "next")]


# --- a slow transaction on the session does not stall its chat ----------------------------


async def test_chat_goes_on_while_a_transaction_holds_the_session(api: Api, pg_dsn: str) -> None:
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            # what joining, editing or starting the session holds while it works
            assert await sessions_db.lock(conn, uuid.UUID(room[8:])) is not None
            ack = await asyncio.wait_for(live.send(room, "not blocked"), 3)
            assert ack.seq == 1
    finally:
        await conn.close()


# --- what a socket may do ------------------------------------------------------------------


async def test_a_socket_is_in_a_bounded_number_of_rooms(make_client: Any) -> None:
    api = await make_client(ws_max_rooms=2)
    user = await api.register()
    rooms = [await open_session(api, user) for _ in range(3)]
    live = await api.live(user)
    await live.join(rooms[0])
    await live.join(rooms[1])
    with pytest.raises(LiveError) as info:
        await live.join(rooms[2])
    assert info.value.code == "too_many_rooms"
    assert "at most 2" in info.value.frame.message
    await live.leave(rooms[0])
    assert (await live.join(rooms[2])).room == rooms[2]


async def test_taking_part_is_explicit(api: Api) -> None:
    organizer, guest = await api.register(), await api.register()
    room = await open_session(api, organizer)
    live = await api.live(guest)
    with pytest.raises(LiveError) as info:
        await live.join(room)
    assert info.value.code == "not_a_participant"
    people = await api.get(f"/api/sessions/{room[8:]}/participants", organizer)
    assert guest.id not in {p["userId"] for p in people.body["participants"]}
    await live.join(room, enrol=True)
    people = await api.get(f"/api/sessions/{room[8:]}/participants", organizer)
    assert guest.id in {p["userId"] for p in people.body["participants"]}


async def test_rest_and_websocket_share_one_send_limit(make_client: Any) -> None:
    api = await make_client(ws_send_rate=0.5, ws_send_burst=3)
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    for i in range(3):
        await live.send(room, f"ws {i}")
    resp = await api.post(
        f"/api/sessions/{room[8:]}/messages", user, json={"content": "rest", "clientMessageId": "r"}
    )
    assert resp.status == 429
    assert resp.body["error"]["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 1


async def test_metrics_show_what_the_live_core_does(api: Api) -> None:
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    await live.send(room, "hello")
    other = await api.live(user)
    await other.join(room, since=0)
    await messages_from(other, 1)
    text = (await api.metrics()).body.decode()
    for name in (
        "peerspark_event_loop_lag_seconds",
        "peerspark_room_mailbox_depth_max",
        "peerspark_ws_outbound_bytes",
        "peerspark_chat_batch_messages_bucket",
        "peerspark_chat_commit_seconds_bucket",
        'peerspark_ws_resumes_total{outcome="hit"} 1.0',
    ):
        assert name in text, name
    # a socket's lifetime is not a request's latency
    assert 'peerspark_http_request_duration_seconds_count{method="GET",route="/ws"}' not in text
