"""Web Push: subscriptions, and notifications delivered to a push service started here (real
HTTP), encrypted for the browser's keys (decrypted here with http_ece) and signed with VAPID
(checked here) — only while the user has no live socket and their preferences allow it;
subscriptions the push service says are gone (410) are removed."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from peerspark_rt.infra.jobs import WORKER
from peerspark_rt.notifications.service import NOTIFICATIONS, NewNotification
from tests.helpers import Api, User


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class PushService:
    """A push service: records what it is sent; endpoints under /gone/ answer 410."""

    port: int = 0
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, dict(request.headers), await request.read()))
        return web.Response(status=410 if request.path.startswith("/gone/") else 201)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    service = PushService()
    app = web.Application()
    app.router.add_post("/{tail:.*}", service.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    service.port = runner.addresses[0][1]
    yield service
    await runner.cleanup()


@dataclass
class Browser:
    """A browser's push keys (RFC 8291): its ECDH key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, endpoint: str) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": endpoint, "keys": {"p256dh": b64(point), "auth": b64(self.auth)}}

    def decrypt(self, body: bytes) -> Any:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return orjson.loads(plain)


def vapid_key() -> str:
    vapid = Vapid()
    vapid.generate_keys()
    return b64(vapid.private_key.private_numbers().private_value.to_bytes(32, "big"))


async def notify(api: Api, user: User, title: str) -> uuid.UUID:
    row = await api.app[NOTIFICATIONS].notify(NewNotification(uuid.UUID(user.id), "system", title))
    assert row is not None
    return uuid.UUID(str(row["id"]))


async def test_a_notification_is_pushed_encrypted_to_an_offline_users_devices(
    make_client: Any, push_service: PushService, db: Any
) -> None:
    api: Api = await make_client(
        vapid_private_key=vapid_key(), run_worker=True, worker_poll_interval=0.1,
        vapid_subject="mailto:ops@peerspark.example",
    )  # fmt: skip
    ann = await api.register()
    key = await api.get("/api/notifications/push-key", ann)
    assert key.status == 200
    browser, stale = Browser(), Browser()
    bad_keys = browser.subscription(push_service.url("/sub/x"))
    bad_keys["keys"]["p256dh"] = b64(b"short")
    refused = await api.post("/api/notifications/push-subscriptions", ann, json=bad_keys)
    assert (refused.status, refused.error_field()) == (422, "keys.p256dh")
    not_url = await api.post(
        "/api/notifications/push-subscriptions", ann, json=browser.subscription("ftp://x/y")
    )
    assert (not_url.status, not_url.error_field()) == (422, "endpoint")
    good = browser.subscription(push_service.url(f"/sub/{uuid.uuid4()}"))
    made = await api.post("/api/notifications/push-subscriptions", ann, json=good)
    assert (made.status, made.body["created"]) == (201, True)
    again = await api.post("/api/notifications/push-subscriptions", ann, json=good)
    assert again.status == 200
    gone = stale.subscription(push_service.url(f"/gone/{uuid.uuid4()}"))
    assert (await api.post("/api/notifications/push-subscriptions", ann, json=gone)).status == 201

    first = await notify(api, ann, "Bob invited you to Chemistry")
    await api.app[WORKER].drain()
    delivered = [r for r in push_service.received if r[0] == unb64_path(good)]
    assert len(delivered) == 1
    _path, headers, body = delivered[0]
    assert headers["Content-Encoding"] == "aes128gcm"
    payload = browser.decrypt(body)
    assert (payload["id"], payload["title"]) == (str(first), "Bob invited you to Chemistry")
    # signed with our VAPID key, for this push service
    scheme, _, params = headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert fields["k"] == key.body["publicKey"]
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(fields["k"]))
    claims = jwt.decode(
        fields["t"], public, algorithms=["ES256"], audience=f"http://127.0.0.1:{push_service.port}"
    )
    assert claims["sub"] == "mailto:ops@peerspark.example"
    assert await db.fetchval("SELECT is_push_sent FROM notifications WHERE id = $1", first)
    # the push service said the stale subscription is gone: removed
    endpoints = await db.fetch(
        "SELECT endpoint FROM push_subscriptions WHERE user_id = $1", uuid.UUID(ann.id)
    )
    assert [r["endpoint"] for r in endpoints] == [good["endpoint"]]

    # with a live socket open nothing is pushed (the socket shows it)
    socket = await api.live(ann)
    await asyncio.sleep(0.1)
    online = await notify(api, ann, "Seen live")
    await api.app[WORKER].drain()
    assert not await db.fetchval("SELECT is_push_sent FROM notifications WHERE id = $1", online)
    await socket.close()
    # nor when the user turned push off
    off = await api.put("/api/notifications/preferences", ann, json={"pushEnabled": False})
    assert (off.status, off.body["pushEnabled"]) == (200, False)
    await notify(api, ann, "Not pushed")
    await api.app[WORKER].drain()
    assert len([r for r in push_service.received if r[0] == unb64_path(good)]) == 1

    missing = await api.delete(
        "/api/notifications/push-subscriptions", ann, json={"endpoint": "https://x.example/1"}
    )
    assert missing.status == 404
    removed = await api.delete(
        "/api/notifications/push-subscriptions", ann, json={"endpoint": good["endpoint"]}
    )
    assert removed.status == 204


def unb64_path(subscription: dict[str, Any]) -> str:
    return "/" + str(subscription["endpoint"]).split("/", 3)[3]


async def test_push_is_unavailable_without_a_vapid_key(api: Api) -> None:
    ann = await api.register()
    resp = await api.post(
        "/api/notifications/push-subscriptions",
        ann,
        json=Browser().subscription("https://push.example.com/abc"),
    )
    assert (resp.status, resp.body["error"]["code"]) == (503, "push_disabled")
