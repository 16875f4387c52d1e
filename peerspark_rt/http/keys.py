"""Typed keys for application and request state."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from ..accounts.auth import AuthService, Principal
from ..accounts.ratelimit import RateLimiter
from ..accounts.users import UserService
from ..actors.hub import Hub
from ..ai.assistant import AssistantService
from ..calendar.events import CalendarService
from ..calendar.feed import CalendarFeed
from ..calendar.reminders import Reminders
from ..cluster.broker import Broker
from ..config import Settings
from ..infra.ai_client import AIClient
from ..infra.health import Health
from ..infra.jobs import JobQueue, Worker
from ..infra.live import LiveEvents
from ..infra.pool import Database
from ..infra.storage import Storage
from ..moderation.service import ModerationService
from ..notifications.email import Mailer
from ..notifications.service import NotificationService
from ..pods.service import PodService
from ..resources.service import ResourceService
from ..resources.uploads import UploadService
from ..search.service import SearchService
from ..sessions.chat import ChatService
from ..sessions.realtime import RealtimeService
from ..sessions.service import SessionService
from ..social.comments import CommentService
from ..social.feed import PostService
from ..social.mobile import MobileService
from ..social.reports import ReportService
from .metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
CHAT_DB = web.AppKey("chat_db", Database)  # the chat store's own connections
REDIS = web.AppKey("redis", Redis)
LIMITER = web.AppKey("limiter", RateLimiter)
BROKER = web.AppKey("broker", Broker)
LIVE = web.AppKey("live", LiveEvents)
METRICS = web.AppKey("metrics", Metrics)
# set on the application METRICS_ADDRESS serves (http/health.py: metrics_app)
METRICS_LISTENER = web.AppKey("metrics_listener", bool)
AUTH = web.AppKey("auth", AuthService)
USERS = web.AppKey("users", UserService)
PODS = web.AppKey("pods", PodService)
NOTIFICATIONS = web.AppKey("notifications", NotificationService)
SESSIONS = web.AppKey("sessions", SessionService)
CHAT = web.AppKey("chat", ChatService)
HUB = web.AppKey("hub", Hub)
REALTIME = web.AppKey("realtime", RealtimeService)
JOBS = web.AppKey("jobs", JobQueue)
WORKER = web.AppKey("worker", Worker)  # only when this node runs a worker
MAILER = web.AppKey("mailer", Mailer)
CALENDAR = web.AppKey("calendar", CalendarService)
CALENDAR_FEED = web.AppKey("calendar_feed", CalendarFeed)
REMINDERS = web.AppKey("reminders", Reminders)
STORAGE = web.AppKey("storage", Storage)
UPLOADS = web.AppKey("uploads", UploadService)
REPORTS = web.AppKey("reports", ReportService)
POSTS = web.AppKey("posts", PostService)
COMMENTS = web.AppKey("comments", CommentService)
RESOURCES = web.AppKey("resources", ResourceService)
SEARCH = web.AppKey("search", SearchService)
MOBILE = web.AppKey("mobile", MobileService)
AI = web.AppKey("ai", AIClient)
MODERATION = web.AppKey("moderation", ModerationService)
ASSISTANT = web.AppKey("assistant", AssistantService)

PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
HEALTH = web.AppKey("health", Health)
