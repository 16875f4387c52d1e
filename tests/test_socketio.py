"""/socket.io/ with the official clients nobody here wrote: python-socketio's AsyncClient and
the npm socket.io-client (run by Node from tests/socketio_client/). The same user story as
the /ws tests: connect with a token, join, chat, typing, reconnect and resume exactly once,
refusals; on one node and across two real node processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from peerspark_rt import sio_protocol
from peerspark_rt.actors import connection as connection_module
from tests.helpers import Api, User, open_session
from tests.nodes import Node, start_node
from tests.sio_client import SioUser
from tests.social import join as join_pod
from tests.social import post as create_post

NODE_CLIENT = Path(__file__).parent / "socketio_client"


def base_url(api: Api) -> str:
    return api.ws_url.replace("ws://", "http://", 1).removesuffix("/ws")


# --- one node, in process ---------------------------------------------------------------------


async def test_refusals_bad_token_no_token_and_rooms_not_yours(api: Api) -> None:
    owner, stranger = await api.register(), await api.register()
    url = base_url(api)
    for token, code in [("nonsense", "invalid_token"), (None, "token_required")]:
        refused = SioUser(url, token)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect()
        assert refused.refusal["data"] == {"code": code}, refused.refusal
        assert "token" in refused.refusal["message"]
    private_pod = await api.create_pod(owner, isPublic=False)
    public_pod = await api.create_pod(owner)
    session = (await open_session(api, owner)).partition(":")[2]
    pod_session = (
        await open_session(api, owner, sessionType="pod", podId=private_pod["id"])
    ).partition(":")[2]
    client = await SioUser(url, stranger.token).connect()
    try:
        for event, payload, code in [
            ("session:join", session, "not_a_participant"),
            ("session:join", {"sessionId": pod_session}, "not_found"),
            ("pod:join", {"podId": public_pod["id"]}, "not_a_member"),
            ("session:join", {"since": 3}, "invalid_frame"),
            ("session:message", {"sessionId": session, "message": "hi"}, "not_joined"),
            ("session:dance", {}, "unknown_type"),
        ]:
            answer = await client.call(event, payload)
            assert answer["ok"] is False, (event, answer)
            assert answer["code"] == code, (event, answer)
        # the spec's form without a callback: the refusal is an `error` event
        await client.emit("session:join", session)
        error = await client.next("error")
        assert (error["code"], error["sessionId"]) == ("not_a_participant", session)
    finally:
        await client.close()
    # long-polling is refused with a reason (clients must ask for the websocket transport)
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{url}/socket.io/?EIO=4&transport=polling")
        assert resp.status == 422
        assert "websocket" in (await resp.json())["error"]["message"]


async def test_notifications_and_pod_feed_reach_socketio_clients(api: Api) -> None:
    owner, bob = await api.register(), await api.register()
    pod = await api.create_pod(owner)
    await join_pod(api, bob, pod)
    client = await SioUser(base_url(api), bob.token).connect()
    try:
        joined = await client.call("pod:join", {"podId": pod["id"]})
        assert joined["ok"] is True
        assert joined["podId"] == pod["id"]
        made = await create_post(api, owner, "Formula sheet for Friday", podId=pod["id"])
        new_post = await client.next("feed:new_post")
        assert (new_post["id"], new_post["content"]) == (made["id"], "Formula sheet for Friday")
        await api.post(f"/api/posts/{made['id']}/interactions", bob, json={"type": "like"})
        liked = await client.next("feed:post_interaction")
        assert (liked["postId"], liked["type"], liked["count"]) == (made["id"], "like", 1)
        # the user's own room is joined at connect: notification:new needs no join
        other = await api.create_pod(owner, isPublic=False)
        invite = await api.post(f"/api/pods/{other['id']}/invite", owner, json={"userId": bob.id})
        assert invite.status in (200, 201), invite.body
        note = await client.next("notification:new")
        assert note["type"] == "pod_invite"
        assert note["unreadCount"] >= 1
        assert note["isRead"] is False
    finally:
        await client.close()


async def test_the_admin_dashboard_streams_analytics_events_to_admins_only(
    make_client: Any, db: asyncpg.Connection
) -> None:
    """The spec's admin dashboard: `admin:join`, then `analytics:event` with the live
    counters; anyone but a platform admin is refused."""
    api: Api = await make_client(admin_dashboard_interval=0.2)
    boss, student = await api.register(), await api.register()
    await db.execute("UPDATE users SET role = 'admin' WHERE id = $1", uuid.UUID(boss.id))
    again = await api.post("/api/auth/login", json={"email": boss.email, "password": boss.password})
    boss.token = again.body["accessToken"]  # (the role rides in the token)
    nosy = await SioUser(base_url(api), student.token).connect()
    watch = await SioUser(base_url(api), boss.token).connect()
    try:
        refused = await nosy.call("admin:join", {})
        assert (refused["ok"], refused["code"]) == (False, "not_admin")
        joined = await watch.call("admin:join", {})
        assert joined["ok"] is True, joined
        await api.post("/api/posts", student, json={"content": "Live counters for admins"})
        for _ in range(50):
            counters = await watch.next("analytics:event")
            if counters["eventsPerMinute"].get("post_created", 0) >= 1:
                break
        else:
            raise AssertionError("the post never showed in the counters")
        assert counters["nodes"] == 1
        assert await nosy.quiet("analytics:event") == []
        left = await watch.call("admin:leave", {})
        assert left["ok"] is True
    finally:
        await nosy.close()
        await watch.close()


async def test_one_packet_per_message_for_every_socketio_member(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /ws sender, two Socket.IO readers: the room builds the message's Socket.IO packet
    once and both get it (encode once per format, as for /ws frames)."""
    built: list[bytes] = []
    original = sio_protocol.room_packet

    def counting(payload: bytes) -> bytes:
        packet = original(payload)
        if packet.startswith(b'42["session:message"'):
            built.append(packet)
        return packet

    monkeypatch.setattr(connection_module, "room_packet", counting)
    ann, bob, carl = await api.register(), await api.register(), await api.register()
    room = await open_session(api, ann, bob, carl)
    session = room.partition(":")[2]
    url = base_url(api)
    readers = [await SioUser(url, bob.token).connect(), await SioUser(url, carl.token).connect()]
    try:
        for reader in readers:
            assert (await reader.call("session:join", session))["ok"] is True
        writer = await api.live(ann)
        await writer.join(room)
        ack = await writer.send(room, "from /ws")
        for reader in readers:
            got = await reader.next("session:message")
            assert (got["seq"], got["message"], got["userId"]) == (ack.seq, "from /ws", ann.id)
        assert len(built) == 1
    finally:
        for reader in readers:
            await reader.close()


async def test_engineio_handshake_and_heartbeat(make_client: Any) -> None:
    """The open packet, CONNECT with the token, and Engine.IO's ping: answered it goes on,
    unanswered the connection is cut (a lost connection, as a missed /ws heartbeat)."""
    api = await make_client(ws_heartbeat=0.4)
    user = await api.register()
    url = base_url(api).replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        opened = await ws.receive_str(timeout=5)
        assert opened[0] == "0"
        handshake = json.loads(opened[1:])
        assert handshake["upgrades"] == []
        assert (handshake["pingInterval"], handshake["pingTimeout"]) == (400, 400)
        await ws.send_str("40" + json.dumps({"token": user.token}))
        connected = await ws.receive_str(timeout=5)
        assert connected.startswith("40")
        assert json.loads(connected[2:])["sid"]
        assert await ws.receive_str(timeout=2) == "2"
        await ws.send_str("3")
        assert await ws.receive_str(timeout=2) == "2"  # answered: still pinged, not cut
        closed = await ws.receive(timeout=3)  # not answered: cut
        assert closed.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def test_bad_packets_are_answered_and_ten_in_a_row_close_the_socket(api: Api) -> None:
    user = await api.register()
    url = base_url(api).replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.receive_str(timeout=5)
        await ws.send_str("40" + json.dumps({"token": user.token}))
        assert (await ws.receive_str(timeout=5)).startswith("40")
        bad = [
            ("42[", "bad_frame"),
            ('42{"session:join": 1}', "invalid_frame"),
            ('427["session:join"]', "invalid_frame"),
            ('42["session:message", {"message": "hi"}]', "invalid_frame"),
            ('42["session:join", {"sessionId": 5}]', "invalid_frame"),
            ('45-["session:join", {"_placeholder": true, "num": 0}]', "invalid_frame"),
            ("9", "bad_frame"),
            ('42["nope", {}]', "unknown_type"),
            ('42["typing:start", {"sessionId": "x"}]', "not_joined"),
        ]
        for packet, code in bad:
            await ws.send_str(packet)
            answer = await ws.receive_str(timeout=5)
            if answer.startswith("43"):  # the one with an acknowledgement id (7)
                assert answer.startswith("437["), answer
                body = json.loads(answer[3:])[0]
                assert (body["ok"], body["code"]) == (False, code), answer
            else:
                name, body = json.loads(answer[2:])
                assert (name, body["code"]) == ("error", code), answer
        await ws.send_bytes(b"\x00binary")
        assert json.loads((await ws.receive_str(timeout=5))[2:])[1]["code"] == "invalid_frame"
        closed = await ws.receive(timeout=5)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert closed.data == 4009


# --- the user story, on one node and on two ---------------------------------------------------


@pytest.fixture(scope="module")
def cluster_env(
    pg_dsn: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return {
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"sio{secrets.token_hex(4)}:",
        "JWT_SECRET": secrets.token_urlsafe(40),
        "JWT_REFRESH_SECRET": secrets.token_urlsafe(40),
        "AUTO_MIGRATE": "false",
        "PEERSPARK_DATA_DIR": str(tmp_path_factory.mktemp("sio-cluster")),
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="module")
def nodes(cluster_env: dict[str, str]) -> Iterator[list[Node]]:
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda _: start_node(cluster_env), range(2)))
    yield started
    for node in started:
        node.stop()


@pytest.fixture
async def apis(nodes: list[Node]) -> AsyncIterator[list[Api]]:
    sessions = [aiohttp.ClientSession(base_url=n.url) for n in nodes]
    yield [Api(s, ws_url=n.ws_url) for s, n in zip(sessions, nodes, strict=True)]
    for s in sessions:
        await s.close()


async def two_students(api: Api) -> tuple[User, User, str]:
    ann, bob = await api.register(), await api.register()
    room = await open_session(api, ann, bob)
    return ann, bob, room.partition(":")[2]


@pytest.mark.multinode
@pytest.mark.parametrize("spread", [1, 2], ids=["one-node", "two-nodes"])
async def test_python_client_story(apis: list[Api], spread: int) -> None:
    """Ann on node 1, Bob on node 1 or 2: join, chat, typing; Bob drops, Ann writes on, Bob
    comes back (to the other node) and resumes from his last seq: each message once."""
    ann, bob, session = await two_students(apis[0])
    ann_url, bob_url = base_url(apis[0]), base_url(apis[spread - 1])
    a = await SioUser(ann_url, ann.token).connect()
    b = await SioUser(bob_url, bob.token).connect()
    try:
        first = await a.call("session:join", session)
        assert (first["ok"], first["sessionId"], first["lastSeq"]) == (True, session, 0)
        second = await b.call("session:join", {"sessionId": session})
        assert second["ok"] is True
        arrived = await a.next("session:user_joined", userId=bob.id)
        assert (arrived["sessionId"], arrived["username"]) == (session, bob.username)

        sent = await a.call(
            "session:message", {"sessionId": session, "message": "Problem 3?", "type": "text"}
        )
        assert (sent["ok"], sent["seq"], sent["duplicate"]) == (True, 1, False)
        got = await b.next("session:message")
        assert {k: got[k] for k in ("sessionId", "seq", "id", "message", "type", "userId")} == {
            "sessionId": session,
            "seq": 1,
            "id": sent["id"],
            "message": "Problem 3?",
            "type": "text",
            "userId": ann.id,
        }
        mine = await a.next("session:message")  # the sender's own copy, as on /ws
        assert mine["seq"] == 1

        await b.emit("typing:start", {"sessionId": session, "userId": bob.id})
        typing = await a.next("typing:start")
        assert (typing["sessionId"], typing["userId"]) == (session, bob.id)
        await b.emit("typing:stop", {"sessionId": session, "userId": bob.id})
        assert (await a.next("typing:stop"))["userId"] == bob.id

        # a retry with the client's id is stored once
        retry = {"sessionId": session, "message": "once", "cid": "ann-7"}
        once, again = await a.call("session:message", retry), await a.call("session:message", retry)
        assert (once["seq"], again["seq"], again["duplicate"]) == (2, 2, True)
        assert (await b.next("session:message"))["seq"] == 2

        await b.close()
        for text in ("you missed this", "and this"):
            await a.call("session:message", {"sessionId": session, "message": text})
        b = await SioUser(ann_url, bob.token).connect()  # back, through the other node
        resumed = await b.call("session:join", {"sessionId": session, "since": 2})
        assert (resumed["ok"], resumed["lastSeq"]) == (True, 4)
        caught_up = [await b.next("session:message") for _ in range(2)]
        assert [(m["seq"], m["message"]) for m in caught_up] == [
            (3, "you missed this"),
            (4, "and this"),
        ]
        await a.call("session:message", {"sessionId": session, "message": "live again"})
        assert [m["seq"] for m in await b.quiet("session:message", 1.0)] == [5]
    finally:
        await a.close()
        await b.close()


# --- the Node client --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_client() -> Path:
    """socket.io-client installed by `npm ci` from the lock file (once per clone)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("the Node Socket.IO client needs node and npm on PATH (apt-get install npm)")
    modules = NODE_CLIENT / "node_modules"
    stamp = modules / ".package-lock.json"
    lock = NODE_CLIENT / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
            cwd=NODE_CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed in {NODE_CLIENT}:\n{done.stdout}{done.stderr}"
    return NODE_CLIENT


async def run_node(script: Path, config: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """Run a Node script with `config` as its argument; it prints one JSON object."""
    node = shutil.which("node")
    assert node is not None
    proc = await asyncio.create_subprocess_exec(
        node,
        str(script),
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode == 0, f"{script.name} failed:\n{out.decode()}\n{err.decode()}"
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


@pytest.mark.multinode
@pytest.mark.parametrize("spread", [1, 2], ids=["one-node", "two-nodes"])
async def test_node_client_story(apis: list[Api], node_client: Path, spread: int) -> None:
    ann, bob, session = await two_students(apis[0])
    stranger = await apis[0].register()
    secret = (await open_session(apis[0], ann)).partition(":")[2]
    seen = await run_node(
        node_client / "story.js",
        {
            "session": session,
            "secretSession": secret,
            "ann": {"url": base_url(apis[0]), "token": ann.token, "id": ann.id},
            "bob": {"url": base_url(apis[spread - 1]), "token": bob.token, "id": bob.id},
            "bobAgainUrl": base_url(apis[0]),
            "stranger": {"token": stranger.token},
        },
    )
    assert seen["badToken"] == {"message": "token is invalid", "code": "invalid_token"}
    assert seen["forbidden"] == {"ok": False, "code": "not_a_participant"}
    assert seen["annJoined"] == {"ok": True, "sessionId": session, "lastSeq": 0}
    assert seen["userJoined"] == {"sessionId": session, "userId": bob.id}
    assert seen["sent"] == {"ok": True, "seq": 1, "duplicate": False}
    assert seen["bobGot"] == {
        "sessionId": session,
        "seq": 1,
        "message": "Problem 3?",
        "type": "text",
        "userId": ann.id,
    }
    assert seen["typing"] == {"sessionId": session, "userId": bob.id}
    assert seen["resumed"] == {"ok": True, "lastSeq": 3}
    assert seen["caughtUp"] == [[2, "you missed this"], [3, "and this"]]
    assert seen["extra"] == 0
