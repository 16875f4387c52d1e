"""Settings: environment over defaults, one clear line per bad value, secrets handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peerspark_rt.config import ConfigError, ensure_secrets, load_settings


def test_defaults_come_from_the_defaults_file() -> None:
    settings = load_settings({})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.env == "development"
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.allowed_origins == ("http://localhost:3000",)
    assert settings.enable_ai_features is True


def test_environment_wins_and_spec_aliases_work() -> None:
    settings = load_settings(
        {
            "PORT": "9000",
            "ALLOWED_ORIGINS": "https://a.example, https://b.example/",
            "FROM_EMAIL": "x@y.z",
            "ENABLE_AI_FEATURES": "false",
            "DATABASE_POOL_SIZE": "5",
        }
    )
    assert settings.port == 9000
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.email_from == "x@y.z"
    assert settings.enable_ai_features is False
    assert settings.database_pool_size == 5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "PORT: expected an integer"),
        ({"PORT": "70000"}, "PORT: expected an integer from 0 to 65535"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: expected a postgres or postgresql URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL:"),
        ({"ENABLE_AI_FEATURES": "maybe"}, "ENABLE_AI_FEATURES: expected true or false"),
        ({"ALLOWED_ORIGINS": "localhost:3000"}, "ALLOWED_ORIGINS:"),
        ({"PEERSPARK_ENV": "staging"}, "PEERSPARK_ENV: expected one of"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET: must be at least 32 characters"),
        ({"DATABASE_POOL_SIZE": "0"}, "DATABASE_POOL_SIZE"),
        ({"AWS_ACCESS_KEY_ID": "abc"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AI_DAILY_TOKENS": "lots"}, "AI_DAILY_TOKENS: expected an integer"),
        ({"OPENAI_TIMEOUT": "0"}, "OPENAI_TIMEOUT: expected a positive number"),
        ({"MODERATION_BLOCKED_WORDS": "x" * 101}, "MODERATION_BLOCKED_WORDS: each entry"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_development_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings({"PEERSPARK_DATA_DIR": str(tmp_path)})
    first = ensure_secrets(settings)
    second = ensure_secrets(settings)
    assert first.jwt_secret
    assert first.jwt_refresh_secret
    assert first.jwt_secret != first.jwt_refresh_secret
    assert (first.jwt_secret, first.jwt_refresh_secret) == (
        second.jwt_secret,
        second.jwt_refresh_secret,
    )
    stored = tmp_path / "jwt-secrets.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert json.loads(stored.read_text())["access"] == first.jwt_secret


def test_production_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    settings = load_settings({"PEERSPARK_ENV": "production", "PEERSPARK_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"^JWT_SECRET: required when PEERSPARK_ENV=production"):
        ensure_secrets(settings)
    assert not (tmp_path / "jwt-secrets.json").exists()
    ok = ensure_secrets(settings.replace(jwt_secret="a" * 40, jwt_refresh_secret="b" * 40))
    assert ok.jwt_secret == "a" * 40
    assert settings.log_json is True


def test_production_rejects_wildcard_origins() -> None:
    with pytest.raises(ConfigError, match="ALLOWED_ORIGINS"):
        load_settings({"PEERSPARK_ENV": "production", "ALLOWED_ORIGINS": "*"})


def test_ai_and_moderation_settings() -> None:
    defaults = load_settings({})
    assert defaults.ai_daily_tokens == 20000
    assert defaults.ai_daily_tokens_premium == 200000
    assert defaults.ai_queries_per_hour == 50
    assert defaults.moderation_posts_per_hour == 10
    assert "casino" in defaults.moderation_blocked_words
    settings = load_settings(
        {"MODERATION_BLOCKED_WORDS": " Casino, free  money,,casino ", "AI_MAX_TOKENS": "500"}
    )
    assert settings.moderation_blocked_words == ("casino", "free money")
    assert settings.ai_max_tokens == 500
    assert load_settings({"MODERATION_BLOCKED_WORDS": "none"}).moderation_blocked_words == ()


def test_redis_cluster_and_shutdown_settings() -> None:
    settings = load_settings(
        {"REDIS_URL": "redis://10.0.0.5:7000", "REDIS_CLUSTER": "true", "SHUTDOWN_TIMEOUT": "12"}
    )
    assert settings.redis_cluster is True
    assert settings.shutdown_timeout == 12.0
    assert load_settings({}).redis_cluster is False
    assert load_settings({}).shutdown_timeout == 25.0
    with pytest.raises(ConfigError, match=r"^REDIS_CLUSTER: needs REDIS_URL"):
        load_settings({"REDIS_CLUSTER": "true"})
    with pytest.raises(ConfigError, match=r"^REDIS_URL: a Redis Cluster has only database 0"):
        load_settings({"REDIS_URL": "redis://10.0.0.5:7000/3", "REDIS_CLUSTER": "yes"})
    with pytest.raises(ConfigError, match=r"^SHUTDOWN_TIMEOUT: expected a positive number"):
        load_settings({"SHUTDOWN_TIMEOUT": "0"})
