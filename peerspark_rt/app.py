"""build_app(settings) -> web.Application: wires every part through cleanup contexts, so
start-up and shutdown are symmetric and each test gets a clean application."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from .accounts import erase as erase_mod
from .accounts import passwords
from .accounts.admin import ADMIN, PREMIUM, AdminService, Premium
from .accounts.auth import AUTH, AuthService
from .accounts.db import live_sessions
from .accounts.erase import ERASER, AccountEraser
from .accounts.lifecycle import ACCOUNTS, AccountService
from .accounts.oauth import OAUTH, OAuthService
from .accounts.ratelimit import (
    LIMITER,
    FallbackRateLimiter,
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from .accounts.users import USERS, UserService
from .accounts.verification import EmailGate
from .actors import hub as hub_module
from .actors.hub import HUB, Hub, PresenceChange
from .ai.assistant import ASSISTANT, AssistantService
from .ai.quota import QuotaService
from .ai.retrieval import Retriever
from .analytics.admin import ADMIN_STREAM, PLATFORM, AdminStream, LiveCounters, Platform
from .analytics.cache import TtlCache
from .analytics.dashboards import DASHBOARDS, Dashboards
from .analytics.events import ANALYTICS, Analytics
from .analytics.rollup import Rollups
from .calendar.events import CALENDAR, CalendarService
from .calendar.feed import CALENDAR_FEED, CalendarFeed
from .calendar.reminders import REMINDERS, Reminders
from .cluster import redis_client
from .cluster.broker import BROKER, REDIS, Broker, LocalBroker, RedisBroker
from .cluster.presence import LocalPresence, Presence, RedisPresence
from .cluster.publisher import Publisher
from .cluster.redis_client import RedisClient
from .cluster.sharded import ShardedRedisBroker
from .config import SETTINGS, Settings
from .errors import Conflict
from .gamification.challenges import CHALLENGES, Challenges
from .gamification.engine import GAMIFICATION, Gamification
from .gamification.follows import FOLLOWS, Follows
from .gamification.leaderboard import Boards
from .gamification.leagues import LEAGUES, Leagues
from .gamification.scores import LocalScores, RedisScores
from .http import account as account_http
from .http import admin as admin_http
from .http import ai as ai_http
from .http import analytics as analytics_http
from .http import auth as auth_http
from .http import calendar as calendar_http
from .http import docs as docs_http
from .http import feed as feed_http
from .http import gamification as gamification_http
from .http import health as health_http
from .http import mobile as mobile_http
from .http import moderation as moderation_http
from .http import notifications as notifications_http
from .http import oauth as oauth_http
from .http import pods as pods_http
from .http import reports as reports_http
from .http import resources as resources_http
from .http import search as search_http
from .http import sessions as sessions_http
from .http import sio as sio_http
from .http import study as study_http
from .http import uploads as uploads_http
from .http import web_client as web_client_http
from .http import web_login as web_login_http
from .http import ws as ws_http
from .http.inflight import REQUESTS, InFlight
from .http.metrics import METRICS, Metrics
from .http.middleware import MIDDLEWARES, security_headers
from .http.openapi import API_DOCUMENT, ApiDocument
from .http.transport import GuardedSite, make_runner, start_metrics_listener
from .http.web_session import COOKIES, cookie_storage
from .infra.ai_client import AI, AIClient
from .infra.health import HEALTH, Health
from .infra.jobs import JOBS, WORKER, JobQueue, Periodic, Worker, WorkerCounters
from .infra.live import LIVE, LiveEvents
from .infra.pool import CHAT_DB, DB, Database, apply_schema
from .infra.readcache import ReadCache
from .infra.storage import STORAGE, make_storage
from .maintenance.service import Maintenance
from .moderation.service import MODERATION, HeldContent, ModerationService
from .notifications.effects import Units
from .notifications.email import MAILER, EmailJobs, Mailer
from .notifications.push import PUSH, OnlineUsers, PushService
from .notifications.service import NOTIFICATIONS, NotificationService
from .pods.service import PODS, PodService
from .protocol import CLOSE_SESSION_REVOKED
from .resources.service import RESOURCES, ResourceService
from .resources.uploads import UPLOADS, UploadService
from .search.db import warm as search_warm
from .search.service import SEARCH, SearchService
from .sessions.chat import CHAT, ChatLimiter, ChatService
from .sessions.chat import warm_store as chat_warm_store
from .sessions.focus import FOCUS, FocusService
from .sessions.realtime import REALTIME, RealtimeService, SessionHistory
from .sessions.service import SESSIONS, SessionService
from .social.comments import COMMENTS, CommentService
from .social.feed import POSTS, PostService
from .social.mobile import MOBILE, MobileService
from .social.reports import REPORTS, CommentContent, PostContent, ReportService, ResourceContent
from .study.generate import DECK_GENERATOR, DeckGenerator
from .study.goals import GOALS, GoalService
from .study.live import LIVE_REVIEWS, LiveReviews
from .study.service import STUDY, StudyService

log = logging.getLogger(__name__)

# What `python -m peerspark_rt serve` runs the app with (the listening socket's rules).
__all__ = [
    "GuardedSite",
    "build_app",
    "build_worker",
    "drain",
    "make_runner",
    "start_metrics_listener",
]


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL must be resolved before building the app")
    if settings.auto_migrate:
        await apply_schema(settings.database_url)
    db = await Database.connect(
        settings.database_url,
        max_size=settings.database_pool_size,
        statement_timeout_ms=settings.database_timeout_ms,
        # a text search's statements are run once as each connection opens (best effort): a
        # new server process's first search took ~15 ms of the database, the next 3-4
        # (bench/README.md)
        warm=search_warm,
    )
    app[DB] = db
    # The chat store's own connections (one per shard, and one for reads of the live path):
    # requests that exhaust the main pool, or hold a session's rows, never stall chat.
    store = await Database.connect(
        settings.database_url,
        max_size=settings.chat_store_shards + 1,
        statement_timeout_ms=min(settings.database_timeout_ms, 10_000),
        lock_timeout_ms=settings.chat_lock_timeout_ms,
        application_name="peerspark-rt-chat",
        # all opened, and prepared, at start and kept open: a quiet room's next message never
        # pays for a new connection or its statements (see sessions.chat.warm_store)
        warm=chat_warm_store,
        max_inactive=0,
        min_size=settings.chat_store_shards + 1,
    )
    app[CHAT_DB] = store

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
    await store.close()
    await db.close()


async def _redis_and_broker(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    limiter: RateLimiter
    broker: Broker
    redis: RedisClient | None = None
    if settings.redis_url:
        redis = redis_client.connect(
            settings.redis_url,
            cluster=settings.redis_cluster,
            max_connections=settings.redis_pool_size,
            timeout=settings.redis_timeout,
        )
        await redis.ping()  # fail start-up now rather than on the first request
        app[REDIS] = redis
        fallback = FallbackRateLimiter(
            # (single-key commands and one-key transactions: the same on a cluster client)
            RedisRateLimiter(cast(Redis, redis), settings.redis_key_prefix),
            LocalRateLimiter(),
            timeout=settings.redis_timeout,
        )
        limiter = fallback
        publisher = Publisher(
            redis,
            max_bytes=settings.redis_publish_buffer,
            timeout=settings.redis_timeout,
            metrics=app[METRICS],
        )
        if isinstance(redis, RedisCluster):
            broker = ShardedRedisBroker(
                redis,
                settings.node_id,
                settings.redis_key_prefix,
                publisher=publisher,
                timeout=settings.redis_timeout,
            )
        else:
            broker = RedisBroker(
                redis,
                settings.node_id,
                settings.redis_key_prefix,
                publisher=publisher,
                timeout=settings.redis_timeout,
            )
        app[METRICS].add_source(
            lambda: [
                (
                    "peerspark_redis_publish_buffered_bytes",
                    "Bytes of cross-node traffic waiting for Redis",
                    {},
                    float(publisher.buffered_bytes),
                )
            ]
        )

        async def probe() -> dict[str, Any]:
            if redis is None:
                raise RuntimeError("no Redis client")
            await redis.ping()
            return {
                **broker.health(),
                "version": await redis_client.server_version(redis),
                "rateLimits": fallback.health(),
            }

    else:
        limiter = LocalRateLimiter()
        broker = LocalBroker(settings.node_id)

        async def probe() -> dict[str, Any]:
            # not "healthy": there is no Redis to be healthy (nor down: nothing is missing)
            return {
                "status": "in-process",
                "mode": "in-process",
                "note": "no REDIS_URL: a single node; pub/sub, presence and rate limits live "
                "in this process (set REDIS_URL to run several nodes)",
            }

    # Not required: a node without Redis still serves its users (cross-node delivery then
    # goes through the store's position checks), and every node loses Redis at once: taking
    # them all out of the load balancer would turn a degradation into an outage.
    app[HEALTH].add("redis", probe, required=False)
    app[LIMITER] = limiter
    app[BROKER] = broker
    app[LIVE] = LiveEvents(broker)
    await broker.start()
    yield
    await broker.close()
    if redis is not None:
        await redis.aclose()


async def _ai_client(app: web.Application) -> AsyncIterator[None]:
    """The OpenAI SDK client (its connection pool) lives as long as the app."""
    client = AIClient(app[SETTINGS])
    app[AI] = client
    yield
    await client.close()


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings, db, metrics = app[SETTINGS], app[DB], app[METRICS]
    jobs = JobQueue(db)
    app[JOBS] = jobs
    analytics = Analytics()
    app[ANALYTICS] = analytics
    metrics.add_source(
        lambda: [
            (
                "peerspark_analytics_announcements_dropped",
                "Analytics events whose listeners were not told (the queue was full)",
                {},
                float(analytics.dropped),
            )
        ]
    )
    app[AUTH] = AuthService(db, settings, app[LIMITER], analytics, jobs)
    app[ACCOUNTS] = AccountService(app[AUTH], jobs)
    app[OAUTH] = OAuthService(app[AUTH])
    app[PREMIUM] = Premium(db, jobs, settings.base_url)
    app[ADMIN] = AdminService(app[AUTH], app[PREMIUM])
    app[ERASER] = AccountEraser(app[AUTH], jobs, app[STORAGE])
    gate = EmailGate(settings.require_verified_email)
    app[USERS] = UserService(db)
    app[NOTIFICATIONS] = NotificationService(db, app[LIVE], jobs, settings.base_url)
    app[PUSH] = PushService(db, settings, online=None)
    app[NOTIFICATIONS].push_enabled = app[PUSH].enabled
    app[PODS] = PodService(db, app[LIVE], app[NOTIFICATIONS], analytics, gate)
    app[SESSIONS] = SessionService(db, app[PODS], app[LIVE], analytics)
    app[MODERATION] = ModerationService(
        db, settings, app[AI], app[PODS], app[NOTIFICATIONS], metrics, sessions=app[SESSIONS]
    )
    app[CHAT] = ChatService(
        db,
        app[LIVE],
        analytics,
        store_db=app[CHAT_DB],
        shards=settings.chat_store_shards,
        moderation=app[MODERATION],
        moderation_mode=settings.chat_ai_moderation,  # type: ignore[arg-type]
        limiter=ChatLimiter(settings.ws_send_rate, settings.ws_send_burst),
        observe_batch=metrics.chat_committed,
    )
    app[ASSISTANT] = AssistantService(
        db=db,
        settings=settings,
        ai=app[AI],
        quota=QuotaService(db, settings),
        retriever=Retriever(db, app[PODS]),
        limiter=app[LIMITER],
        sessions=app[SESSIONS],
        chat=app[CHAT],
        moderation=app[MODERATION],
        live=app[LIVE],
        analytics=analytics,
        metrics=metrics,
    )
    app[CALENDAR] = CalendarService(db, app[PODS])
    app[CALENDAR_FEED] = CalendarFeed(db, app[CALENDAR], settings.base_url)
    app[MAILER] = Mailer(settings)
    app[REMINDERS] = Reminders(
        db,
        jobs,
        app[NOTIFICATIONS],
        settings,
        on_fired=lambda source, late: metrics.reminders_fired.labels(
            source, "true" if late else "false"
        ).inc(),
    )
    _job_metrics(app)
    _feed_services(app)
    _study_services(app)
    redis = app.get(REDIS, None)
    app[DASHBOARDS] = Dashboards(db)
    app[PLATFORM] = Platform(
        db, TtlCache(redis, settings.redis_key_prefix, timeout=settings.redis_timeout)
    )
    _gamification(app)
    yield
    await app[GAMIFICATION].close()
    await app[CHAT].close()
    await app[PUSH].close()
    await analytics.close()


def _gamification(app: web.Application) -> None:
    """Points, streaks, achievements, challenges, leaderboards, leagues and follows, fed by
    the analytics events (a listener here; the catch-up job for whatever it missed)."""
    settings, db = app[SETTINGS], app[DB]
    redis = app.get(REDIS, None)
    if redis is not None:
        boards = Boards(
            db,
            RedisScores(redis, settings.redis_key_prefix, timeout=settings.redis_timeout),
            "redis",
        )
    else:
        boards = Boards(db, LocalScores(), "memory")
    app[ERASER].on_erase(boards.forget)
    game = Gamification(db, app[LIVE], app[NOTIFICATIONS], app[PODS], boards)
    app[GAMIFICATION] = game
    app[METRICS].add_source(
        lambda: [
            (
                "peerspark_gamification_events_dropped",
                "Events the gamification workers had no room for (the catch-up job applies them)",
                {},
                float(game.dropped),
            )
        ]
    )
    app[CHALLENGES] = Challenges(db, app[PODS])
    app[FOLLOWS] = Follows(db)
    app[LEAGUES] = Leagues(db, app[LIVE], app[NOTIFICATIONS])
    app[ANALYTICS].subscribe(game.on_event)


SESSION_CHECK_EVERY = 60.0  # seconds between checks that live sockets' logins still exist
LAG_SAMPLE = 0.25  # seconds between event-loop lag samples
LAG_WINDOW = 20  # samples in one reported maximum (5 s)


async def watch_loop_lag(report: Callable[[float], None]) -> None:
    """How late the event loop runs a timer: the delay every socket and room then sees."""
    loop = asyncio.get_running_loop()
    worst, samples = 0.0, 0
    while True:
        started = loop.time()
        await asyncio.sleep(LAG_SAMPLE)
        worst = max(worst, loop.time() - started - LAG_SAMPLE)
        samples += 1
        if samples >= LAG_WINDOW:
            report(worst)
            worst, samples = 0.0, 0


async def _realtime(app: web.Application) -> AsyncIterator[None]:
    settings, db, live = app[SETTINGS], app[DB], app[LIVE]
    presence: Presence
    if settings.redis_url:
        presence = RedisPresence(app[REDIS], settings.node_id, settings.redis_key_prefix)
    else:
        presence = LocalPresence()
    focus = FocusService(db, live, app[ANALYTICS], min_seconds=settings.focus_min_seconds)
    app[FOCUS] = focus
    hub = Hub(
        broker=app[BROKER],
        presence=presence,
        history=SessionHistory(app[CHAT_DB]),
        focus=focus,
        metrics=app[METRICS],
        typing_ttl=settings.typing_timeout,
        outbound_limit=settings.ws_outbound_bytes,
        presence_grace=settings.presence_grace,
        max_resume=settings.ws_max_resume,
        redis_timeout=settings.redis_timeout,
        position_interval=settings.position_check_interval,
    )
    await hub.start()
    await presence.start()
    app[HUB] = hub
    metrics = app[METRICS]
    metrics.add_source(
        lambda: [
            (
                "peerspark_room_mailbox_depth_max",
                "Deepest room mailbox on this node",
                {},
                float(hub.deepest_mailbox()),
            ),
            (
                "peerspark_ws_outbound_bytes",
                "Bytes queued for websocket clients on this node",
                {},
                float(hub.queued_bytes()),
            ),
            (
                "peerspark_presence_writes_backlog",
                "Presence writes waiting for the registry",
                {},
                float(hub.presence_writer.backlog),
            ),
        ]
    )
    sessions = app[SESSIONS]
    app[REALTIME] = RealtimeService(
        hub=hub,
        pods=app[PODS],
        sessions=sessions,
        chat=app[CHAT],
        focus=focus,
        screen_share_enabled=settings.enable_video_calls,
        max_rooms=settings.ws_max_rooms,
    )
    app[ws_http.LIVE_SOCKETS] = ws_http.live_sockets(hub, app[REALTIME], metrics, settings)

    async def attendance(changes: list[PresenceChange]) -> None:
        await sessions.record_attendance(
            [
                (uuid.UUID(room[8:]), user_id, present)
                for room, user_id, present in changes
                if room.startswith("session:")
            ],
            # each write's, as one change had before batching (read now: tests shorten it)
            timeout=hub_module.HOOK_TIMEOUT,
        )

    async def read_up_to(room: str, user_id: uuid.UUID, seq: int) -> None:
        if room.startswith("session:"):
            await sessions.record_read(uuid.UUID(room[8:]), user_id, seq)

    async def revoked(user_id: uuid.UUID, session_id: uuid.UUID) -> None:
        await live.revoke_session(session_id)

    hub.on_presence.append(attendance)
    hub.on_read.append(read_up_to)
    hub.on_focus.append(focus.credit)
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

    online = OnlineUsers(
        lambda: [c.user_id for c in hub.connections],
        app[REDIS] if settings.redis_url else None,
        settings.redis_key_prefix,
    )
    online.start()
    app[PUSH].online = online

    redis = app.get(REDIS, None)
    counters = LiveCounters(redis, settings.redis_key_prefix, timeout=settings.redis_timeout)
    app[ANALYTICS].subscribe(counters.count)
    stream = AdminStream(
        hub,
        counters,
        redis,
        prefix=settings.redis_key_prefix,
        node_id=settings.node_id,
        interval=settings.admin_dashboard_interval,
        timeout=settings.redis_timeout,
    )
    stream.start()
    app[ADMIN_STREAM] = stream

    checker = asyncio.create_task(check_logins(), name="ws-session-check")
    lag = asyncio.create_task(watch_loop_lag(metrics.loop_lag.set), name="loop-lag")
    yield
    checker.cancel()
    lag.cancel()
    await stream.close()
    await online.close()
    await hub.close()
    await app[ws_http.LIVE_SOCKETS].close()
    await presence.close()


async def _close_sockets(app: web.Application) -> None:
    """On shutdown, close live sockets with 'going away' so clients reconnect elsewhere
    (otherwise the server would wait for them to end by themselves)."""
    if HUB in app:
        await app[HUB].close()


async def drain(app: web.Application, timeout: float) -> bool:
    """The first half of a graceful stop, once the node accepts no new connections: answers
    carry `Connection: close`, chat messages in flight are stored and acknowledged, every
    websocket is closed with 1001 "restart: reconnect", and requests in flight (bodies still
    arriving included) are finished, for at most `timeout` seconds. True if nothing was left.
    (aiohttp's own shutdown, which follows, stops reading from connections at once.)"""
    requests = app[REQUESTS]
    requests.draining = True
    await _close_sockets(app)
    return await requests.idle(timeout)


def _job_metrics(app: web.Application) -> None:
    """Queue depth, failures (dead jobs) and the oldest ready job's age, read at each scrape."""
    jobs, metrics = app[JOBS], app[METRICS]
    latest: list[tuple[str, str, dict[str, str], float]] = []

    async def refresh() -> None:
        rows = await jobs.stats()
        latest.clear()
        for row in rows:
            labels = {"kind": row["kind"], "status": row["status"]}
            latest.append(("peerspark_jobs", "Jobs by kind and status", labels, float(row["n"])))
            if row["status"] == "queued":
                latest.append(
                    (
                        "peerspark_jobs_oldest_ready_seconds",
                        "Age of the oldest job ready to run, by kind",
                        {"kind": row["kind"]},
                        float(row["oldest"]),
                    )
                )

    metrics.add_refresher(refresh)
    metrics.add_source(lambda: list(latest))

    async def probe() -> dict[str, Any]:
        rows = await jobs.stats()
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + int(row["n"])
        worker = "running" if WORKER in app else "not on this node (RUN_WORKER=false)"
        return {"status": "healthy", "worker": worker, "jobs": counts}

    app[HEALTH].add("jobs", probe, required=False)


def build_worker(app: web.Application) -> Worker:
    """The job worker with every job kind, periodic job and scan this product has."""
    settings, db, metrics = app[SETTINGS], app[DB], app[METRICS]
    maintenance = Maintenance(db, app[UPLOADS])
    notifications = app[NOTIFICATIONS]
    reminders = app[REMINDERS]
    if not settings.database_url:
        raise RuntimeError("settings.database_url is missing")
    return Worker(
        db,
        settings.database_url,
        node_id=settings.node_id,
        handlers={
            "send_email": EmailJobs(db, app[MAILER], settings).send_email,
            "fire_reminder": reminders.fire,
            "analytics_rollup": Rollups(db).run,
            "cleanup": maintenance.cleanup,
            "digest_scan": notifications.digest_scan,
            "send_digest": notifications.send_digest,
            "export_user_data": app[ERASER].build_export,
            "premium_expiry": app[PREMIUM].expire_due,
            "account_cleanup": functools.partial(erase_mod.cleanup, db),
            "send_push": app[PUSH].send,
            "study_goal_reminders": app[GOALS].remind_job,
            "gamification_catch_up": app[GAMIFICATION].run,
            "streak_sweep": app[GAMIFICATION].sweep,
            "leagues_close": app[LEAGUES].run,
        },
        periodic=[
            Periodic("cleanup", dt.timedelta(hours=1)),
            Periodic("account_cleanup", dt.timedelta(hours=1)),
            Periodic("premium_expiry", dt.timedelta(minutes=5)),
            Periodic("analytics_rollup", dt.timedelta(seconds=settings.analytics_rollup_interval)),
            Periodic("digest_scan", dt.timedelta(hours=1)),
            Periodic("study_goal_reminders", dt.timedelta(hours=1)),
            Periodic("gamification_catch_up", dt.timedelta(minutes=1)),
            Periodic("streak_sweep", dt.timedelta(hours=1)),
            Periodic("leagues_close", dt.timedelta(hours=1)),
        ],
        ticks=[(settings.reminder_scan_interval, reminders.scan)],
        concurrency=settings.worker_concurrency,
        poll_interval=settings.worker_poll_interval,
        lease_seconds=settings.job_lease,
        backoff_base=settings.job_retry_base,
        counters=WorkerCounters(
            lambda kind, outcome: metrics.jobs_processed.labels(kind, outcome).inc()
        ),
    )


async def _worker(app: web.Application) -> AsyncIterator[None]:
    """Run the job worker inside this node unless RUN_WORKER=false (a separate
    `python -m peerspark_rt worker` process does the work then)."""
    if not app[SETTINGS].run_worker:
        yield
        return
    worker = build_worker(app)
    await worker.start()
    app[WORKER] = worker
    yield
    await worker.stop()


async def _storage(app: web.Application) -> AsyncIterator[None]:
    """Uploaded files: S3 when AWS keys are set, else a folder in the data directory."""
    storage = make_storage(app[SETTINGS])
    await storage.start()
    app[STORAGE] = storage
    app[HEALTH].add("storage", storage.probe)
    yield
    await storage.close()


def _study_services(app: web.Application) -> None:
    """Flashcards, deck generation, weekly goals and live review."""
    db, settings = app[DB], app[SETTINGS]
    study = StudyService(db, app[PODS], app[UPLOADS], app[ANALYTICS])
    app[STUDY] = study
    app[DECK_GENERATOR] = DeckGenerator(
        db, app[AI], QuotaService(db, settings), study, app[SESSIONS], app[ANALYTICS]
    )
    app[GOALS] = GoalService(db, app[NOTIFICATIONS])
    app[LIVE_REVIEWS] = LiveReviews(db, app[LIVE], app[SESSIONS], study)


def _feed_services(app: web.Application) -> None:
    """Feed, comments, reports, resources, search, uploads and mobile sync."""
    settings = app[SETTINGS]
    units = Units(app[DB], app[LIVE], app[NOTIFICATIONS], app[ANALYTICS])
    app[UPLOADS] = UploadService(
        app[DB],
        app[STORAGE],
        app[LIMITER],
        max_bytes=settings.upload_max_bytes,
        per_hour=settings.upload_rate_limit,
    )
    reports = ReportService(units, EmailGate(settings.require_verified_email))
    for handler in (PostContent(), CommentContent(), ResourceContent()):
        reports.register(handler)
    app[REPORTS] = reports
    moderation = app[MODERATION]
    app[POSTS] = PostService(units, app[PODS], reports, app[UPLOADS], moderation)
    app[COMMENTS] = CommentService(units, reports, moderation)
    _publish_approved(app)
    app[RESOURCES] = ResourceService(units, app[PODS], app[UPLOADS])
    reads = ReadCache(
        app.get(REDIS, None),
        settings.redis_key_prefix,
        # a cached page's signed file links keep at least 3/4 of their lifetime
        ttl=min(settings.read_cache_ttl, settings.file_url_ttl / 4),
        timeout=min(settings.redis_timeout, 0.25),
        observer=app[METRICS],
    )
    app[POSTS].reads = reads
    app[SEARCH] = SearchService(app[RESOURCES], app[POSTS], app[PODS], reads)
    app[MOBILE] = MobileService(units, app[POSTS], app[COMMENTS], app[RESOURCES])


def _publish_approved(app: web.Application) -> None:
    """Posts and comments held by moderation are stored by the feed once approved, as their
    author (who must still be allowed to post there)."""
    auth, posts, comments = app[AUTH], app[POSTS], app[COMMENTS]

    def publisher(store: Any) -> Any:
        async def publish(held: HeldContent) -> uuid.UUID:
            author = await auth.principal_for(held.author_id)
            if author is None:
                raise Conflict("the author's account is no longer active", code="author_inactive")
            result: uuid.UUID = await store(author, held.snapshot)
            return result

        return publish

    app[MODERATION].register_publisher("post", publisher(posts.publish_approved))
    app[MODERATION].register_publisher("comment", publisher(comments.publish_approved))


async def _ai_probe(app: web.Application) -> dict[str, Any]:
    if AI not in app:
        return {"status": "starting"}
    return await app[AI].health()


def build_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=MIDDLEWARES, client_max_size=settings.upload_max_bytes + 65536
    )
    app[SETTINGS] = settings
    passwords.configure(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
        parallelism=settings.password_hash_parallelism,
    )
    app[METRICS] = Metrics()
    app[HEALTH] = Health()
    app[REQUESTS] = InFlight()
    app[API_DOCUMENT] = ApiDocument()
    app[COOKIES] = cookie_storage(settings)
    app[HEALTH].add("ai", functools.partial(_ai_probe, app), required=False)
    app.cleanup_ctx.extend(
        [_database, _redis_and_broker, _storage, _ai_client, _services, _realtime, _worker]
    )
    app.on_shutdown.append(_close_sockets)
    app.on_response_prepare.append(security_headers)
    http_modules = (
        health_http,
        auth_http,
        account_http,
        admin_http,
        oauth_http,
        pods_http,
        sessions_http,
        ws_http,
        sio_http,
        calendar_http,
        notifications_http,
        feed_http,
        reports_http,
        resources_http,
        search_http,
        uploads_http,
        mobile_http,
        ai_http,
        study_http,
        analytics_http,
        gamification_http,
        moderation_http,
        docs_http,
        web_login_http,
        web_client_http,
    )
    for module in http_modules:
        app.router.add_routes(module.routes)
    log.debug("app built for node %s (pid %d)", settings.node_id, os.getpid())
    return app
