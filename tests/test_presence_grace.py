"""A connection that is lost (no close from the client) keeps its user present for
PRESENCE_GRACE seconds: a reconnect within it is invisible to the room (no leave and join, no
attendance rewrite), while closing the socket still leaves at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from peerspark_rt import protocol
from peerspark_rt.client import LiveClient
from tests.helpers import Api, open_session


async def presence_of(client: LiveClient, user_id: str, timeout: float) -> protocol.Presence:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await client.next(max(0.01, deadline - asyncio.get_running_loop().time()))
        if isinstance(frame, protocol.Presence) and frame.user_id == user_id:
            return frame


async def joined_again(client: LiveClient, room: str, timeout: float = 5) -> protocol.Joined:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await client.next(max(0.01, deadline - asyncio.get_running_loop().time()))
        if isinstance(frame, protocol.Joined) and frame.room == room:
            return frame


async def test_a_dropped_socket_that_comes_back_in_time_never_left(make_client: Any) -> None:
    api: Api = await make_client(presence_grace=3.0)
    watcher, student = await api.register(), await api.register()
    room = await open_session(api, watcher, student)
    w = await api.live(watcher)
    await w.join(room)
    s = await api.live(student)
    await s.join(room)
    assert (await presence_of(w, student.id, 5)).state == "join"

    await s.drop()  # the network goes away; the client reconnects and rejoins by itself
    back = await joined_again(s, room)
    assert student.id in {m.user_id for m in back.presence}
    with pytest.raises(TimeoutError):
        await presence_of(w, student.id, 1.0)
    ack = await s.send(room, "still here")
    assert ack.seq >= 1


async def test_a_dropped_socket_that_stays_away_leaves_after_the_grace(
    make_client: Any, db: Any
) -> None:
    api: Api = await make_client(presence_grace=0.8)
    watcher, student = await api.register(), await api.register()
    room = await open_session(api, watcher, student)
    w = await api.live(watcher)
    await w.join(room)
    s = await api.live(student, reconnect=False)
    await s.join(room)
    assert (await presence_of(w, student.id, 5)).state == "join"

    dropped = time.monotonic()
    await s.drop()
    gone = await presence_of(w, student.id, 5)
    assert gone.state == "leave"
    assert time.monotonic() - dropped >= 0.7  # not before the grace ran out
    row = await db.fetchrow(
        "SELECT present_since, left_at FROM session_participants"
        " WHERE session_id = $1::uuid AND user_id = $2::uuid",
        room.split(":")[1],
        student.id,
    )
    for _ in range(50):  # attendance is written just after the leave is announced
        if row["present_since"] is None:
            break
        await asyncio.sleep(0.05)
        row = await db.fetchrow(
            "SELECT present_since, left_at FROM session_participants"
            " WHERE session_id = $1::uuid AND user_id = $2::uuid",
            room.split(":")[1],
            student.id,
        )
    assert row["present_since"] is None
    assert row["left_at"] is not None


async def test_closing_the_socket_leaves_at_once(make_client: Any) -> None:
    api: Api = await make_client(presence_grace=30.0)
    watcher, student = await api.register(), await api.register()
    room = await open_session(api, watcher, student)
    w = await api.live(watcher)
    await w.join(room)
    s = await api.live(student)
    await s.join(room)
    assert (await presence_of(w, student.id, 5)).state == "join"

    await s.close()
    assert (await presence_of(w, student.id, 2)).state == "leave"
