"""Slots are aligned to the wall clock, so every daemon computes the same ones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given
from hypothesis import strategies as st

from probe.schedule import cron_slot, interval_slot


@given(
    interval=st.sampled_from([0.25, 1.0, 30.0, 60.0, 300.0, 3600.0]),
    now=st.floats(min_value=1.6e9, max_value=2.0e9),
)
def test_interval_slot_contains_now_and_is_aligned(interval: float, now: float) -> None:
    slot = interval_slot(interval, now).timestamp()
    assert slot <= now + 0.001 < slot + interval
    assert round(slot / interval, 6) == round(slot / interval)


def test_two_daemons_agree_on_the_slot() -> None:
    a = interval_slot(30.0, 1_764_000_017.2)
    b = interval_slot(30.0, 1_764_000_029.9)
    assert a == b == datetime.fromtimestamp(1_764_000_000, UTC)


@pytest.mark.parametrize(
    ("crontab", "now", "expected"),
    [
        ("*/5 * * * *", "2026-11-26T10:07:30+00:00", "2026-11-26T10:05:00+00:00"),
        ("0 6 * * tue", "2026-11-26T10:00:00+00:00", "2026-11-24T05:00:00+00:00"),
        # 06:00 in Copenhagen is 05:00 UTC in winter and 04:00 UTC in summer.
        ("0 6 * * *", "2026-07-01T12:00:00+00:00", "2026-07-01T04:00:00+00:00"),
        ("0 6 * * *", "2026-12-01T12:00:00+00:00", "2026-12-01T05:00:00+00:00"),
    ],
)
def test_cron_slot_is_the_latest_fire_time(crontab: str, now: str, expected: str) -> None:
    trigger = CronTrigger.from_crontab(crontab, timezone=ZoneInfo("Europe/Copenhagen"))
    slot = cron_slot(trigger, datetime.fromisoformat(now))
    assert slot == datetime.fromisoformat(expected)
    assert slot.tzinfo is not None
