"""Maintenance windows: planned downtime, weekly, monthly or once, in the config's time zone.

A recurring window's start is local wall-clock time, so "06:00" stays 06:00 across daylight
saving changes; its duration is real elapsed time from there.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from probe.config.maintenance import MaintenanceWindow

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Interval = tuple[datetime, datetime]


def covers(window: MaintenanceWindow, flow: str) -> bool:
    """Whether the window's ``flows`` globs name this flow."""
    return any(fnmatchcase(flow, pattern) for pattern in window.flows)


def is_active(window: MaintenanceWindow, now: datetime, tz: ZoneInfo) -> bool:
    """Whether ``now`` (aware) lies inside the window."""
    return any(start <= now < end for start, end in occurrences(window, now, now, tz))


def occurrences(
    window: MaintenanceWindow, start: datetime, end: datetime, tz: ZoneInfo
) -> list[Interval]:
    """The window's occurrences (UTC) that overlap [start, end], in order."""
    return sorted(o for o in _candidates(window, start, end, tz) if o[0] <= end and o[1] > start)


def _candidates(
    window: MaintenanceWindow, start: datetime, end: datetime, tz: ZoneInfo
) -> Iterator[Interval]:
    if window.once is not None:
        first = _local(window.once.start, tz)
        if window.once.end is not None:
            yield first, _local(window.once.end, tz)
        else:
            assert window.once.duration is not None
            yield first, first + timedelta(seconds=window.once.duration)
        return
    recurring = window.weekly or window.monthly
    assert recurring is not None
    length = timedelta(seconds=recurring.duration)
    hour, minute = (int(part) for part in recurring.start.split(":"))
    # Days from before `start` too: an occurrence that began earlier may still run.
    first_day = (start - length).astimezone(tz).date() - timedelta(days=1)
    last_day = end.astimezone(tz).date()
    for day in _days(first_day, last_day):
        if _matches(window, day):
            begin = datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)
            yield begin, begin + length


def _matches(window: MaintenanceWindow, day: date) -> bool:
    if window.weekly is not None:
        return day.weekday() == _WEEKDAYS.index(window.weekly.day)
    assert window.monthly is not None
    wanted = window.monthly.day
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    target = wanted if wanted > 0 else days_in_month + 1 + wanted
    return day.day == min(target, days_in_month) if wanted > 0 else day.day == target


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _local(text: str, tz: ZoneInfo) -> datetime:
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)


def windows_for(flow: str, windows: Sequence[MaintenanceWindow]) -> list[MaintenanceWindow]:
    """The windows that apply to one flow."""
    return [w for w in windows if covers(w, flow)]


def merged(intervals: Sequence[Interval]) -> list[Interval]:
    """Overlapping intervals joined, so time inside two windows is counted once."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class Calendar:
    """Answers "is this flow in maintenance at this time?" quickly, for the runner."""

    def __init__(self, windows: Sequence[MaintenanceWindow], tz: ZoneInfo) -> None:
        self.windows = list(windows)
        self.tz = tz
        self._by_flow: dict[str, list[MaintenanceWindow]] = {}

    def active(self, flow: str, at: datetime) -> bool:
        if flow not in self._by_flow:
            self._by_flow[flow] = windows_for(flow, self.windows)
        return any(is_active(w, at, self.tz) for w in self._by_flow[flow])
