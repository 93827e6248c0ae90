"""Slots and the scheduler.

An interval schedule is aligned to the wall clock: slot = floor(now / interval) * interval,
counted from the Unix epoch, so every daemon sharing a store agrees on the slots and the
store's unique (flow, slot) claim lets exactly one of them probe each slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from probe.config import FlowSpec
from probe.metrics import Metrics
from probe.reload import FlowChanges

log = structlog.get_logger("probe.schedule")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# APScheduler never fires early by its own clock, but float rounding can put a slot's
# start a hair after "now"; this keeps such a probe in its own slot.
_EPSILON = 0.001

RunSlot = Callable[[FlowSpec, datetime], Awaitable[object]]


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


class Scheduler:
    """Fires each flow's slots and starts a probe task per slot, up to ``max_in_flight``."""

    def __init__(self, run_slot: RunSlot, metrics: Metrics, *, timezone: str) -> None:
        self.run_slot = run_slot
        self.metrics = metrics
        self.timezone = ZoneInfo(timezone)
        self.scheduler = AsyncIOScheduler(timezone=self.timezone)
        self.tasks: dict[str, set[asyncio.Task[object]]] = {}
        self.triggers: dict[str, CronTrigger] = {}
        self.stopped = False

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def in_flight(self) -> list[asyncio.Task[object]]:
        return [task for tasks in self.tasks.values() for task in tasks]

    def add(self, flow: FlowSpec) -> None:
        """Schedule ``flow``; a flow already scheduled under its name is replaced."""
        trigger: IntervalTrigger | CronTrigger
        if flow.cron is not None:
            trigger = CronTrigger.from_crontab(flow.cron, timezone=self.timezone)
            self.triggers[flow.name] = trigger
        else:
            assert flow.interval is not None
            trigger = IntervalTrigger(seconds=flow.interval, start_date=EPOCH)
            self.triggers.pop(flow.name, None)
        grace = max(1, math.ceil(flow.interval or 60))
        self.tasks.setdefault(flow.name, set())
        self.scheduler.add_job(
            self._fire,
            trigger,
            args=[flow],
            id=flow.name,
            coalesce=True,
            max_instances=1,  # _fire only starts a task, it never waits for the probe
            misfire_grace_time=grace,
            replace_existing=True,
        )

    def remove(self, name: str) -> None:
        """Stop scheduling flow ``name``; its probes in flight run on and are still drained."""
        if self.scheduler.get_job(name) is not None:
            self.scheduler.remove_job(name)
        self.triggers.pop(name, None)

    def apply(self, changes: FlowChanges) -> None:
        """A config reload: drop removed flows, schedule new ones, reschedule changed ones."""
        for name in changes.removed:
            self.remove(name)
        for flow in changes.fresh:
            self.add(flow)

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.stopped = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def _fire(self, flow: FlowSpec) -> None:
        if self.stopped:
            return  # a job APScheduler had started as a task just before the stop
        now = time.time()
        if flow.cron is not None:
            slot = cron_slot(self.triggers[flow.name], datetime.fromtimestamp(now, UTC))
        else:
            assert flow.interval is not None
            slot = interval_slot(flow.interval, now)
        lag = max(0.0, now - slot.timestamp())
        self.metrics.daemon(self.metrics.scheduler_lag).observe(lag)
        tasks = self.tasks[flow.name]
        if len(tasks) >= flow.max_in_flight:
            log.warning("slot_skipped", flow=flow.name, reason="max_in_flight", slot=str(slot))
            self.metrics.skip(flow.name, "max_in_flight")
            return
        task: asyncio.Task[object] = asyncio.create_task(
            _guarded(self.run_slot(flow, slot), flow.name), name=f"probe:{flow.name}"
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _guarded(probe: Awaitable[object], flow: str) -> object:
    """A probe task never dies silently: a bug is logged and the daemon keeps running."""
    try:
        return await probe
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("probe_crashed", flow=flow)
        return None
