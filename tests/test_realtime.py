"""The live room on one node, over real websockets: handshake, authorization, delivery
guarantees, presence, typing, screen share, bad frames and slow readers."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import aiohttp
import orjson
import pytest

from peerspark_rt import protocol
from peerspark_rt.actors import room as room_module
from peerspark_rt.client import LiveClient, LiveError
from tests.helpers import Api, frame_of, messages_from, open_session, until_closed
from tests.wsraw import RawSocket

MISSING = "00000000-0000-0000-0000-000000000000"


# --- handshake -------------------------------------------------------------------------------


async def test_handshake_needs_a_valid_token_and_an_allowed_origin(api: Api) -> None:
    user = await api.register()
    async with aiohttp.ClientSession() as http:
        for url, headers, status in [
            (api.ws_url, {}, 401),
            (api.ws_url + "?token=nonsense", {}, 401),
            (
                api.ws_url,
                {"Authorization": f"Bearer {user.token}", "Origin": "https://evil.example"},
                403,
            ),
            (api.ws_url + "?format=xml", {"Authorization": f"Bearer {user.token}"}, 422),
        ]:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(url, headers=headers)
            assert info.value.status == status
        ok = await http.ws_connect(
            f"{api.ws_url}?token={user.token}", headers={"Origin": "http://localhost:3000"}
        )
        await ok.close()
    await api.post("/api/auth/logout", user)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(api.ws_url, headers={"Authorization": f"Bearer {user.token}"})
        assert info.value.status == 401


async def test_joining_checks_authorization(api: Api) -> None:
    owner, stranger = await api.register(), await api.register()
    public_pod = await api.create_pod(owner)
    private_pod = await api.create_pod(owner, isPublic=False)
    pod_session = await open_session(api, owner, sessionType="pod", podId=private_pod["id"])
    live = await api.live(stranger)
    for room, code in [
        (f"pod:{public_pod['id']}", "not_a_member"),
        (f"pod:{private_pod['id']}", "not_found"),
        (f"user:{owner.id}", "forbidden"),
        (pod_session, "not_found"),
        (f"session:{MISSING}", "not_found"),
        ("lobby", "validation_error"),
        ("pod:not-a-uuid", "not_found"),
    ]:
        with pytest.raises(LiveError) as info:
            await live.join(room)
        assert info.value.code == code, room
    joined = await live.join(f"user:{stranger.id}")
    assert joined.room == f"user:{stranger.id}"
    # a frame for a room the socket is not in is refused
    live = await api.live(stranger)
    await live.send_raw(
        orjson.dumps({"t": "typing", "room": f"pod:{public_pod['id']}", "state": "start"}).decode()
    )
    error = await frame_of(live, protocol.Error)
    assert error.code == "not_joined"


# --- delivery guarantees ---------------------------------------------------------------------


async def test_ack_only_after_the_message_is_stored(api: Api, pg_dsn: str) -> None:
    organizer = await api.register()
    room = await open_session(api, organizer)
    live = await api.live(organizer)
    await live.join(room)
    import asyncpg

    blocker = await asyncpg.connect(pg_dsn)
    try:
        tx = blocker.transaction()
        await tx.start()
        # Hold the room's sequence row: storing must wait, and so must the ack.
        await blocker.execute(
            "SELECT 1 FROM session_seqs WHERE session_id = $1::uuid FOR UPDATE",
            room.split(":")[1],
        )
        sending = asyncio.ensure_future(live.send(room, "wait for it"))
        await asyncio.sleep(0.5)
        assert not sending.done()
        stored = await blocker.fetchval(
            "SELECT count(*) FROM session_messages WHERE session_id = $1::uuid", room.split(":")[1]
        )
        assert stored == 0
        await tx.rollback()
        ack = await asyncio.wait_for(sending, 5)
        row = await blocker.fetchrow(
            "SELECT seq, content FROM session_messages WHERE id = $1::uuid", ack.id
        )
        assert row is not None
        assert (row["seq"], row["content"]) == (ack.seq, "wait for it")
    finally:
        await blocker.close()


async def test_concurrent_senders_are_delivered_in_order_once(api: Api, db: Any) -> None:
    people = [await api.register() for _ in range(4)]
    room = await open_session(api, people[0], *people[1:])
    clients = [await api.live(p) for p in people]
    binary = await api.live(people[1], binary=True)
    for c in [*clients, binary]:
        await c.join(room)

    async def blast(client: LiveClient, who: int) -> None:
        for i in range(25):
            await client.send(room, f"{who}:{i}")

    await asyncio.gather(*(blast(c, i) for i, c in enumerate(clients)))
    expected = await db.fetch(
        "SELECT seq, content FROM session_messages WHERE session_id = $1::uuid ORDER BY seq",
        room.split(":")[1],
    )
    assert [r["seq"] for r in expected] == list(range(1, 101))
    for receiver in [*clients, binary]:
        got = await messages_from(receiver, 100)
        assert [(m.seq, m.body) for m in got] == [(r["seq"], r["content"]) for r in expected]
    # each sender's own messages kept their order
    for who in range(4):
        mine = [r["content"] for r in expected if r["content"].startswith(f"{who}:")]
        assert mine == [f"{who}:{i}" for i in range(25)]


async def test_retried_send_is_stored_and_delivered_once(api: Api, db: Any) -> None:
    sender, reader = await api.register(), await api.register()
    room = await open_session(api, sender, reader)
    a, b = await api.live(sender), await api.live(reader)
    await a.join(room)
    await b.join(room)
    first = await a.send(room, "exactly once", cid="retry-1")
    second = await a.send(room, "exactly once", cid="retry-1")
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.seq == second.seq
    assert first.id == second.id
    await a.send(room, "next", cid="retry-2")
    got = await messages_from(b, 2)
    assert [(m.seq, m.body, m.cid) for m in got] == [
        (1, "exactly once", "retry-1"),
        (2, "next", "retry-2"),
    ]
    await b.ping()  # anything still in flight has arrived by now
    with pytest.raises(TimeoutError):
        await frame_of(b, protocol.Message, timeout=0.3)
    count = await db.fetchval(
        "SELECT count(*) FROM session_messages WHERE session_id = $1::uuid", room.split(":")[1]
    )
    assert count == 2


@pytest.mark.parametrize("recent", [1024, 3], ids=["from-memory", "from-store"])
async def test_resume_delivers_every_missed_message_exactly_once(
    api: Api, monkeypatch: pytest.MonkeyPatch, recent: int
) -> None:
    monkeypatch.setattr(room_module, "RECENT", recent)
    sender, reader = await api.register(), await api.register()
    room = await open_session(api, sender, reader)
    a = await api.live(sender)
    await a.join(room)
    b = await api.live(reader)
    await b.join(room)
    for i in range(1, 4):
        await a.send(room, f"before {i}")
    assert [m.seq for m in await messages_from(b, 3)] == [1, 2, 3]
    await b.close()
    for i in range(4, 12):
        await a.send(room, f"missed {i}")
    again = await api.live(reader)
    joined = await again.join(room, since=3)
    assert joined.last_seq == 11
    for i in range(12, 15):
        await a.send(room, f"after {i}")
    got = await messages_from(again, 11)
    assert [m.seq for m in got] == list(range(4, 15))
    assert got[0].body == "missed 4"
    assert got[-1].body == "after 14"
    with pytest.raises(TimeoutError):
        await frame_of(again, protocol.Message, timeout=0.3)


async def test_resume_too_far_back_is_an_explicit_error(make_client: Any) -> None:
    api = await make_client(ws_max_resume=2)
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    for i in range(5):
        await live.send(room, f"m{i}")
    other = await api.live(user)
    await other.join(room, since=0)
    error = await frame_of(other, protocol.Error)
    assert error.code == "resume_too_old"
    assert error.room == room


async def test_messages_to_a_closed_session_are_refused(api: Api) -> None:
    organizer = await api.register()
    room = await open_session(api, organizer)
    live = await api.live(organizer)
    await live.join(room)
    await api.post(f"/api/sessions/{room[8:]}/start", organizer)
    await api.post(f"/api/sessions/{room[8:]}/end", organizer)
    with pytest.raises(LiveError) as info:
        await live.send(room, "too late")
    assert info.value.code == "session_closed"


async def test_message_validation(api: Api) -> None:
    organizer, student = await api.register(), await api.register()
    room = await open_session(api, organizer, student)
    live = await api.live(student)
    await live.join(room)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"body": "   "}, "validation_error"),
        ({"body": "x" * (protocol.MAX_BODY_CHARS + 1)}, "validation_error"),
        ({"body": "see file", "kind": "file"}, "validation_error"),
        ({"body": "system says", "kind": "system"}, "validation_error"),
        ({"body": "x", "cid": "c" * 65}, "validation_error"),
    ]
    for kwargs, code in cases:
        body = kwargs.pop("body")
        with pytest.raises(LiveError) as info:
            await live.send(room, body, **kwargs)
        assert info.value.code == code
    ack = await live.send(room, "notes", kind="file", file_url="https://files.example/notes.pdf")
    assert ack.seq == 1


# --- presence, typing, screen share ----------------------------------------------------------


async def test_presence_counts_users_not_sockets(api: Api) -> None:
    watcher, student = await api.register(), await api.register()
    room = await open_session(api, watcher, student)
    w = await api.live(watcher)
    await w.join(room)
    phone, laptop = await api.live(student), await api.live(student)
    joined = await phone.join(room)
    assert student.id in {m.user_id for m in joined.presence}
    await laptop.join(room)
    first = await frame_of(w, protocol.Presence, user_id=student.id)
    assert first.state == "join"
    await phone.close()
    with pytest.raises(TimeoutError):
        await frame_of(w, protocol.Presence, timeout=0.5, user_id=student.id)
    await laptop.close()
    gone = await frame_of(w, protocol.Presence, user_id=student.id)
    assert gone.state == "leave"


async def test_typing_expires_by_itself(make_client: Any) -> None:
    api = await make_client(typing_timeout=0.6)
    a, b = await api.register(), await api.register()
    room = await open_session(api, a, b)
    ca, cb = await api.live(a), await api.live(b)
    await ca.join(room)
    await cb.join(room)
    await ca.typing(room, "start")
    started = await frame_of(cb, protocol.TypingEvent, user_id=a.id)
    assert started.state == "start"
    began = asyncio.get_running_loop().time()
    stopped = await frame_of(cb, protocol.TypingEvent, user_id=a.id)
    assert stopped.state == "stop"
    assert 0.4 < asyncio.get_running_loop().time() - began < 2.0
    # an explicit stop arrives at once
    await ca.typing(room, "start")
    await frame_of(cb, protocol.TypingEvent, user_id=a.id, state="start")
    await ca.typing(room, "stop")
    stop = await frame_of(cb, protocol.TypingEvent, user_id=a.id, timeout=0.3)
    assert stop.state == "stop"


async def test_screen_share_state(api: Api) -> None:
    presenter, viewer = await api.register(), await api.register()
    room = await open_session(api, presenter, viewer)
    p = await api.live(presenter)
    await p.join(room)
    await p.screen_share(room, True, stream_id="stream-42")
    v = await api.live(viewer)
    joined = await v.join(room)
    assert [(s.user_id, s.stream_id) for s in joined.screen_shares] == [(presenter.id, "stream-42")]
    await p.screen_share(room, False)
    stop = await frame_of(v, protocol.ScreenShareEvent)
    assert (stop.user_id, stop.sharing) == (presenter.id, False)
    # leaving ends a share
    await p.screen_share(room, True)
    await frame_of(v, protocol.ScreenShareEvent, sharing=True)
    await p.close()
    ended = await frame_of(v, protocol.ScreenShareEvent)
    assert (ended.user_id, ended.sharing) == (presenter.id, False)


async def test_screen_share_respects_the_feature_flag(make_client: Any) -> None:
    api = await make_client(enable_video_calls=False)
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    await live.screen_share(room, True)
    error = await frame_of(live, protocol.Error)
    assert error.code == "feature_disabled"


# --- bad input -------------------------------------------------------------------------------


async def test_bad_frames_get_errors_and_nobody_else_notices(make_client: Any) -> None:
    api = await make_client(ws_max_message_bytes=4096)
    a, b = await api.register(), await api.register()
    room = await open_session(api, a, b)
    bad, good = await api.live(a, reconnect=False), await api.live(b)
    await bad.join(room)
    await good.join(room)
    for raw, code, needle in [
        ("{not json", "bad_frame", "JSON"),
        ('{"t": "dance", "room": "x"}', "unknown_type", "dance"),
        ('{"t": "send", "room": "x"}', "invalid_frame", "cid"),
        ('{"t": "join"}', "invalid_frame", "room"),
        (b"\xc1\xc1", "bad_frame", "MessagePack"),
    ]:
        await bad.send_raw(raw)
        error = await frame_of(bad, protocol.Error)
        assert error.code == code
        assert needle in error.message
    assert (await bad.send(room, "still here")).seq == 1
    # an oversize frame closes that socket with 1009; the other one carries on
    await bad.send_raw("x" * 5000)
    await until_closed(bad)
    assert bad.close_code == 1009
    ack = await (await api.live(a)).join(room)
    assert ack.last_seq == 1
    got = await messages_from(good, 1)
    assert got[0].body == "still here"


async def test_too_many_bad_frames_close_the_socket(api: Api) -> None:
    user = await api.register()
    live = await api.live(user, reconnect=False)
    for _ in range(10):
        await live.send_raw("][")
    await until_closed(live)
    assert live.close_code == protocol.CLOSE_TOO_MANY_ERRORS


async def test_send_rate_is_limited_per_socket(make_client: Any) -> None:
    api = await make_client(ws_send_rate=1, ws_send_burst=3)
    user = await api.register()
    room = await open_session(api, user)
    live = await api.live(user)
    await live.join(room)
    for i in range(3):
        await live.send(room, f"ok {i}")
    with pytest.raises(LiveError) as info:
        await live.send(room, "too fast")
    assert info.value.code == "rate_limited"


async def test_a_slow_reader_is_resynced_then_dropped_without_slowing_the_room(
    make_client: Any,
) -> None:
    api = await make_client(ws_outbound_bytes=16 * 1024, ws_send_rate=10_000, ws_send_burst=10_000)
    sender, slow_user, fast_user = await api.register(), await api.register(), await api.register()
    room = await open_session(api, sender, slow_user, fast_user)
    host, port = api.client.host, api.client.port
    slow = await asyncio.to_thread(
        RawSocket, host, port, f"/ws?token={slow_user.token}", rcvbuf=4096
    )
    assert slow.status == 101
    slow.send_json({"t": "join", "room": room})
    opcode, payload = await asyncio.to_thread(slow.read_frame)
    assert orjson.loads(payload)["t"] == "joined"
    fast = await api.live(fast_user)
    await fast.join(room)
    s = await api.live(sender)
    await s.join(room)

    # ~7 MB: more than the kernel buffers between server and client can hold
    body = "x" * 7900
    started = asyncio.get_running_loop().time()
    for i in range(900):
        await s.send(room, f"{i}:{body}")
    got = await messages_from(fast, 900, timeout=30)
    assert [m.seq for m in got] == list(range(1, 901))
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 30

    # The slow socket: told to resync, then closed with 4008; it read nothing for longer than
    # a close may take, so the connection may also have been cut after the close frame.
    kinds: list[str] = []
    close_code = None
    slow.sock.settimeout(20)
    while True:
        try:
            opcode, payload = await asyncio.to_thread(slow.read_frame)
        except (ConnectionError, TimeoutError, OSError):
            break
        if opcode == 8:
            close_code = struct.unpack("!H", payload[:2])[0]
            break
        kinds.append(orjson.loads(payload)["t"])
    slow.close()
    assert close_code in (protocol.CLOSE_SLOW_CONSUMER, None)
    assert kinds.count("message") < 900


# --- membership changes ----------------------------------------------------------------------


async def test_logout_closes_the_sessions_sockets(api: Api) -> None:
    user = await api.register()
    other_login = await api.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    live = await api.live(user, reconnect=False)
    other = LiveClient(api.ws_url, other_login.body["accessToken"], reconnect=False)
    await other.connect()
    try:
        await api.post("/api/auth/logout", user)
        await until_closed(live)
        assert live.close_code == protocol.CLOSE_SESSION_REVOKED
        assert await other.ping() < 5  # the other login's socket stays
    finally:
        await other.close()


async def test_leaving_a_pod_removes_you_from_its_room(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await api.post(f"/api/pods/{pod['id']}/join", member)
    live = await api.live(member)
    await live.join(f"pod:{pod['id']}")
    await api.delete(f"/api/pods/{pod['id']}/leave", member)
    left = await frame_of(live, protocol.Left)
    assert left.room == f"pod:{pod['id']}"
    error = await frame_of(live, protocol.Error)
    assert error.code == "removed"
    with pytest.raises(LiveError):
        await live.join(f"pod:{pod['id']}")


async def test_ack_frames_record_how_far_a_participant_read(api: Api, db: Any) -> None:
    writer, reader = await api.register(), await api.register()
    room = await open_session(api, writer, reader)
    w, r = await api.live(writer), await api.live(reader)
    await w.join(room)
    await r.join(room)
    for i in range(5):
        await w.send(room, f"m{i}")
    await messages_from(r, 5)
    await r.ack(room, 3)
    await r.leave(room)
    for _ in range(50):
        seq = await db.fetchval(
            "SELECT last_read_seq FROM session_participants"
            " WHERE session_id = $1::uuid AND user_id = $2::uuid",
            room[8:],
            reader.id,
        )
        if seq == 3:
            break
        await asyncio.sleep(0.05)
    assert seq == 3
    info = await api.get(f"/api/sessions/{room[8:]}", reader)
    assert info.body["unreadCount"] == 2


async def test_ping_pong(api: Api) -> None:
    user = await api.register()
    live = await api.live(user)
    assert await live.ping() < 1


async def test_rooms_stop_when_empty_and_nodes_subscribe_only_to_their_rooms(
    make_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.asyncio import Redis

    from peerspark_rt.actors.hub import HUB
    from peerspark_rt.config import SETTINGS

    monkeypatch.setattr(room_module, "LINGER", 0.2)
    api = await make_client(redis_url=redis_url)
    user = await api.register()
    room = await open_session(api, user)
    channel = f"{api.app[SETTINGS].redis_key_prefix}room:{room}".encode()
    redis = Redis.from_url(redis_url)
    try:
        assert channel not in await redis.pubsub_channels()
        live = await api.live(user)
        await live.join(room)
        assert room in api.app[HUB].rooms
        assert channel in await redis.pubsub_channels()
        await live.leave(room)
        for _ in range(100):
            if room not in api.app[HUB].rooms and channel not in await redis.pubsub_channels():
                break
            await asyncio.sleep(0.05)
        assert room not in api.app[HUB].rooms
        assert channel not in await redis.pubsub_channels()
        # and it comes back on the next join, with its sequence intact
        await live.join(room)
        assert (await live.send(room, "after a restart of the room")).seq == 1
    finally:
        await redis.aclose()


async def test_a_client_ahead_of_the_node_it_resumes_on_gets_nothing_twice(
    make_client: Any, redis_url: str
) -> None:
    """A client saw message N on a node that then died before telling the others (its
    publication never left). It resumes on a node whose room has not learned of N yet: that
    room brings N in later (here: the gap it sees when the next message is stored), and the
    client must not get N a second time. (The two nodes use different key prefixes: they
    share the store but never hear each other, and B checks positions only hourly.)"""
    keys = {"jwt_secret": "a" * 40, "jwt_refresh_secret": "r" * 40, "redis_url": redis_url}
    node_a = await make_client(**keys)
    node_b = await make_client(**keys, position_check_interval=3600)
    writer, watcher, mover = [await node_a.register() for _ in range(3)]
    room = await open_session(node_a, writer, watcher, mover)
    on_b = await node_b.live(watcher)
    await on_b.join(room)
    w = await node_a.live(writer)
    await w.join(room)
    here = await node_a.live(mover)
    await here.join(room)
    await w.send(room, "one")
    assert [m.seq for m in await messages_from(here, 1)] == [1]
    await here.close()

    there = await node_b.live(mover)
    joined = await there.join(room, since=1)
    assert joined.last_seq == 0  # B has not heard of message 1
    await on_b.send(room, "two")
    assert [m.body for m in await messages_from(on_b, 2)] == ["one", "two"]
    assert [(m.seq, m.body) for m in await messages_from(there, 1)] == [(2, "two")]
    assert there.duplicates == 0
