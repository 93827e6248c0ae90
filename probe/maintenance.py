"""Maintenance windows: planned downtime, weekly or once, in the config's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from probe.config import MaintenanceWindow

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def covers(window: MaintenanceWindow, flow: str) -> bool:
    """Whether the window's ``flows`` globs name this flow."""
    return any(fnmatchcase(flow, pattern) for pattern in window.flows)


def is_active(window: MaintenanceWindow, now: datetime, tz: ZoneInfo) -> bool:
    """Whether ``now`` (aware) lies inside the window.

    A weekly start is a local wall-clock time, so "06:00" stays 06:00 across daylight saving
    changes; the duration is real elapsed time from there.
    """
    if window.once is not None:
        start = datetime.fromisoformat(window.once.start)
        start = start if start.tzinfo else start.replace(tzinfo=tz)
        return start <= now < start + timedelta(seconds=window.once.duration)
    assert window.weekly is not None
    weekly = window.weekly
    hour, minute = (int(part) for part in weekly.start.split(":"))
    local = now.astimezone(tz)
    weekday = _WEEKDAYS.index(weekly.day)
    # Look back far enough for a window that started on an earlier day and still runs.
    days_back = int(weekly.duration // 86400) + 7
    for back in range(days_back + 1):
        day = local.date() - timedelta(days=back)
        if day.weekday() != weekday:
            continue
        start = datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)
        if start <= now < start + timedelta(seconds=weekly.duration):
            return True
    return False
