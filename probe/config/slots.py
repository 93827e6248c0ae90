"""Slots: the times a flow's schedule probes, and what each result stands for.

An interval schedule is aligned to the wall clock: slot = floor(now / interval) * interval,
counted from the Unix epoch, so every daemon sharing a store agrees on the slots. A cron
schedule's slots are its fire times. The scheduler (`probe.engine.schedule`) fires them;
the report counts them (`expected_slots`); the runner gives each result its span.

    >>> interval_slot(60.0, 90.0).isoformat()
    '1970-01-01T00:01:00+00:00'
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from probe.config.models import FlowSpec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# APScheduler never fires early by its own clock, but float rounding can put a slot's
# start a hair after "now"; this keeps such a probe in its own slot.
_EPSILON = 0.001


def interval_slot(interval: float, now: float) -> datetime:
    """The slot that ``now`` (Unix seconds) falls in."""
    start = math.floor((now + _EPSILON) / interval) * interval
    return EPOCH + timedelta(seconds=start)


def cron_slot(trigger: CronTrigger, now: datetime) -> datetime:
    """The latest fire time of ``trigger`` at or before ``now``."""
    look_back = timedelta(minutes=1)
    while True:
        fire = trigger.get_next_fire_time(None, now - look_back)
        if fire is not None and fire <= now:
            break
        look_back *= 2
        if look_back > timedelta(days=400):
            return now
    while True:
        nxt = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if nxt is None or nxt > now:
            break
        fire = nxt
    slot: datetime = fire.astimezone(UTC)
    return slot


def span_of(flow: FlowSpec, slot: datetime, tz: ZoneInfo) -> float:
    """Seconds the result of ``slot`` stands for: the interval, or the time to the next cron
    fire. Coverage and the gaps between measurements are reckoned with it."""
    if flow.interval is not None:
        return flow.interval
    assert flow.cron is not None
    trigger = CronTrigger.from_crontab(flow.cron, timezone=tz)
    following = trigger.get_next_fire_time(slot, slot + timedelta(microseconds=1))
    return (following - slot).total_seconds() if following is not None else 86400.0


# Enough cron fire times for a year of one a minute; a schedule that fires more often than
# that is counted by its first interval instead.
_MAX_FIRES = 600_000


def expected_slots(flow: FlowSpec, start: datetime, end: datetime, tz: ZoneInfo) -> int:
    """How many slots the flow's schedule has in [start, end)."""
    if end <= start:
        return 0
    if flow.interval is not None:
        first = math.ceil((start - EPOCH).total_seconds() / flow.interval - 1e-9)
        last = math.ceil((end - EPOCH).total_seconds() / flow.interval - 1e-9)
        return max(0, last - first)
    assert flow.cron is not None
    trigger = CronTrigger.from_crontab(flow.cron, timezone=tz)
    count, fire = 0, trigger.get_next_fire_time(None, start)
    while fire is not None and fire < end and count < _MAX_FIRES:
        count += 1
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return count
