"""Recurring events and sessions: RFC 5545 rules, expanded by python-dateutil.

Pure logic, no I/O, shared by the calendar and study sessions. One piece because RFC 5545's
rules interlock (DTSTART, COUNT, EXDATE, RDATE, overrides and the DST rules all meet in
expansion); its halves would only be read together.

A series is a first occurrence (`start`..`end`, in the series' own IANA time zone) plus an
optional `Pattern`: one RRULE (without DTSTART: the series' start is the DTSTART), occurrences
added on their own (`rdates`), the occurrences cancelled (`exdates`) and the occurrences changed
(`overrides`). As in RFC 5545 the start is always the first instance, also when the rule would
not produce it (the RFC's "every Friday the 13th" starts on a Tuesday and cancels that start
with an EXDATE), and COUNT counts it. Occurrences are
computed in the series' own zone, so a weekly 09:00 Europe/Berlin class stays at 09:00 Berlin
time across a DST change (its UTC instant moves). All-day series work on dates and have no time
zone at all: 12 May is 12 May for every viewer.

An occurrence is named by its *recurrence id*: the original start as a UTC instant
(`2026-03-30T07:00:00Z`) for timed series, or the original date (`2026-03-30`) for all-day ones.
That is also what the iCalendar RECURRENCE-ID of an exception means.

Stored form (the `recurrence_pattern` JSONB column):
    {"rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
     "exdates": ["2026-03-30T07:00:00Z"],
     "rdates": ["2026-04-01T13:00:00Z"],
     "overrides": {"2026-04-06T07:00:00Z": {"start": "...", "end": "...", "title": "..."}}}
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import itertools
import logging
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from dateutil.rrule import rrule, rrulestr

from ..errors import Invalid

log = logging.getLogger(__name__)

UTC = dt.UTC
MAX_COUNT = 5000
MAX_EXCEPTIONS = 500
MAX_EXPANDED = 2000  # occurrences of one series in one window, at most
MAX_PER_DAY = 48  # occurrences a rule may make in one day (BYHOUR x BYMINUTE, INTERVAL, COUNT)
# Occurrences walked at most to answer one question about a series (where it ends, how many
# come before an occurrence, its next reminder): past this the answer is a bound (see
# series_span, count_before). Windows walk from near themselves, never from the start.
MAX_WALK = MAX_COUNT
# Instants a client may give: outside these years dates mean nothing to a study calendar, and
# arithmetic on them (zones, spans, horizons) would overflow Python's datetime.
MIN_YEAR = 1900
MAX_YEAR = 2200
OVERRIDE_TEXT_FIELDS = {"title": 255, "description": 10_000, "location": 1000}
ALLOWED_FREQ = ("MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_FORBIDDEN_PARTS = ("DTSTART", "RDATE", "EXDATE", "EXRULE")
# Past this many years an UNTIL is treated as open-ended when computing where a series stops.
_SPAN_YEARS = 20
# The Gregorian calendar repeats every 400 years (146097 days, a whole number of weeks).
_CYCLE_YEARS = 400
_PROBE_YEAR = dt.MAXYEAR - _CYCLE_YEARS  # where a rule is probed: dateutil stops at MAXYEAR
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# dateutil walks wall-clock times, and a wall time in a DST gap is the instant the offset before
# the gap gives (RFC 5545 3.3.5): 02:30 on a spring-forward day is 03:30, after 03:00. So the
# instants of a walk may come out of order (and twice) by at most the largest jump of a UTC
# offset, a day (Samoa skipped 30 December 2011), and are put in order within that.
_MAX_JUMP = dt.timedelta(hours=25)


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
    rdates: tuple[str, ...] = ()  # recurrence ids, in order

    def to_json(self, all_day: bool) -> dict[str, Any]:
        return {
            "rrule": self.rrule,
            "exdates": list(self.exdates),
            "rdates": list(self.rdates),
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
    read in `tz`; for all-day values only the date counts (midnight UTC). Years outside
    MIN_YEAR..MAX_YEAR are refused (Invalid naming `field`)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            check_year(day.year, field)
            if all_day:
                return day_start(day)
            return dt.datetime(day.year, day.month, day.day, tzinfo=zone(tz)).astimezone(UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Invalid(field, "must be an ISO 8601 date or date-time") from None
    except OverflowError:
        raise Invalid(field, _year_reason()) from None
    check_year(moment.year, field)
    if all_day:
        return day_start(moment.date())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(tz))
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise Invalid(field, _year_reason()) from None


def _year_reason() -> str:
    return f"must be a date between the years {MIN_YEAR} and {MAX_YEAR}"


def check_year(year: int, field: str, what: str = "") -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise Invalid(field, f"{what} {_year_reason()}".strip())


def parse_recurrence_id(
    value: str, *, all_day: bool, field: str = "recurrenceId", tz: str = "UTC"
) -> str:
    """Normalize a recurrence id given by a client (any ISO form of the original start; one
    without an offset is read in `tz`)."""
    return recurrence_id_of(parse_instant(value, field, all_day=all_day, tz=tz), all_day)


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
    if not isinstance(built, rrule):
        raise TypeError("unexpected type: isinstance(built, rrule)")
    return built


def normalize_rule(text: str, series: Series, field: str = "recurrencePattern.rrule") -> str:
    """Check a rule and return it in canonical form (upper case, UNTIL in UTC for timed
    series, a date for all-day ones). Raises Invalid naming `field`.

    Rules that would cost more than a calendar is worth are refused here, before anything
    expands them: BYSECOND, more than MAX_PER_DAY occurrences a day, and rules that never
    produce an occurrence (found in a bounded walk, see `_first_original`). A rule whose
    occurrences all come after its UNTIL is kept: the series is then its start alone."""
    parts = _rule_parts(text, field)
    keys = {k for k, _ in parts}
    freq = dict(parts).get("FREQ")
    if freq is None:
        raise Invalid(field, "FREQ is required")
    if freq not in ALLOWED_FREQ:
        raise Invalid(field, f"FREQ must be one of {', '.join(ALLOWED_FREQ)}")
    if {"COUNT", "UNTIL"} <= keys:
        raise Invalid(field, "COUNT and UNTIL must not both be given (RFC 5545)")
    if "BYSECOND" in keys:
        raise Invalid(field, "BYSECOND is not supported: occurrences fall on whole minutes")
    per_day = _per_day(parts)
    if per_day > MAX_PER_DAY:
        raise Invalid(
            field,
            f"the rule makes up to {per_day} occurrences a day; at most {MAX_PER_DAY} are allowed",
        )
    normalized: list[tuple[str, str]] = []
    until: dt.datetime | None = None
    for key, val in parts:
        if key == "COUNT" and (not val.isdigit() or not 1 <= int(val) <= MAX_COUNT):
            raise Invalid(field, f"COUNT must be an integer from 1 to {MAX_COUNT}")
        if key == "UNTIL":
            until = _parse_until(val, series, field)
            val = _format_until(until, series.all_day)
            if series.all_day:  # compared with naive dates below
                until = dt.datetime.combine(until.date(), dt.time())
        normalized.append((key, val))
    canonical = _rule_text(normalized)
    try:
        _build(canonical, series)
        first = _first_original(canonical, series)
    except (ValueError, TypeError, OverflowError) as exc:
        # the parser's own words stay in the log: they describe its internals, not the rule
        log.info("rule %r refused: %r", canonical, exc)
        raise Invalid(field, "not a valid RFC 5545 rule") from None
    if first is None or (until is not None and until < _dtstart(series)):
        raise Invalid(field, "the rule produces no occurrence on or after the start")
    return canonical


def _per_day(parts: list[tuple[str, str]]) -> int:
    """At most how many occurrences the rule makes in one day: hours x minutes, as few as
    INTERVAL lets a sub-daily rule reach, and never more than COUNT (an upper bound: BYSETPOS
    and the date parts only remove some)."""
    given = dict(parts)

    def count(key: str) -> int | None:
        raw = given.get(key)
        return len({v for v in raw.split(",") if v.strip()}) if raw else None

    interval_raw = given.get("INTERVAL", "1")
    interval = int(interval_raw) if interval_raw.isdigit() and int(interval_raw) > 0 else 1
    hours, minutes = count("BYHOUR"), count("BYMINUTE")
    freq = given.get("FREQ")
    if freq == "MINUTELY":
        # every INTERVAL minutes: at most this many in an hour, and in a day
        per_hour = min(minutes or 60, -(-60 // interval))
        most = min(-(-1440 // interval), (hours or 24) * per_hour)
    else:
        if freq == "HOURLY":
            reachable = -(-24 // interval)  # every INTERVAL hours: at most this many a day
            hours = min(hours, reachable) if hours is not None else reachable
        most = (hours or 1) * (minutes or 1)
    total = given.get("COUNT", "")
    return min(most, int(total)) if total.isdigit() else most


def _first_original(rule_text: str, series: Series) -> dt.datetime | None:
    """The first occurrence the rule makes (aware for timed series, naive for all-day), found
    without walking more than about 800 years whatever the rule.

    dateutil walks period by period until it finds a match or reaches year 9999, so a rule that
    never matches (FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30) would walk ~8000 years (seconds of CPU).
    The calendar repeats every 400 years, so the rule (without COUNT/UNTIL, which do not change
    where it starts) is probed from the same date moved forward by whole 400-year cycles to
    between 400 and 800 years before 9999: what it finds there, moved back, is the first
    occurrence; finding nothing means there is none."""
    start = _dtstart(series)
    local = start.replace(tzinfo=None)
    shift = _CYCLE_YEARS * max(0, (_PROBE_YEAR - local.year) // _CYCLE_YEARS)
    parts = [(k, v) for k, v in _rule_parts(rule_text, "rrule") if k not in ("COUNT", "UNTIL")]
    probe = rrulestr(_rule_text(parts), dtstart=local.replace(year=local.year + shift))
    if not isinstance(probe, rrule):
        raise TypeError("unexpected type: isinstance(probe, rrule)")
    found = next(iter(probe), None)
    if found is None:
        return None
    first = found.replace(year=found.year - shift)
    if series.all_day:
        return first
    return first.replace(tzinfo=series.zone)


def _parse_until(val: str, series: Series, field: str) -> dt.datetime:
    """UNTIL as an instant: a date means the end of that day in the series' zone; a local
    date-time (no Z) is read in the series' zone."""
    try:
        if len(val) == 8:
            day = dt.datetime.strptime(val, "%Y%m%d")
            check_year(day.year, field, "UNTIL")
            if series.all_day:
                return day
            end_of_day = day.replace(hour=23, minute=59, second=59)
            return end_of_day.replace(tzinfo=series.zone).astimezone(UTC)
        if val.endswith("Z"):
            moment = dt.datetime.strptime(val, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            check_year(moment.year, field, "UNTIL")
            return moment
        local = dt.datetime.strptime(val, "%Y%m%dT%H%M%S")
        check_year(local.year, field, "UNTIL")
        if series.all_day:
            return local
        return local.replace(tzinfo=series.zone).astimezone(UTC)
    except ValueError:
        raise Invalid(
            field, f"UNTIL must look like 20260501 or 20260501T090000Z, got {val}"
        ) from None
    except OverflowError:
        raise Invalid(field, f"UNTIL {_year_reason()}") from None


def rule_of(series: Series) -> rrule | None:
    """The dateutil rule of a series (trusted, already normalized), or None."""
    if series.pattern is None:
        return None
    return _build(series.pattern.rrule, series)


# --------------------------------------------------------------------------- patterns


def parse_pattern(
    raw: Any,
    series: Series,
    field: str = "recurrencePattern",
    *,
    dropped: list[Invalid] | None = None,
) -> Pattern:
    """Validate a client's recurrence pattern: a string RRULE, or an object with `rrule`,
    optional `rdates` (occurrences added), `exdates` (recurrence ids) and `overrides`
    (recurrence id -> changes).

    With `dropped` (an import, which keeps what it can), an rdate, exdate or override that
    cannot be kept is left out and its reason added there instead of refusing the pattern."""
    if isinstance(raw, str):
        raw = {"rrule": raw}
    if not isinstance(raw, Mapping):
        raise Invalid(field, "must be an RRULE string or an object with an rrule")
    unknown = set(raw) - {"rrule", "exdates", "rdates", "overrides"}
    if unknown:
        raise Invalid(f"{field}.{sorted(unknown)[0]}", "is not a known field")
    text = raw.get("rrule")
    if not isinstance(text, str):
        raise Invalid(f"{field}.rrule", "is required (an RFC 5545 RRULE)")
    base = replace(series, pattern=None)
    rule_text = normalize_rule(text, base, f"{field}.rrule")

    def refuse(problem: Invalid) -> None:
        if dropped is None:
            raise problem
        dropped.append(problem)

    rdates: set[str] = set()
    for value in _bounded_list(raw.get("rdates"), f"{field}.rdates", refuse):
        try:
            rdates.add(_rdate(value, series, f"{field}.rdates"))
        except Invalid as exc:
            refuse(exc)
    added = Pattern(rule_text, rdates=tuple(sorted(rdates)))
    with_dates = replace(series, pattern=added)

    exdates: list[str] = []
    for value in _bounded_list(raw.get("exdates"), f"{field}.exdates", refuse):
        try:
            rid = parse_recurrence_id(
                value, all_day=series.all_day, field=f"{field}.exdates", tz=series.timezone
            )
            if not occurs(with_dates, rid):
                raise Invalid(f"{field}.exdates", f"{value} is not an occurrence of this series")
        except Invalid as exc:
            refuse(exc)
            continue
        if rid not in exdates:
            exdates.append(rid)

    overrides_raw = raw.get("overrides") or {}
    if not isinstance(overrides_raw, Mapping):
        raise Invalid(f"{field}.overrides", "must be an object keyed by occurrence start")
    overrides: dict[str, Override] = {}
    where = f"{field}.overrides"
    for seen, (key, change) in enumerate(overrides_raw.items()):
        if seen == MAX_EXCEPTIONS:
            refuse(Invalid(where, f"at most {MAX_EXCEPTIONS} exceptions"))
            break
        try:
            rid = parse_recurrence_id(str(key), all_day=series.all_day, field=where)
            if not occurs(with_dates, rid):
                raise Invalid(where, f"{key} is not an occurrence of this series")
            overrides[rid] = parse_override(change, series, where)
        except Invalid as exc:
            refuse(exc)
    return replace(added, exdates=tuple(exdates), overrides=overrides)


def _bounded_list(raw: Any, field: str, refuse: Callable[[Invalid], None]) -> list[str]:
    """A client's list of occurrence start times, at most MAX_EXCEPTIONS of them."""
    values = raw or []
    if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
        raise Invalid(field, "must be a list of occurrence start times")
    if len(values) > MAX_EXCEPTIONS:
        refuse(Invalid(field, f"at most {MAX_EXCEPTIONS} dates ({len(values)} given)"))
    return values[:MAX_EXCEPTIONS]


def _rdate(value: str, series: Series, field: str) -> str:
    """An added occurrence's recurrence id; refused before the start, which RFC 5545 makes the
    series' first instance."""
    instant = parse_instant(value, field, all_day=series.all_day, tz=series.timezone)
    if instant < series.start:
        raise Invalid(field, f"{value} is before the series' start, its first instance")
    return recurrence_id_of(instant, series.all_day)


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
    rdates = tuple(str(x) for x in raw.get("rdates") or [])
    return Pattern(raw["rrule"], exdates, overrides, rdates)


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
#
# dateutil walks a rule from its DTSTART: asking for the occurrences of 2026 of a rule that
# started in 1990 walks 36 years of them. `_walk_from` starts the walk instead at the start of
# the rule's period (its day, week, month, year or hour, in step with INTERVAL) a day before the
# instant asked for, with the rule's implicit parts (BYDAY of a weekly rule, BYHOUR, ...) made
# explicit from the real DTSTART, so the walk is short and the occurrences are the same. A COUNT
# rule is first turned into the same rule with UNTIL = its last occurrence (found once, by a
# walk of at most MAX_COUNT occurrences, and cached).


def _local(moment: dt.datetime, series: Series) -> dt.datetime:
    """An instant as the naive wall time dateutil works in for this series."""
    if series.all_day:
        return dt.datetime(moment.year, moment.month, moment.day)
    return moment.astimezone(series.zone).replace(tzinfo=None)


def _explicit_parts(parts: dict[str, str], start: dt.datetime) -> dict[str, str]:
    """The rule with the parts dateutil derives from DTSTART written out (same occurrences
    whatever DTSTART the rule is then given, as long as it is in step with INTERVAL)."""
    out = dict(parts)
    freq = out["FREQ"]
    if not {"BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY", "BYEASTER"} & out.keys():
        if freq == "YEARLY":
            out.setdefault("BYMONTH", str(start.month))
            out["BYMONTHDAY"] = str(start.day)
        elif freq == "MONTHLY":
            out["BYMONTHDAY"] = str(start.day)
        elif freq == "WEEKLY":
            out["BYDAY"] = _WEEKDAYS[start.weekday()]
    if freq not in ("HOURLY", "MINUTELY"):
        out.setdefault("BYHOUR", str(start.hour))
    if freq != "MINUTELY":
        out.setdefault("BYMINUTE", str(start.minute))
    out.setdefault("BYSECOND", str(start.second))
    return out


def _stored_parts(text: str) -> dict[str, str]:
    """The parts of a stored rule; ValueError (like dateutil's) if it is not one."""
    try:
        parts = dict(_rule_parts(text, "rrule"))
    except Invalid as exc:
        raise ValueError(exc.reason) from None
    if parts.get("FREQ") not in ALLOWED_FREQ:
        raise ValueError(f"unsupported FREQ in {text!r}")
    return parts


def _period_start(parts: dict[str, str], start: dt.datetime, target: dt.datetime) -> dt.datetime:
    """The start of the last period of the rule (counted in INTERVALs from `start`) that
    begins at or before `target`; `start` itself when that is the first period."""
    freq = parts["FREQ"]
    interval = max(1, int(parts.get("INTERVAL", "1")))

    def steps(n: int) -> int:
        return (n // interval) * interval

    if freq == "YEARLY":
        n = steps(target.year - start.year)
        found = dt.datetime(start.year + n, 1, 1)
    elif freq == "MONTHLY":
        n = steps((target.year - start.year) * 12 + target.month - start.month)
        years, month = divmod(start.month - 1 + n, 12)
        found = dt.datetime(start.year + years, month + 1, 1)
    elif freq == "WEEKLY":
        wkst = _WEEKDAYS.index(parts.get("WKST", "MO")) if parts.get("WKST") in _WEEKDAYS else 0

        def week_of(moment: dt.datetime) -> dt.date:
            return moment.date() - dt.timedelta(days=(moment.weekday() - wkst) % 7)

        n = steps((week_of(target) - week_of(start)).days // 7)
        found = dt.datetime.combine(week_of(start) + dt.timedelta(weeks=n), dt.time())
    elif freq == "DAILY":
        n = steps((target.date() - start.date()).days)
        found = dt.datetime.combine(start.date() + dt.timedelta(days=n), dt.time())
    elif freq == "HOURLY":  # dateutil counts wall-clock hours
        hour = start.replace(minute=0, second=0, microsecond=0)
        n = steps(int((target - hour).total_seconds() // 3600))
        found = hour + dt.timedelta(hours=n)
    else:  # MINUTELY: and wall-clock minutes
        minute = start.replace(second=0, microsecond=0)
        n = steps(int((target - minute).total_seconds() // 60))
        found = minute + dt.timedelta(minutes=n)
    return found if n > 0 else start


@lru_cache(maxsize=4096)
def _count_end(rule_text: str, start: dt.datetime) -> dt.datetime | None:
    """The last occurrence a COUNT rule adds to the series (at most MAX_COUNT of them to walk);
    None when it adds none. DTSTART "always counts as the first occurrence" (RFC 5545 3.3.10):
    where the rule does not produce it, the rule adds only COUNT - 1."""
    built = rrulestr(rule_text, dtstart=start)
    if not isinstance(built, rrule):
        raise TypeError("unexpected type: isinstance(built, rrule)")
    wanted = int(_stored_parts(rule_text)["COUNT"])
    walk = iter(built)
    first = next(walk, None)
    if first is None:
        return None
    if first != start:
        wanted -= 1
    last = None
    for moment in itertools.islice(itertools.chain([first], walk), min(wanted, MAX_COUNT)):
        last = moment
    return last


def _walk_from(series: Series, after: dt.datetime) -> Iterator[dt.datetime]:
    """The rule's original starts (naive wall times for all-day series, aware in the series'
    zone otherwise) from the period that holds `after` less a day, in order."""
    if series.pattern is None:
        raise RuntimeError("series.pattern is missing")
    start = _dtstart(series)
    parts = _stored_parts(series.pattern.rrule)
    if "COUNT" in parts:
        last = _count_end(series.pattern.rrule, start)
        if last is None:
            return
        del parts["COUNT"]
        parts["UNTIL"] = _format_until(last, series.all_day)
    target = _local(after, series) - dt.timedelta(days=1)  # room for DST folds and gaps
    local_start = start.replace(tzinfo=None)
    dtstart = start
    if target > local_start:
        explicit = _explicit_parts(parts, local_start)
        begin = _period_start(explicit, local_start, target)
        if begin != local_start:
            parts = explicit
            dtstart = begin if series.all_day else begin.replace(tzinfo=series.zone)
    built = rrulestr(_rule_text(list(parts.items())), dtstart=dtstart)
    if not isinstance(built, rrule):
        raise TypeError("unexpected type: isinstance(built, rrule)")
    yield from built


def _rule_starts(series: Series, after: dt.datetime) -> Iterator[dt.datetime]:
    """The rule's original starts (aware; midnight UTC for all-day) from `after` on, in order
    (see _MAX_JUMP)."""
    if series.all_day:
        floor = dt.datetime(after.year, after.month, after.day)
        for moment in _walk_from(series, after):
            if moment >= floor:
                yield day_start(moment.date())
        return
    pending: list[dt.datetime] = []
    for moment in _walk_from(series, after):
        instant = moment.astimezone(UTC)
        heapq.heappush(pending, instant)
        while pending[0] < instant - _MAX_JUMP:
            earliest = heapq.heappop(pending)
            if earliest >= after:
                yield earliest
    while pending:
        earliest = heapq.heappop(pending)
        if earliest >= after:
            yield earliest


@lru_cache(maxsize=4096)
def _instants(recurrence_ids: tuple[str, ...]) -> list[dt.datetime]:
    return sorted(x for x in map(_loose_instant, recurrence_ids) if x is not None)


def _original_starts(series: Series, after: dt.datetime) -> Iterator[dt.datetime]:
    """The original starts of the series' instances (aware; midnight UTC for all-day) from
    `after` on, in order, each once: its start (always the first instance), the rule's
    occurrences and the rdates."""
    if series.pattern is None:
        raise RuntimeError("series.pattern is missing")
    added = _instants(series.pattern.rdates)
    extra = heapq.merge([series.start], added[bisect.bisect_left(added, after) :])
    previous = None
    for moment in heapq.merge(extra, _rule_starts(series, after)):
        if moment >= after and moment != previous:
            yield moment
        previous = moment


def occurs(series: Series, recurrence_id: str) -> bool:
    """Whether `recurrence_id` is an occurrence of the series (cancelled or not)."""
    if series.pattern is None:
        return False
    target = _loose_instant(recurrence_id)
    if target is None:
        return False
    for moment in _original_starts(series, target):
        return moment == target
    return False


def from_rule(series: Series, recurrence_id: str) -> bool:
    """Whether the rule itself produces the occurrence (not only the start or an rdate): a
    series can be cut there and carry on with the same rule from it."""
    if series.pattern is None:
        return False
    target = _loose_instant(recurrence_id)
    if target is None:
        return False
    for moment in _rule_starts(series, target):
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


def _order(occ: Occurrence) -> tuple[dt.datetime, str]:
    return occ.start, occ.recurrence_id or ""


def _moved(series: Series) -> list[Occurrence]:
    """The changed occurrences, where they are now (cancelled ones left out), by start."""
    if series.pattern is None:
        raise RuntimeError("series.pattern is missing")
    pattern = series.pattern
    out = []
    for rid, change in pattern.overrides.items():
        if rid in pattern.exdates:
            continue
        moved_from = _loose_instant(rid)
        if moved_from is None:
            continue
        start = change.start or moved_from
        end = change.end or (start + series.duration)
        out.append(Occurrence(start, end, rid, overridden=True, fields=change.fields))
    out.sort(key=_order)
    return out


def _by_start(
    series: Series, after: dt.datetime, moved: Iterable[Occurrence]
) -> Iterator[Occurrence]:
    """Occurrences in order of start: the rule's from `after` on (cancelled and changed ones
    left out), merged with `moved` (sorted)."""
    if series.pattern is None:
        raise RuntimeError("series.pattern is missing")
    skipped = set(series.pattern.exdates) | set(series.pattern.overrides)
    duration = series.duration

    def originals() -> Iterator[Occurrence]:
        for original in _original_starts(series, after):
            rid = recurrence_id_of(original, series.all_day)
            if rid not in skipped:
                yield Occurrence(original, original + duration, rid)

    return heapq.merge(originals(), moved, key=_order)


def iter_occurrences(
    series: Series,
    window_start: dt.datetime,
    window_end: dt.datetime,
    *,
    viewer_tz: str = "UTC",
    max_walk: int = MAX_EXPANDED + 2 * MAX_EXCEPTIONS + MAX_PER_DAY,
) -> Iterator[Occurrence]:
    """Occurrences overlapping [window_start, window_end), lazily, in order of start: a caller
    that needs only the first few pays only for those. At most `max_walk` occurrences are
    looked at, whatever the window.

    For all-day series the window is widened to the whole dates it touches in `viewer_tz`:
    an all-day event on 12 May shows on 12 May wherever the viewer is."""
    lo, hi = window_start, window_end
    if series.all_day:
        lo, hi = _day_window(lo, hi, viewer_tz)
    if series.pattern is None:
        if _overlaps(series.start, series.end, lo, hi):
            yield Occurrence(series.start, series.end, None)
        return
    # An occurrence overlapping the window starts after lo - duration (or at lo, if it is a
    # point in time); changed ones may have any length, so they are checked one by one.
    begin = max(series.start, lo - series.duration)
    moved = [o for o in _moved(series) if _overlaps(o.start, o.end, lo, hi)]
    # every changed occurrence kept starts before hi, so past hi only the rule's remain
    for walked, occ in enumerate(_by_start(series, begin, moved)):
        if occ.start >= hi:
            return
        if walked >= max_walk:
            log.warning("expansion stopped after %d occurrences", walked)
            return
        if _overlaps(occ.start, occ.end, lo, hi):
            yield occ


def expand(
    series: Series,
    window_start: dt.datetime,
    window_end: dt.datetime,
    *,
    viewer_tz: str = "UTC",
    limit: int = MAX_EXPANDED,
) -> list[Occurrence]:
    """The first `limit` occurrences overlapping [window_start, window_end), sorted by start
    (see `iter_occurrences`)."""
    found = iter_occurrences(series, window_start, window_end, viewer_tz=viewer_tz)
    return list(itertools.islice(found, limit))


def alarm_start(series: Series, occ: Occurrence) -> dt.datetime:
    """When an occurrence starts for a reminder: an all-day one at midnight in the series' own
    zone (12 May starts at 00:00 Berlin time for an event kept in Berlin)."""
    if series.all_day:
        return dt.datetime.combine(occ.start.date(), dt.time(), series.zone).astimezone(UTC)
    return occ.start


def _by_alarm(series: Series, after: dt.datetime) -> Iterator[tuple[Occurrence, dt.datetime]]:
    """(occurrence, alarm start) for occurrences whose alarm start is at or after `after`, in
    order of alarm start."""
    if series.pattern is None:
        occ = Occurrence(series.start, series.end, None)
        at = alarm_start(series, occ)
        if at >= after:
            yield occ, at
        return
    # an all-day occurrence's alarm start is within a day of its start (midnight UTC)
    margin = dt.timedelta(days=1) if series.all_day else dt.timedelta(0)
    moved = [o for o in _moved(series) if o.start >= after - margin]
    for occ in _by_start(series, after - margin, moved):
        at = alarm_start(series, occ)
        if at >= after:
            yield occ, at


def alarms_between(
    series: Series, lo: dt.datetime, hi: dt.datetime
) -> list[tuple[Occurrence, dt.datetime]]:
    """(occurrence, alarm start) for the occurrences whose alarm start is in (lo, hi]."""
    margin = dt.timedelta(days=1) if series.all_day else dt.timedelta(0)
    out = []
    for walked, (occ, at) in enumerate(_by_alarm(series, lo)):
        if occ.start > hi + margin or walked >= MAX_WALK:
            break
        if lo < at <= hi:
            out.append((occ, at))
    return out


def next_alarm(
    series: Series, minutes_before: Iterable[int], after: dt.datetime
) -> dt.datetime | None:
    """When the next of the series' reminders (`minutes_before` each occurrence's alarm start)
    comes due after `after`; None when none will."""
    best: dt.datetime | None = None
    for minutes in set(minutes_before):
        lead = dt.timedelta(minutes=minutes)
        for walked, (_occ, at) in enumerate(_by_alarm(series, after + lead)):
            if walked >= MAX_WALK:
                break
            due = at - lead
            if due > after:
                if best is None or due < best:
                    best = due
                break
    return best


def series_span(series: Series) -> tuple[dt.datetime, dt.datetime | None]:
    """The instants the whole series covers (its exceptions included); None: no end.

    A series bounded by COUNT or UNTIL ends at its last occurrence (rdates included), found by
    walking at most MAX_WALK occurrences of the rule: past that, an UNTIL series is taken to end
    at its UNTIL or its last rdate (a bound a little late at worst, which is all the range
    query and reminders need). Past _SPAN_YEARS years a series counts as open-ended."""
    if series.pattern is None:
        return series.start, series.end
    start = series.start
    end: dt.datetime | None = None
    parts = _stored_parts(series.pattern.rrule)
    if "COUNT" in parts or "UNTIL" in parts:
        horizon = _plus(series.start, dt.timedelta(days=366 * _SPAN_YEARS))
        last: dt.datetime | None = None
        most = MAX_WALK + len(series.pattern.rdates) + 1  # the start and rdates come on top
        for walked, original in enumerate(_original_starts(series, series.start), start=1):
            if walked > most:
                until = _until_instant(parts.get("UNTIL"), series)
                added = _instants(series.pattern.rdates)
                last = max([x for x in (until, *added[-1:]) if x is not None], default=None)
                break
            last = original
        if last is not None and (horizon is None or last <= horizon):
            end = _plus(last, series.duration)
    for change in series.pattern.overrides.values():
        if change.start is not None:
            start = min(start, change.start)
        if end is not None and change.end is not None:
            end = max(end, change.end)
        elif end is not None and change.start is not None:
            end = max(end, _plus(change.start, series.duration) or end)
    return start, end


def _until_instant(value: str | None, series: Series) -> dt.datetime | None:
    """A stored (normalized) UNTIL as an instant, for the latest an occurrence may start."""
    if value is None:
        return None
    try:
        if series.all_day:
            return day_start(dt.datetime.strptime(value[:8], "%Y%m%d").date())
        return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _plus(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime | None:
    try:
        return moment + delta
    except OverflowError:
        return None


# --------------------------------------------------------------------------- edits


def with_exdate(pattern: Pattern, recurrence_id: str) -> Pattern:
    """Cancel one occurrence (its override, if any, goes too)."""
    exdates = (
        pattern.exdates if recurrence_id in pattern.exdates else (*pattern.exdates, recurrence_id)
    )
    overrides = {k: v for k, v in pattern.overrides.items() if k != recurrence_id}
    return replace(pattern, exdates=exdates, overrides=overrides)


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
    return replace(pattern, overrides=overrides)


def count_before(series: Series, recurrence_id: str) -> int:
    """How many instances the series has before `recurrence_id` (its start, the rule's and
    rdates, cancelled or not), counting at most MAX_WALK (exact for COUNT rules, which have at
    most MAX_COUNT = MAX_WALK)."""
    target = _loose_instant(recurrence_id)
    if series.pattern is None or target is None:
        return 0
    n = 0
    for original in _original_starts(series, series.start):
        if original >= target or n >= MAX_WALK:
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
    if series.pattern is None:
        raise RuntimeError("series.pattern is missing")
    pattern = series.pattern
    cut = _loose_instant(recurrence_id)
    if cut is None:
        raise RuntimeError("cut is missing")
    parts = _rule_parts(pattern.rrule, "rrule")
    # COUNT counts the start and the rule's occurrences, not rdates
    earlier = count_before(replace(series, pattern=Pattern(pattern.rrule)), recurrence_id)
    before: Pattern | None = None
    if cut > series.start:
        until = cut - (dt.timedelta(days=1) if series.all_day else dt.timedelta(seconds=1))
        before_parts = [(k, v) for k, v in parts if k not in ("COUNT", "UNTIL")]
        before_parts.append(("UNTIL", _format_until(until, series.all_day)))
        before = Pattern(
            _rule_text(before_parts),
            tuple(x for x in pattern.exdates if x < recurrence_id),
            {k: v for k, v in pattern.overrides.items() if k < recurrence_id},
            tuple(x for x in pattern.rdates if x < recurrence_id),
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
        tuple(x for x in pattern.rdates if x > recurrence_id),
    )
    return Split(before, after, cut)


def truncate(series: Series, recurrence_id: str) -> Pattern | None:
    """Drop an occurrence and every later one ("delete this and following"). None when nothing
    is left (the cut was at the first occurrence)."""
    return split(series, recurrence_id).before


def rebase(pattern: Pattern, new: Series) -> Pattern:
    """Keep the exceptions of `pattern` that still name occurrences of `new` (after a change of
    start time, the old recurrence ids no longer match and are dropped), and the rdates that
    are not before its start."""
    rdates = tuple(x for x in pattern.rdates if (_loose_instant(x) or new.start) >= new.start)
    probe = replace(new, pattern=Pattern(pattern.rrule, rdates=rdates))
    exdates = tuple(x for x in pattern.exdates if occurs(probe, x))
    overrides = {k: v for k, v in pattern.overrides.items() if occurs(probe, k)}
    return Pattern(pattern.rrule, exdates, overrides, rdates)
