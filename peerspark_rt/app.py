"""build_app(settings) -> web.Application: wires every part through cleanup contexts, so
start-up and shutdown are symmetric and each test gets a clean application."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from .cluster.broker import Broker, LocalBroker, RedisBroker
from .config import Settings
from .db.pool import Database, apply_schema
from .http import auth as auth_http
from .http import feed as feed_http
from .http import health as health_http
from .http import mobile as mobile_http
from .http import pods as pods_http
from .http import reports as reports_http
from .http import resources as resources_http
from .http import search as search_http
from .http import uploads as uploads_http
from .http.keys import (
    AUTH,
    BROKER,
    COMMENTS,
    DB,
    HEALTH,
    LIMITER,
    LIVE,
    METRICS,
    MOBILE,
    NOTIFICATIONS,
    PODS,
    POSTS,
    REDIS,
    REPORTS,
    RESOURCES,
    SEARCH,
    SETTINGS,
    STORAGE,
    UPLOADS,
    USERS,
)
from .http.metrics import Metrics
from .http.middleware import MIDDLEWARES
from .services.auth import AuthService
from .services.comments import CommentService
from .services.effects import Units
from .services.feed import PostService
from .services.health import Health
from .services.live import LiveEvents
from .services.mobile import MobileService
from .services.notifications import NotificationService
from .services.pods import PodService
from .services.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from .services.reports import CommentContent, PostContent, ReportService, ResourceContent
from .services.resources import ResourceService
from .services.search import SearchService
from .services.storage import make_storage
from .services.uploads import UploadService
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
    _feed_services(app)
    yield


async def _storage(app: web.Application) -> AsyncIterator[None]:
    """Uploaded files: S3 when AWS keys are set, else a folder in the data directory."""
    storage = make_storage(app[SETTINGS])
    await storage.start()
    app[STORAGE] = storage
    app[HEALTH].add("storage", storage.probe)
    yield
    await storage.close()


def _feed_services(app: web.Application) -> None:
    """Feed, comments, reports, resources, search, uploads and mobile sync."""
    settings = app[SETTINGS]
    units = Units(app[DB], app[LIVE], app[NOTIFICATIONS])
    app[UPLOADS] = UploadService(
        app[DB],
        app[STORAGE],
        app[LIMITER],
        max_bytes=settings.upload_max_bytes,
        per_hour=settings.upload_rate_limit,
    )
    reports = ReportService(units)
    for handler in (PostContent(), CommentContent(), ResourceContent()):
        reports.register(handler)
    app[REPORTS] = reports
    app[POSTS] = PostService(units, app[PODS], reports, app[UPLOADS])
    app[COMMENTS] = CommentService(units, reports)
    app[RESOURCES] = ResourceService(units, app[PODS], app[UPLOADS])
    app[SEARCH] = SearchService(app[RESOURCES], app[POSTS], app[PODS])
    app[MOBILE] = MobileService(units, app[POSTS], app[COMMENTS], app[RESOURCES])


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
    app[HEALTH].add("ai", _ai_probe(settings), required=False)
    app.cleanup_ctx.extend([_database, _redis_and_broker, _storage, _services])
    for module in (
        health_http,
        auth_http,
        pods_http,
        feed_http,
        reports_http,
        resources_http,
        search_http,
        uploads_http,
        mobile_http,
    ):
        app.router.add_routes(module.routes)
    log.debug("app built for node %s (pid %d)", settings.node_id, os.getpid())
    return app
