"""Two real nodes on a local three-shard Redis Cluster (REDIS_CLUSTER=true): room traffic
goes over sharded pub/sub, each room's channel on the shard that owns its slot, and the
cross-node guarantees hold there as on one Redis: one order without gaps or duplicates,
resume on the other node, presence counted per user across nodes."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest

from peerspark_rt import protocol
from peerspark_rt.client import LiveClient
from tests.faults import RedisClusterServers
from tests.helpers import Api, User, messages_from, open_session
from tests.nodes import Node, start_node

pytestmark = pytest.mark.multinode


def _redis_major() -> int:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except OSError:
        return 0
    found = re.search(r"v=(\d+)\.", out)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        pytest.skip("no redis-server/redis-cli: install Debian's redis-server package")
    if _redis_major() < 7:
        pytest.skip("sharded pub/sub needs redis-server 7 or later (Debian's redis-server)")
    try:
        servers = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"rc{secrets.token_hex(3)}:"


@pytest.fixture(scope="module")
def pair(
    cluster_env: dict[str, str], shards: RedisClusterServers, prefix: str
) -> Iterator[list[Node]]:
    env = {
        **cluster_env,
        "REDIS_URL": shards.url,
        "REDIS_CLUSTER": "true",
        "REDIS_KEY_PREFIX": prefix,
    }
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda _: start_node(env), range(2)))
    yield started
    for node in started:
        node.stop()


@pytest.fixture
async def apis(pair: list[Node]) -> AsyncIterator[list[Api]]:
    sessions = [aiohttp.ClientSession(base_url=n.url) for n in pair]
    made = [Api(s, ws_url=n.ws_url) for s, n in zip(sessions, pair, strict=True)]
    yield made
    for api in made:
        await api.aclose()
    for s in sessions:
        await s.close()


async def stored(db: Any, room: str) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT seq, content FROM session_messages WHERE session_id = $1::uuid ORDER BY seq",
        room.split(":")[1],
    )
    return [(r["seq"], r["content"]) for r in rows]


async def test_rooms_spread_over_shards_keep_one_order_across_nodes(
    apis: list[Api], db: Any, shards: RedisClusterServers, prefix: str
) -> None:
    users = [await apis[i % 2].register() for i in range(4)]
    # rooms until two of them live on different shards
    rooms: dict[int, str] = {}
    for _ in range(12):
        room = await open_session(apis[0], users[0], *users[1:])
        rooms.setdefault(shards.owner(f"{prefix}room:{room}"), room)
        if len(rooms) == 2:
            break
    assert len(rooms) == 2, "a dozen rooms, all on one shard"

    clients: list[tuple[str, list[LiveClient], list[LiveClient]]] = []
    for room in rooms.values():
        senders = [await apis[i % 2].live(users[i]) for i in range(4)]
        readers = [await apis[0].live(users[1]), await apis[1].live(users[2], binary=True)]
        for c in (*senders, *readers):
            await c.join(room)
        clients.append((room, senders, readers))
    # each room's channel is subscribed on its own shard, by both nodes
    for port, room in rooms.items():
        channel = f"{prefix}room:{room}"
        deadline = asyncio.get_running_loop().time() + 5
        while shards.shard_subscribers(port, channel) != 2:
            assert asyncio.get_running_loop().time() < deadline, f"{channel} on shard {port}"
            await asyncio.sleep(0.05)

    async def blast(room: str, client: LiveClient, who: int) -> None:
        for i in range(10):
            await client.send(room, f"{who}:{i}")

    await asyncio.gather(
        *(blast(room, c, i) for room, senders, _ in clients for i, c in enumerate(senders))
    )
    for room, _, readers in clients:
        expected = await stored(db, room)
        assert [seq for seq, _ in expected] == list(range(1, 41))
        for reader in readers:
            got = await messages_from(reader, 40)
            assert [(m.seq, m.body) for m in got] == expected
            with pytest.raises(TimeoutError):
                await messages_from(reader, 1, timeout=0.2)
    # ...carried by SPUBLISH on each room's own shard (never a cluster-wide PUBLISH)
    for port in rooms:
        assert shards.calls(port, "spublish") >= 40
    assert all(shards.calls(s.port, "publish") == 0 for s in shards.servers)
    for api in apis:
        assert "peerspark_redis_publish_dropped_total{" not in (await api.metrics()).body.decode()


async def test_resume_on_the_other_node(apis: list[Api], db: Any) -> None:
    writer, reader = await apis[0].register(), await apis[1].register()
    room = await open_session(apis[0], writer, reader)
    w = await apis[0].live(writer)
    await w.join(room)
    r = await apis[1].live(reader)
    await r.join(room)
    for i in range(3):
        await w.send(room, f"seen {i}")
    assert [m.seq for m in await messages_from(r, 3)] == [1, 2, 3]
    await r.close()
    for i in range(3, 20):
        await w.send(room, f"missed {i}")
    back = await apis[0].live(reader)
    assert (await back.join(room, since=3)).last_seq == 20
    await w.send(room, "live")
    got = await messages_from(back, 18)
    assert [(m.seq, m.body) for m in got] == (await stored(db, room))[3:]
    with pytest.raises(TimeoutError):
        await messages_from(back, 1, timeout=0.2)


async def presence_of(client: LiveClient, user: User, timeout: float) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await client.next(max(0.01, deadline - asyncio.get_running_loop().time()))
        if isinstance(frame, protocol.Presence) and frame.user_id == user.id:
            return frame.state


async def test_presence_across_nodes_on_a_redis_cluster(apis: list[Api]) -> None:
    watcher, student = await apis[1].register(), await apis[0].register()
    room = await open_session(apis[0], watcher, student)
    w = await apis[1].live(watcher)
    await w.join(room)
    phone, laptop = await apis[0].live(student), await apis[1].live(student)
    await phone.join(room)
    assert await presence_of(w, student, 5) == "join"
    joined = await laptop.join(room)
    assert student.id in {m.user_id for m in joined.presence}
    await phone.close()
    with pytest.raises(TimeoutError):  # one device left: still present
        await presence_of(w, student, 0.5)
    await laptop.close()
    assert await presence_of(w, student, 5) == "leave"
    health = await apis[0].health()
    assert health.body["services"]["redis"]["mode"] == "redis-cluster"
    assert health.body["services"]["redis"]["status"] == "healthy"


async def test_leaderboards_on_a_redis_cluster(apis: list[Api], db: Any) -> None:
    """Boards (a Lua read, pipelined writes over several slots) work on a cluster, and both
    nodes see the ranks the points ledger gives."""
    from tests.test_gamification_leaderboard import recomputed

    ann, bob = await apis[0].register(), await apis[1].register()
    for author, api, text in (
        (ann, apis[0], "Limits of sequences, worked through step by step"),
        (ann, apis[0], "Why does the harmonic series diverge? A picture"),
        (bob, apis[1], "Flashcards for organic chemistry reactions"),
    ):
        resp = await api.post("/api/posts", author, json={"content": text})
        assert resp.status == 201, resp.body
    params = {"timeframe": "all-time", "limit": "100"}
    for api in apis:
        body: dict[str, Any] = {}
        for _ in range(200):
            body = (await api.get("/api/leaderboard", ann, params=params)).body
            ranks = [(e["userId"], e["score"]) for e in body["entries"]]
            if body["source"] == "redis" and ranks == (await recomputed(db))[:100]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the board never matched the ledger: {body}")
        mine = [e for e in body["entries"] if e["userId"] == ann.id]
        assert mine
        assert mine[0]["score"] >= 20
