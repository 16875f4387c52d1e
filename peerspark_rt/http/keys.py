"""Typed keys for application and request state."""

from __future__ import annotations

from aiohttp import web

from ..actors.hub import Hub
from ..cluster.broker import Broker
from ..cluster.redis_client import RedisClient
from ..config import Settings
from ..db.pool import Database
from ..services.ai.assistant import AssistantService
from ..services.ai.client import AIClient
from ..services.auth import AuthService, Principal
from ..services.calendar import CalendarService
from ..services.calendar_feed import CalendarFeed
from ..services.chat import ChatService
from ..services.comments import CommentService
from ..services.email import Mailer
from ..services.feed import PostService
from ..services.health import Health
from ..services.jobs import JobQueue, Worker
from ..services.live import LiveEvents
from ..services.mobile import MobileService
from ..services.moderation import ModerationService
from ..services.notifications import NotificationService
from ..services.pods import PodService
from ..services.ratelimit import RateLimiter
from ..services.realtime import RealtimeService
from ..services.reminders import Reminders
from ..services.reports import ReportService
from ..services.resources import ResourceService
from ..services.search import SearchService
from ..services.sessions import SessionService
from ..services.storage import Storage
from ..services.uploads import UploadService
from ..services.users import UserService
from .inflight import InFlight
from .metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
CHAT_DB = web.AppKey("chat_db", Database)  # the chat store's own connections
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
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
REQUESTS = web.AppKey("requests", InFlight)  # requests in flight (a graceful stop waits)
