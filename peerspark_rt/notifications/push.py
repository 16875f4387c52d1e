"""Web Push (VAPID, RFC 8030/8291/8292) with pywebpush: browsers subscribe
(POST /api/notifications/push-subscriptions) and get a push for a notification when none of
their devices has a live socket open and their preferences allow it.

The `send_push` job is enqueued with the notification (NotificationService.store). When it runs
it sends nothing if the user is online (a socket on this node, or the `online:<id>` key another
node keeps fresh in Redis), if the notification was read or already pushed, or if push is off
for them. Each subscription is tried on its own: a 404/410 answer removes it (the browser
dropped it), other failures are logged; the job is retried only when no device got the push
and some failure may pass. `notifications.is_push_sent` records that some device got it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async
from redis.exceptions import RedisError

from ..cluster.redis_client import RedisClient
from ..config import Settings
from ..errors import Invalid, NotFound, Unavailable
from ..infra.jobs import Job, PermanentError
from ..infra.pool import Database
from . import db as notifications_db
from .prefs import Preferences

log = logging.getLogger(__name__)

ONLINE_TTL = 60  # seconds an online:<user> key lives without a refresh
ONLINE_REFRESH = 20  # seconds between a node's refreshes of its users' keys
MAX_SUBSCRIPTIONS = 20  # per user: the oldest go when more subscribe


class PushKeys(msgspec.Struct, forbid_unknown_fields=True):
    p256dh: str
    auth: str


class PushSubscribe(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A browser's PushSubscription.toJSON() (expirationTime is accepted and ignored)."""

    endpoint: str
    keys: PushKeys
    expiration_time: int | float | None = None


class PushUnsubscribe(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    endpoint: str


class PushSubscription(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    endpoint: str
    created: bool


class PushKey(msgspec.Struct, rename="camel"):
    """The VAPID public key: the applicationServerKey browsers subscribe with."""

    public_key: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(value: str, field: str, length: int) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise Invalid(field, "must be base64url") from None
    if len(raw) != length:
        raise Invalid(field, f"must encode {length} bytes")
    return raw


def load_vapid(private_key: str) -> Vapid:
    """The VAPID key from VAPID_PRIVATE_KEY (base64url raw 32 bytes, or base64url DER)."""
    try:
        return Vapid.from_string(private_key.strip())
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError(f"VAPID_PRIVATE_KEY: not a P-256 private key ({exc})") from None


class OnlineUsers:
    """Whether a user has a live socket anywhere: this node's hub knows its own; other nodes
    refresh an `online:<user>` key in Redis every ONLINE_REFRESH seconds (so a user who left
    another node counts as online for up to ONLINE_TTL seconds: a push late, never twice)."""

    def __init__(
        self, local: Callable[[], Iterable[uuid.UUID]], redis: RedisClient | None, prefix: str
    ) -> None:
        self._local = local
        self._redis = redis
        self._prefix = prefix
        self._task: asyncio.Task[None] | None = None

    def _key(self, user_id: uuid.UUID) -> str:
        return f"{self._prefix}online:{user_id}"

    async def is_online(self, user_id: uuid.UUID) -> bool:
        if any(u == user_id for u in self._local()):
            return True
        if self._redis is None:
            return False
        # unknown is not "offline": a Redis error fails the job, which is retried
        return bool(await self._redis.exists(self._key(user_id)))

    def start(self) -> None:
        if self._redis is not None:
            self._task = asyncio.create_task(self._refresh(), name="online-users")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh(self) -> None:
        if self._redis is None:
            return
        while True:
            users = set(self._local())
            if users:
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for user_id in users:
                            pipe.set(self._key(user_id), b"1", ex=ONLINE_TTL)
                        await pipe.execute()
                except (RedisError, OSError) as exc:
                    log.warning("could not refresh online users in Redis: %s", exc)
            await asyncio.sleep(ONLINE_REFRESH)


class PushService:
    def __init__(self, db: Database, settings: Settings, online: OnlineUsers | None) -> None:
        self.db = db
        self.settings = settings
        self.online = online
        self.vapid = load_vapid(settings.vapid_private_key) if settings.vapid_private_key else None
        self.public_key: str | None = None
        if self.vapid is not None:
            point = self.vapid.public_key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            self.public_key = _b64url(point)
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return self.vapid is not None

    def _require_enabled(self) -> None:
        if not self.enabled:
            raise Unavailable(
                "push notifications are not set up on this server (VAPID_PRIVATE_KEY)",
                code="push_disabled",
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def key(self) -> PushKey:
        self._require_enabled()
        if self.public_key is None:
            raise RuntimeError("public_key is missing")
        return PushKey(self.public_key)

    async def subscribe(
        self, user_id: uuid.UUID, body: PushSubscribe, user_agent: str | None
    ) -> PushSubscription:
        self._require_enabled()
        endpoint = body.endpoint.strip()
        parts = urlsplit(endpoint)
        allowed = ("https",) if self.settings.production else ("https", "http")
        if parts.scheme not in allowed or not parts.hostname or len(endpoint) > 2048:
            raise Invalid("endpoint", f"must be a {' or '.join(allowed)} URL of a push service")
        _unb64url(body.keys.p256dh, "keys.p256dh", 65)
        _unb64url(body.keys.auth, "keys.auth", 16)
        row = await notifications_db.upsert_subscription(
            self.db.pool,
            user_id=user_id,
            endpoint=endpoint,
            p256dh=body.keys.p256dh,
            auth=body.keys.auth,
            user_agent=(user_agent or "")[:512] or None,
            keep=MAX_SUBSCRIPTIONS,
        )
        return PushSubscription(row["id"], endpoint, bool(row["created"]))

    async def unsubscribe(self, user_id: uuid.UUID, body: PushUnsubscribe) -> None:
        if not await notifications_db.delete_subscription(
            self.db.pool, user_id, body.endpoint.strip()
        ):
            raise NotFound("no such push subscription")

    async def send(self, job: Job) -> None:
        """The `send_push` job (see the module doc)."""
        if self.vapid is None:
            return
        try:
            notification_id = uuid.UUID(str(job.payload["notificationId"]))
        except (KeyError, ValueError):
            raise PermanentError("payload lacks a valid notificationId") from None
        row = await notifications_db.push_state(self.db.pool, notification_id)
        if row is None or row["is_push_sent"] or row["is_read"]:
            return
        if row["account_status"] != "active":
            return
        if not Preferences.load(row["notification_settings"]).push_enabled:
            return
        user_id = row["recipient_id"]
        if self.online is not None and await self.online.is_online(user_id):
            return
        subscriptions = await notifications_db.subscriptions(self.db.pool, user_id)
        if not subscriptions:
            return
        payload = orjson.dumps(
            {
                "id": str(row["id"]),
                "type": row["notification_type"],
                "title": row["title"],
                "message": row["message"],
                "actionUrl": row["action_url"],
                "createdAt": row["created_at"].isoformat(),
            }
        ).decode()
        results = await asyncio.gather(*(self._deliver(s, payload) for s in subscriptions))
        if any(r == "sent" for r in results):
            await notifications_db.mark_push_sent(self.db.pool, notification_id)
        elif any(r == "retry" for r in results):
            raise RuntimeError("no device took the push; retrying")

    async def _deliver(self, sub: Any, payload: str) -> str:
        """One subscription: 'sent', 'gone' (removed), 'retry' or 'failed'."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        info = {"endpoint": sub["endpoint"], "keys": {"p256dh": sub["p256dh"], "auth": sub["auth"]}}
        try:
            await webpush_async(
                info,
                data=payload,
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.settings.vapid_subject},
                ttl=self.settings.push_ttl,
                timeout=aiohttp.ClientTimeout(total=self.settings.push_timeout),
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            status = exc.status_code
            if status in (404, 410):
                await notifications_db.delete_subscription_by_id(self.db.pool, sub["id"])
                log.info("push subscription %s expired (%s): removed", sub["id"], status)
                return "gone"
            log.warning("push to %s failed: %s", urlsplit(sub["endpoint"]).hostname, exc)
            return "retry" if status is None or status == 429 or status >= 500 else "failed"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("push to %s failed: %r", urlsplit(sub["endpoint"]).hostname, exc)
            return "retry"
        await notifications_db.mark_subscription_used(self.db.pool, sub["id"])
        return "sent"


# the application's key for what this module provides (typed app state)
PUSH = web.AppKey("push", PushService)
