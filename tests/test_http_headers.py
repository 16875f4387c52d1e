"""What every response says about itself (security headers, caching, the Server header), what
/health and /metrics tell whom, and that secrets stay out of reprs and access logs."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp

from peerspark_rt.app import start_metrics_listener
from peerspark_rt.config import SETTINGS, Settings, load_settings
from tests import rawhttp
from tests.helpers import Api, User
from tests.social import platform_moderator

ROOT = Path(__file__).resolve().parent.parent
METRICS_TOKEN = "m" * 40


def assert_hardened(headers: Any, where: str) -> None:
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), where
    assert headers.get("Referrer-Policy") == "no-referrer", where
    server = headers.get("Server", "")
    assert not re.search(r"\d", server), (where, server)
    assert "aiohttp" not in server.lower(), (where, server)
    assert "Strict-Transport-Security" not in headers, where  # plain http here


async def test_every_response_carries_the_security_headers(api: Api) -> None:
    user = await api.register()
    responses = {
        "health": await api.get("/health"),
        "404": await api.get("/api/nothing-here"),
        "401": await api.get("/api/pods"),
        "405": await api.call("PATCH", "/api/pods"),
        "me": await api.get("/api/auth/me", user),
        "pods": await api.get("/api/pods", user),
        "login": await api.post(
            "/api/auth/login", json={"email": user.email, "password": "Study-hard-2026"}
        ),
        "metrics": await api.get("/metrics"),
        "preflight": await api.call(
            "OPTIONS",
            "/api/pods",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
        ),
    }
    for where, resp in responses.items():
        assert_hardened(resp.headers, where)
    # websocket handshakes too
    host, port = api.client.server.host, api.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(b'k' * 16).decode()}"
            f"\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {user.token}\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    handshake = rawhttp.parse(head)
    assert handshake.status == 101
    assert_hardened({k.title(): v for k, v in handshake.headers.items()}, "ws")


async def test_token_and_account_answers_are_never_stored(api: Api) -> None:
    user = await api.register()
    login = await api.post(
        "/api/auth/login", json={"email": user.email, "password": "Study-hard-2026"}
    )
    refreshed = await api.post(
        "/api/auth/refresh", json={"refreshToken": login.body["refreshToken"]}
    )
    register = await api.post(
        "/api/auth/register",
        json={"email": "nostore@example.com", "username": "nostore1", "password": "Study-hard-2026",
              "firstName": "N", "lastName": "S"},
    )  # fmt: skip
    for where, resp in {
        "login": login,
        "refresh": refreshed,
        "register": register,
        "me": await api.get("/api/auth/me", user),
        "sessions": await api.get("/api/auth/sessions", user),
        "profile": await api.get(f"/api/users/{user.id}", user),
        "error": await api.post("/api/auth/login", json={"email": "x@y.zz", "password": "nope"}),
    }.items():
        assert resp.headers.get("Cache-Control") == "no-store", (where, resp.headers)


async def test_hsts_only_over_tls(make_client: Any) -> None:
    trusting = await make_client(trust_proxy_headers=True)
    https = await trusting.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert https.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = await trusting.get("/health", headers={"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in plain.headers
    # without a trusted proxy the header is the client's word, and says nothing
    untrusting = await make_client()
    said = await untrusting.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in said.headers


async def test_health_is_minimal_for_anonymous_callers(make_client: Any, db: Any) -> None:
    api = await make_client(metrics_token=METRICS_TOKEN)
    anonymous = await api.get("/health")
    assert anonymous.status == 200
    assert anonymous.body == {"status": "healthy"}
    user = await api.register()
    assert (await api.get("/health", user)).body == {"status": "healthy"}
    wrong = await api.get("/health", headers={"Authorization": "Bearer wrong"})
    assert wrong.body == {"status": "healthy"}
    # the metrics token, or a platform admin, see the details
    token = await api.get("/health", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert token.body["services"]["database"]["status"] == "healthy"
    admin = await platform_moderator(api, db, await api.register())
    await db.execute("UPDATE users SET role = 'admin' WHERE id = $1::uuid", admin.id)
    admin = await _relogin(api, admin)
    details = await api.get("/health", admin)
    assert "version" in details.body["services"]["database"]


async def _relogin(api: Api, user: User) -> User:
    resp = await api.post(
        "/api/auth/login", json={"email": user.email, "password": "Study-hard-2026"}
    )
    assert resp.status == 200, resp.body
    user.token = resp.body["accessToken"]
    return user


async def test_metrics_can_be_protected_by_a_token(make_client: Any) -> None:
    api = await make_client(metrics_token=METRICS_TOKEN)
    assert (await api.get("/metrics")).status == 401
    wrong = await api.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status == 401
    ok = await api.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status == 200
    assert b"peerspark_http_requests_total" in ok.body


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_metrics_can_be_served_on_a_private_address_only(make_client: Any) -> None:
    port = _free_port()
    api = await make_client(metrics_address=("127.0.0.1", port))
    runner = await start_metrics_listener(api.app, api.app[SETTINGS])
    assert runner is not None
    try:
        assert (await api.get("/metrics")).status == 404  # not on the public port
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                assert b"peerspark_http_requests_total" in await resp.read()
            async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                assert "services" in await resp.json()
            async with http.get(f"http://127.0.0.1:{port}/api/pods") as resp:
                assert resp.status == 404  # nothing else is served there
    finally:
        await runner.cleanup()


def test_settings_never_print_secrets() -> None:
    settings = Settings(
        jwt_secret="J" * 40,
        jwt_refresh_secret="R" * 40,
        database_url="postgresql://app:db-password@db:5432/peerspark",
        redis_url="redis://:redis-password@cache:6379/0",
        openai_api_key="sk-live-key",
        smtp_pass="smtp-password",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="aws-secret",
        metrics_token="M" * 40,
    )
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        for secret in ("J" * 40, "R" * 40, "db-password", "redis-password", "sk-live-key",
                       "smtp-password", "AKIAEXAMPLE", "aws-secret", "M" * 40):  # fmt: skip
            assert secret not in text, secret
    assert "postgresql://app:***@db:5432/peerspark" in repr(settings)
    assert "port=8080" in repr(settings)  # the rest is still there
    loaded = load_settings({"METRICS_TOKEN": "t" * 32, "METRICS_ADDRESS": "127.0.0.1:9464"})
    assert loaded.metrics_address == ("127.0.0.1", 9464)
    assert "t" * 32 not in repr(loaded)


def test_the_shipped_nginx_config_keeps_tokens_out_of_access_logs() -> None:
    conf = (ROOT / "config" / "nginx.conf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    formats = re.findall(r"log_format\s+(\w+)\s+(.*?);", code, re.S)
    assert formats, "a log_format of our own"
    for _name, fmt in formats:
        # $request and $request_uri (and $args, $query_string) carry ?token= as sent
        for raw in (
            "$request ",
            '$request"',
            "$request_uri",
            "$args",
            "$query_string",
            "$arg_token",
        ):
            assert raw not in fmt + " ", (raw, fmt)
    access_logs = re.findall(r"access_log\s+([^;]+);", code)
    assert access_logs
    assert all(any(n in line for n, _ in formats) or "off" in line for line in access_logs), (
        access_logs
    )
    assert re.search(r"map\s+\$request_uri\s+\$\w+", code), "a map that redacts the token"
    assert "token=" in code
    assert "REDACTED" in code
