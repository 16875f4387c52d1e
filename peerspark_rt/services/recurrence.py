"""Recurring events and sessions: RFC 5545 rules, expanded by python-dateutil.

Pure logic, no I/O, shared by the calendar and study sessions.

A series is a first occurrence (`start`..`end`, in the series' own IANA time zone) plus an
optional `Pattern`: one RRULE (without DTSTART: the series' start is the DTSTART), the
occurrences cancelled (`exdates`) and the occurrences changed (`overrides`). Occurrences are
computed in the series' own zone, so a weekly 09:00 Europe/Berlin class stays at 09:00 Berlin
time across a DST change (its UTC instant moves). All-day series work on dates and have no time
zone at all: 12 May is 12 May for every viewer.

An occurrence is named by its *recurrence id*: the original start as a UTC instant
(`2026-03-30T07:00:00Z`) for timed series, or the original date (`2026-03-30`) for all-day ones.
That is also what the iCalendar RECURRENCE-ID of an exception means.

Stored form (the `recurrence_pattern` JSONB column):
    {"rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
     "exdates": ["2026-03-30T07:00:00Z"],
     "overrides": {"2026-04-06T07:00:00Z": {"start": "...", "end": "...", "title": "..."}}}
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dateutil.rrule import rrule, rrulestr

from ..errors import Invalid

log = logging.getLogger(__name__)

UTC = dt.UTC
MAX_COUNT = 5000
MAX_EXCEPTIONS = 500
MAX_EXPANDED = 2000  # occurrences of one series in one window, at most
OVERRIDE_TEXT_FIELDS = {"title": 255, "description": 10_000, "location": 1000}
ALLOWED_FREQ = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_FORBIDDEN_PARTS = ("DTSTART", "RDATE", "EXDATE", "EXRULE")
# Past this many years an UNTIL is treated as open-ended when computing where a series stops.
_SPAN_YEARS = 20


@dataclass(frozen=True, slots=True)
class Override:
    """One occurrence changed: new times and/or new text (title, description, location)."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    fields: Mapping[str, str | None] = field(default_factory=dict)

    def to_json(self, all_day: bool) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.fields)
        if self.start is not None:
            out["start"] = _stamp(self.start, all_day)
        if self.end is not None:
            out["end"] = _stamp(self.end, all_day)
        return out


@dataclass(frozen=True, slots=True)
class Pattern:
    rrule: str
    exdates: tuple[str, ...] = ()
    overrides: Mapping[str, Override] = field(default_factory=dict)

    def to_json(self, all_day: bool) -> dict[str, Any]:
        return {
            "rrule": self.rrule,
            "exdates": list(self.exdates),
            "overrides": {k: v.to_json(all_day) for k, v in self.overrides.items()},
        }


@dataclass(frozen=True, slots=True)
class Series:
    """What to expand. `start`/`end` are aware instants; for all-day series they are midnight
    UTC of the first day and of the day after the last day (iCalendar's exclusive DTEND)."""

    start: dt.datetime
    end: dt.datetime
    timezone: str
    all_day: bool = False
    pattern: Pattern | None = None

    @property
    def duration(self) -> dt.timedelta:
        return self.end - self.start

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zone(self.timezone)


@dataclass(frozen=True, slots=True)
class Occurrence:
    start: dt.datetime
    end: dt.datetime
    recurrence_id: str | None  # None for a series that does not repeat
    overridden: bool = False
    fields: Mapping[str, str | None] = field(default_factory=dict)


# --------------------------------------------------------------------------- small helpers


def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def day_start(day: dt.date) -> dt.datetime:
    """How an all-day date is kept as an instant: midnight UTC (never shown in a zone)."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _stamp(value: dt.datetime, all_day: bool) -> str:
    if all_day:
        return value.date().isoformat()
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recurrence_id_of(original_start: dt.datetime, all_day: bool) -> str:
    return _stamp(original_start, all_day)


def parse_instant(value: str, field: str, *, all_day: bool, tz: str = "UTC") -> dt.datetime:
    """An ISO 8601 date or date-time into an aware instant. A date-time without an offset is
    read in `tz`; for all-day values only the date counts (midnight UTC)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if all_day:
                return day_start(day)
            return dt.datetime(day.year, day.month, day.day, tzinfo=zone(tz)).astimezone(UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Invalid(field, "must be an ISO 8601 date or date-time") from None
    if all_day:
        return day_start(moment.date())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(tz))
    return moment.astimezone(UTC)


def parse_recurrence_id(value: str, *, all_day: bool, field: str = "recurrenceId") -> str:
    """Normalize a recurrence id given by a client (any ISO form of the original start)."""
    return recurrence_id_of(parse_instant(value, field, all_day=all_day), all_day)


# --------------------------------------------------------------------------- rules


def _rule_parts(text: str, field: str) -> list[tuple[str, str]]:
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if not body or "\n" in body or "\r" in body:
        raise Invalid(field, "must be one RFC 5545 RRULE such as FREQ=WEEKLY;BYDAY=MO,WE")
    parts: list[tuple[str, str]] = []
    for chunk in body.split(";"):
        if not chunk:
            continue
        key, sep, val = chunk.partition("=")
        key = key.strip().upper()
        if not sep or not key or not val.strip():
            raise Invalid(field, f"malformed rule part {chunk!r}")
        if key in _FORBIDDEN_PARTS:
            raise Invalid(field, f"{key} is not allowed in the rule; the series' start is DTSTART")
        if any(k == key for k, _ in parts):
            raise Invalid(field, f"{key} appears twice")
        parts.append((key, val.strip().upper()))
    return parts


def _rule_text(parts: list[tuple[str, str]]) -> str:
    return ";".join(f"{k}={v}" for k, v in parts)


def _dtstart(series: Series) -> dt.datetime:
    if series.all_day:
        return dt.datetime(series.start.year, series.start.month, series.start.day)
    return series.start.astimezone(series.zone)


def _format_until(moment: dt.datetime, all_day: bool) -> str:
    if all_day:
        return moment.strftime("%Y%m%d")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _build(rule_text: str, series: Series) -> rrule:
    built = rrulestr(rule_text, dtstart=_dtstart(series))
    assert isinstance(built, rrule)
    return built


def normalize_rule(text: str, series: Series, field: str = "recurrencePattern.rrule") -> str:
    """Check a rule and return it in canonical form (upper case, UNTIL in UTC for timed
    series, a date for all-day ones). Raises Invalid naming `field`."""
    parts = _rule_parts(text, field)
    keys = {k for k, _ in parts}
    freq = dict(parts).get("FREQ")
    if freq is None:
        raise Invalid(field, "FREQ is required")
    if freq not in ALLOWED_FREQ:
        raise Invalid(field, f"FREQ must be one of {', '.join(ALLOWED_FREQ)}")
    if {"COUNT", "UNTIL"} <= keys:
        raise Invalid(field, "COUNT and UNTIL must not both be given (RFC 5545)")
    normalized: list[tuple[str, str]] = []
    for key, val in parts:
        if key == "COUNT" and (not val.isdigit() or not 1 <= int(val) <= MAX_COUNT):
            raise Invalid(field, f"COUNT must be an integer from 1 to {MAX_COUNT}")
        if key == "UNTIL":
            val = _format_until(_parse_until(val, series, field), series.all_day)
        normalized.append((key, val))
    canonical = _rule_text(normalized)
    try:
        built = _build(canonical, series)
    except (ValueError, TypeError, OverflowError) as exc:
        raise Invalid(field, f"not a valid RFC 5545 rule: {exc}") from None
    try:
        first = next(iter(built.xafter(_dtstart(series), count=1, inc=True)), None)
    except (ValueError, OverflowError) as exc:
        raise Invalid(field, f"not a valid RFC 5545 rule: {exc}") from None
    if first is None:
        raise Invalid(field, "the rule produces no occurrence on or after the start")
    return canonical


def _parse_until(val: str, series: Series, field: str) -> dt.datetime:
    """UNTIL as an instant: a date means the end of that day in the series' zone; a local
    date-time (no Z) is read in the series' zone."""
    try:
        if len(val) == 8:
            day = dt.datetime.strptime(val, "%Y%m%d")
            if series.all_day:
                return day
            end_of_day = day.replace(hour=23, minute=59, second=59)
            return end_of_day.replace(tzinfo=series.zone).astimezone(UTC)
        if val.endswith("Z"):
            return dt.datetime.strptime(val, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        local = dt.datetime.strptime(val, "%Y%m%dT%H%M%S")
    except ValueError:
        raise Invalid(
            field, f"UNTIL must look like 20260501 or 20260501T090000Z, got {val}"
        ) from None
    if series.all_day:
        return local
    return local.replace(tzinfo=series.zone).astimezone(UTC)


def rule_of(series: Series) -> rrule | None:
    """The dateutil rule of a series (trusted, already normalized), or None."""
    if series.pattern is None:
        return None
    return _build(series.pattern.rrule, series)


# --------------------------------------------------------------------------- patterns


def parse_pattern(raw: Any, series: Series, field: str = "recurrencePattern") -> Pattern:
    """Validate a client's recurrence pattern: a string RRULE, or an object with `rrule`,
    optional `exdates` (recurrence ids) and `overrides` (recurrence id -> changes)."""
    if isinstance(raw, str):
        raw = {"rrule": raw}
    if not isinstance(raw, Mapping):
        raise Invalid(field, "must be an RRULE string or an object with an rrule")
    unknown = set(raw) - {"rrule", "exdates", "overrides"}
    if unknown:
        raise Invalid(f"{field}.{sorted(unknown)[0]}", "is not a known field")
    text = raw.get("rrule")
    if not isinstance(text, str):
        raise Invalid(f"{field}.rrule", "is required (an RFC 5545 RRULE)")
    base = replace(series, pattern=None)
    rule_text = normalize_rule(text, base, f"{field}.rrule")
    with_rule = replace(series, pattern=Pattern(rule_text))

    exdates_raw = raw.get("exdates") or []
    if not isinstance(exdates_raw, list) or not all(isinstance(x, str) for x in exdates_raw):
        raise Invalid(f"{field}.exdates", "must be a list of occurrence start times")
    if len(exdates_raw) > MAX_EXCEPTIONS:
        raise Invalid(f"{field}.exdates", f"at most {MAX_EXCEPTIONS} exceptions")
    exdates: list[str] = []
    for value in exdates_raw:
        rid = parse_recurrence_id(value, all_day=series.all_day, field=f"{field}.exdates")
        if not occurs(with_rule, rid):
            raise Invalid(f"{field}.exdates", f"{value} is not an occurrence of this series")
        if rid not in exdates:
            exdates.append(rid)

    overrides_raw = raw.get("overrides") or {}
    if not isinstance(overrides_raw, Mapping):
        raise Invalid(f"{field}.overrides", "must be an object keyed by occurrence start")
    if len(overrides_raw) > MAX_EXCEPTIONS:
        raise Invalid(f"{field}.overrides", f"at most {MAX_EXCEPTIONS} exceptions")
    overrides: dict[str, Override] = {}
    for key, change in overrides_raw.items():
        where = f"{field}.overrides"
        rid = parse_recurrence_id(str(key), all_day=series.all_day, field=where)
        if not occurs(with_rule, rid):
            raise Invalid(where, f"{key} is not an occurrence of this series")
        overrides[rid] = parse_override(change, series, where)
    return Pattern(rule_text, tuple(exdates), overrides)


def parse_override(change: Any, series: Series, field: str) -> Override:
    if not isinstance(change, Mapping):
        raise Invalid(field, "each override must be an object")
    unknown = set(change) - {"start", "end", *OVERRIDE_TEXT_FIELDS}
    if unknown:
        raise Invalid(f"{field}.{sorted(unknown)[0]}", "is not a known field")
    start = end = None
    if change.get("start") is not None:
        start = parse_instant(
            str(change["start"]), f"{field}.start", all_day=series.all_day, tz=series.timezone
        )
    if change.get("end") is not None:
        end = parse_instant(
            str(change["end"]), f"{field}.end", all_day=series.all_day, tz=series.timezone
        )
    fields: dict[str, str | None] = {}
    for name, limit in OVERRIDE_TEXT_FIELDS.items():
        if name in change:
            value = change[name]
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise Invalid(f"{field}.{name}", f"must be text of at most {limit} characters")
            fields[name] = value
    return Override(start, end, fields)


def load_pattern(raw: Any) -> Pattern | None:
    """The stored JSONB back into a Pattern, tolerating anything odd (None: not recurring).

    Stored patterns were validated on the way in; this stays lenient because study sessions
    written by other code paths may hold other shapes."""
    if isinstance(raw, str):
        raw = {"rrule": raw}
    if not isinstance(raw, Mapping) or not isinstance(raw.get("rrule"), str):
        return None
    overrides: dict[str, Override] = {}
    for key, change in (raw.get("overrides") or {}).items():
        if not isinstance(change, Mapping):
            continue
        start = _loose_instant(change.get("start"))
        end = _loose_instant(change.get("end"))
        fields = {k: change[k] for k in OVERRIDE_TEXT_FIELDS if k in change}
        overrides[str(key)] = Override(start, end, fields)
    exdates = tuple(str(x) for x in raw.get("exdates") or [])
    return Pattern(raw["rrule"], exdates, overrides)


def _loose_instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            return day_start(dt.date.fromisoformat(value))
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- expansion


def _original_starts(series: Series, rule: rrule, after: dt.datetime) -> Iterator[dt.datetime]:
    """Original occurrence starts (aware; midnight UTC for all-day) from `after` on."""
    if series.all_day:
        naive = dt.datetime(after.year, after.month, after.day)
        for moment in rule.xafter(naive, inc=True):
            yield day_start(moment.date())
    else:
        for moment in rule.xafter(after.astimezone(series.zone), inc=True):
            yield moment.astimezone(UTC)


def occurs(series: Series, recurrence_id: str) -> bool:
    """Whether `recurrence_id` is an occurrence the rule produces (cancelled or not)."""
    rule = rule_of(series)
    if rule is None:
        return False
    target = _loose_instant(recurrence_id)
    if target is None:
        return False
    for moment in _original_starts(series, rule, target):
        return moment == target
    return False


def _overlaps(start: dt.datetime, end: dt.datetime, lo: dt.datetime, hi: dt.datetime) -> bool:
    if end <= start:  # a point in time (a deadline) is in [lo, hi)
        return lo <= start < hi
    return start < hi and end > lo


def _day_window(
    lo: dt.datetime, hi: dt.datetime, viewer_tz: str
) -> tuple[dt.datetime, dt.datetime]:
    """The dates a viewer's window touches, as all-day instants [first, last + 1 day)."""
    vz = zone(viewer_tz)
    first = lo.astimezone(vz).date()
    last = (hi - dt.timedelta(microseconds=1)).astimezone(vz).date()
    return day_start(first), day_start(last) + dt.timedelta(days=1)


def expand(
    series: Series,
    window_start: dt.datetime,
    window_end: dt.datetime,
    *,
    viewer_tz: str = "UTC",
    limit: int = MAX_EXPANDED,
) -> list[Occurrence]:
    """Occurrences overlapping [window_start, window_end), sorted by start.

    For all-day series the window is widened to the whole dates it touches in `viewer_tz`:
    an all-day event on 12 May shows on 12 May wherever the viewer is."""
    lo, hi = window_start, window_end
    if series.all_day:
        lo, hi = _day_window(lo, hi, viewer_tz)
    rule = rule_of(series)
    if rule is None or series.pattern is None:
        if _overlaps(series.start, series.end, lo, hi):
            return [Occurrence(series.start, series.end, None)]
        return []
    pattern = series.pattern
    duration = series.duration
    skipped = set(pattern.exdates) | set(pattern.overrides)
    found: list[Occurrence] = []
    begin = max(series.start, lo - duration - dt.timedelta(days=1))
    for original in _original_starts(series, rule, begin):
        if original >= hi or len(found) >= limit:
            break
        rid = recurrence_id_of(original, series.all_day)
        if rid in skipped:
            continue
        if _overlaps(original, original + duration, lo, hi):
            found.append(Occurrence(original, original + duration, rid))
    for rid, change in pattern.overrides.items():
        if rid in pattern.exdates:
            continue
        moved_from = _loose_instant(rid)
        if moved_from is None:
            continue
        start = change.start or moved_from
        end = change.end or (start + duration)
        if _overlaps(start, end, lo, hi):
            found.append(Occurrence(start, end, rid, overridden=True, fields=change.fields))
    found.sort(key=lambda o: (o.start, o.recurrence_id or ""))
    return found[:limit]


def series_span(series: Series) -> tuple[dt.datetime, dt.datetime | None]:
    """The instants the whole series covers (its exceptions included); None: no end."""
    rule = rule_of(series)
    if rule is None or series.pattern is None:
        return series.start, series.end
    start = series.start
    end: dt.datetime | None = series.end
    parts = dict(_rule_parts(series.pattern.rrule, "rrule"))
    last: dt.datetime | None = None
    if "COUNT" in parts or "UNTIL" in parts:
        horizon = series.start + dt.timedelta(days=366 * _SPAN_YEARS)
        for original in _original_starts(series, rule, series.start):
            if original > horizon:
                last = None
                break
            last = original
        end = (last + series.duration) if last is not None else None
    else:
        end = None
    for change in series.pattern.overrides.values():
        if change.start is not None:
            start = min(start, change.start)
        if end is not None and change.end is not None:
            end = max(end, change.end)
        elif end is not None and change.start is not None:
            end = max(end, change.start + series.duration)
    return start, end


# --------------------------------------------------------------------------- edits


def with_exdate(pattern: Pattern, recurrence_id: str) -> Pattern:
    """Cancel one occurrence (its override, if any, goes too)."""
    exdates = (
        pattern.exdates if recurrence_id in pattern.exdates else (*pattern.exdates, recurrence_id)
    )
    overrides = {k: v for k, v in pattern.overrides.items() if k != recurrence_id}
    return Pattern(pattern.rrule, exdates, overrides)


def with_override(pattern: Pattern, recurrence_id: str, change: Override) -> Pattern:
    """Change one occurrence; a second change to it merges with the first."""
    previous = pattern.overrides.get(recurrence_id)
    if previous is not None:
        change = Override(
            change.start or previous.start,
            change.end or previous.end,
            {**previous.fields, **change.fields},
        )
    overrides = {**pattern.overrides, recurrence_id: change}
    return Pattern(pattern.rrule, pattern.exdates, overrides)


def count_before(series: Series, recurrence_id: str) -> int:
    """How many occurrences the rule produces before `recurrence_id`."""
    rule = rule_of(series)
    target = _loose_instant(recurrence_id)
    if rule is None or target is None:
        return 0
    n = 0
    for original in _original_starts(series, rule, series.start):
        if original >= target:
            break
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class Split:
    """A series cut at an occurrence: `before` keeps the earlier occurrences (None when the cut
    is at the first one), `after_rule`/`after_exdates`/`after_overrides` carry on from it."""

    before: Pattern | None
    after: Pattern
    cut: dt.datetime


def split(series: Series, recurrence_id: str) -> Split:
    """Cut a series at one of its occurrences ("this and following")."""
    assert series.pattern is not None
    pattern = series.pattern
    cut = _loose_instant(recurrence_id)
    assert cut is not None
    parts = _rule_parts(pattern.rrule, "rrule")
    earlier = count_before(series, recurrence_id)
    before: Pattern | None = None
    if earlier > 0:
        until = cut - (dt.timedelta(days=1) if series.all_day else dt.timedelta(seconds=1))
        before_parts = [(k, v) for k, v in parts if k not in ("COUNT", "UNTIL")]
        before_parts.append(("UNTIL", _format_until(until, series.all_day)))
        before = Pattern(
            _rule_text(before_parts),
            tuple(x for x in pattern.exdates if x < recurrence_id),
            {k: v for k, v in pattern.overrides.items() if k < recurrence_id},
        )
    after_parts = []
    for key, val in parts:
        if key == "COUNT":
            val = str(max(1, int(val) - earlier))
        after_parts.append((key, val))
    after = Pattern(
        _rule_text(after_parts),
        tuple(x for x in pattern.exdates if x >= recurrence_id),
        {k: v for k, v in pattern.overrides.items() if k >= recurrence_id},
    )
    return Split(before, after, cut)


def truncate(series: Series, recurrence_id: str) -> Pattern | None:
    """Drop an occurrence and every later one ("delete this and following"). None when nothing
    is left (the cut was at the first occurrence)."""
    return split(series, recurrence_id).before


def rebase(pattern: Pattern, new: Series) -> Pattern:
    """Keep the exceptions of `pattern` that still name occurrences of `new` (after a change of
    start time, the old recurrence ids no longer match and are dropped)."""
    probe = replace(new, pattern=Pattern(pattern.rrule))
    exdates = tuple(x for x in pattern.exdates if occurs(probe, x))
    overrides = {k: v for k, v in pattern.overrides.items() if occurs(probe, k)}
    return Pattern(pattern.rrule, exdates, overrides)
