"""Chat with the OpenAI moderation check on, against a deliberately slow fake OpenAI server:
order per socket holds in every mode, `after` (the default) delivers at once and retracts what
the check flags on every node, `before` holds messages until the check answers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from peerspark_rt import protocol
from tests.conftest import ai_settings
from tests.fake_openai import FakeOpenAI
from tests.helpers import Api, frame_of, messages_from, open_session
from tests.nodes import Node, node_apis, node_env, start_nodes

CHECK_SECONDS = 4.0  # how long each OpenAI moderation call takes in the after-mode test


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def test_before_mode_keeps_each_sockets_order(make_client: Any, fake_ai: FakeOpenAI) -> None:
    """The first message's check is slower than the second's: they are still stored, and
    numbered, in the order they were sent."""
    fake_ai.moderation_delays = {"slowly": 0.5}
    api = await make_client(**ai_settings(fake_ai, chat_ai_moderation="before"))
    sender, reader = await api.register(), await api.register()
    room = await open_session(api, sender, reader)
    s = await api.live(sender)
    await s.join(room)
    r = await api.live(reader)
    await r.join(room)
    acks = await asyncio.gather(
        s.send(room, "first, said slowly"), s.send(room, "second"), s.send(room, "third")
    )
    assert [a.seq for a in acks] == [1, 2, 3]
    got = await messages_from(r, 3)
    assert [m.body for m in got] == ["first, said slowly", "second", "third"]


@pytest.fixture(scope="module")
def module_fake_ai() -> Iterator[FakeOpenAI]:
    """The fake OpenAI server on an event loop of its own (in a thread) for the whole module:
    the nodes are processes that outlive each test's event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeOpenAI()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    yield server
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def ai_pair(
    pg_dsn: str,
    redis_url: str,
    module_fake_ai: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Node]]:
    env = node_env(
        pg_dsn,
        tmp_path_factory.mktemp("mod"),
        redis_url,
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=module_fake_ai.url,
        OPENAI_MAX_RETRIES="0",
        MODERATION_TIMEOUT="10",
    )
    nodes = start_nodes(env, 2)
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture
async def ai_apis(ai_pair: list[Node]) -> AsyncIterator[list[Api]]:
    async with node_apis(ai_pair) as made:
        yield made


async def test_after_mode_delivers_at_once_and_retracts_everywhere(
    ai_apis: list[Api], module_fake_ai: FakeOpenAI, db: Any
) -> None:
    module_fake_ai.moderation_delay = CHECK_SECONDS  # a slow moderation upstream
    a, b = ai_apis
    sender, near, far, organizer = (
        await a.register(),
        await a.register(),
        await b.register(),
        await a.register(),
    )
    room = await open_session(a, organizer, sender, near, far)
    s = await a.live(sender)
    await s.join(room)
    n = await a.live(near)
    await n.join(room)
    f = await b.live(far)
    await f.join(room)
    latencies: list[float] = []

    async def timed(body: str) -> protocol.Acked:
        started = time.monotonic()
        ack = await s.send(room, body)
        latencies.append(time.monotonic() - started)
        return ack

    try:
        answered = module_fake_ai.moderation_answered
        acks: list[protocol.Acked] = []
        for i in range(30):  # pipelined in pairs, as a chatty client sends
            acks += await asyncio.gather(timed(f"line {2 * i}"), timed(f"line {2 * i + 1}"))
        assert [x.seq for x in acks] == list(range(1, 61))
        # Every message was stored and acknowledged while its check was still running (the
        # checks take CHECK_SECONDS and none has answered yet): nobody waited for one.
        assert module_fake_ai.moderation_answered == answered, sorted(latencies)[-5:]
        low, high = p50(latencies) * 1000, p99(latencies) * 1000
        print(f"after-mode acks: p50 {low:.1f} ms, p99 {high:.1f} ms")
        flagged = await timed("you will FLAGME now")
        assert flagged.seq == 61
        for client in (n, f):
            got = await messages_from(client, 61)
            assert [m.seq for m in got] == list(range(1, 62))
            notice = await frame_of(client, protocol.Retracted, timeout=CHECK_SECONDS + 6)
            assert (notice.seq, notice.id) == (61, flagged.id)
            assert "flagged" in notice.reason
        notice = await frame_of(s, protocol.Retracted, timeout=CHECK_SECONDS + 6)
        assert notice.seq == 61
        # history shows it removed; a resume from before it gets the removed form
        history = await a.get(f"/api/sessions/{room[8:]}/messages?after=60", organizer)
        removed = history.body["messages"][0]
        assert removed["seq"] == 61
        assert removed.get("retracted") is True
        assert removed["body"] == ""
        late = await b.live(near)
        await late.join(room, since=60)
        again = await messages_from(late, 1)
        assert again[0].retracted is True
        assert again[0].body == ""
        # it waits for a reviewer, and its author was told
        queue = await a.get(f"/api/moderation/held?sessionId={room[8:]}", organizer)
        items = queue.body["items"]
        assert [i["content"] for i in items] == ["you will FLAGME now"]
        notes = await a.get("/api/notifications", sender)
        assert "moderation_removed" in {x["type"] for x in notes.body["notifications"]}
        # a reviewer who disagrees restores it in place, everywhere
        approved = await a.post(f"/api/moderation/held/{items[0]['id']}/approve", organizer)
        assert approved.status == 200, approved.body
        restored = await frame_of(f, protocol.Event, kind="message_restored", timeout=5)
        assert restored.data["seq"] == 61
        history = await a.get(f"/api/sessions/{room[8:]}/messages?after=60", organizer)
        assert history.body["messages"][0]["body"] == "you will FLAGME now"
        assert not history.body["messages"][0].get("retracted")
    finally:
        module_fake_ai.moderation_delay = 0.0
