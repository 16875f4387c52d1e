"""The guarantees across several real node processes sharing PostgreSQL and Redis: order
without gaps or duplicates, resume and retry on another node, presence across nodes (also when
a node is killed with SIGKILL), revocation everywhere, and a node dying mid-conversation."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from peerspark_rt import protocol
from peerspark_rt.client import LiveClient
from tests.helpers import Api, frame_of, messages_from, open_session, until_closed
from tests.nodes import Node, node_apis, start_node

pytestmark = pytest.mark.multinode


@pytest.fixture
async def apis(nodes: list[Node]) -> AsyncIterator[list[Api]]:
    async with node_apis(nodes) as made:
        yield made


async def presence_of(client: LiveClient, user_id: str, timeout: float) -> protocol.Presence:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await client.next(max(0.01, deadline - asyncio.get_running_loop().time()))
        if isinstance(frame, protocol.Presence) and frame.user_id == user_id:
            return frame


async def stored(db: Any, room: str) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT seq, content FROM session_messages WHERE session_id = $1::uuid ORDER BY seq",
        room.split(":")[1],
    )
    return [(r["seq"], r["content"]) for r in rows]


async def test_senders_on_different_nodes_are_seen_in_one_order(apis: list[Api], db: Any) -> None:
    users = [await apis[i % 3].register() for i in range(6)]
    room = await open_session(apis[0], users[0], *users[1:])
    senders = [await apis[i % 3].live(u) for i, u in enumerate(users)]
    readers = [await apis[i].live(users[i]) for i in range(3)]
    readers.append(await apis[2].live(users[5], binary=True))
    for c in [*senders, *readers]:
        await c.join(room)

    async def blast(client: LiveClient, who: int) -> None:
        for i in range(20):
            await client.send(room, f"{who}:{i}")

    await asyncio.gather(*(blast(c, i) for i, c in enumerate(senders)))
    expected = await stored(db, room)
    assert [seq for seq, _ in expected] == list(range(1, 121))
    for reader in readers:
        got = await messages_from(reader, 120)
        assert [(m.seq, m.body) for m in got] == expected
        with pytest.raises(TimeoutError):  # and nothing twice
            await messages_from(reader, 1, timeout=0.3)


async def test_resume_on_another_node(apis: list[Api], db: Any) -> None:
    writer, reader = await apis[0].register(), await apis[1].register()
    room = await open_session(apis[0], writer, reader)
    w = await apis[0].live(writer)
    await w.join(room)
    r = await apis[1].live(reader)
    await r.join(room)
    for i in range(5):
        await w.send(room, f"seen {i}")
    assert [m.seq for m in await messages_from(r, 5)] == [1, 2, 3, 4, 5]
    await r.close()
    for i in range(5, 40):
        await w.send(room, f"missed {i}")
    back = await apis[2].live(reader)
    joined = await back.join(room, since=5)
    assert joined.last_seq == 40
    for i in range(40, 45):
        await w.send(room, f"live {i}")
    got = await messages_from(back, 40)
    assert [(m.seq, m.body) for m in got] == (await stored(db, room))[5:]
    with pytest.raises(TimeoutError):
        await messages_from(back, 1, timeout=0.3)


async def test_a_retry_through_another_node_is_stored_once(apis: list[Api], db: Any) -> None:
    writer, reader = await apis[0].register(), await apis[2].register()
    room = await open_session(apis[0], writer, reader)
    r = await apis[2].live(reader)
    await r.join(room)
    first = await apis[0].live(writer)
    await first.join(room)
    ack1 = await first.send(room, "once", cid="same-id")
    second = await apis[1].live(writer)
    await second.join(room)
    ack2 = await second.send(room, "once", cid="same-id")
    assert (ack1.seq, ack1.id, ack1.duplicate) == (ack2.seq, ack2.id, False)
    assert ack2.duplicate is True
    assert [(m.seq, m.body) for m in await messages_from(r, 1)] == [(1, "once")]
    with pytest.raises(TimeoutError):
        await messages_from(r, 1, timeout=0.5)
    assert await stored(db, room) == [(1, "once")]


async def test_presence_across_nodes_counts_users_not_devices(apis: list[Api]) -> None:
    watcher, student = await apis[2].register(), await apis[0].register()
    room = await open_session(apis[0], watcher, student)
    w = await apis[2].live(watcher)
    await w.join(room)
    phone = await apis[0].live(student)
    laptop = await apis[1].live(student)
    await phone.join(room)
    assert (await presence_of(w, student.id, 5)).state == "join"
    joined = await laptop.join(room)
    assert student.id in {m.user_id for m in joined.presence}
    with pytest.raises(TimeoutError):  # the second device is not a second join
        await presence_of(w, student.id, 0.5)
    await phone.close()
    with pytest.raises(TimeoutError):  # one device left: still present
        await presence_of(w, student.id, 0.5)
    await laptop.close()
    assert (await presence_of(w, student.id, 5)).state == "leave"


async def test_logout_on_one_node_closes_sockets_on_others(apis: list[Api]) -> None:
    user = await apis[0].register()
    live = await apis[1].live(user, reconnect=False)
    await live.join(f"user:{user.id}")
    assert (await apis[2].post("/api/auth/logout", user)).status == 204
    await until_closed(live)
    assert live.close_code == protocol.CLOSE_SESSION_REVOKED


async def test_notifications_reach_every_device_on_every_node(apis: list[Api]) -> None:
    owner, guest = await apis[0].register(), await apis[1].register()
    pod = await apis[0].create_pod(owner, name="Cluster Pod")
    devices = [await apis[i].live(guest) for i in range(3)]
    for device in devices:
        await device.join(f"user:{guest.id}")
    await apis[0].post(f"/api/pods/{pod['id']}/invite", owner, json={"userId": guest.id})
    for device in devices:
        while True:
            frame = await device.next(5)
            if isinstance(frame, protocol.Notification):
                assert frame.type == "pod_invite"
                break


async def test_killed_node_mid_conversation(
    cluster_env: dict[str, str], apis: list[Api], db: Any
) -> None:
    """SIGKILL a node while its clients talk: they reconnect to other nodes, resume, retry
    their unacked sends, and every message is stored once and delivered once, in order, to a
    reader on a surviving node and to a reader who was on the dead node."""
    doomed = start_node(cluster_env)
    talker, listener, watcher = (
        await apis[0].register(),
        await apis[0].register(),
        await apis[1].register(),
    )
    room = await open_session(apis[0], talker, listener, watcher)
    w = await apis[1].live(watcher)
    await w.join(room)
    t = LiveClient(doomed.ws_url, talker.token, fallback_urls=(apis[0].ws_url,))
    far = LiveClient(doomed.ws_url, listener.token, fallback_urls=(apis[2].ws_url,))
    try:
        for client in (t, far):
            await client.connect()
            await client.join(room)

        async def talk() -> None:
            for i in range(60):
                await t.send(room, f"m{i}", cid=f"kill-{i}")
                if i == 20:
                    doomed.kill()

        await asyncio.wait_for(talk(), 60)
        texts = await stored(db, room)
        assert [body for _, body in texts] == [f"m{i}" for i in range(60)]
        assert [seq for seq, _ in texts] == list(range(1, 61))
        for client in (w, far):
            got = await messages_from(client, 60, timeout=30)
            assert [(m.seq, m.body) for m in got] == texts
    finally:
        await t.close()
        await far.close()
        doomed.kill()


async def test_killed_node_presence_expires(cluster_env: dict[str, str], apis: list[Api]) -> None:
    doomed = start_node(cluster_env)
    try:
        owner, ghost = await apis[0].register(), await apis[0].register()
        pod = await apis[0].create_pod(owner)
        await apis[0].post(f"/api/pods/{pod['id']}/join", ghost)
        room = f"pod:{pod['id']}"
        w = await apis[2].live(owner)
        await w.join(room)
        g = LiveClient(doomed.ws_url, ghost.token, reconnect=False)
        await g.connect()
        try:
            await g.join(room)
            assert (await presence_of(w, ghost.id, 5)).state == "join"
            doomed.kill()
            started = asyncio.get_running_loop().time()
            left = await presence_of(w, ghost.id, 10)
            assert left.state == "leave"
            assert asyncio.get_running_loop().time() - started < 8
        finally:
            await g.close()
    finally:
        doomed.kill()


async def test_graceful_stop_says_going_away(cluster_env: dict[str, str]) -> None:
    node = start_node(cluster_env)
    async with aiohttp.ClientSession(base_url=node.url) as session:
        api = Api(session, ws_url=node.ws_url)
        user = await api.register()
        live = await api.live(user, reconnect=False)
        await live.join(f"user:{user.id}")
        assert node.stop(signal.SIGTERM) == 0
        await until_closed(live)
        assert live.close_code == protocol.CLOSE_GOING_AWAY
        assert live.close_reason == protocol.RESTART_REASON == "restart: reconnect"
        await api.aclose()


async def test_a_focus_timer_is_the_same_on_every_node_and_outlives_its_node(
    cluster_env: dict[str, str], apis: list[Api], db: Any
) -> None:
    """The organizer starts a timer through a node that is then killed (SIGKILL): members on
    the other nodes see the same states, on time; a late joiner on a third node gets it in
    `joined`; the blocks of a member who stayed are counted once; the timer takes commands
    through any node."""
    doomed = start_node({**cluster_env, "FOCUS_MIN_SECONDS": "1"})
    host, member, late = [await apis[0].register() for _ in range(3)]
    room = await open_session(apis[0], host, member, late)
    m = await apis[1].live(member)
    await m.join(room)
    h = LiveClient(doomed.ws_url, host.token, reconnect=False)
    try:
        await h.connect()
        await h.join(room)
        await h.focus(room, "start", work=1, short_break=1, blocks=2)
        on_doomed = await frame_of(h, protocol.FocusUpdate, 5, reason="started")
        elsewhere = await frame_of(m, protocol.FocusUpdate, 5, reason="started")
        assert on_doomed == elsewhere
        doomed.kill()
        t0 = elsewhere.timer
        assert t0 is not None
        brk = await frame_of(m, protocol.FocusUpdate, 5, reason="phase")
        assert brk.timer is not None
        assert (brk.timer.phase, brk.timer.ends_at) == ("break", t0.ends_at + 1000)
        n = await apis[2].live(late)
        joined = await n.join(room)
        assert joined.focus == brk.timer  # the third node computed the same state
        work2 = [await frame_of(c, protocol.FocusUpdate, 5, reason="phase") for c in (m, n)]
        assert work2[0] == work2[1]
        assert work2[0].timer is not None
        assert (work2[0].timer.block, work2[0].timer.ends_at) == (2, t0.ends_at + 2000)
        done = [await frame_of(c, protocol.FocusUpdate, 5, reason="done") for c in (m, n)]
        assert done[0] == done[1]
        # the member stayed through both blocks (counted by the node their socket is on)
        for _ in range(100):
            keys = await db.fetch(
                """SELECT dedupe_key FROM analytics_events
                   WHERE user_id = $1::uuid AND event = 'focus_block_completed'""",
                member.id,
            )
            if len(keys) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(r["dedupe_key"] for r in keys) == [f"{t0.timer_id}:1", f"{t0.timer_id}:2"]
        # the timer takes commands through a surviving node (the host reconnects there)
        h2 = await apis[2].live(host)
        await h2.join(room)
        await h2.focus(room, "start", work=120, short_break=60, blocks=1)
        restarted = await frame_of(m, protocol.FocusUpdate, 5, reason="started")
        assert restarted.timer is not None
        assert restarted.timer.version == t0.version + 1
    finally:
        await h.close()
        doomed.kill()


async def test_the_admin_dashboard_counts_every_node(apis: list[Api], db: Any) -> None:
    """Events written on one node and sockets on another reach an admin watching on a third."""
    boss, student, idle = [await apis[0].register() for _ in range(3)]
    await db.execute("UPDATE users SET role = 'admin' WHERE id = $1::uuid", boss.id)
    login = await apis[1].post(
        "/api/auth/login", json={"email": boss.email, "password": boss.password}
    )
    boss.token = login.body["accessToken"]
    watch = await apis[1].live(boss)
    await watch.join("admin:dashboard")
    await apis[2].live(idle)  # a socket on the third node
    resp = await apis[0].post("/api/posts", student, json={"content": f"hi {secrets.token_hex(3)}"})
    assert resp.status == 201
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        frame = await frame_of(watch, protocol.Event, 5, kind="metrics")
        data = frame.data
        if data["eventsPerMinute"].get("post_created", 0) >= 1 and data["usersOnline"] >= 2:
            break
        assert asyncio.get_running_loop().time() < deadline, data
    assert data["nodes"] >= 3
