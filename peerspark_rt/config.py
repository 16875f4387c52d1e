"""Settings: one frozen object read from the environment over `config/defaults.toml`.

A bad value stops start-up with a `ConfigError` whose message names the variable and what is
wrong with it, so an operator sees one clear line instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web


def project_file(*parts: str) -> Path:
    """A file at the top of the project (schema.sql, config/...): beside the package in a source
    checkout, else in the working directory (as in the Docker image)."""
    beside_package = Path(__file__).resolve().parent.parent.joinpath(*parts)
    if beside_package.exists():
        return beside_package
    return Path.cwd().joinpath(*parts)


DEFAULTS_FILE = project_file("config", "defaults.toml")
ENVIRONMENTS = ("development", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


# Settings that hold secrets: never printed (see Settings.__repr__).
SECRET_FIELDS = frozenset(
    {
        "jwt_secret",
        "jwt_refresh_secret",
        "aws_access_key_id",
        "aws_secret_access_key",
        "openai_api_key",
        "smtp_pass",
        "metrics_token",
        "oauth_google_client_secret",
        "oauth_github_client_secret",
        "oauth_discord_client_secret",
        "vapid_private_key",
    }
)
# Settings that are URLs which may carry a password (postgresql://user:secret@host/db).
URL_FIELDS = frozenset({"database_url", "redis_url", "s3_endpoint_url", "openai_base_url"})
# What REQUIRE_VERIFIED_EMAIL may name: the features that invite abuse.
VERIFIED_FEATURES = ("report", "invite_email", "public_pod")


def redact_url(url: str) -> str:
    """`url` with any password in it replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + host).geturl()


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".data")

    database_url: str | None = None
    database_pool_size: int = 20
    database_timeout_ms: int = 30000

    redis_url: str | None = None
    redis_cluster: bool = False
    redis_pool_size: int = 10
    redis_key_prefix: str = "ps:"
    redis_timeout: float = 1.0
    redis_publish_buffer: int = 8 * 1024 * 1024
    # seconds a cached feed page or resource search stays (0: no caching); writes invalidate
    # it at once, this bounds what no table records (signed file links' lifetime)
    read_cache_ttl: float = 30.0

    jwt_secret: str = ""
    jwt_refresh_secret: str = ""
    access_token_ttl: int = 900
    # argon2id for new password hashes (RFC 9106's low-memory profile by default; never below
    # OWASP's floor of m=19 MiB, t=2, p=1: accounts/passwords.py)
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    password_hash_parallelism: int = 4
    refresh_token_ttl: int = 86400
    remember_me_ttl: int = 2592000
    refresh_reuse_grace: float = 10.0
    registration_rate_limit: int = 10
    login_failures_per_address: int = 50
    login_failures_per_account: int = 20

    allowed_origins: tuple[str, ...] = ("http://localhost:3000",)

    aws_region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_s3_bucket: str = "peerspark-files"
    s3_endpoint_url: str | None = None
    upload_max_bytes: int = 25 * 1024 * 1024
    upload_rate_limit: int = 10
    file_url_ttl: int = 3600
    public_base_url: str | None = None

    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_org_id: str | None = None
    openai_timeout: float = 60.0
    openai_max_retries: int = 2

    ai_max_tokens: int = 1000
    ai_history_tokens: int = 3000
    ai_daily_tokens: int = 20000
    ai_daily_tokens_premium: int = 200000
    ai_queries_per_hour: int = 50

    moderation_timeout: float = 2.0
    moderation_blocked_words: tuple[str, ...] = ()
    moderation_max_links: int = 3
    moderation_posts_per_hour: int = 10

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_pass: str | None = None
    email_from: str = "PeerSpark <noreply@peerspark.local>"
    email_outbox_dir: Path | None = None  # None: <data_dir>/outbox

    email_verification_ttl: int = 172800
    password_reset_ttl: int = 3600
    password_reset_rate_limit: int = 5
    # features that need a verified email (VERIFIED_FEATURES); config/defaults.toml names all
    require_verified_email: tuple[str, ...] = ()
    data_export_ttl: int = 604800

    oauth_state_ttl: int = 600
    oauth_timeout: float = 10.0
    oauth_complete_url: str | None = None  # None: <base url>/auth/complete
    oauth_google_client_id: str | None = None
    oauth_google_client_secret: str | None = None
    oauth_google_issuer: str = "https://accounts.google.com"
    oauth_github_client_id: str | None = None
    oauth_github_client_secret: str | None = None
    oauth_github_url: str = "https://github.com"
    oauth_github_api_url: str = "https://api.github.com"
    oauth_discord_client_id: str | None = None
    oauth_discord_client_secret: str | None = None
    oauth_discord_url: str = "https://discord.com"

    vapid_private_key: str | None = None
    vapid_subject: str = "mailto:admin@peerspark.local"
    push_timeout: float = 10.0
    push_ttl: int = 86400

    run_worker: bool = True
    worker_concurrency: int = 4
    worker_poll_interval: float = 1.0
    job_retry_base: float = 10.0
    job_lease: float = 300.0
    reminder_scan_interval: float = 15.0
    reminder_grace: float = 60.0
    reminder_lookback_hours: int = 24
    analytics_rollup_interval: float = 30.0  # seconds between runs of the study rollups
    admin_dashboard_interval: float = 3.0  # seconds between the admins' live counter frames
    focus_min_seconds: int = 60  # the shortest focus block or break a timer may have

    enable_ai_features: bool = True
    enable_video_calls: bool = True
    enable_premium_features: bool = True

    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON unless the log goes to a terminal
    metrics_token: str | None = None
    metrics_address: tuple[str, int] | None = None
    trust_proxy_headers: bool = False
    trusted_proxy_hops: int = 1
    auto_migrate: bool = True

    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    http_keepalive_timeout: float = 75.0
    http_max_connections_per_address: int = 256
    shutdown_timeout: float = 25.0

    ws_max_message_bytes: int = 65536
    ws_outbound_bytes: int = 1024 * 1024
    ws_heartbeat: float = 25.0
    ws_send_rate: float = 50.0
    ws_send_burst: int = 100
    ws_max_rooms: int = 100
    ws_max_resume: int = 5000
    typing_timeout: float = 6.0
    presence_grace: float = 5.0
    position_check_interval: float = 1.0
    chat_store_shards: int = 1
    chat_ai_moderation: str = "after"
    chat_lock_timeout_ms: int = 2000

    node_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def base_url(self) -> str:
        """The address clients use to reach this node (for signed links)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        """Every setting but the secrets (shown as *** when set) and URL passwords."""
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                text = "'***'"
            elif f.name in URL_FIELDS and isinstance(value, str):
                text = repr(redact_url(value))
            else:
                text = repr(value)
            shown.append(f"{f.name}={text}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__


# --- value parsers: each returns the parsed value or raises ValueError with the reason ---


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}, got {value}")
        return value

    return parse


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"expected a positive number, got {raw!r}")
    return value


def _non_negative_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"expected zero or a positive number, got {raw!r}")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        normalized = value.upper() if choices == LOG_LEVELS else value.lower()
        if normalized not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return normalized

    return parse


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise ValueError(f"expected a {' or '.join(schemes)} URL, got {raw!r}")
        if not parts.netloc and not parts.path:
            raise ValueError(f"URL has no host: {raw!r}")
        return value

    return parse


def _address(raw: str) -> tuple[str, int]:
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {raw!r}")
    return host.strip("[]"), int(port)


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"each origin must look like https://host[:port], got {origin!r}")
    return origins


def _words(raw: str) -> tuple[str, ...]:
    """A comma-separated list; "none" is the empty list (an empty variable means "default")."""
    if raw.strip().lower() == "none":
        return ()
    words: list[str] = []
    for part in raw.split(","):
        word = " ".join(part.lower().split())
        if not word:
            continue
        if len(word) > 100:
            raise ValueError(f"each entry must be at most 100 characters, got {word[:20]!r}...")
        if word not in words:
            words.append(word)
    return tuple(words)


def _features(raw: str) -> tuple[str, ...]:
    """REQUIRE_VERIFIED_EMAIL: a comma-separated list of VERIFIED_FEATURES, or "none"."""
    chosen = _words(raw)
    unknown = [f for f in chosen if f not in VERIFIED_FEATURES]
    if unknown:
        raise ValueError(f"unknown feature {unknown[0]!r}; use {', '.join(VERIFIED_FEATURES)}")
    return chosen


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


def _secret(raw: str) -> str:
    if len(raw) < 32:
        raise ValueError("must be at least 32 characters long")
    return raw


# variable name -> (Settings field, parser)
_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "PEERSPARK_ENV": ("env", _one_of(*ENVIRONMENTS)),
    "HOST": ("host", _text),
    "PORT": ("port", _int_in(0, 65535)),
    "PEERSPARK_DATA_DIR": ("data_dir", lambda raw: Path(_text(raw))),
    "DATABASE_URL": ("database_url", _url("postgres", "postgresql")),
    "DATABASE_POOL_SIZE": ("database_pool_size", _int_in(1, 500)),
    "DATABASE_TIMEOUT": ("database_timeout_ms", _int_in(100, 3_600_000)),
    "REDIS_URL": ("redis_url", _url("redis", "rediss", "unix")),
    "REDIS_CLUSTER": ("redis_cluster", _bool),
    "REDIS_POOL_SIZE": ("redis_pool_size", _int_in(1, 1000)),
    "REDIS_KEY_PREFIX": ("redis_key_prefix", _text),
    "REDIS_TIMEOUT": ("redis_timeout", _positive_float),
    "REDIS_PUBLISH_BUFFER": ("redis_publish_buffer", _int_in(64 * 1024, 1024**3)),
    "READ_CACHE_TTL": ("read_cache_ttl", _non_negative_float),
    "JWT_SECRET": ("jwt_secret", _secret),
    "JWT_REFRESH_SECRET": ("jwt_refresh_secret", _secret),
    "ACCESS_TOKEN_TTL": ("access_token_ttl", _int_in(10, 86400)),
    "PASSWORD_HASH_TIME_COST": ("password_hash_time_cost", _int_in(2, 20)),
    "PASSWORD_HASH_MEMORY_KIB": ("password_hash_memory_kib", _int_in(19456, 4 * 1024 * 1024)),
    "PASSWORD_HASH_PARALLELISM": ("password_hash_parallelism", _int_in(1, 16)),
    "REFRESH_TOKEN_TTL": ("refresh_token_ttl", _int_in(60, 31_536_000)),
    "REMEMBER_ME_TTL": ("remember_me_ttl", _int_in(60, 31_536_000)),
    "REFRESH_REUSE_GRACE": ("refresh_reuse_grace", _non_negative_float),
    "REGISTRATION_RATE_LIMIT": ("registration_rate_limit", _int_in(1, 1_000_000)),
    "LOGIN_FAILURES_PER_ADDRESS": ("login_failures_per_address", _int_in(1, 1_000_000)),
    "LOGIN_FAILURES_PER_ACCOUNT": ("login_failures_per_account", _int_in(1, 1_000_000)),
    "ALLOWED_ORIGINS": ("allowed_origins", _origins),
    "AWS_REGION": ("aws_region", _text),
    "AWS_ACCESS_KEY_ID": ("aws_access_key_id", _text),
    "AWS_SECRET_ACCESS_KEY": ("aws_secret_access_key", _text),
    "AWS_S3_BUCKET": ("aws_s3_bucket", _text),
    "S3_ENDPOINT_URL": ("s3_endpoint_url", _url("http", "https")),
    "UPLOAD_MAX_BYTES": ("upload_max_bytes", _int_in(1024, 5 * 1024**3)),
    "UPLOAD_RATE_LIMIT": ("upload_rate_limit", _int_in(1, 100_000)),
    "FILE_URL_TTL": ("file_url_ttl", _int_in(10, 7 * 86400)),
    "PUBLIC_BASE_URL": ("public_base_url", _url("http", "https")),
    "OPENAI_API_KEY": ("openai_api_key", _text),
    "OPENAI_BASE_URL": ("openai_base_url", _url("http", "https")),
    "OPENAI_MODEL": ("openai_model", _text),
    "OPENAI_ORG_ID": ("openai_org_id", _text),
    "OPENAI_TIMEOUT": ("openai_timeout", _positive_float),
    "OPENAI_MAX_RETRIES": ("openai_max_retries", _int_in(0, 10)),
    "AI_MAX_TOKENS": ("ai_max_tokens", _int_in(16, 100_000)),
    "AI_HISTORY_TOKENS": ("ai_history_tokens", _int_in(0, 1_000_000)),
    "AI_DAILY_TOKENS": ("ai_daily_tokens", _int_in(0, 1_000_000_000)),
    "AI_DAILY_TOKENS_PREMIUM": ("ai_daily_tokens_premium", _int_in(0, 1_000_000_000)),
    "AI_QUERIES_PER_HOUR": ("ai_queries_per_hour", _int_in(1, 1_000_000)),
    "MODERATION_TIMEOUT": ("moderation_timeout", _positive_float),
    "MODERATION_BLOCKED_WORDS": ("moderation_blocked_words", _words),
    "MODERATION_MAX_LINKS": ("moderation_max_links", _int_in(0, 1000)),
    "MODERATION_POSTS_PER_HOUR": ("moderation_posts_per_hour", _int_in(1, 100_000)),
    "SMTP_HOST": ("smtp_host", _text),
    "SMTP_PORT": ("smtp_port", _int_in(1, 65535)),
    "SMTP_USER": ("smtp_user", _text),
    "SMTP_PASS": ("smtp_pass", _text),
    "EMAIL_FROM": ("email_from", _text),
    "EMAIL_OUTBOX_DIR": ("email_outbox_dir", lambda raw: Path(_text(raw))),
    "EMAIL_VERIFICATION_TTL": ("email_verification_ttl", _int_in(60, 30 * 86400)),
    "PASSWORD_RESET_TTL": ("password_reset_ttl", _int_in(60, 7 * 86400)),
    "PASSWORD_RESET_RATE_LIMIT": ("password_reset_rate_limit", _int_in(1, 1_000_000)),
    "REQUIRE_VERIFIED_EMAIL": ("require_verified_email", lambda raw: _features(raw)),
    "DATA_EXPORT_TTL": ("data_export_ttl", _int_in(60, 90 * 86400)),
    "OAUTH_STATE_TTL": ("oauth_state_ttl", _int_in(30, 86400)),
    "OAUTH_TIMEOUT": ("oauth_timeout", _positive_float),
    "OAUTH_COMPLETE_URL": ("oauth_complete_url", _url("http", "https")),
    "OAUTH_GOOGLE_CLIENT_ID": ("oauth_google_client_id", _text),
    "OAUTH_GOOGLE_CLIENT_SECRET": ("oauth_google_client_secret", _text),
    "OAUTH_GOOGLE_ISSUER": ("oauth_google_issuer", _url("http", "https")),
    "OAUTH_GITHUB_CLIENT_ID": ("oauth_github_client_id", _text),
    "OAUTH_GITHUB_CLIENT_SECRET": ("oauth_github_client_secret", _text),
    "OAUTH_GITHUB_URL": ("oauth_github_url", _url("http", "https")),
    "OAUTH_GITHUB_API_URL": ("oauth_github_api_url", _url("http", "https")),
    "OAUTH_DISCORD_CLIENT_ID": ("oauth_discord_client_id", _text),
    "OAUTH_DISCORD_CLIENT_SECRET": ("oauth_discord_client_secret", _text),
    "OAUTH_DISCORD_URL": ("oauth_discord_url", _url("http", "https")),
    "VAPID_PRIVATE_KEY": ("vapid_private_key", _text),
    "VAPID_SUBJECT": ("vapid_subject", _text),
    "PUSH_TIMEOUT": ("push_timeout", _positive_float),
    "PUSH_TTL": ("push_ttl", _int_in(0, 28 * 86400)),
    "RUN_WORKER": ("run_worker", _bool),
    "WORKER_CONCURRENCY": ("worker_concurrency", _int_in(1, 256)),
    "WORKER_POLL_INTERVAL": ("worker_poll_interval", _positive_float),
    "JOB_RETRY_BASE": ("job_retry_base", _positive_float),
    "JOB_LEASE": ("job_lease", _positive_float),
    "REMINDER_SCAN_INTERVAL": ("reminder_scan_interval", _positive_float),
    "REMINDER_GRACE": ("reminder_grace", _positive_float),
    "REMINDER_LOOKBACK_HOURS": ("reminder_lookback_hours", _int_in(1, 24 * 30)),
    "ANALYTICS_ROLLUP_INTERVAL": ("analytics_rollup_interval", _positive_float),
    "ADMIN_DASHBOARD_INTERVAL": ("admin_dashboard_interval", _positive_float),
    "FOCUS_MIN_SECONDS": ("focus_min_seconds", _int_in(1, 3600)),
    "ENABLE_AI_FEATURES": ("enable_ai_features", _bool),
    "ENABLE_VIDEO_CALLS": ("enable_video_calls", _bool),
    "ENABLE_PREMIUM_FEATURES": ("enable_premium_features", _bool),
    "LOG_LEVEL": ("log_level", _one_of(*LOG_LEVELS)),
    "LOG_JSON": ("log_json", _bool),
    "METRICS_TOKEN": ("metrics_token", _secret),
    "METRICS_ADDRESS": ("metrics_address", _address),
    "TRUST_PROXY_HEADERS": ("trust_proxy_headers", _bool),
    "TRUSTED_PROXY_HOPS": ("trusted_proxy_hops", _int_in(1, 10)),
    "AUTO_MIGRATE": ("auto_migrate", _bool),
    "HTTP_HEADER_TIMEOUT": ("http_header_timeout", _positive_float),
    "HTTP_BODY_TIMEOUT": ("http_body_timeout", _positive_float),
    "HTTP_KEEPALIVE_TIMEOUT": ("http_keepalive_timeout", _positive_float),
    "HTTP_MAX_CONNECTIONS_PER_ADDRESS": ("http_max_connections_per_address", _int_in(0, 1_000_000)),
    "SHUTDOWN_TIMEOUT": ("shutdown_timeout", _positive_float),
    "WS_MAX_MESSAGE_BYTES": ("ws_max_message_bytes", _int_in(1024, 16 * 1024 * 1024)),
    "WS_OUTBOUND_BYTES": ("ws_outbound_bytes", _int_in(16 * 1024, 256 * 1024 * 1024)),
    "WS_HEARTBEAT": ("ws_heartbeat", _positive_float),
    "WS_SEND_RATE": ("ws_send_rate", _positive_float),
    "WS_SEND_BURST": ("ws_send_burst", _int_in(1, 100_000)),
    "WS_MAX_ROOMS": ("ws_max_rooms", _int_in(1, 10_000)),
    "WS_MAX_RESUME": ("ws_max_resume", _int_in(1, 1_000_000)),
    "TYPING_TIMEOUT": ("typing_timeout", _positive_float),
    "PRESENCE_GRACE": ("presence_grace", _non_negative_float),
    "POSITION_CHECK_INTERVAL": ("position_check_interval", _positive_float),
    "CHAT_STORE_SHARDS": ("chat_store_shards", _int_in(1, 64)),
    "CHAT_AI_MODERATION": ("chat_ai_moderation", _one_of("after", "before", "off")),
    "CHAT_LOCK_TIMEOUT": ("chat_lock_timeout_ms", _int_in(10, 600_000)),
    "NODE_ID": ("node_id", _text),
}

# Spec names that mean the same as ours.
_ALIASES = {"FROM_EMAIL": "EMAIL_FROM", "NODE_ENV": "PEERSPARK_ENV"}


def variable_names() -> list[str]:
    """Every environment variable the settings read (for --help and the README)."""
    return sorted(_VARIABLES)


def _read_defaults(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key, value in raw.items():
        name = key.upper()
        if name not in _VARIABLES:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def load_settings(
    environ: Mapping[str, str] | None = None, defaults_file: Path = DEFAULTS_FILE
) -> Settings:
    """Read settings from `environ` (default: os.environ) over the defaults file.

    JWT secrets are not resolved here: see `ensure_secrets`, which needs the data folder.
    """
    env = dict(os.environ if environ is None else environ)
    for alias, name in _ALIASES.items():
        if alias in env and name not in env:
            env[name] = env[alias]
    merged = _read_defaults(defaults_file)
    merged.update({k: v for k, v in env.items() if k in _VARIABLES and v != ""})

    values: dict[str, Any] = {}
    for name, raw in merged.items():
        attr, parse = _VARIABLES[name]
        try:
            values[attr] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    if "log_json" not in values and values.get("env") == "production":
        values["log_json"] = True
    settings = Settings(**values)
    if settings.production and "*" in settings.allowed_origins:
        raise ConfigError("ALLOWED_ORIGINS: '*' is not allowed in production")
    if settings.redis_cluster and not settings.redis_url:
        raise ConfigError("REDIS_CLUSTER: needs REDIS_URL (any node of the cluster)")
    if settings.redis_cluster and urlsplit(settings.redis_url or "").path.strip("/") not in (
        "",
        "0",
    ):
        raise ConfigError("REDIS_URL: a Redis Cluster has only database 0")
    if bool(settings.aws_access_key_id) != bool(settings.aws_secret_access_key):
        raise ConfigError("AWS_SECRET_ACCESS_KEY: set both AWS_ACCESS_KEY_ID and it, or neither")
    return settings


def ensure_secrets(settings: Settings) -> Settings:
    """Fill in the JWT secrets.

    In development and tests missing secrets are generated once and kept in the data folder, so
    tokens survive a restart. In production they must come from the environment.
    """
    if settings.jwt_secret and settings.jwt_refresh_secret:
        if settings.jwt_secret == settings.jwt_refresh_secret:
            raise ConfigError("JWT_REFRESH_SECRET: must differ from JWT_SECRET")
        return settings
    if settings.production:
        missing = "JWT_SECRET" if not settings.jwt_secret else "JWT_REFRESH_SECRET"
        raise ConfigError(f"{missing}: required when PEERSPARK_ENV=production")
    path = settings.data_dir / "jwt-secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            raise ConfigError(f"PEERSPARK_DATA_DIR: {path} is not valid JSON") from None
    if not stored.get("access") or not stored.get("refresh"):
        stored = {"access": secrets.token_urlsafe(48), "refresh": secrets.token_urlsafe(48)}
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored))
        tmp.chmod(0o600)
        tmp.replace(path)
    return settings.replace(
        jwt_secret=settings.jwt_secret or stored["access"],
        jwt_refresh_secret=settings.jwt_refresh_secret or stored["refresh"],
    )


# the application's key for what this module provides (typed app state)
SETTINGS = web.AppKey("settings", Settings)
