"""Reading .ics files (RFC 5545) into calendar events: each VEVENT series (its master and its
changed occurrences) becomes one EventCreate, parsed with the `icalendar` package.

An import keeps what it reads or says what it could not keep: every property of an event that
is not carried over (attendees, EXRULE, an EXDATE naming no occurrence, an alarm the calendar
cannot express, vendor X- properties, a title cut to length...) is named, per event, in the
answer. Only what describes the file rather than the event (UID, DTSTAMP, CREATED,
LAST-MODIFIED, SEQUENCE) and properties at their RFC 5545 default go unmentioned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import icalendar
import msgspec

from ..errors import BadRequest, Invalid
from . import recurrence as rec
from .events import EVENT_TYPES, MAX_REMINDER_MINUTES, MAX_REMINDERS, EventCreate, ReminderSetting

log = logging.getLogger(__name__)

MAX_IMPORT_EVENTS = 1000
# What a malformed calendar may make the parser or the checks raise: a reason to skip one
# event, never an error for the whole import.
UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)
# What an importer is told of an event the parser choked on (the parser's own words are logged)
UNREADABLE_EVENT = "cannot be read: a property is malformed"


class Unusable(ValueError):
    """An event this importer cannot use, in words meant for the person importing it."""


_STATUS_IN = {"CONFIRMED": "scheduled", "TENTATIVE": "tentative", "CANCELLED": "cancelled"}
_TYPES_IN = set(EVENT_TYPES)
_TEXT = (("SUMMARY", "title", 255), ("DESCRIPTION", "description", 10_000),
         ("LOCATION", "location", 1000))  # fmt: skip
# About the file, not the event: never worth a word.
_BOOKKEEPING = {"UID", "DTSTAMP", "CREATED", "LAST-MODIFIED", "SEQUENCE"}
# Properties that say nothing at their default value.
_DEFAULTS = {"TRANSP": "OPAQUE", "CLASS": "PUBLIC", "PRIORITY": "0"}
_MASTER_KEPT = {"DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "SUMMARY",
                "DESCRIPTION", "LOCATION", "CATEGORIES", "STATUS"}  # fmt: skip
_CHANGE_KEPT = {"RECURRENCE-ID", "DTSTART", "DTEND", "DURATION", "SUMMARY", "DESCRIPTION",
                "LOCATION", "STATUS"}  # fmt: skip
_WHY = {
    "EXRULE": "deprecated by RFC 5545; list the dates to leave out as EXDATE",
    "ATTENDEE": "calendar events here have no attendees",
    "ORGANIZER": "calendar events here have no organizer",
}
_ALARM_CHANNELS = {"DISPLAY": "in_app", "AUDIO": "in_app", "EMAIL": "email"}
# The rule of a series given by RDATEs alone: DTSTART and nothing more (RFC 5545 counts the
# start as the first of COUNT), so the series is exactly its start and its RDATEs.
RDATES_ONLY_RULE = "FREQ=DAILY;COUNT=1"
# where the recurrence pattern's checks name a field -> the property it came from
_PATTERN_PROPERTIES = {
    "recurrencePattern.rdates": "RDATE",
    "recurrencePattern.exdates": "EXDATE",
    "recurrencePattern.overrides": "RECURRENCE-ID",
}


class ImportProblem(msgspec.Struct, rename="camel"):
    uid: str
    reason: str


class ImportNotes(msgspec.Struct, rename="camel"):
    """An imported event and what of it could not be kept ("PROPERTY: why")."""

    uid: str
    dropped: list[str]


@dataclass
class Draft:
    uid: str
    event: EventCreate
    dropped: list[str] = field(default_factory=list)

    def note_pattern_problems(self, problems: Iterable[Invalid]) -> None:
        """Say what the recurrence checks left out, by the property it came from."""
        for problem in problems:
            where = problem.field
            name = next((p for f, p in _PATTERN_PROPERTIES.items() if where.startswith(f)), where)
            self.dropped.append(f"{name}: {problem.reason}")


def drafts_from_ics(data: bytes, default_tz: str) -> tuple[list[Draft], list[ImportProblem]]:
    """A draft for each importable series in `data`, and what was skipped and why."""
    try:
        calendars = icalendar.Calendar.from_ical(data, multiple=True)
    except UNREADABLE as exc:
        log.info("calendar import refused: %r", exc)
        raise BadRequest("not an iCalendar file", code="invalid_ics") from None
    masters: dict[str, icalendar.cal.Component] = {}
    changes: dict[str, list[icalendar.cal.Component]] = {}
    problems: list[ImportProblem] = []
    for cal in calendars:
        for component in cal.subcomponents:
            if component.name in ("VTODO", "VJOURNAL", "VFREEBUSY"):
                uid = str(component.get("UID") or "(no UID)")[:255]
                reason = f"a {component.name}: only events (VEVENT) are imported"
                problems.append(ImportProblem(uid, reason))
            if component.name != "VEVENT":
                continue
            uid = str(component.get("UID") or "").strip()
            if not uid:
                uid = "sha1-" + hashlib.sha1(component.to_ical()).hexdigest()
            if len(uid) > 255:
                problems.append(
                    ImportProblem(uid[:60] + "...", "UID is longer than 255 characters")
                )
                continue
            if component.get("RECURRENCE-ID") is not None:
                changes.setdefault(uid, []).append(component)
            else:
                masters[uid] = component
    if len(masters) > MAX_IMPORT_EVENTS:
        raise BadRequest(f"at most {MAX_IMPORT_EVENTS} events per import", code="too_many_events")
    drafts: list[Draft] = []
    for uid, component in masters.items():
        try:
            drafts.append(_draft(uid, component, changes.get(uid, []), default_tz))
        except Unusable as exc:
            problems.append(ImportProblem(uid, str(exc)))
        except UNREADABLE as exc:
            log.info("imported event %s unreadable: %r", uid, exc)
            problems.append(ImportProblem(uid, UNREADABLE_EVENT))
    problems.extend(
        ImportProblem(uid, "a changed occurrence without its series")
        for uid in changes.keys() - masters.keys()
    )
    return drafts, problems


# --------------------------------------------------------------------------- values


def _zone_of(value: dt.datetime, fallback: str) -> tuple[dt.datetime, str, bool]:
    """An imported date-time, the IANA zone to keep for it, and whether its own zone had to be
    given up (a TZID that is not an IANA zone)."""
    if value.tzinfo is None:  # floating time: read it in the importer's zone
        return value.replace(tzinfo=rec.zone(fallback)), fallback, False
    key = getattr(value.tzinfo, "key", None)
    if isinstance(key, str) and rec.zone(key).key == key:
        return value, key, False
    if value.utcoffset() == dt.timedelta(0) and value.dst() in (None, dt.timedelta(0)):
        return value.astimezone(dt.UTC), "UTC", False
    return value.astimezone(dt.UTC), fallback, True


def _decoded(component: icalendar.cal.Component, name: str) -> Any:
    try:
        return component.decoded(name)
    except KeyError:
        return None


def _values(prop: Any) -> list[Any]:
    """The values of a date-list property (EXDATE, RDATE), which may repeat and hold several
    values each."""
    if prop is None:
        return []
    props = prop if isinstance(prop, list) else [prop]
    return [value.dt for p in props for value in getattr(p, "dts", [])]


def _stamp(value: Any, all_day: bool, tz: str) -> str:
    if isinstance(value, dt.datetime):
        if all_day:
            return value.date().isoformat()
        moment, _, _ = _zone_of(value, tz)
        return moment.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise Unusable(f"not a date: {value!r}")


def _count(component: icalendar.cal.Component, name: str) -> int:
    value = component.get(name)
    return len(value) if isinstance(value, list) else 1


def _unkept(
    component: icalendar.cal.Component, kept: set[str], prefix: str = "", alarms: bool = True
) -> Iterable[str]:
    """A note for each property and subcomponent of `component` not carried over (VALARMs
    are, as reminders, when `alarms`)."""
    for name in component:
        if name in kept or name in _BOOKKEEPING:
            continue
        if name in _DEFAULTS and str(component.get(name)).upper() == _DEFAULTS[name]:
            continue
        times = _count(component, name)
        why = _WHY.get(name)
        yield (
            f"{prefix}{name}: not kept"
            + (f" ({times} of them)" if times > 1 else "")
            + (f": {why}" if why else "")
        )
    for sub in component.subcomponents:
        if not (alarms and sub.name == "VALARM"):
            yield f"{prefix}{sub.name}: not kept"


def _text(
    component: icalendar.cal.Component, prop: str, limit: int, notes: list[str], prefix: str = ""
) -> str:
    value = str(component.get(prop))
    if len(value) > limit:
        notes.append(f"{prefix}{prop}: cut to {limit} characters (it had {len(value)})")
    return value[:limit]


# --------------------------------------------------------------------------- one series


def _draft(
    uid: str,
    component: icalendar.cal.Component,
    changes: list[icalendar.cal.Component],
    default_tz: str,
) -> Draft:
    notes: list[str] = list(_unkept(component, _MASTER_KEPT))
    start = _decoded(component, "DTSTART")
    if start is None:
        raise Unusable("no DTSTART")
    all_day = not isinstance(start, dt.datetime)
    tz = default_tz
    zone_lost = False
    original_zone = None
    if isinstance(start, dt.datetime):
        original_zone = start.tzinfo
        start, tz, zone_lost = _zone_of(start, default_tz)
    end = _decoded(component, "DTEND")
    if end is None:
        duration = _decoded(component, "DURATION")
        if isinstance(duration, dt.timedelta):
            end = start + duration
    end_text: str | None = None
    if end is not None:
        if all_day:
            last = (end if not isinstance(end, dt.datetime) else end.date()) - dt.timedelta(days=1)
            end_text = max(last, start).isoformat()
        else:
            end_text = _stamp(end, False, tz)
    length = (end - start) if isinstance(end, dt.datetime) and not all_day else None
    pattern = _pattern(component, changes, all_day, tz, length, notes)
    if pattern is not None and zone_lost:
        notes.append(
            f"DTSTART: time zone {original_zone} is not an IANA zone; the repeats are computed "
            f"in {tz}"
        )
    text = {
        name: _text(component, prop, limit, notes) if component.get(prop) else None
        for prop, name, limit in _TEXT
    }
    status_raw = str(component.get("STATUS", "CONFIRMED")).upper()
    if status_raw not in _STATUS_IN:
        notes.append(f"STATUS: {status_raw} not kept")
    event = EventCreate(
        title=text["title"] or "(no title)",
        start_time=_stamp(start, all_day, tz),
        end_time=end_text,
        timezone=tz,
        event_type=_event_type(component, notes),
        description=text["description"],
        location=text["location"],
        is_all_day=all_day,
        is_recurring=pattern is not None,
        recurrence_pattern=pattern,
        reminder_settings=_reminders(component, notes),
        status=_STATUS_IN.get(status_raw, "scheduled"),
    )
    return Draft(uid, event, notes)


def _pattern(
    component: icalendar.cal.Component,
    changes: list[icalendar.cal.Component],
    all_day: bool,
    tz: str,
    length: dt.timedelta | None,
    notes: list[str],
) -> dict[str, Any] | None:
    """The recurrence pattern of a master VEVENT and its changed occurrences (None: it does not
    repeat)."""
    rules = component.get("RRULE")
    if isinstance(rules, list):
        notes.append(f"RRULE: only one rule is kept ({len(rules)} given)")
        rules = rules[0]
    overrides: dict[str, Any] = {}
    rdates: list[str] = []
    for value in _values(component.get("RDATE")):
        if isinstance(value, tuple):  # a PERIOD: the start, and its own end where it differs
            first, until = value
            rid = _stamp(first, all_day, tz)
            ends = until if isinstance(until, dt.datetime) else first + until
            if not all_day and ends - first != length:
                overrides[rid] = {"end": _stamp(ends, False, tz)}
            rdates.append(rid)
        else:
            rdates.append(_stamp(value, all_day, tz))
    exdates = [_stamp(x, all_day, tz) for x in _values(component.get("EXDATE"))]
    if rules is None and not rdates:
        if exdates:
            notes.append("EXDATE: not kept: the event does not repeat")
        for change in changes:
            rid = _stamp(_decoded(change, "RECURRENCE-ID"), all_day, tz)
            notes.append(f"RECURRENCE-ID {rid}: not kept: the event does not repeat")
        return None
    for change in changes:
        rid = _stamp(_decoded(change, "RECURRENCE-ID"), all_day, tz)
        prefix = f"RECURRENCE-ID {rid} "
        if str(change["RECURRENCE-ID"].params.get("RANGE", "")).upper() == "THISANDFUTURE":
            notes.append(f"{prefix}RANGE: applied to that occurrence only")
        if str(change.get("STATUS", "")).upper() == "CANCELLED":
            exdates.append(rid)
            continue
        notes.extend(_unkept(change, _CHANGE_KEPT, prefix, alarms=False))
        if str(change.get("STATUS", "CONFIRMED")).upper() != "CONFIRMED":
            notes.append(f"{prefix}STATUS: {change.get('STATUS')} not kept")
        entry: dict[str, Any] = overrides.get(rid, {})
        new_start = _decoded(change, "DTSTART")
        if new_start is not None:
            entry["start"] = _stamp(new_start, all_day, tz)
        new_end = _decoded(change, "DTEND")
        duration = _decoded(change, "DURATION")
        if new_end is None and isinstance(duration, dt.timedelta) and new_start is not None:
            new_end = new_start + duration
        if new_end is not None:
            entry["end"] = _stamp(new_end, all_day, tz)  # all-day: the exclusive end, as stored
        for prop, name, limit in _TEXT:
            if change.get(prop) is not None:
                entry[name] = _text(change, prop, limit, notes, prefix)
        overrides[rid] = entry
    rule = rules.to_ical().decode() if rules is not None else RDATES_ONLY_RULE
    return {"rrule": rule, "exdates": exdates, "rdates": rdates, "overrides": overrides}


def _event_type(component: icalendar.cal.Component, notes: list[str]) -> str:
    """The first category that is an event type; the other categories are said."""
    found: str | None = None
    others: list[str] = []
    categories = component.get("CATEGORIES")
    if categories is None:
        props = []
    else:
        props = categories if isinstance(categories, list) else [categories]
    for prop in props:
        for name in getattr(prop, "cats", []):
            if found is None and str(name).lower() in _TYPES_IN:
                found = str(name).lower()
            else:
                others.append(str(name))
    if others:
        notes.append(
            f"CATEGORIES: {', '.join(others)} not kept; an event keeps one type "
            f"({', '.join(sorted(_TYPES_IN))})"
        )
    return found or "study"


def _reminders(component: icalendar.cal.Component, notes: list[str]) -> list[ReminderSetting]:
    """Alarms a given time before the start, as reminders; the others are said."""
    found: dict[int, set[str]] = {}
    for alarm in component.walk("VALARM"):
        prop = alarm.get("TRIGGER")
        trigger = _decoded(alarm, "TRIGGER")
        action = str(alarm.get("ACTION", "DISPLAY")).upper()
        related = str(getattr(prop, "params", {}).get("RELATED", "START")).upper()
        before = -trigger if isinstance(trigger, dt.timedelta) else None
        if (
            before is None
            or related != "START"
            or action not in _ALARM_CHANNELS
            or not dt.timedelta(0) <= before <= dt.timedelta(minutes=MAX_REMINDER_MINUTES)
        ):
            when = prop.to_ical().decode() if prop is not None else "no TRIGGER"
            notes.append(
                f"VALARM: {action} at {when} not kept; only reminders up to four weeks before "
                "the start are"
            )
            continue
        minutes, seconds = divmod(int(before.total_seconds()), 60)
        if seconds:
            notes.append(f"VALARM: {before} before the start kept as {minutes} minutes")
        found.setdefault(minutes, set()).add(_ALARM_CHANNELS[action])
    kept = sorted(found.items(), reverse=True)
    if len(kept) > MAX_REMINDERS:
        notes.append(f"VALARM: {len(kept) - MAX_REMINDERS} alarms not kept (at most "
                     f"{MAX_REMINDERS} reminders)")  # fmt: skip
    return [ReminderSetting(m, sorted(c)) for m, c in kept[:MAX_REMINDERS]]
