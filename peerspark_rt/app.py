"""build_app(settings) -> web.Application: wires every part through cleanup contexts, so
start-up and shutdown are symmetric and each test gets a clean application."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from .actors.hub import Hub
from .cluster.broker import Broker, LocalBroker, RedisBroker
from .cluster.presence import LocalPresence, Presence, RedisPresence
from .config import Settings
from .db.pool import Database, apply_schema
from .db.users import live_sessions
from .http import auth as auth_http
from .http import health as health_http
from .http import pods as pods_http
from .http import sessions as sessions_http
from .http import ws as ws_http
from .http.keys import (
    AUTH,
    BROKER,
    CHAT,
    DB,
    HEALTH,
    HUB,
    LIMITER,
    LIVE,
    METRICS,
    NOTIFICATIONS,
    PODS,
    REALTIME,
    REDIS,
    SESSIONS,
    SETTINGS,
    USERS,
)
from .http.metrics import Metrics
from .http.middleware import MIDDLEWARES
from .protocol import CLOSE_SESSION_REVOKED
from .services.auth import AuthService
from .services.chat import ChatService
from .services.health import Health
from .services.live import LiveEvents
from .services.notifications import NotificationService
from .services.pods import PodService
from .services.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from .services.realtime import RealtimeService, SessionHistory
from .services.sessions import SessionService
from .services.users import UserService

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url, "DATABASE_URL must be resolved before building the app"
    if settings.auto_migrate:
        await apply_schema(settings.database_url)
    db = await Database.connect(
        settings.database_url,
        max_size=settings.database_pool_size,
        statement_timeout_ms=settings.database_timeout_ms,
    )
    app[DB] = db

    async def probe() -> dict[str, Any]:
        version = await db.fetchval("SHOW server_version")
        return {"status": "healthy", "version": version, "pool": db.stats()}

    app[HEALTH].add("database", probe)
    app[METRICS].add_source(
        lambda: [
            ("peerspark_db_pool_connections", "Database pool connections", {"state": k}, v)
            for k, v in db.stats().items()
        ]
    )
    yield
    await db.close()


async def _redis_and_broker(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    limiter: RateLimiter
    broker: Broker
    redis: Redis | None = None
    if settings.redis_url:
        redis = Redis.from_url(
            settings.redis_url,
            max_connections=settings.redis_pool_size,
            socket_connect_timeout=5,
            health_check_interval=15,
        )
        await redis.ping()  # fail start-up now rather than on the first request
        app[REDIS] = redis
        limiter = RedisRateLimiter(redis, settings.redis_key_prefix)
        broker = RedisBroker(redis, settings.node_id, settings.redis_key_prefix)

        async def probe() -> dict[str, Any]:
            await redis.ping()
            info = await redis.info("server")
            return {"status": "healthy", "mode": "redis", "version": info.get("redis_version")}

    else:
        limiter = LocalRateLimiter()
        broker = LocalBroker(settings.node_id)

        async def probe() -> dict[str, Any]:
            return {"status": "healthy", "mode": "in-process"}

    app[HEALTH].add("redis", probe)
    app[LIMITER] = limiter
    app[BROKER] = broker
    app[LIVE] = LiveEvents(broker)
    await broker.start()
    yield
    await broker.close()
    if redis is not None:
        await redis.aclose()


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings, db = app[SETTINGS], app[DB]
    app[AUTH] = AuthService(db, settings, app[LIMITER])
    app[USERS] = UserService(db)
    app[NOTIFICATIONS] = NotificationService(db, app[LIVE])
    app[PODS] = PodService(db, app[LIVE], app[NOTIFICATIONS])
    app[SESSIONS] = SessionService(db, app[PODS], app[LIVE])
    app[CHAT] = ChatService(db, app[LIVE], shards=settings.chat_store_shards)
    yield
    await app[CHAT].close()


SESSION_CHECK_EVERY = 60.0  # seconds between checks that live sockets' logins still exist


async def _realtime(app: web.Application) -> AsyncIterator[None]:
    settings, db, live = app[SETTINGS], app[DB], app[LIVE]
    presence: Presence
    if settings.redis_url:
        presence = RedisPresence(app[REDIS], settings.node_id, settings.redis_key_prefix)
    else:
        presence = LocalPresence()
    hub = Hub(
        broker=app[BROKER],
        presence=presence,
        history=SessionHistory(db),
        metrics=app[METRICS],
        typing_ttl=settings.typing_timeout,
        outbound_limit=settings.ws_outbound_queue,
        presence_grace=settings.presence_grace,
    )
    await hub.start()
    await presence.start()
    app[HUB] = hub
    sessions = app[SESSIONS]
    app[REALTIME] = RealtimeService(
        hub=hub,
        pods=app[PODS],
        sessions=sessions,
        chat=app[CHAT],
        send_rate=settings.ws_send_rate,
        send_burst=settings.ws_send_burst,
        screen_share_enabled=settings.enable_video_calls,
    )

    async def attendance(room: str, user_id: uuid.UUID, present: bool) -> None:
        if room.startswith("session:"):
            await sessions.record_presence(uuid.UUID(room[8:]), user_id, present)

    async def read_up_to(room: str, user_id: uuid.UUID, seq: int) -> None:
        if room.startswith("session:"):
            await sessions.record_read(uuid.UUID(room[8:]), user_id, seq)

    async def revoked(user_id: uuid.UUID, session_id: uuid.UUID) -> None:
        await live.revoke_session(session_id)

    hub.on_presence.append(attendance)
    hub.on_read.append(read_up_to)
    app[AUTH].on_session_revoked.append(revoked)

    async def check_logins() -> None:
        """Close sockets whose login session expired or vanished without a revoke message
        reaching this node (e.g. while Redis was down)."""
        while True:
            await asyncio.sleep(SESSION_CHECK_EVERY)
            ids = list({c.session_id for c in hub.connections})
            if not ids:
                continue
            try:
                alive = await live_sessions(db.pool, ids)
            except Exception:
                log.exception("checking live sockets' sessions failed")
                continue
            for conn in list(hub.connections):
                if conn.session_id not in alive:
                    conn.close(CLOSE_SESSION_REVOKED, "session ended")

    checker = asyncio.create_task(check_logins(), name="ws-session-check")
    yield
    checker.cancel()
    await hub.close()
    await presence.close()


async def _close_sockets(app: web.Application) -> None:
    """On shutdown, close live sockets with 'going away' so clients reconnect elsewhere
    (otherwise the server would wait for them to end by themselves)."""
    if HUB in app:
        await app[HUB].close()


def _storage_probe(settings: Settings) -> Any:
    async def probe() -> dict[str, Any]:
        if settings.aws_access_key_id:
            return {"status": "healthy", "mode": "s3", "bucket": settings.aws_s3_bucket}
        folder = settings.data_dir / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
        return {"status": "healthy", "mode": "local", "path": str(folder.resolve())}

    return probe


def _ai_probe(settings: Settings) -> Any:
    async def probe() -> dict[str, Any]:
        if not settings.enable_ai_features:
            return {"status": "disabled", "reason": "ENABLE_AI_FEATURES is false"}
        if not settings.openai_api_key:
            return {
                "status": "not_configured",
                "reason": "AI is not configured: set OPENAI_API_KEY",
            }
        return {"status": "configured", "model": settings.openai_model}

    return probe


def build_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=MIDDLEWARES, client_max_size=settings.upload_max_bytes + 65536
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[HEALTH] = Health()
    app[HEALTH].add("storage", _storage_probe(settings))
    app[HEALTH].add("ai", _ai_probe(settings), required=False)
    app.cleanup_ctx.extend([_database, _redis_and_broker, _services, _realtime])
    app.on_shutdown.append(_close_sockets)
    for module in (health_http, auth_http, pods_http, sessions_http, ws_http):
        app.router.add_routes(module.routes)
    log.debug("app built for node %s (pid %d)", settings.node_id, os.getpid())
    return app
