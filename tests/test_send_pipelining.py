"""One socket's chat messages are stored together (they do not wait for each other's commit),
yet numbered and delivered in the order the socket sent them, and a frame that follows them
(here a leave) still happens after they are stored."""

from __future__ import annotations

import asyncio

from peerspark_rt import protocol
from tests.helpers import Api, open_session
from tests.helpers import messages_from as messages


async def test_a_burst_from_one_socket_keeps_its_order(api: Api) -> None:
    teacher, student = await api.register(), await api.register()
    room = await open_session(api, teacher, student)
    t = await api.live(teacher)
    s = await api.live(student)
    await t.join(room)
    await s.join(room)

    # (90: under the per-socket burst allowance of WS_SEND_BURST)
    acks = await asyncio.gather(*(t.send(room, f"step {i}") for i in range(90)))
    assert [a.seq for a in acks] == list(range(1, 91))  # numbered in the order sent
    got = await messages(s, 90)
    assert [m.body for m in got] == [f"step {i}" for i in range(90)]
    assert [m.seq for m in got] == list(range(1, 91))


async def test_a_frame_after_sends_waits_for_them(api: Api) -> None:
    teacher, student = await api.register(), await api.register()
    room = await open_session(api, teacher, student)
    t = await api.live(teacher)
    s = await api.live(student)
    await t.join(room)
    await s.join(room)

    sends = [asyncio.ensure_future(t.send(room, f"before leaving {i}")) for i in range(20)]
    await asyncio.sleep(0)  # the send frames are written before the leave
    await t.leave(room)
    acks = await asyncio.gather(*sends)
    assert sorted(a.seq for a in acks) == list(range(1, 21))
    got = await messages(s, 20)
    assert [m.body for m in got] == [f"before leaving {i}" for i in range(20)]
    left = await t.next(5)
    while not isinstance(left, protocol.Left):
        left = await t.next(5)
    assert left.room == room
