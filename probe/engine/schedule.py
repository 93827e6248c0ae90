"""Slots and the scheduler.

An interval schedule is aligned to the wall clock: slot = floor(now / interval) * interval,
counted from the Unix epoch, so every daemon sharing a store agrees on the slots and the
store's unique (flow, slot) claim lets exactly one of them probe each slot.

Flows that share a trigger share one APScheduler job, which fires each of them for the slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from probe.config.models import FlowSpec
from probe.config.reload import FlowChanges
from probe.config.slots import EPOCH, cron_slot, interval_slot
from probe.metrics.registry import Metrics

log = structlog.get_logger("probe.engine.schedule")

RunSlot = Callable[[FlowSpec, datetime], Awaitable[object]]


class Scheduler:
    """Fires the slots of every flow and starts a probe task per slot, up to ``max_in_flight``.

    Flows that share a trigger (the same interval, or the same crontab) share one APScheduler
    job, which fires all of them for the slot: per-job overhead is paid per trigger, not per
    flow (5,000 flows on a 1 s interval are one job, not 5,000).
    """

    def __init__(self, run_slot: RunSlot, metrics: Metrics, *, timezone: str) -> None:
        self.run_slot = run_slot
        self.metrics = metrics
        self.timezone = ZoneInfo(timezone)
        self.aps = AsyncIOScheduler(timezone=self.timezone)
        self.tasks: dict[str, set[asyncio.Task[object]]] = {}
        self.groups: dict[str, FlowGroup] = {}  # by APScheduler job id
        self._group_of: dict[str, str] = {}  # flow name -> job id
        self.stopped = False

    @property
    def running(self) -> bool:
        return bool(self.aps.running)

    def scheduled(self) -> set[str]:
        """The names of the flows whose group has its APScheduler job."""
        jobs = {job.id for job in self.aps.get_jobs()}
        return {name for job_id, group in self.groups.items() if job_id in jobs
                for name in group.flows}  # fmt: skip

    def in_flight(self) -> list[asyncio.Task[object]]:
        return [task for tasks in self.tasks.values() for task in tasks]

    def add(self, flow: FlowSpec) -> None:
        """Schedule ``flow``; a flow already scheduled under its name is replaced."""
        job_id = _job_id(flow)
        previous = self._group_of.get(flow.name)
        if previous is not None and previous != job_id:
            self._leave(flow.name, previous)
        group = self.groups.get(job_id)
        if group is None:
            group = self.groups[job_id] = self._new_group(job_id, flow)
        group.flows[flow.name] = flow  # a redefined flow fires with its new spec from now on
        self._group_of[flow.name] = job_id
        self.tasks.setdefault(flow.name, set())

    def remove(self, name: str) -> None:
        """Stop scheduling flow ``name``; its probes in flight run on and are still drained."""
        job_id = self._group_of.pop(name, None)
        if job_id is not None:
            self._leave(name, job_id)

    def apply(self, changes: FlowChanges) -> None:
        """A config reload: drop removed flows, schedule new ones, reschedule changed ones."""
        for name in changes.removed:
            self.remove(name)
        for flow in changes.fresh:
            self.add(flow)

    def start(self) -> None:
        self.aps.start()

    def stop(self) -> None:
        self.stopped = True
        if self.aps.running:
            self.aps.shutdown(wait=False)

    def _new_group(self, job_id: str, flow: FlowSpec) -> FlowGroup:
        trigger: IntervalTrigger | CronTrigger
        if flow.cron is not None:
            trigger = CronTrigger.from_crontab(flow.cron, timezone=self.timezone)
        else:
            assert flow.interval is not None
            trigger = IntervalTrigger(seconds=flow.interval, start_date=EPOCH)
        group = FlowGroup(job_id, trigger, flow.interval if flow.cron is None else None)
        self.aps.add_job(
            self._fire,
            trigger,
            args=[group],
            id=job_id,
            coalesce=True,
            max_instances=1,  # _fire only starts tasks, it never waits for a probe
            misfire_grace_time=max(1, math.ceil(flow.interval or 60)),
            replace_existing=True,
        )
        return group

    def _leave(self, name: str, job_id: str) -> None:
        group = self.groups[job_id]
        group.flows.pop(name, None)
        if not group.flows:
            del self.groups[job_id]
            if self.aps.get_job(job_id) is not None:
                self.aps.remove_job(job_id)

    async def _fire(self, group: FlowGroup) -> None:
        """One slot of every flow in ``group``: each gets its probe task, or a skip."""
        if self.stopped:
            return  # a job APScheduler had started as a task just before the stop
        now = time.time()
        if group.interval is None:
            assert isinstance(group.trigger, CronTrigger)
            slot = cron_slot(group.trigger, datetime.fromtimestamp(now, UTC))
        else:
            slot = interval_slot(group.interval, now)
        start = slot.timestamp()
        lag = self.metrics.daemon(self.metrics.scheduler_lag)
        run_slot, all_tasks = self.run_slot, self.tasks
        # A snapshot: nothing below awaits, but a flow removed while this slot fires must
        # not change the dict being walked.
        for flow in list(group.flows.values()):
            name = flow.name
            lag.observe(max(0.0, time.time() - start))  # per flow, as when each had its job
            tasks = all_tasks[name]
            if len(tasks) >= flow.max_in_flight:
                log.warning("slot_skipped", flow=name, reason="max_in_flight", slot=str(slot))
                self.metrics.skip(name, "max_in_flight")
                continue
            task: asyncio.Task[object] = asyncio.create_task(
                _guarded(run_slot(flow, slot), name), name=f"probe:{name}"
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)


@dataclass(eq=False, slots=True)
class FlowGroup:
    """The flows that share one trigger, and so one APScheduler job (``job_id``)."""

    job_id: str
    trigger: IntervalTrigger | CronTrigger
    interval: float | None  # None: a cron group
    flows: dict[str, FlowSpec] = field(default_factory=dict)


def _job_id(flow: FlowSpec) -> str:
    """The job of the flows that share ``flow``'s trigger (the time zone is the daemon's)."""
    if flow.cron is not None:
        return f"cron:{flow.cron}"
    return f"interval:{flow.interval!r}"


async def _guarded(probe: Awaitable[object], flow: str) -> object:
    """A probe task never dies silently: a bug is logged and the daemon keeps running."""
    try:
        return await probe
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("probe_crashed", flow=flow)
        return None
