"""Three real nodes behind Debian's nginx running the repository's own config/nginx.conf
(tests/lb.py renders it with this test's ports): the user story through the balancer, a node
killed with SIGKILL under two browsers' sockets, and a rolling restart of every node under
steady chat. Skipped, saying why, where nginx is not installed.

nginx's ip_hash keys on the first three octets of the client's address, so each "browser"
here is an aiohttp session bound to its own 127.0.N.1: browsers land on different nodes and
each stays on its own (sticky), as people behind different networks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from peerspark_rt import protocol
from peerspark_rt.client import LiveClient
from tests.helpers import METRICS_TOKEN, Api, User, messages_from, open_session
from tests.lb import Nginx
from tests.nodes import Node

pytestmark = pytest.mark.multinode

# What the rolling restart measured, for pytest's summary (see conftest).


@dataclass
class Browser:
    """One person's browser: its own source address, REST through nginx, sockets through
    nginx on the same connections' address."""

    address: str
    session: aiohttp.ClientSession
    api: Api
    node_id: str = ""
    index: int = 0  # the upstream (and `nodes` entry) nginx sends this browser to
    sockets: list[LiveClient] = field(default_factory=list)

    async def live(self, user: User) -> LiveClient:
        client = await self.api.live(user, session=self.session)
        self.sockets.append(client)
        return client

    async def node(self) -> str:
        resp = await self.api.get("/health", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert resp.status == 200, resp.body
        node: str = resp.body["node"]
        return node


def open_browser(lb: Nginx, address: str) -> Browser:
    session = aiohttp.ClientSession(
        base_url=lb.url, connector=aiohttp.TCPConnector(local_addr=(address, 0))
    )
    return Browser(address, session, Api(session, ws_url=lb.ws_url))


@pytest.fixture
def cluster(nodes: list[Node], nginx: Nginx) -> Iterator[tuple[list[Node], Nginx]]:
    """The shared nodes behind nginx; whatever a test killed is running again afterwards."""
    yield nodes, nginx
    respawned = False
    for i, node in enumerate(nodes):
        if not node.alive:
            nodes[i] = node.respawn()
            respawned = True
    if respawned:
        time.sleep(2.5)  # nginx's fail_timeout: the next test finds every node in use


@pytest.fixture
async def browsers(cluster: tuple[list[Node], Nginx]) -> AsyncIterator[list[Browser]]:
    """One browser per node, each on a network that nginx sends to that node."""
    nodes, lb = cluster
    found: dict[str, Browser] = {}
    spare: list[Browser] = []
    for net in range(1, 40):
        browser = open_browser(lb, f"127.0.{net}.1")
        browser.node_id = await browser.node()
        if browser.node_id in found:
            spare.append(browser)
        else:
            found[browser.node_id] = browser
        if len(found) == len(nodes):
            break
    for extra in spare:
        await extra.session.close()
    assert len(found) == len(nodes), f"ip_hash sent 40 networks to only {sorted(found)}"
    made = sorted(found.values(), key=lambda b: node_of(nodes, b.node_id)[0])
    for i, browser in enumerate(made):
        browser.index = i
    yield made
    for browser in made:
        await browser.api.aclose()
        await browser.session.close()


async def routed_again(browser: Browser, node: Node) -> None:
    """Wait until nginx sends `browser` to its own node again, restarted as `node` (nginx
    leaves a node out for the config's fail_timeout after it refused connections)."""
    started = time.monotonic()
    while await browser.node() != node.node_id:
        assert time.monotonic() - started < 20, "nginx does not send to the restarted node"
        await asyncio.sleep(0.1)
    browser.node_id = node.node_id


def node_of(nodes: list[Node], node_id: str) -> tuple[int, Node]:
    return next((i, n) for i, n in enumerate(nodes) if n.node_id == node_id)


async def ws_connections(node: Node) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            node.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        ) as resp,
    ):
        text = await resp.text()
    line = next(x for x in text.splitlines() if x.startswith("peerspark_ws_connections "))
    return float(line.split()[1])


async def stored(db: Any, room: str) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT seq, content FROM session_messages WHERE session_id = $1::uuid ORDER BY seq",
        room.split(":")[1],
    )
    return [(r["seq"], r["content"]) for r in rows]


async def test_user_story_through_nginx_survives_a_killed_node(
    cluster: tuple[list[Node], Nginx], browsers: list[Browser], db: Any
) -> None:
    nodes, lb = cluster
    a, b = browsers[0], browsers[1]

    # Sticky: every request of a browser goes to the same node.
    assert {await a.node() for _ in range(5)} == {a.node_id}
    assert a.node_id != b.node_id

    # REST through nginx: sign up, a private pod, an invitation, a study session.
    ann, bob = await a.api.register(), await b.api.register()
    pod = await a.api.create_pod(ann, isPublic=False)
    invite = await a.api.post(f"/api/pods/{pod['id']}/invite", ann, json={"userId": bob.id})
    assert invite.status in (200, 201), invite.body
    joined = await b.api.post(
        f"/api/pods/{pod['id']}/join", bob, json={"invitationCode": invite.body["invitationCode"]}
    )
    assert joined.status == 200, joined.body
    room = await open_session(a.api, ann, bob, sessionType="pod", podId=pod["id"])
    session_id = room.split(":")[1]
    posted = await b.api.post(
        f"/api/sessions/{session_id}/messages", bob, json={"content": "hi over REST"}
    )
    assert posted.status == 201, posted.body

    # Two browsers' worth of sockets (two tabs each), sticky to their browser's node.
    _, a_node = node_of(nodes, a.node_id)
    before = await ws_connections(a_node)
    tabs = [await a.live(ann), await a.live(ann), await b.live(bob), await b.live(bob)]
    for tab in tabs:
        await tab.join(room, since=0)
    assert await ws_connections(a_node) >= before + 2
    assert [m.body for m in await messages_from(tabs[3], 1)] == ["hi over REST"]
    for tab in tabs[:3]:
        await messages_from(tab, 1)

    # A browser opens its socket with ?token= (it cannot set headers): nginx logs no token.
    async with a.session.ws_connect(lb.ws_url, params={"token": ann.token}) as raw:
        await raw.close()

    for i in range(10):
        await tabs[0].send(room, f"ann {i}")
        await tabs[2].send(room, f"bob {i}")

    # Ann's node dies mid-conversation; both keep talking. Ann's tabs come back through
    # nginx on another node, resume, and resend what was not acknowledged.
    index, doomed = node_of(nodes, a.node_id)

    async def talk(tab: LiveClient, who: str) -> None:
        for i in range(10, 30):
            await tab.send(room, f"{who} {i}", cid=f"{who}-{i}")
            if who == "ann" and i == 12:
                doomed.kill()

    await asyncio.wait_for(asyncio.gather(talk(tabs[0], "ann"), talk(tabs[2], "bob")), 60)
    assert not doomed.alive
    texts = await stored(db, room)
    assert [seq for seq, _ in texts] == list(range(1, 62))
    bodies = [body for _, body in texts[1:]]
    assert sorted(bodies) == sorted([f"{w} {i}" for w in ("ann", "bob") for i in range(30)])
    for tab in tabs:
        got = await messages_from(tab, 60, timeout=30)
        assert [(m.seq, m.body) for m in got] == texts[1:]
        assert tab.duplicates == 0
        with pytest.raises(TimeoutError):
            await messages_from(tab, 1, timeout=0.2)

    # Ann's browser now lands on a live node, and REST answers there too.
    assert await a.node() != doomed.node_id
    history = await a.api.get(f"/api/sessions/{session_id}/messages?limit=100", ann)
    assert history.status == 200
    assert len(history.body["messages"]) == 61

    log = lb.access_log()
    assert "/ws?token=REDACTED" in log
    assert ann.token not in log
    nodes[index] = await asyncio.to_thread(doomed.respawn)
    await routed_again(a, nodes[index])


@dataclass
class Arrivals:
    """When each chat message reached one socket."""

    seen: list[tuple[float, int, str]] = field(default_factory=list)

    def on_frame(self, frame: protocol.ServerFrame) -> None:
        if isinstance(frame, protocol.Message):
            self.seen.append((time.monotonic(), frame.seq, frame.body))

    def largest_gap(self, since: float, until: float) -> float:
        times = [since, *(t for t, _, _ in self.seen if since <= t <= until), until]
        return max(b - a for a, b in itertools.pairwise(times))


async def trickled_upload(
    node: Node, user: User, sent_half: asyncio.Event, halfway: asyncio.Event
) -> int:
    """POST /api/upload straight to `node`, the body's second half held back until
    `halfway` is set (`sent_half` is set once the first half is on its way): a request in
    flight while the node is asked to stop."""
    boundary = "peersparkboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="notes.txt"'
        f"\r\nContent-Type: text/plain\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head + b"Limits, first half. " * 200
        sent_half.set()
        await halfway.wait()
        yield b"Limits, second half. " * 200 + tail

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            node.url + "/api/upload",
            data=body(),
            headers={
                **user.auth,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        ) as resp,
    ):
        return resp.status


async def test_rolling_restart_under_steady_chat(
    cluster: tuple[list[Node], Nginx],
    browsers: list[Browser],
    db: Any,
    record_property: Callable[[str, object], None],
) -> None:
    """SIGTERM each node in turn (and start it again) while two people chat steadily through
    nginx: every message is stored once and reaches every socket once, in order; the
    pauses people see are reported."""
    nodes, nginx = cluster
    users = [await br.api.register() for br in browsers]
    room = await open_session(browsers[0].api, users[0], *users[1:])
    listeners: list[tuple[LiveClient, Arrivals]] = []
    for br, user in zip(browsers, users, strict=True):
        arrivals = Arrivals()
        client = await br.api.live(user, session=br.session, on_frame=arrivals.on_frame)
        await client.join(room)
        listeners.append((client, arrivals))
    senders = [await browsers[i].live(users[i]) for i in (0, 1)]
    for sender in senders:
        await sender.join(room)

    stop = asyncio.Event()
    sent: list[str] = []
    ack_waits: list[float] = []

    async def chat(index: int, client: LiveClient) -> None:
        i = 0
        while not stop.is_set():
            body = f"s{index} {i}"
            started = time.monotonic()
            await client.send(room, body, cid=f"roll-{index}-{i}", timeout=30)
            ack_waits.append(time.monotonic() - started)
            sent.append(body)
            i += 1
            await asyncio.sleep(0.05)

    rest_failures: list[int] = []

    async def browse() -> None:
        while not stop.is_set():
            resp = await browsers[2].api.get("/health")
            if resp.status != 200:
                rest_failures.append(resp.status)
            await asyncio.sleep(0.05)

    talkers = [asyncio.ensure_future(chat(i, c)) for i, c in enumerate(senders)]
    prober = asyncio.ensure_future(browse())
    stops: list[float] = []
    try:
        await asyncio.sleep(0.5)
        began = time.monotonic()
        upload_status: asyncio.Future[int] | None = None
        for i in range(len(nodes)):
            node = nodes[i]
            if i == 0:  # a request in flight when the node is told to stop
                sent_half, halfway = asyncio.Event(), asyncio.Event()
                upload_status = asyncio.ensure_future(
                    trickled_upload(node, users[0], sent_half, halfway)
                )
                await asyncio.wait_for(sent_half.wait(), 10)
                await asyncio.sleep(0.3)  # (the node has read the headers and begun)
            t0 = time.monotonic()
            node.proc.send_signal(signal.SIGTERM)
            if i == 0:
                await asyncio.sleep(0.3)
                halfway.set()
            code = await asyncio.to_thread(node.proc.wait, 30)
            stops.append(time.monotonic() - t0)
            assert code == 0, "".join(node.output[-30:])
            nodes[i] = await asyncio.to_thread(node.respawn)
            # as an operator would: the next node stops once nginx uses this one again
            await routed_again(browsers[i], nodes[i])
        ended = time.monotonic()
        assert upload_status is not None
        assert await upload_status == 201
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*talkers, prober), 40)

    texts = await stored(db, room)
    assert [seq for seq, _ in texts] == list(range(1, len(texts) + 1))
    assert sorted(body for _, body in texts) == sorted(sent), "lost or stored twice"
    deadline = time.monotonic() + 20
    while any(len(a.seen) < len(texts) for _, a in listeners) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for client, arrivals in listeners:
        assert [(seq, body) for _, seq, body in arrivals.seen] == texts
        assert client.duplicates == 0
    # (nginx's error log says why it answered itself)
    assert rest_failures == [], nginx.error_log()[-4000:]

    pause = max(a.largest_gap(began, ended) for _, a in listeners)
    report = (
        f"rolling restart of {len(nodes)} nodes behind nginx: {len(texts)} messages, 0 lost, "
        f"0 duplicated; largest pause a socket saw {pause * 1000:.0f} ms, slowest ack "
        f"{max(ack_waits) * 1000:.0f} ms; stops took " + ", ".join(f"{s:.1f}s" for s in stops)
    )
    record_property("summary", report)  # printed in the run's summary (conftest)
    print(report)
