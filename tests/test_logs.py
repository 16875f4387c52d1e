"""Structured logs: one JSON object per line with the request id and, once known, the user id;
no token, bearer credential or URL password in any line; text on a terminal."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from peerspark_rt import logs
from tests.helpers import Api


class Captured(io.StringIO):
    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    stream = Captured()
    handler = logs.make_handler(stream, json_lines=True, node="node-x")
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_request_lines_carry_request_and_user_ids_and_no_tokens(
    api: Api, captured: Captured
) -> None:
    user = await api.register()
    me = await api.get("/api/auth/me", user, headers={"X-Request-Id": "trace-me-1"})
    assert me.status == 200
    live = await api.live(user)
    await live.join(f"user:{user.id}")
    await live.close()
    logging.getLogger("peerspark_rt.test").warning(
        "calling %s with Bearer %s from redis://:hunter2-secret@cache:6379/0",
        f"/ws?token={user.token}&format=json",
        user.refresh,
    )

    text = captured.getvalue()
    for secret in (user.token, user.refresh, "hunter2-secret"):
        assert secret not in text
    lines = captured.lines()  # every line is one JSON object
    request = next(x for x in lines if x.get("path") == "/api/auth/me")
    assert request["request_id"] == "trace-me-1" == me.headers["X-Request-Id"]
    assert request["user_id"] == user.id
    assert request["node"] == "node-x"
    assert request["status"] == 200
    assert request["level"] == "INFO"
    assert request["logger"] == "peerspark_rt.http"
    socket = next(x for x in lines if x.get("path") == "/ws")
    assert socket["user_id"] == user.id
    signup = next(x for x in lines if x.get("path") == "/api/auth/register")
    assert "user_id" not in signup  # nobody was signed in yet
    warned = next(x for x in lines if x["logger"] == "peerspark_rt.test")["message"]
    assert "token=[redacted]&format=json" in warned
    assert "Bearer [redacted]" in warned
    assert "redis://:[redacted]@cache:6379/0" in warned


def test_text_on_a_terminal_json_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.json_by_default(Terminal()) is False
    assert logs.json_by_default(io.StringIO()) is True
    stream = Terminal()
    handler = logs.make_handler(stream, json_lines=None)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "db at %s", ("pg://a:b@h",), None)
    handler.handle(record)
    assert stream.getvalue().endswith("INFO x [-] db at pg://a:[redacted]@h\n")
