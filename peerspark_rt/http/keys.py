"""Typed keys for application and request state."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from ..actors.hub import Hub
from ..cluster.broker import Broker
from ..config import Settings
from ..db.pool import Database
from ..services.ai.assistant import AssistantService
from ..services.ai.client import AIClient
from ..services.auth import AuthService, Principal
from ..services.chat import ChatService
from ..services.health import Health
from ..services.live import LiveEvents
from ..services.moderation import ModerationService
from ..services.notifications import NotificationService
from ..services.pods import PodService
from ..services.ratelimit import RateLimiter
from ..services.realtime import RealtimeService
from ..services.sessions import SessionService
from ..services.users import UserService
from .metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
REDIS = web.AppKey("redis", Redis)
LIMITER = web.AppKey("limiter", RateLimiter)
BROKER = web.AppKey("broker", Broker)
LIVE = web.AppKey("live", LiveEvents)
METRICS = web.AppKey("metrics", Metrics)
AUTH = web.AppKey("auth", AuthService)
USERS = web.AppKey("users", UserService)
PODS = web.AppKey("pods", PodService)
NOTIFICATIONS = web.AppKey("notifications", NotificationService)
SESSIONS = web.AppKey("sessions", SessionService)
CHAT = web.AppKey("chat", ChatService)
HUB = web.AppKey("hub", Hub)
REALTIME = web.AppKey("realtime", RealtimeService)
AI = web.AppKey("ai", AIClient)
MODERATION = web.AppKey("moderation", ModerationService)
ASSISTANT = web.AppKey("assistant", AssistantService)

PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
HEALTH = web.AppKey("health", Health)
