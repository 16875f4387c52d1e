"""Test helpers: a thin client for the REST API and factories for users and pods."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from peerspark_rt.client import LiveClient

_counter = itertools.count()
PASSWORD = "Study-hard-2026"
# What the test apps are configured with (conftest.make_settings): the operator's token for
# /metrics and the details of /health.
METRICS_TOKEN = "test-metrics-token-" + "0" * 20


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}{secrets.token_hex(3)}"


@dataclass
class User:
    id: str
    email: str
    username: str
    password: str
    token: str
    refresh: str
    session_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Response:
    status: int
    body: Any
    headers: Any

    def error_field(self) -> str | None:
        details = self.body.get("error", {}).get("details") or []
        return details[0].get("field") if details else None


class Api:
    """REST and live access to one node: an in-process test server (`TestClient`) or a real
    node process (an `aiohttp.ClientSession` with its `base_url`, plus the node's ws url)."""

    def __init__(self, client: Any, ws_url: str | None = None) -> None:
        self.client = client
        self._ws_url = ws_url
        self._live: list[LiveClient] = []
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def ws_url(self) -> str:
        if self._ws_url is not None:
            return self._ws_url
        return str(self.client.make_url("/ws")).replace("http://", "ws://")

    async def live(self, user: User, **kwargs: Any) -> LiveClient:
        """A connected live client for `user`, closed when the test ends."""
        client = LiveClient(self.ws_url, user.token, **kwargs)
        await client.connect()
        self._live.append(client)
        return client

    def background(self, coro: Any) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for client in self._live:
            await client.close()

    @property
    def app(self) -> Any:
        return self.client.app

    async def call(
        self,
        method: str,
        path: str,
        user: User | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        all_headers = dict(user.auth if user else {})
        all_headers.update(headers or {})
        async with self.client.request(
            method, path, json=json, headers=all_headers, **kwargs
        ) as resp:
            body: Any = None
            if resp.content_type == "application/json":
                body = await resp.json()
            else:
                body = await resp.read()
            return Response(resp.status, body, resp.headers)

    async def health(self, **kw: Any) -> Response:
        """/health as the operator sees it (with every dependency's details)."""
        return await self.get("/health", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, **kw)

    async def metrics(self) -> Response:
        return await self.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

    async def get(self, path: str, user: User | None = None, **kw: Any) -> Response:
        return await self.call("GET", path, user, **kw)

    async def post(
        self, path: str, user: User | None = None, json: Any = None, **kw: Any
    ) -> Response:
        return await self.call("POST", path, user, json=json, **kw)

    async def put(
        self, path: str, user: User | None = None, json: Any = None, **kw: Any
    ) -> Response:
        return await self.call("PUT", path, user, json=json, **kw)

    async def patch(
        self, path: str, user: User | None = None, json: Any = None, **kw: Any
    ) -> Response:
        return await self.call("PATCH", path, user, json=json, **kw)

    async def delete(self, path: str, user: User | None = None, **kw: Any) -> Response:
        return await self.call("DELETE", path, user, **kw)

    async def register(self, **fields: Any) -> User:
        name = fields.pop("username", None) or unique("user")
        body = {
            "email": f"{name}@example.com",
            "username": name,
            "password": PASSWORD,
            "firstName": "Test",
            "lastName": "User",
            **fields,
        }
        resp = await self.post("/api/auth/register", json=body)
        assert resp.status == 201, resp.body
        return User(
            id=resp.body["user"]["id"],
            email=body["email"],
            username=name,
            password=body["password"],
            token=resp.body["accessToken"],
            refresh=resp.body["refreshToken"],
            session_id=resp.body["sessionId"],
        )

    async def create_pod(self, owner: User, **fields: Any) -> dict[str, Any]:
        body = {"name": unique("Pod "), "subject": "Mathematics", **fields}
        resp = await self.post("/api/pods", owner, json=body)
        assert resp.status == 201, resp.body
        result: dict[str, Any] = resp.body
        return result


class LiveCapture:
    """Frames a user receives live in one room, decoded to dicts."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def next(
        self, t: str | None = None, kind: str | None = None, timeout: float = 5
    ) -> dict[str, Any]:
        """The next frame of type `t` (and event `kind`), skipping others; fails on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(
                    f"no {t or 'frame'} {kind or ''} in {self.room} within {timeout}s"
                )
            try:
                frame = await asyncio.wait_for(self.frames.get(), left)
            except TimeoutError:
                continue
            if (t is None or frame.get("t") == t) and (kind is None or frame.get("kind") == kind):
                return frame

    async def nothing_more(
        self, t: str | None = None, kind: str | None = None, wait: float = 0.3
    ) -> None:
        """Assert no matching frame arrives within `wait` seconds."""
        try:
            frame = await self.next(t, kind, timeout=wait)
        except AssertionError:
            return
        raise AssertionError(f"unexpected frame {frame}")


async def listen_live(api: Api, user: User, room: str) -> LiveCapture:
    """Start capturing what `user` receives live in `room` ('pod:<id>', 'user:<id>', ...),
    over a real websocket joined as that user. Frames come back as plain dicts (camelCase keys,
    with the frame type under "t")."""
    client = await api.live(user)
    await client.join(room)
    capture = LiveCapture(room)

    async def pump() -> None:
        async for frame in client:
            if getattr(frame, "room", None) == room:
                capture.frames.put_nowait(msgspec.to_builtins(frame))

    api.background(pump())
    return capture


async def messages_from(client: LiveClient, count: int, timeout: float = 20) -> list[Any]:
    """The next `count` chat messages a live client receives (other frames are skipped);
    fails if the server sent any message twice."""
    from peerspark_rt import protocol

    got: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < count:
        frame = await client.next(max(0.01, deadline - asyncio.get_running_loop().time()))
        if isinstance(frame, protocol.Message):
            got.append(frame)
    assert client.duplicates == 0, "the server sent a message twice"
    return got


async def open_session(api: Api, organizer: User, *people: User, **fields: Any) -> str:
    """A group session starting in five minutes, with `people` taking part; its room name."""
    start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    body = {
        "title": "Live room",
        "sessionType": "group",
        "startTime": start.isoformat(),
        "endTime": (start + dt.timedelta(hours=1)).isoformat(),
        **fields,
    }
    resp = await api.post("/api/sessions", organizer, json=body)
    assert resp.status == 201, resp.body
    for person in people:
        assert (await api.post(f"/api/sessions/{resp.body['id']}/join", person)).status == 200
    return f"session:{resp.body['id']}"


async def frame_of(client: LiveClient, of: type[Any], timeout: float = 5, **match: Any) -> Any:
    """The next frame of type `of` whose fields equal `match` (others are skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await client.next(max(0.01, deadline - asyncio.get_running_loop().time()))
        if isinstance(frame, of) and all(getattr(frame, k) == v for k, v in match.items()):
            return frame


async def wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float = 15, every: float = 0.1, what: str = ""
) -> Any:
    """`check()`'s first truthy value, asked every `every` seconds; an AssertionError (naming
    `what` and the last value) when none came within `timeout` seconds (hooks and jobs run
    after the act a test made)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what or 'condition'} not met in {timeout:g} s: {value!r}")
        await asyncio.sleep(every)


async def until_closed(client: LiveClient, timeout: float = 5) -> None:
    """Read (and drop) frames until the server closes the socket; fails after `timeout`
    seconds without a frame or a close."""
    while True:
        try:
            await client.next(timeout)
        except ConnectionError:
            return
