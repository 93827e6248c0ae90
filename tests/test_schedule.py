"""Slots are aligned to the wall clock, so every daemon computes the same ones."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from probe.config.models import Config, FlowSpec, resolve_flows
from probe.config.reload import FlowChanges
from probe.config.slots import cron_slot, interval_slot
from probe.engine.schedule import Scheduler
from probe.metrics.registry import Metrics
from tests.helpers import wait_for


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


# -- one APScheduler job per trigger ----------------------------------------------------------
#
# The scheduler is real (APScheduler included); `run_slot` is a real implementation of the
# `RunSlot` callable that records what it was asked to probe. A slot is fired by calling the
# group's own APScheduler job function, so no assertion depends on timing.


def _flows(*specs: dict[str, Any]) -> list[FlowSpec]:
    flows = [
        {"name": s["name"], "source": {"type": "http", "url": "http://127.0.0.1:1/health"}}
        | {k: v for k, v in s.items() if k != "name"}
        for s in specs
    ]
    return resolve_flows(Config.model_validate({"flows": flows}))


class Recorder:
    """A `RunSlot` that records each probe; flows in ``hold`` wait for `release`."""

    def __init__(self, *, hold: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, datetime]] = []
        self.hold = hold
        self.released = asyncio.Event()

    async def __call__(self, flow: FlowSpec, slot: datetime) -> object:
        self.calls.append((flow.name, slot))
        if flow.name in self.hold:
            await self.released.wait()
        return None

    def names(self) -> list[str]:
        return sorted(name for name, _ in self.calls)


def _scheduler(run_slot: Recorder, flows: list[FlowSpec]) -> tuple[Scheduler, Metrics]:
    metrics = Metrics()
    scheduler = Scheduler(run_slot, metrics, timezone="Europe/Copenhagen")
    for flow in flows:
        scheduler.add(flow)
    return scheduler, metrics


async def _fire(scheduler: Scheduler, job_id: str) -> None:
    """One slot of the group, through the job APScheduler would run, and its probes."""
    job = scheduler.aps.get_job(job_id)
    assert job is not None
    before = set(scheduler.in_flight())
    await job.func(*job.args)
    await asyncio.gather(*(t for t in scheduler.in_flight() if t not in before and not t.done()))


def _lag_count(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("probe_scheduler_lag_seconds_count")
    return value or 0.0


def _skipped(metrics: Metrics, flow: str) -> float:
    labels = {"flow": flow, "reason": "max_in_flight"}
    return metrics.registry.get_sample_value("probe_slots_skipped_total", labels) or 0.0


def _jobs(scheduler: Scheduler) -> dict[str, list[str]]:
    return {job.id: sorted(scheduler.groups[job.id].flows) for job in scheduler.aps.get_jobs()}


async def test_flows_sharing_an_interval_share_one_job_and_each_is_probed() -> None:
    recorder = Recorder()
    flows = _flows(
        {"name": "a", "interval": "60s"},
        {"name": "b", "interval": "60s"},
        {"name": "c", "interval": "30s"},
    )
    scheduler, metrics = _scheduler(recorder, flows)
    assert _jobs(scheduler) == {"interval:60.0": ["a", "b"], "interval:30.0": ["c"]}
    # One entry per flow for callers that list the scheduled flows (tests/test_reload.py).
    assert scheduler.scheduled() == {"a", "b", "c"}

    await _fire(scheduler, "interval:60.0")
    assert recorder.names() == ["a", "b"]
    slots = {slot for _, slot in recorder.calls}
    assert len(slots) == 1, "both flows probe the same slot"
    (slot,) = slots
    assert slot.timestamp() % 60 == 0
    assert slot == interval_slot(60.0, slot.timestamp())
    assert _lag_count(metrics) == 2, "the lag is observed for each flow's slot"

    await _fire(scheduler, "interval:60.0")
    assert recorder.names() == ["a", "a", "b", "b"]
    assert scheduler.in_flight() == []


async def test_a_running_group_probes_every_flow_in_every_slot() -> None:
    """APScheduler itself fires the group: two flows on 50 ms both get at least three slots."""
    recorder = Recorder()
    scheduler, _ = _scheduler(
        recorder, _flows({"name": "a", "interval": "50ms"}, {"name": "b", "interval": "50ms"})
    )
    assert len(scheduler.aps.get_jobs()) == 1
    scheduler.start()
    try:

        async def three_slots_each() -> bool:
            slots = {name: {s for n, s in recorder.calls if n == name} for name in ("a", "b")}
            return all(len(s) >= 3 for s in slots.values())

        await wait_for(three_slots_each, limit=30, every=0.02)
    finally:
        scheduler.stop()
        await asyncio.gather(*scheduler.in_flight())


async def test_max_in_flight_of_one_flow_does_not_block_the_other() -> None:
    recorder = Recorder(hold=frozenset({"slow"}))
    flows = _flows(
        {"name": "slow", "interval": "60s", "max_in_flight": 1},
        {"name": "fast", "interval": "60s", "max_in_flight": 1},
    )
    scheduler, metrics = _scheduler(recorder, flows)
    job = scheduler.aps.get_job("interval:60.0")
    assert job is not None
    for _ in range(2):
        await job.func(*job.args)
        # "fast" ends (its done callbacks, which free its place, ran before this await
        # returns); "slow" stays in flight.
        await next(t for t in scheduler.in_flight() if t.get_name() == "probe:fast")
    assert recorder.names() == ["fast", "fast", "slow"]
    assert _skipped(metrics, "slow") == 1
    assert _skipped(metrics, "fast") == 0
    assert [t.get_name() for t in scheduler.in_flight()] == ["probe:slow"]
    recorder.released.set()
    await asyncio.gather(*scheduler.in_flight())
    assert scheduler.in_flight() == []
    assert _lag_count(metrics) == 4, "a skipped slot was fired too"


async def test_removing_one_flow_of_a_group_keeps_the_other_scheduled() -> None:
    recorder = Recorder()
    a, b = _flows({"name": "a", "interval": "60s"}, {"name": "b", "interval": "60s"})
    scheduler, _ = _scheduler(recorder, [a, b])
    scheduler.apply(FlowChanges(removed=("a",), unchanged=("b",)))
    assert _jobs(scheduler) == {"interval:60.0": ["b"]}
    assert scheduler.scheduled() == {"b"}
    await _fire(scheduler, "interval:60.0")
    assert recorder.names() == ["b"]

    scheduler.apply(FlowChanges(removed=("b",)))
    assert _jobs(scheduler) == {}, "the last flow of a group takes its job with it"
    scheduler.remove("b")  # removing twice is harmless
    scheduler.apply(FlowChanges(added=(a,)))
    assert _jobs(scheduler) == {"interval:60.0": ["a"]}


async def test_a_changed_flow_moves_to_its_new_trigger_and_fires_its_new_definition() -> None:
    recorder = Recorder()
    a, b = _flows({"name": "a", "interval": "60s"}, {"name": "b", "interval": "60s"})
    scheduler, _ = _scheduler(recorder, [a, b])
    (a30,) = _flows({"name": "a", "interval": "30s"})
    (b2,) = _flows({"name": "b", "interval": "60s", "max_in_flight": 3})
    scheduler.apply(FlowChanges(changed=(a30, b2)))
    assert _jobs(scheduler) == {"interval:60.0": ["b"], "interval:30.0": ["a"]}
    assert scheduler.groups["interval:60.0"].flows["b"] is b2
    await _fire(scheduler, "interval:30.0")
    assert recorder.names() == ["a"]
    assert recorder.calls[0][1].timestamp() % 30 == 0


async def test_flows_sharing_a_crontab_share_one_job_and_probe_its_slot() -> None:
    recorder = Recorder()
    flows = _flows(
        {"name": "x", "cron": "*/5 * * * *"},
        {"name": "y", "cron": "*/5 * * * *"},
        {"name": "z", "cron": "0 6 * * *"},
    )
    scheduler, metrics = _scheduler(recorder, flows)
    assert _jobs(scheduler) == {"cron:*/5 * * * *": ["x", "y"], "cron:0 6 * * *": ["z"]}
    await _fire(scheduler, "cron:*/5 * * * *")
    assert recorder.names() == ["x", "y"]
    slots = {slot for _, slot in recorder.calls}
    assert len(slots) == 1
    (slot,) = slots
    trigger = CronTrigger.from_crontab("*/5 * * * *", timezone=ZoneInfo("Europe/Copenhagen"))
    assert slot == cron_slot(trigger, slot)
    assert slot.minute % 5 == 0
    assert slot.second == 0
    assert _lag_count(metrics) == 2


async def test_a_fire_after_stop_starts_nothing() -> None:
    recorder = Recorder()
    scheduler, metrics = _scheduler(recorder, _flows({"name": "a"}, {"name": "b"}))
    scheduler.start()
    job = scheduler.aps.get_job("interval:60.0")
    assert job is not None
    scheduler.stop()
    await job.func(*job.args)
    assert recorder.calls == []
    assert scheduler.in_flight() == []
    assert _lag_count(metrics) == 0


async def test_a_probe_that_crashes_does_not_stop_the_others_of_its_group() -> None:
    class Crashing(Recorder):
        async def __call__(self, flow: FlowSpec, slot: datetime) -> object:
            await super().__call__(flow, slot)
            if flow.name == "bad":
                raise RuntimeError("a bug")
            return flow.name

    recorder = Crashing()
    scheduler, _ = _scheduler(recorder, _flows({"name": "bad"}, {"name": "good"}))
    job = scheduler.aps.get_job("interval:60.0")
    assert job is not None
    await job.func(*job.args)
    tasks = {t.get_name(): t for t in scheduler.in_flight()}
    with capture_logs() as logs:
        done = await asyncio.gather(*tasks.values())
    assert dict(zip(tasks, done, strict=True)) == {"probe:bad": None, "probe:good": "good"}
    assert [e["event"] for e in logs] == ["probe_crashed"]
