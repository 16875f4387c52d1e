"""A storm of arrivals (a class starting at nine, a node's sockets moving to another).

Presence news closer together than the room's window goes out together, one write per member,
yet each member still hears every arrival and departure once, in order, and a newcomer hears
only what happened after its `joined` frame listed who was there. Attendance of arrivals that
come together is written together, each user's once, and one change the database refuses fails
nobody else's."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from peerspark_rt import protocol
from peerspark_rt.actors import hub as hub_module
from peerspark_rt.actors import room as room_module
from peerspark_rt.client import LiveClient
from peerspark_rt.sessions.service import SESSIONS, _attendance_runs
from tests.helpers import Api, User, open_session, wait_until

STORM = 30


async def presence_frames(client: LiveClient, quiet: float = 0.6) -> list[protocol.Presence]:
    """Every presence frame the client receives until `quiet` seconds pass without one."""
    got: list[protocol.Presence] = []
    while True:
        try:
            frame = await client.next(quiet)
        except TimeoutError:
            return got
        if isinstance(frame, protocol.Presence):
            got.append(frame)


async def test_a_storm_of_arrivals_is_heard_once_each_in_order(api: Api) -> None:
    organizer = await api.register()
    students: list[User] = [await api.register() for _ in range(STORM)]
    room = await open_session(api, organizer, *students)
    watcher = await api.live(organizer)
    await watcher.join(room)
    await presence_frames(watcher)  # (its own arrival)

    sockets = await asyncio.gather(*(api.live(s) for s in students))
    joined = await asyncio.gather(*(c.join(room) for c in sockets))

    heard = await presence_frames(watcher)
    assert [f.state for f in heard] == ["join"] * STORM
    assert sorted(f.user_id for f in heard) == sorted(s.id for s in students)
    # Each newcomer hears of the others who came after the list in its `joined` frame, and
    # of nobody twice.
    for student, client, frame in zip(students, sockets, joined, strict=True):
        listed = {m.user_id for m in frame.presence}
        assert student.id in listed
        assert organizer.id in listed
        news = [f.user_id for f in await presence_frames(client, quiet=0.1)]
        assert len(news) == len(set(news)), news
        assert not (set(news) & listed - {student.id}), (news, listed)
        assert listed | set(news) == {organizer.id, *(s.id for s in students)}

    # Departures in a storm too, then one more arrival after a quiet spell: in order.
    await asyncio.gather(*(c.close() for c in sockets[: STORM // 2]))
    late = await api.register()
    assert (await api.post(f"/api/sessions/{room.split(':')[1]}/join", late)).status == 200
    await asyncio.sleep(0.2)
    last = await api.live(late)
    await last.join(room)
    heard = await presence_frames(watcher)
    leaves = [f.user_id for f in heard if f.state == "leave"]
    assert sorted(leaves) == sorted(s.id for s in students[: STORM // 2])
    assert heard[-1].state == "join"
    assert heard[-1].user_id == late.id


async def attendance(db: asyncpg.Connection, session_id: str, kind: str) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT user_id::text AS user_id, count(*) AS n FROM analytics_events"
        " WHERE session_id = $1::uuid AND event = $2 GROUP BY user_id",
        session_id,
        kind,
    )
    return {r["user_id"]: r["n"] for r in rows}


async def written(db: asyncpg.Connection, session_id: str, kind: str, n: int) -> dict[str, int]:
    """The session's events of `kind` by user, once `n` users have one (hooks run after)."""

    async def enough() -> dict[str, int] | None:
        got = await attendance(db, session_id, kind)
        return got if len(got) >= n else None

    found: dict[str, int] = await wait_until(enough, 10, 0.05, f"{n} users' {kind} events")
    return found


async def test_a_class_arriving_together_is_marked_present_once_each(
    api: Api, db: asyncpg.Connection
) -> None:
    organizer = await api.register()
    students = [await api.register() for _ in range(STORM)]
    room = await open_session(api, organizer, *students)
    session_id = room.split(":")[1]
    sockets = await asyncio.gather(*(api.live(s) for s in students))
    await asyncio.gather(*(c.join(room) for c in sockets))
    joined = await written(db, session_id, "session_joined", STORM)
    assert joined == {s.id: 1 for s in students}
    present = await db.fetchval(
        "SELECT count(*) FROM session_participants"
        " WHERE session_id = $1::uuid AND present_since IS NOT NULL AND status = 'attended'",
        session_id,
    )
    assert present == STORM
    await asyncio.gather(*(c.close() for c in sockets))
    left = await written(db, session_id, "session_left", STORM)
    assert left == {s.id: 1 for s in students}


async def test_one_change_the_database_refuses_fails_nobody_else(
    api: Api, db: asyncpg.Connection
) -> None:
    organizer = await api.register()
    students = [await api.register() for _ in range(5)]
    room = await open_session(api, organizer, *students)
    session_id = uuid.UUID(room.split(":")[1])
    poison = students[2].id
    # (a trigger that refuses one user's events: the fault, in the real database)
    name = f"refuse_{poison.replace('-', '_')}"
    await db.execute(
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.user_id = '{poison}'::uuid THEN RAISE EXCEPTION 'poison'; END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE INSERT ON analytics_events
              FOR EACH ROW EXECUTE FUNCTION {name}()"""
    )
    try:
        changes = [(session_id, uuid.UUID(s.id), True) for s in students]
        await api.app[SESSIONS].record_attendance(changes)
    finally:
        await db.execute(f"DROP TRIGGER {name} ON analytics_events; DROP FUNCTION {name}()")
    joined = await attendance(db, str(session_id), "session_joined")
    assert joined == {s.id: 1 for s in students if s.id != poison}


def test_attendance_runs_keep_each_users_changes_in_order() -> None:
    s, a, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    changes = [(s, a, True), (s, b, True), (s, a, False), (s, b, False), (s, b, True)]
    assert _attendance_runs(changes) == [
        (True, [(s, a), (s, b)]),
        (False, [(s, a), (s, b)]),
        (True, [(s, b)]),
    ]
    # the same user twice in one direction (heard from two nodes): two runs, in order
    assert _attendance_runs([(s, a, True), (s, a, True)]) == [(True, [(s, a)]), (True, [(s, a)])]


async def test_news_held_back_is_not_overtaken_by_a_message(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member hears of an arrival before the newcomer's first message, also while the room
    delivers messages member by member (a socket resumed ahead of this node)."""
    monkeypatch.setattr(room_module, "NEWS_WINDOW", 2.0)  # (news surely held back)
    organizer, student = await api.register(), await api.register()
    room = await open_session(api, organizer, student)
    watcher = await api.live(organizer)
    await watcher.join(room)  # its own arrival: news that went out at once
    ahead = await api.live(organizer)
    await ahead.join(room, since=10**6)  # saw messages this node has not heard of
    newcomer = await api.live(student)
    await newcomer.join(room)  # news within the window: held back
    await newcomer.send(room, "hello")
    order: list[str] = []
    while len(order) < 2:
        frame = await watcher.next(5)
        if isinstance(frame, protocol.Presence) and frame.user_id == student.id:
            order.append("join")
        elif isinstance(frame, protocol.Message):
            order.append("message")
    assert order == ["join", "message"]


async def test_one_change_that_waits_too_long_fails_nobody_else_in_its_batch(
    api: Api, db: asyncpg.Connection, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrivals handed to the hooks together each get the time one arrival had: a change stuck
    behind a lock (another writer of that row) past the hook timeout does not take down the
    changes batched with it."""
    monkeypatch.setattr(hub_module, "HOOK_TIMEOUT", 1.0)
    organizer = await api.register()
    first, stuck, fine = [await api.register() for _ in range(3)]
    room = await open_session(api, organizer, first, stuck, fine)
    session_id = room.split(":")[1]
    locker = await asyncpg.connect(pg_dsn)
    tx = locker.transaction()
    await tx.start()
    try:
        # (another writer holds two participants' rows for longer than a hook may take)
        await locker.execute(
            "SELECT 1 FROM session_participants WHERE session_id = $1::uuid"
            " AND user_id = ANY($2::uuid[]) FOR UPDATE",
            session_id,
            [first.id, stuck.id],
        )
        one = await api.live(first)
        await one.join(room)  # a batch of its own, which waits for the lock
        await asyncio.sleep(0.2)
        two, three = await api.live(stuck), await api.live(fine)
        await asyncio.gather(two.join(room), three.join(room))  # batched: the hook is busy
        await asyncio.sleep(3.0)
    finally:
        await tx.rollback()
        await locker.close()
    joined = await written(db, session_id, "session_joined", 1)
    assert fine.id in joined, joined
