"""A member banned from a pod, or removed from it, loses the pod's study sessions at once: no
history, no posting over REST, no live room; and the sockets they had in the pod's room and
in its sessions' rooms are taken out of them the moment it happens."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from peerspark_rt import protocol
from peerspark_rt.client import LiveClient, LiveError
from tests.helpers import Api, User
from tests.test_sessions import create_session


async def frame_of(client: LiveClient, kind: type[Any], timeout: float = 5, **match: Any) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await client.next(deadline - asyncio.get_running_loop().time())
        if isinstance(frame, kind) and all(getattr(frame, k) == v for k, v in match.items()):
            return frame


async def calendar_sessions(api: Api, user: User) -> set[str]:
    today = dt.date.today()
    resp = await api.get(
        f"/api/calendar/events?startDate={today - dt.timedelta(days=1)}"
        f"&endDate={today + dt.timedelta(days=2)}",
        user,
    )
    assert resp.status == 200, resp.body
    return {e["id"] for e in resp.body["events"] if e["source"] == "session"}


async def _pod_with_sessions(api: Api, owner: User, member: User) -> tuple[str, list[str]]:
    """A pod `member` belongs to and two of its sessions, both joined by the member, one
    started, each with a message in it."""
    pod = await api.create_pod(owner)
    assert (await api.post(f"/api/pods/{pod['id']}/join", member)).status == 200
    sids = []
    for start in (True, False):
        session = await create_session(api, owner, sessionType="pod", podId=pod["id"])
        sid = session["id"]
        assert (await api.post(f"/api/sessions/{sid}/join", member)).status == 200
        if start:
            assert (await api.post(f"/api/sessions/{sid}/start", owner)).status == 200
        sent = await api.post(
            f"/api/sessions/{sid}/messages", owner, json={"content": "welcome", "type": "text"}
        )
        assert sent.status == 201, sent.body
        sids.append(sid)
    return pod["id"], sids


async def _loses_the_sessions(api: Api, owner: User, member: User, how: str) -> None:
    pod_id, sids = await _pod_with_sessions(api, owner, member)
    live = await api.live(member)
    rooms = [f"pod:{pod_id}", *(f"session:{sid}" for sid in sids)]
    for room in rooms:
        await live.join(room)
    # before: the member reads, and the sessions are in their calendar
    for sid in sids:
        assert (await api.get(f"/api/sessions/{sid}/messages", member)).status == 200
    assert set(sids) <= await calendar_sessions(api, member)

    if how == "ban":
        resp = await api.post(f"/api/pods/{pod_id}/members/{member.id}/ban", owner)
    else:
        resp = await api.delete(f"/api/pods/{pod_id}/members/{member.id}", owner)
    assert resp.status == 204, resp.body

    # every room of the pod and of its sessions says so, at once
    left: set[str] = set()
    removed: set[str] = set()
    while left != set(rooms) or removed != set(rooms):
        frame = await live.next(5)
        if isinstance(frame, protocol.Left):
            left.add(frame.room)
        elif isinstance(frame, protocol.Error) and frame.code == "removed":
            assert frame.room is not None
            removed.add(frame.room)
    # ...and the member can no longer read, post, join or enter the live room
    for sid in sids:
        history = await api.get(f"/api/sessions/{sid}/messages", member)
        assert history.status in (403, 404), history.body
        post = await api.post(
            f"/api/sessions/{sid}/messages", member, json={"content": "still here?", "type": "text"}
        )
        assert post.status in (403, 404), post.body
        assert (await api.post(f"/api/sessions/{sid}/join", member)).status in (403, 404)
        with pytest.raises(LiveError):
            await live.join(f"session:{sid}")
        fresh = await api.live(member)
        with pytest.raises(LiveError):
            await fresh.join(f"session:{sid}")
    assert not set(sids) & await calendar_sessions(api, member)
    # the room did not receive anything from them
    history = await api.get(f"/api/sessions/{sids[0]}/messages", owner)
    assert [m["body"] for m in history.body["messages"]] == ["welcome"]


async def test_a_banned_member_loses_the_pods_sessions(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    await _loses_the_sessions(api, owner, member, "ban")


async def test_a_removed_member_loses_the_pods_sessions(api: Api) -> None:
    owner, member = await api.register(), await api.register()
    await _loses_the_sessions(api, owner, member, "remove")


async def test_others_in_the_session_keep_going(api: Api) -> None:
    owner, member, other = await api.register(), await api.register(), await api.register()
    pod_id, sids = await _pod_with_sessions(api, owner, member)
    assert (await api.post(f"/api/pods/{pod_id}/join", other)).status == 200
    assert (await api.post(f"/api/sessions/{sids[0]}/join", other)).status == 200
    stays = await api.live(other)
    await stays.join(f"session:{sids[0]}")
    resp = await api.post(f"/api/pods/{pod_id}/members/{member.id}/ban", owner)
    assert resp.status == 204
    ack = await stays.send(f"session:{sids[0]}", "carry on")
    assert ack.seq == 2
