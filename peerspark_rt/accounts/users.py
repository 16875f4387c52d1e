"""User profiles: the owner's full view, edits, and the public view honouring privacy."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

import asyncpg
import msgspec
from aiohttp import web

from ..errors import Conflict, Invalid, NotFound
from ..infra import validation
from ..infra.pool import Database
from . import db as users_db

EDUCATION_LEVELS = ("high_school", "undergraduate", "graduate", "professional")


class UserProfile(msgspec.Struct, rename="camel"):
    """What a user sees of their own account. Never carries the password hash."""

    id: uuid.UUID
    email: str
    username: str
    first_name: str
    last_name: str
    avatar_url: str | None
    bio: str | None
    date_of_birth: dt.date | None
    education_level: str | None
    institution: str | None
    major: str | None
    graduation_year: int | None
    location: str | None
    timezone: str | None
    language_preference: str | None
    is_verified: bool
    is_premium: bool
    premium_expires_at: dt.datetime | None
    account_status: str
    role: str
    privacy_settings: dict[str, Any]
    notification_settings: dict[str, Any]
    onboarding_completed: bool
    last_active_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UserProfile:
        return cls(**dict(row))


class PublicProfile(msgspec.Struct, rename="camel", omit_defaults=True):
    """What other users see. Fields hidden by the owner's privacy settings are left out."""

    id: uuid.UUID
    username: str
    avatar_url: str | None
    restricted: bool = False
    first_name: str | None = None
    last_name: str | None = None
    bio: str | None = None
    education_level: str | None = None
    institution: str | None = None
    major: str | None = None
    location: str | None = None
    email: str | None = None
    is_verified: bool | None = None
    created_at: dt.datetime | None = None


class PrivacySettings(
    msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True
):
    profile_visibility: Literal["public", "pods", "private"] = "public"
    show_email: bool = False
    show_institution: bool = True
    show_location: bool = True


class ProfileUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    username: str | msgspec.UnsetType = msgspec.UNSET
    first_name: str | msgspec.UnsetType = msgspec.UNSET
    last_name: str | msgspec.UnsetType = msgspec.UNSET
    avatar_url: str | msgspec.UnsetType | None = msgspec.UNSET
    bio: str | msgspec.UnsetType | None = msgspec.UNSET
    date_of_birth: dt.date | msgspec.UnsetType | None = msgspec.UNSET
    education_level: str | msgspec.UnsetType | None = msgspec.UNSET
    institution: str | msgspec.UnsetType | None = msgspec.UNSET
    major: str | msgspec.UnsetType | None = msgspec.UNSET
    graduation_year: int | msgspec.UnsetType | None = msgspec.UNSET
    location: str | msgspec.UnsetType | None = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    language_preference: str | msgspec.UnsetType = msgspec.UNSET
    privacy_settings: PrivacySettings | msgspec.UnsetType = msgspec.UNSET
    notification_settings: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    onboarding_completed: bool | msgspec.UnsetType = msgspec.UNSET


def _validated_changes(update: ProfileUpdate) -> dict[str, Any]:
    raw = {f: getattr(update, f) for f in update.__struct_fields__}
    given = {k: v for k, v in raw.items() if v is not msgspec.UNSET}
    if not given:
        raise Invalid("body", "no profile fields to change")
    out: dict[str, Any] = {}
    for name, value in given.items():
        camel = validation.camel(name)
        match name:
            case "username":
                out[name] = validation.username(value, camel)
            case "first_name" | "last_name":
                out[name] = validation.text(value, camel, max_len=100)
            case "bio":
                out[name] = validation.optional_text(value, camel, 2000)
            case "avatar_url":
                out[name] = validation.optional_url(value, camel)
            case "institution" | "major" | "location":
                out[name] = validation.optional_text(value, camel, 255)
            case "education_level":
                if value is not None:
                    validation.one_of(value, camel, EDUCATION_LEVELS)
                out[name] = value
            case "graduation_year":
                if value is not None and not 1900 <= value <= 2200:
                    raise Invalid(camel, "must be a year between 1900 and 2200")
                out[name] = value
            case "date_of_birth":
                if value is not None and not dt.date(1900, 1, 1) <= value <= dt.date.today():
                    raise Invalid(camel, "must be a date between 1900-01-01 and today")
                out[name] = value
            case "timezone":
                out[name] = validation.timezone(value, camel)
            case "language_preference":
                if not 2 <= len(value) <= 10:
                    raise Invalid(camel, "must be a language tag such as 'en' or 'pt-BR'")
                out[name] = value
            case "privacy_settings":
                out[name] = msgspec.to_builtins(value)
            case "notification_settings":
                out[name] = validation.bounded_json(value, camel, 8192)
            case _:
                out[name] = value
    return out


class UserService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def me(self, user_id: uuid.UUID) -> UserProfile:
        row = await users_db.get_profile(self.db.pool, user_id)
        if row is None:
            raise NotFound("user not found")
        return UserProfile.from_row(row)

    async def update_me(self, user_id: uuid.UUID, update: ProfileUpdate) -> UserProfile:
        changes = _validated_changes(update)
        try:
            async with self.db.transaction() as conn:
                row = await users_db.update_profile(conn, user_id, changes)
        except asyncpg.UniqueViolationError:
            raise Conflict(
                "username is already taken",
                code="username_taken",
                details=[{"field": "username", "reason": "already taken"}],
            ) from None
        if row is None:
            raise NotFound("user not found")
        return UserProfile.from_row(row)

    async def public_profile(self, viewer_id: uuid.UUID, user_id: uuid.UUID) -> PublicProfile:
        row = await users_db.get_profile(self.db.pool, user_id)
        if row is None or row["account_status"] == "deactivated":
            raise NotFound("user not found")
        privacy = {**msgspec.to_builtins(PrivacySettings()), **(row["privacy_settings"] or {})}
        base = PublicProfile(id=row["id"], username=row["username"], avatar_url=row["avatar_url"])
        if viewer_id == user_id:
            visible = True
        elif privacy.get("profileVisibility") == "private":
            visible = False
        elif privacy.get("profileVisibility") == "pods":
            visible = await users_db.share_active_pod(self.db.pool, viewer_id, user_id)
        else:
            visible = True
        if not visible:
            base.restricted = True
            return base
        base.first_name = row["first_name"]
        base.last_name = row["last_name"]
        base.bio = row["bio"]
        base.education_level = row["education_level"]
        base.major = row["major"]
        base.is_verified = row["is_verified"]
        base.created_at = row["created_at"]
        if privacy.get("showInstitution", True) or viewer_id == user_id:
            base.institution = row["institution"]
        if privacy.get("showLocation", True) or viewer_id == user_id:
            base.location = row["location"]
        if privacy.get("showEmail", False) or viewer_id == user_id:
            base.email = row["email"]
        return base


# the application's key for what this module provides (typed app state)
USERS = web.AppKey("users", UserService)
