"""VTIMEZONE components (RFC 5545 3.6.5) built from zoneinfo, for the iCalendar feed.

Built here rather than by icalendar's `Calendar.add_missing_timezones()` because that one is
wrong where clients look (icalendar 7.3, `Timezone.from_tzinfo`): it gives each observance the
local time *after* the change as its DTSTART (03:00 for New York's spring change, where RFC 5545
wants the local time before it, 02:00, read in TZOFFSETFROM), and by default it stops at
2038-01-01, so an event in 2045 gets a block with none of that year's changes. A client that
trusts the VTIMEZONE then shows such events an hour off.

Here the changes are found by asking zoneinfo itself, which carries a zone's current rule into
every future year, and listed one by one: an observance per kind of change (same offsets, same
name) with its first onset as DTSTART and the others as RDATEs, each the local time before the
change. Exact, no rule compression to get wrong, and bounded by the years asked for.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

import icalendar

# Offsets are sampled every other day and each change found is narrowed to the second: tzdata
# has no two changes of a zone less than four days apart since 1900 (the closest: Freetown,
# 1939), so none can hide between two samples.
_SAMPLE = 2 * 86_400
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class _State:
    offset: dt.timedelta
    daylight: bool
    name: str


@dataclass(frozen=True, slots=True)
class _Change:
    at: int  # POSIX seconds of the first instant in the new state
    before: _State
    after: _State

    @property
    def onset(self) -> dt.datetime:
        """The local time of the change as the clock read it just before (RFC 5545)."""
        return (_EPOCH + dt.timedelta(seconds=self.at) + self.before.offset).replace(tzinfo=None)


def _state(zone: zoneinfo.ZoneInfo, at: int) -> _State:
    moment = _EPOCH + dt.timedelta(seconds=at)
    local = moment.astimezone(zone)
    offset, dst = local.utcoffset(), local.dst()
    if offset is None:
        raise RuntimeError("offset is missing")
    return _State(offset, bool(dst and dst > dt.timedelta(0)), local.tzname() or "")


def _seconds(moment: dt.datetime) -> int:
    return int((moment - _EPOCH).total_seconds())


@lru_cache(maxsize=16_384)
def _changes_in_year(name: str, year: int) -> tuple[_Change, ...]:
    """The zone's changes of offset, DST or name in one UTC year (cached: tzdata is fixed for
    the life of the process)."""
    zone = zoneinfo.ZoneInfo(name)
    at = _seconds(dt.datetime(year, 1, 1, tzinfo=dt.UTC))
    stop = _seconds(dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC))
    state = _state(zone, at)
    found: list[_Change] = []
    while at < stop:
        probe = min(at + _SAMPLE, stop)
        if _state(zone, probe) == state:
            at = probe
            continue
        lo, hi = at, probe  # state at lo, another at hi: the change is in (lo, hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _state(zone, mid) == state else (lo, mid)
        after = _state(zone, hi)
        found.append(_Change(hi, state, after))
        at, state = hi, after
    return tuple(found)


def vtimezone(name: str, first_year: int, last_year: int) -> icalendar.Timezone:
    """A VTIMEZONE for the IANA zone `name` that gives zoneinfo's offset at every instant of
    the UTC years `first_year`..`last_year`: the change in force when they begin (the last one
    in the year before, or, in a zone that did not change then, an observance that changes
    nothing) and every change in them."""
    earlier = _changes_in_year(name, first_year - 1)
    if earlier:
        changes = [earlier[-1]]
    else:
        start = _seconds(dt.datetime(first_year, 1, 1, tzinfo=dt.UTC))
        state = _state(zoneinfo.ZoneInfo(name), start)
        changes = [_Change(start, state, state)]
    for year in range(first_year, last_year + 1):
        changes.extend(_changes_in_year(name, year))
    kinds: dict[tuple[_State, _State], list[dt.datetime]] = {}
    for change in changes:
        kinds.setdefault((change.before, change.after), []).append(change.onset)
    block = icalendar.Timezone()
    block.add("tzid", name)
    for (before, after), onsets in kinds.items():
        part = icalendar.TimezoneDaylight() if after.daylight else icalendar.TimezoneStandard()
        part.add("dtstart", onsets[0])
        part.add("tzoffsetfrom", before.offset)
        part.add("tzoffsetto", after.offset)
        if after.name:
            part.add("tzname", after.name)
        if onsets[1:]:
            part.add("rdate", onsets[1:])
        block.add_component(part)
    return block
