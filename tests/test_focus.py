"""Focus rooms on one node: the organizer's shared timer, late joiners, blocks counted for
members whose socket stayed, solo focus in one's own room, and the commands' refusals."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from peerspark_rt import protocol
from peerspark_rt.client import LiveClient
from tests.helpers import Api, User, frame_of, open_session

FAST = {"work": 1, "short_break": 1, "long_break": 1, "long_every": 4}


async def focus_frame(client: LiveClient, reason: str, timeout: float = 5) -> protocol.FocusState:
    frame = await frame_of(client, protocol.FocusUpdate, timeout, reason=reason)
    assert frame.timer is not None
    state: protocol.FocusState = frame.timer
    return state


async def error_of(client: LiveClient, timeout: float = 5) -> protocol.Error:
    frame: protocol.Error = await frame_of(client, protocol.Error, timeout)
    return frame


async def outcomes(db: asyncpg.Connection, user: User) -> list[tuple[str, str]]:
    rows = await db.fetch(
        """SELECT event, dedupe_key FROM analytics_events
           WHERE user_id = $1 AND event LIKE 'focus_block_%' ORDER BY dedupe_key, event""",
        uuid.UUID(user.id),
    )
    return [(r["event"], r["dedupe_key"].rpartition(":")[2]) for r in rows]


async def settled(db: asyncpg.Connection, user: User, n: int) -> list[tuple[str, str]]:
    for _ in range(100):
        got = await outcomes(db, user)
        if len(got) >= n:
            return got
        await asyncio.sleep(0.05)
    return await outcomes(db, user)


async def test_a_shared_timer_counts_the_blocks_of_members_who_stay(
    make_client: Any, db: asyncpg.Connection
) -> None:
    api: Api = await make_client(focus_min_seconds=1)
    host, stayer, leaver, late = [await api.register() for _ in range(4)]
    room = await open_session(api, host, stayer, leaver, late)
    clients = {}
    for user in (host, stayer, leaver):
        clients[user.id] = await api.live(user)
        await clients[user.id].join(room)
    h, s, lv = clients[host.id], clients[stayer.id], clients[leaver.id]

    await s.focus(room, "start", **FAST, blocks=2)  # only the organizer runs the timer
    refused = await error_of(s)
    assert (refused.code, refused.room) == ("not_organizer", room)
    await h.focus(room, "start", **FAST, blocks=2)
    started = [await focus_frame(c, "started") for c in (h, s, lv)]
    assert started[0] == started[1] == started[2]
    assert (started[0].phase, started[0].block, started[0].status) == ("work", 1, "running")

    # a late joiner (within the block's first minute) gets the state in `joined`
    lt = await api.live(late)
    joined = await lt.join(room)
    assert joined.focus == started[0]

    brk = await focus_frame(s, "phase")
    assert (brk.phase, brk.block) == ("break", 1)
    second = await focus_frame(s, "phase")
    assert (second.phase, second.block) == ("work", 2)
    await lv.leave(room)  # leaves during block 2: started it, did not finish it
    done = await focus_frame(s, "done", timeout=5)
    assert done.status == "done"
    assert await focus_frame(lt, "done") == done

    assert await settled(db, stayer, 2) == [
        ("focus_block_completed", "1"),
        ("focus_block_completed", "2"),
    ]
    assert await settled(db, late, 2) == [
        ("focus_block_completed", "1"),
        ("focus_block_completed", "2"),
    ]
    assert await settled(db, leaver, 2) == [
        ("focus_block_completed", "1"),
        ("focus_block_abandoned", "2"),
    ]


async def test_solo_focus_commands_in_ones_own_room(
    make_client: Any, db: asyncpg.Connection
) -> None:
    api: Api = await make_client(focus_min_seconds=1)
    ann = await api.register()
    room = f"user:{ann.id}"
    me = await api.live(ann)
    await me.join(room)

    await me.focus(room, "pause")
    assert (await error_of(me)).code == "focus_conflict"  # nothing runs yet
    await me.focus(room, "start", work=0)
    bad = await error_of(me)
    assert (bad.code, bad.message) == (
        "validation_error",
        "work: must be between 1 and 14400 seconds",
    )

    await me.focus(room, "start", work=60, short_break=1, blocks=2)
    first = await focus_frame(me, "started")
    await me.focus(room, "pause")
    paused = await focus_frame(me, "paused")
    assert paused.status == "paused"
    assert 55_000 <= paused.remaining <= 60_000
    assert paused.version == first.version + 1
    await me.focus(room, "pause")
    assert (await error_of(me)).code == "focus_conflict"
    await me.focus(room, "resume")
    resumed = await focus_frame(me, "resumed")
    assert resumed.status == "running"
    await me.focus(room, "skip")  # block 1 ends now, uncounted
    skipped = await focus_frame(me, "skipped")
    assert (skipped.phase, skipped.block) == ("break", 1)
    block2 = await focus_frame(me, "phase")  # after the 1 s break
    assert (block2.phase, block2.block) == ("work", 2)
    await me.focus(room, "stop")
    assert (await focus_frame(me, "stopped")).status == "stopped"

    # a block that runs to its end in one's own room is counted, and its time studied
    await me.focus(room, "start", work=1, short_break=1, blocks=1)
    await focus_frame(me, "started")
    await focus_frame(me, "done")
    assert await settled(db, ann, 1) == [("focus_block_completed", "1")]
    span = await db.fetchval(
        """SELECT sum(sp.seconds) FROM analytics_spans sp JOIN analytics_events e
           ON e.id = sp.event_id WHERE e.user_id = $1""",
        uuid.UUID(ann.id),
    )
    assert span == 1
