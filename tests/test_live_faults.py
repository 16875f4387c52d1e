"""The live core's promises when Redis stalls or dies, across two real nodes sharing
PostgreSQL and a Redis of this test's own (paused with SIGSTOP, killed and restarted), and
what a node does with sockets that stop reading."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peerspark_rt import protocol
from peerspark_rt.client import LiveError
from tests.faults import RedisServer
from tests.helpers import Api, messages_from, open_session
from tests.nodes import Node, node_apis, node_env, start_node, start_nodes
from tests.wsraw import RawSocket

pytestmark = pytest.mark.multinode


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path_factory.mktemp("own-redis")).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pair(
    pg_dsn: str, own_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Node]]:
    nodes = start_nodes(node_env(pg_dsn, tmp_path_factory.mktemp("faults"), own_redis.url), 2)
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture
async def apis(pair: list[Node]) -> AsyncIterator[list[Api]]:
    async with node_apis(pair) as made:
        yield made


class Timeline:
    """When each message body arrived at one client."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.seqs: list[int] = []
        self.typing: list[str] = []  # user ids seen starting to type

    def __call__(self, frame: protocol.ServerFrame) -> None:
        if isinstance(frame, protocol.Message):
            self.arrived[frame.body] = time.monotonic()
            self.seqs.append(frame.seq)
        elif isinstance(frame, protocol.TypingEvent) and frame.state == "start":
            self.typing.append(frame.user_id)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        await asyncio.sleep(0.05)


async def test_a_stalled_redis_freezes_no_room(apis: list[Api], own_redis: RedisServer) -> None:
    """Redis connected but not answering for 3 s while two nodes chat, type and join: members
    on the sender's node keep receiving at the same pace, acks keep coming, a newcomer gets in,
    and the other node has every message, once and in order, soon after."""
    a, b = apis
    sender, near, far, newcomer = [await a.register() for _ in range(4)]
    room = await open_session(a, sender, near, far, newcomer)
    s = await a.live(sender)
    await s.join(room)
    near_seen, far_seen = Timeline(), Timeline()
    n = await a.live(near, on_frame=near_seen)
    await n.join(room)
    f = await b.live(far, on_frame=far_seen)
    await f.join(room)
    sent: dict[str, float] = {}
    acks: dict[str, list[float]] = {"before": [], "stall": []}

    async def talk(phase: str, count: int) -> None:
        for i in range(count):
            body = f"{phase} {i}"
            started = time.monotonic()
            sent[body] = started
            await asyncio.wait_for(s.send(room, body), 5)
            acks.setdefault(phase, []).append(time.monotonic() - started)
            await asyncio.sleep(0.02)

    await talk("before", 20)
    own_redis.pause()
    try:
        stall_started = time.monotonic()
        await s.typing(room, "start")
        await wait_for(lambda: sender.id in near_seen.typing, 1, "typing reaches the room")
        joiner = await a.live(newcomer)
        started = time.monotonic()
        joined = await joiner.join(room, timeout=2)
        assert time.monotonic() - started < 1
        assert joined.last_seq >= 20
        await talk("stall", 60)
        assert time.monotonic() - stall_started < 3, "the stall should outlast the talk"
        await asyncio.sleep(max(0.0, 3 - (time.monotonic() - stall_started)))
    finally:
        own_redis.resume()
    await talk("after", 10)
    bodies = [f"before {i}" for i in range(20)] + [f"stall {i}" for i in range(60)]
    bodies += [f"after {i}" for i in range(10)]
    await wait_for(lambda: len(near_seen.seqs) == 90, 5, "the near member has everything")
    assert near_seen.seqs == list(range(1, 91))
    lag = {ph: [near_seen.arrived[x] - sent[x] for x in bodies if x.startswith(ph)] for ph in acks}
    # (the stall lasts 3 s: a send or delivery that waited for Redis would take as long; the
    # bounds leave room for a busy test machine, the figures are the bench's to show)
    assert p99(acks["stall"]) < 1.5, acks["stall"]
    assert p99(lag["stall"]) < max(1.5, 5 * p99(lag["before"])), lag["stall"]
    # the other node: all of it, once, in order, within a bounded time after Redis is back
    await wait_for(lambda: len(far_seen.seqs) >= 90, 5, "the far member catches up")
    assert far_seen.seqs == list(range(1, 91))
    await f.ping()
    assert f.duplicates == 0
    assert len(far_seen.seqs) == 90


async def test_a_burst_from_one_socket_reaches_the_other_node_whole(apis: list[Api]) -> None:
    """One socket sends hundreds of messages back to back (more than the Redis connection
    pool has connections): every one reaches the other node."""
    a, b = apis
    writer, reader = await a.register(), await b.register()
    room = await open_session(a, writer, reader)
    r = await b.live(reader)
    await r.join(room)
    w = await a.live(writer)
    await w.join(room)
    await asyncio.gather(*(w.send(room, f"burst {i}") for i in range(300)))
    got = await messages_from(r, 300, timeout=10)
    assert [m.seq for m in got] == list(range(1, 301))


async def test_redis_dying_loses_nothing_and_guesses_nothing(
    apis: list[Api], own_redis: RedisServer
) -> None:
    """Redis killed: messages acked meanwhile still reach the other node (from the store,
    within a bounded time, though nobody speaks again); logins keep their limits (in this
    node's memory, as /health says); a room whose presence cannot be read holds joins rather
    than say nobody is there. Redis back: everything goes through it again."""
    a, b = apis
    talker, listener, owner = await a.register(), await b.register(), await b.register()
    room = await open_session(a, talker, listener)
    pod = await b.create_pod(owner)
    pod_room = f"pod:{pod['id']}"
    assert (await a.post(f"/api/pods/{pod['id']}/join", talker)).status in (200, 201)
    present = await b.live(owner)
    await present.join(pod_room)
    t = await a.live(talker)
    await t.join(room)
    r = await b.live(listener)
    await r.join(room)
    await t.send(room, "warm")
    await messages_from(r, 1)

    own_redis.kill()
    try:
        for i in range(10):
            await asyncio.wait_for(t.send(room, f"outage {i}"), 5)
        got = await messages_from(r, 10, timeout=4)
        assert [m.body for m in got] == [f"outage {i}" for i in range(10)]
        # logins are still limited, not failed
        resp = await a.post(
            "/api/auth/login", json={"email": talker.email, "password": "Wrong-pass-99"}
        )
        assert resp.status == 401, resp.body
        health = (await a.health()).body
        assert health["services"]["redis"]["status"] == "unhealthy"
        assert health["status"] == "healthy"  # the node still serves its users
        # a room on node A that has never been entered: who is present is unknown
        fresh = await a.live(talker)
        with pytest.raises(LiveError) as info:
            await fresh.join(pod_room, timeout=5)
        assert info.value.code == "unavailable"
    finally:
        own_redis.start()
    joined = None
    for _ in range(50):
        try:
            joined = await fresh.join(pod_room, timeout=5)
            if owner.id in {m.user_id for m in joined.presence}:
                break
        except LiveError as exc:
            if exc.code != "unavailable":
                raise
        await asyncio.sleep(0.2)
    assert joined is not None
    assert owner.id in {m.user_id for m in joined.presence}
    await t.send(room, "back")
    assert [m.body for m in await messages_from(r, 1, timeout=5)] == ["back"]
    await r.ping()
    assert r.duplicates == 0
    for _ in range(50):
        health = (await a.health()).body["services"]["redis"]
        if health["status"] == "healthy" and health["rateLimits"] == "redis":
            break
        await a.post("/api/auth/login", json={"email": talker.email, "password": "Wrong-pass-99"})
        await asyncio.sleep(0.2)
    assert health["status"] == "healthy", health
    assert health["subscriptionsPending"] == 0, health


# --- sockets that stop reading ------------------------------------------------------------


def established(port: int) -> set[int]:
    """Local ports of the clients connected to `port` (from the kernel's table)."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(m.group(1)) for m in re.finditer(r"127\.0\.0\.1:(\d+)\s*$", out, re.M)}


async def gauge(api: Api, name: str) -> float:
    text = (await api.metrics()).body.decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


@pytest.fixture
async def lone_node(pg_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Api]]:
    node = start_node(node_env(pg_dsn, tmp_path))
    async with aiohttp.ClientSession(base_url=node.url) as session:
        api = Api(session, ws_url=node.ws_url)
        try:
            yield node, api
        finally:
            await api.aclose()
            node.kill()


async def test_a_socket_that_stops_reading_is_cut(lone_node: tuple[Node, Api]) -> None:
    node, api = lone_node
    sender, stuck_user = await api.register(), await api.register()
    room = await open_session(api, sender, stuck_user)
    s = await api.live(sender)
    await s.join(room)
    baseline_rss = await gauge(api, "process_resident_memory_bytes")
    stuck = await asyncio.to_thread(
        RawSocket, node.host, node.port, f"/ws?token={stuck_user.token}", rcvbuf=4096
    )
    stuck.send_json({"t": "join", "room": room})
    stuck_port = stuck.sock.getsockname()[1]
    assert stuck_port in established(node.port)
    assert await gauge(api, "peerspark_ws_connections") == 2
    body = "x" * 7900
    for start in range(0, 1200, 100):  # ~9.5 MB for a socket that reads nothing
        await asyncio.gather(*(s.send(room, f"{i}:{body}") for i in range(start, start + 100)))
    started = time.monotonic()
    while await gauge(api, "peerspark_ws_connections") != 1 or stuck_port in established(node.port):
        assert time.monotonic() - started < 15, "the stuck socket is still there"
        await asyncio.sleep(0.2)
    rss = await gauge(api, "process_resident_memory_bytes")
    assert rss - baseline_rss < 40 * 1024 * 1024, (baseline_rss, rss)
    stuck.close()
    assert await s.ping() < 2  # and the room carried on


async def test_shutdown_closes_every_socket_within_a_deadline(
    pg_dsn: str, own_redis: RedisServer, tmp_path: Path
) -> None:
    """SIGTERM while Redis does not answer, with sockets in rooms: every socket is closed at
    once, every wait has a deadline, and the node exits promptly."""
    node = start_node(node_env(pg_dsn, tmp_path, own_redis.url))
    try:
        async with aiohttp.ClientSession(base_url=node.url) as session:
            api = Api(session, ws_url=node.ws_url)
            owner = await api.register()
            pod = await api.create_pod(owner)
            users = [await api.register() for _ in range(4)]
            for user in users:
                await api.post(f"/api/pods/{pod['id']}/join", user)
            for user in users:
                live = await api.live(user, reconnect=False)
                await live.join(f"pod:{pod['id']}")
            own_redis.pause()
            try:
                started = time.monotonic()
                node.proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(node.proc.wait, 60)
                elapsed = time.monotonic() - started
            finally:
                own_redis.resume()
            await api.aclose()
        assert code == 0
        assert elapsed < 8, f"took {elapsed:.1f}s"
    finally:
        node.kill()
