"""Per-user notification preferences: for each notification type, in-app and/or email (or
none); quiet hours in the user's own time zone; the daily digest; session reminders.

Kept in `users.notification_settings` (JSONB). That column can also be written through
PATCH /api/auth/me, so reading is lenient: anything unexpected falls back to the defaults.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import Invalid

# type -> (in-app, email) by default. Types not listed default to in-app only.
DEFAULTS: dict[str, tuple[bool, bool]] = {
    "pod_invite": (True, True),
    "pod_join": (True, False),
    "post_like": (True, False),
    "comment": (True, False),
    "comment_reply": (True, False),
    "mention": (True, True),
    "session_invite": (True, True),
    "session_reminder": (True, True),
    "achievement": (True, False),
    "system": (True, True),
}
UNLISTED_DEFAULT = (True, False)
DEFAULT_SESSION_REMINDER_MINUTES = 15
MAX_SESSION_REMINDER_MINUTES = 24 * 60
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SHORTHAND = {
    "in_app": (True, False),
    "email": (False, True),
    "both": (True, True),
    "all": (True, True),
    "none": (False, False),
}


@dataclass(frozen=True, slots=True)
class Channels:
    in_app: bool
    email: bool


@dataclass(frozen=True, slots=True)
class QuietHours:
    enabled: bool = False
    start: str = "22:00"
    end: str = "07:00"

    def until(self, timezone: str | None, now: dt.datetime) -> dt.datetime | None:
        """When quiet hours end, if `now` falls inside them in `timezone`; else None."""
        if not self.enabled or self.start == self.end:
            return None
        try:
            tz = zoneinfo.ZoneInfo(timezone or "UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = zoneinfo.ZoneInfo("UTC")
        local = now.astimezone(tz)
        start = _clock(self.start)
        end = _clock(self.end)
        t = local.time().replace(tzinfo=None)
        crosses_midnight = start > end
        inside = (t >= start or t < end) if crosses_midnight else (start <= t < end)
        if not inside:
            return None
        end_day = local.date()
        if crosses_midnight and t >= start:
            end_day += dt.timedelta(days=1)
        end_local = dt.datetime.combine(end_day, end).replace(tzinfo=tz)
        return end_local.astimezone(dt.UTC)


def _clock(text: str) -> dt.time:
    m = _CLOCK.match(text)
    if m is None:
        raise RuntimeError("m is missing")
    return dt.time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True, slots=True)
class Preferences:
    types: Mapping[str, Channels] = field(default_factory=dict)
    quiet_hours: QuietHours = QuietHours()
    daily_digest: bool = True
    session_reminder_minutes: int | None = DEFAULT_SESSION_REMINDER_MINUTES
    # Web Push for what is stored in-app, when no device has a live socket open
    push_enabled: bool = True

    def channels(self, notification_type: str) -> Channels:
        chosen = self.types.get(notification_type)
        if chosen is not None:
            return chosen
        return Channels(*DEFAULTS.get(notification_type, UNLISTED_DEFAULT))

    @classmethod
    def load(cls, raw: Any) -> Preferences:
        """From the stored JSON, ignoring whatever does not fit."""
        if not isinstance(raw, Mapping):
            return cls()
        types: dict[str, Channels] = {}
        stored_types = raw.get("types")
        if isinstance(stored_types, Mapping):
            for name, value in stored_types.items():
                if isinstance(name, str) and isinstance(value, Mapping):
                    types[name] = Channels(
                        bool(value.get("inApp", True)), bool(value.get("email", False))
                    )
        quiet = QuietHours()
        q = raw.get("quietHours")
        if isinstance(q, Mapping):
            start, end = q.get("start"), q.get("end")
            if (
                isinstance(start, str)
                and isinstance(end, str)
                and _CLOCK.match(start)
                and _CLOCK.match(end)
            ):
                quiet = QuietHours(bool(q.get("enabled", True)), start, end)
        minutes = raw.get("sessionReminderMinutes", DEFAULT_SESSION_REMINDER_MINUTES)
        if minutes is not None and (
            not isinstance(minutes, int) or not 0 <= minutes <= MAX_SESSION_REMINDER_MINUTES
        ):
            minutes = DEFAULT_SESSION_REMINDER_MINUTES
        return cls(
            types,
            quiet,
            raw.get("dailyDigest") is not False,
            minutes,
            raw.get("pushEnabled") is not False,
        )

    def dump(self) -> dict[str, Any]:
        return {
            "types": {k: {"inApp": v.in_app, "email": v.email} for k, v in self.types.items()},
            "quietHours": {
                "enabled": self.quiet_hours.enabled,
                "start": self.quiet_hours.start,
                "end": self.quiet_hours.end,
            },
            "dailyDigest": self.daily_digest,
            "sessionReminderMinutes": self.session_reminder_minutes,
            "pushEnabled": self.push_enabled,
        }


# --------------------------------------------------------------------------- the REST shapes


class ChannelsView(msgspec.Struct, rename="camel"):
    in_app: bool
    email: bool


class QuietHoursView(msgspec.Struct, rename="camel"):
    enabled: bool
    start: str
    end: str
    timezone: str


class PreferencesView(msgspec.Struct, rename="camel"):
    types: dict[str, ChannelsView]
    quiet_hours: QuietHoursView
    daily_digest: bool
    session_reminder_minutes: int | None
    push_enabled: bool


class QuietHoursUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    enabled: bool = True
    start: str = "22:00"
    end: str = "07:00"


class PreferencesUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """PUT body: every part optional; `types` merges into what is stored, one type at a time.
    A type's value is {"inApp": bool, "email": bool} or one of in_app, email, both, none."""

    types: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    quiet_hours: QuietHoursUpdate | msgspec.UnsetType | None = msgspec.UNSET
    daily_digest: bool | msgspec.UnsetType = msgspec.UNSET
    session_reminder_minutes: int | msgspec.UnsetType | None = msgspec.UNSET
    push_enabled: bool | msgspec.UnsetType = msgspec.UNSET


def view(prefs: Preferences, timezone: str | None) -> PreferencesView:
    names = sorted({*DEFAULTS, *prefs.types})
    return PreferencesView(
        types={n: ChannelsView(prefs.channels(n).in_app, prefs.channels(n).email) for n in names},
        quiet_hours=QuietHoursView(
            prefs.quiet_hours.enabled,
            prefs.quiet_hours.start,
            prefs.quiet_hours.end,
            timezone or "UTC",
        ),
        daily_digest=prefs.daily_digest,
        session_reminder_minutes=prefs.session_reminder_minutes,
        push_enabled=prefs.push_enabled,
    )


def apply(prefs: Preferences, update: PreferencesUpdate) -> Preferences:
    """The preferences after `update`; raises Invalid naming the field."""
    types = dict(prefs.types)
    if not isinstance(update.types, msgspec.UnsetType):
        if len(update.types) > 100:
            raise Invalid("types", "at most 100 types")
        for name, value in update.types.items():
            where = f"types.{name}"
            if not _TYPE_NAME.match(name):
                raise Invalid(where, "a type is lower case letters, digits and '_'")
            types[name] = _channels(value, where)
    quiet = prefs.quiet_hours
    if update.quiet_hours is None:
        quiet = QuietHours(enabled=False)
    elif not isinstance(update.quiet_hours, msgspec.UnsetType):
        q = update.quiet_hours
        for name, clock in (("start", q.start), ("end", q.end)):
            if not _CLOCK.match(clock):
                raise Invalid(f"quietHours.{name}", "must be a 24-hour time like 22:00")
        if q.enabled and q.start == q.end:
            raise Invalid("quietHours.end", "must differ from start")
        quiet = QuietHours(q.enabled, q.start, q.end)
    digest = prefs.daily_digest
    if not isinstance(update.daily_digest, msgspec.UnsetType):
        digest = update.daily_digest
    minutes = prefs.session_reminder_minutes
    if not isinstance(update.session_reminder_minutes, msgspec.UnsetType):
        minutes = update.session_reminder_minutes
        if minutes is not None and not 0 <= minutes <= MAX_SESSION_REMINDER_MINUTES:
            raise Invalid(
                "sessionReminderMinutes",
                f"must be from 0 to {MAX_SESSION_REMINDER_MINUTES}, or null for none",
            )
    push = prefs.push_enabled
    if not isinstance(update.push_enabled, msgspec.UnsetType):
        push = update.push_enabled
    return Preferences(types, quiet, digest, minutes, push)


def _channels(value: Any, where: str) -> Channels:
    if isinstance(value, str):
        if value not in _SHORTHAND:
            raise Invalid(where, f"must be one of {', '.join(_SHORTHAND)} or an object")
        return Channels(*_SHORTHAND[value])
    if isinstance(value, Mapping):
        unknown = set(value) - {"inApp", "email"}
        if unknown:
            raise Invalid(f"{where}.{sorted(unknown)[0]}", "is not a known field")
        in_app, email = value.get("inApp", True), value.get("email", False)
        if not isinstance(in_app, bool):
            raise Invalid(f"{where}.inApp", "must be true or false")
        if not isinstance(email, bool):
            raise Invalid(f"{where}.email", "must be true or false")
        return Channels(in_app, email)
    raise Invalid(where, "must be {inApp, email} or one of in_app, email, both, none")
