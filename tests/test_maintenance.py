"""Maintenance windows in local time: weekly, monthly and one-off, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from probe.config.models import MaintenanceWindow
from probe.config.windows import Calendar, is_active, merged, occurrences

CPH = ZoneInfo("Europe/Copenhagen")


def _window(**kind: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({"name": "w", "flows": ["gs-*"], **kind})


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=CPH)  # type: ignore[misc]


def test_weekly_window_keeps_local_time_across_dst() -> None:
    window = _window(weekly={"day": "tuesday", "start": "06:00", "duration": "1h"})
    found = occurrences(window, _local(2026, 10, 1), _local(2026, 11, 1), CPH)
    assert [s.astimezone(CPH).isoformat() for s, _ in found] == [
        "2026-10-06T06:00:00+02:00",
        "2026-10-13T06:00:00+02:00",
        "2026-10-20T06:00:00+02:00",
        "2026-10-27T06:00:00+01:00",  # after DST ended: still 06:00 local, an hour later UTC
    ]
    assert all((e - s).total_seconds() == 3600 for s, e in found)


@pytest.mark.parametrize(
    ("day", "expected"),
    [(1, ["2026-10-01", "2026-11-01"]), (-1, ["2026-10-31", "2026-11-30"]),
     (31, ["2026-10-31", "2026-11-30"])],
)  # fmt: skip
def test_monthly_window_days(day: int, expected: list[str]) -> None:
    window = _window(monthly={"day": day, "start": "02:00", "duration": "2h"})
    found = occurrences(window, _local(2026, 10, 1, 1), _local(2026, 11, 30, 23), CPH)
    assert [s.astimezone(CPH).date().isoformat() for s, _ in found] == expected


def test_once_with_end_and_offsetless_local_time() -> None:
    window = _window(once={"start": "2026-12-01T22:00", "end": "2026-12-02T02:00"})
    assert is_active(window, _local(2026, 12, 1, 23, 59), CPH)
    assert not is_active(window, _local(2026, 12, 2, 2, 0), CPH)
    assert not is_active(window, datetime(2026, 12, 1, 20, 59, tzinfo=UTC), CPH)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ({}, "give exactly one of weekly, monthly or once"),
        ({"once": {"start": "2026-12-01T22:00"}}, "give exactly one of end or duration"),
        ({"once": {"start": "2026-12-01T22:00", "end": "2026-12-01T21:00"}}, "end must be after"),
        ({"monthly": {"day": 0, "start": "02:00", "duration": "1h"}}, "day must be 1..31"),
        ({"weekly": {"day": "caturday", "start": "02:00", "duration": "1h"}}, "unknown day"),
    ],
)
def test_invalid_windows(kind: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _window(**kind)


def test_calendar_matches_flows_by_glob() -> None:
    window = _window(weekly={"day": "tuesday", "start": "06:00", "duration": "1h"})
    calendar = Calendar([window], CPH)
    assert calendar.active("gs-adt", _local(2026, 10, 6, 6, 30))
    assert not calendar.active("labka-api", _local(2026, 10, 6, 6, 30))


def test_merged_joins_overlaps() -> None:
    a, b, c, d = (datetime(2026, 1, 1, h, tzinfo=UTC) for h in (1, 2, 3, 5))
    assert merged([(a, c), (b, d)]) == [(a, d)]
    assert merged([(a, b), (c, d)]) == [(a, b), (c, d)]
