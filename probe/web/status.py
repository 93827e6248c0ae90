"""The current state of every flow and destination: what the API and the status page show.

States, per flow and destination (a check has the destination ``""``), from the results
whose slot lies outside maintenance, newest first:

- ``maintenance``: a maintenance window for the flow is active now. It wins over the rest,
  because failures inside planned downtime are expected and not counted.
- ``unknown``: no result yet, or the newest is older than the flow's ``timeout`` plus three
  intervals plus a minute (the daemon is not probing it, so nothing can be said).
- ``down``: the newest `DOWN_AFTER` results all *failed* (``lost``, ``send_error`` or
  ``observe_error``): messages are not arriving now.
- ``degraded``: not down, but the newest result, or one of the last `RECENT` results in the
  last hour, was not ``delivered``: messages arrive late, or some go missing.
- ``ok``: the recent results were all delivered within the SLO latency.

A flow's own state is the worst of its destinations' (down, degraded, unknown, ok), or
``maintenance``. Availability is ``delivered / results`` outside maintenance and null
without results, never 100 % by default: over ``1h`` from the raw results whose slot lies in
the last 60 minutes; over ``24h`` and ``30d`` from the hourly rollups of the current UTC hour
and the 23 (or 719) before it, so those windows reach up to an hour further back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from probe.config.models import FlowSpec
from probe.config.windows import Calendar, occurrences, windows_for
from probe.model import Outcome, Result, utcnow
from probe.store import queries
from probe.store.queries import HourCounts
from probe.store.rollup import hour_of

DOWN_AFTER = 3
RECENT = 10
RECENT_WINDOW = timedelta(hours=1)
FAILED = frozenset({Outcome.LOST, Outcome.SEND_ERROR, Outcome.OBSERVE_ERROR})
# An hour bar cell is red when more than this share of its results failed outright.
FAILED_SHARE_DOWN = 0.1
UPCOMING = timedelta(days=7)
Key = tuple[str, str]


class State(StrEnum):
    """The state of a flow or destination now (see the module docstring)."""

    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"


# Worst first: a flow shows the worst state among its destinations.
_SEVERITY = (State.DOWN, State.DEGRADED, State.UNKNOWN, State.OK)


@dataclass(frozen=True, slots=True)
class Recent:
    """One stored result, as much of it as the state and the API need."""

    probe_id: str
    destination: str
    slot: datetime
    outcome: Outcome
    latency: float | None
    reason: str | None
    maintenance: bool
    resolved_at: datetime


@dataclass(frozen=True, slots=True)
class Hour:
    """One UTC hour of rollups: results counted (outside maintenance), delivered, failed."""

    start: datetime
    counted: int = 0
    delivered: int = 0
    failed: int = 0
    maintenance: int = 0

    @property
    def availability(self) -> float | None:
        return self.delivered / self.counted if self.counted else None

    def state(self, objective: float) -> State:
        """The cell colour: maintenance, unknown (no data), ok, degraded or down."""
        return cell_state(self, objective)


class Counted(Protocol):
    """A bar cell's counts: an hour (`Hour`) or a day (`probe.web.days.Day`)."""

    @property
    def counted(self) -> int: ...
    @property
    def delivered(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def maintenance(self) -> int: ...


def cell_state(cell: Counted, objective: float) -> State:
    """A bar cell's colour: maintenance or unknown (nothing counted: not measured, never
    0 %), down (more than `FAILED_SHARE_DOWN` failed), ok (the objective met) or degraded."""
    if not cell.counted:
        return State.MAINTENANCE if cell.maintenance else State.UNKNOWN
    if cell.failed / cell.counted > FAILED_SHARE_DOWN:
        return State.DOWN
    return State.OK if cell.delivered / cell.counted >= objective else State.DEGRADED


@dataclass(frozen=True, slots=True)
class Window:
    """One occurrence of a maintenance window (UTC)."""

    name: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    name: str
    state: State
    last: Recent | None  # the newest result, inside maintenance or not
    availability: dict[str, float | None]  # "1h", "24h", "30d"
    slo_objective: float
    slo_latency: float
    hours: tuple[Hour, ...]  # the last 24 UTC hours, oldest first
    # The first slot of the open incident, derived in slot order behind the watermark.
    down_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class FlowStatus:
    name: str
    description: str
    state: State
    maintenance: Window | None  # active now
    next_maintenance: Window | None  # the next one starting within `UPCOMING`
    destinations: tuple[DestinationStatus, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    generated_at: datetime
    flows: tuple[FlowStatus, ...]


def classify(recent: Sequence[Recent], *, now: datetime, stale_after: timedelta) -> State:
    """The state from results outside maintenance, newest first (maintenance aside)."""
    if not recent or now - recent[0].slot > stale_after:
        return State.UNKNOWN
    if all(r.outcome in FAILED for r in recent[:DOWN_AFTER]):
        return State.DOWN
    window = [recent[0], *(r for r in recent[1:RECENT] if now - r.slot <= RECENT_WINDOW)]
    if any(r.outcome is not Outcome.DELIVERED for r in window):
        return State.DEGRADED
    return State.OK


def overall(found: Snapshot) -> tuple[State, str, bool]:
    """The banner over every flow: its state, what it says (``ok``, ``degraded``, ``down``,
    ``unknown``, ``maintenance`` when every flow is in maintenance, ``none`` without flows),
    and whether some flows are in maintenance while others are not."""
    states = [f.state for f in found.flows if f.state is not State.MAINTENANCE]
    if not found.flows:
        return State.UNKNOWN, "none", False
    if not states:
        return State.MAINTENANCE, "maintenance", False
    state = worst(states)
    return state, str(state), len(states) < len(found.flows)


def worst(states: Sequence[State]) -> State:
    """The flow's state from its destinations' (none: unknown)."""
    for state in _SEVERITY:
        if state in states:
            return state
    return State.UNKNOWN


def stale_after(flow: FlowSpec, now: datetime) -> timedelta:
    """How old the newest result may be before the state is unknown."""
    return timedelta(seconds=flow.timeout + 3 * _period(flow, now) + 60)


def _period(flow: FlowSpec, now: datetime) -> float:
    if flow.interval is not None:
        return flow.interval
    assert flow.cron is not None
    # Cron slots may be irregular; the gap between the next two is a fair estimate.
    trigger = CronTrigger.from_crontab(flow.cron, timezone=now.tzinfo)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
    return (second - first).total_seconds() if first and second else 86400.0


async def snapshot(
    engine: AsyncEngine,
    flows: Sequence[FlowSpec],
    calendar: Calendar,
    *,
    now: datetime | None = None,
) -> Snapshot:
    """Every configured flow and destination, as of ``now``."""
    now = now or utcnow()
    out = []
    async with engine.connect() as conn:
        month = await queries.rollup_ratios(conn, since=hour_of(now) - timedelta(hours=719))
        day = await queries.rollup_hours(conn, first=hour_of(now) - timedelta(hours=23))
        opened = await queries.open_incident_starts(conn)
        for flow in flows:
            dests = []
            for name, objective, latency in _targets(flow):
                key = (flow.name, name)
                recent, last = await _recent(conn, key)
                state = classify(recent, now=now, stale_after=stale_after(flow, now))
                hours = tuple(
                    _hour(day.get((*key, hour_of(now) - timedelta(hours=23 - i))))
                    or Hour(hour_of(now) - timedelta(hours=23 - i))
                    for i in range(24)
                )
                availability = {
                    "1h": await _availability_1h(conn, key, now),
                    "24h": _ratio(sum(h.delivered for h in hours), sum(h.counted for h in hours)),
                    "30d": _ratio(*month.get(key, (0, 0))),
                }
                dests.append(
                    DestinationStatus(
                        name, state, last, availability, objective, latency, hours,
                        down_since=opened.get(key) if state is State.DOWN else None,
                    )
                )  # fmt: skip
            out.append(_flow_status(flow, dests, calendar, now))
    return Snapshot(generated_at=now, flows=tuple(out))


def _targets(flow: FlowSpec) -> list[tuple[str, float, float]]:
    if flow.is_check:
        return [("", flow.slo_objective, flow.slo_latency)]
    return [(d.name, d.slo_objective, d.slo_latency) for d in flow.destinations]


def _flow_status(
    flow: FlowSpec, dests: list[DestinationStatus], calendar: Calendar, now: datetime
) -> FlowStatus:
    current, upcoming = maintenance_windows(flow.name, calendar, now)
    if current is not None:
        dests = [
            DestinationStatus(
                d.name, State.MAINTENANCE, d.last, d.availability,
                d.slo_objective, d.slo_latency, d.hours, None,
            )
            for d in dests
        ]  # fmt: skip
    state = State.MAINTENANCE if current else worst([d.state for d in dests])
    return FlowStatus(flow.name, flow.description, state, current, upcoming, tuple(dests))


def maintenance_windows(
    flow: str, calendar: Calendar, now: datetime
) -> tuple[Window | None, Window | None]:
    """The window active now (the one that lasts longest) and the next one to start."""
    active: list[Window] = []
    coming: list[Window] = []
    for window in windows_for(flow, calendar.windows):
        for start, end in occurrences(window, now, now + UPCOMING, calendar.tz):
            if start <= now < end:
                active.append(Window(window.name, start, end))
            elif start > now:
                coming.append(Window(window.name, start, end))
    current = max(active, key=lambda w: w.end, default=None)
    upcoming = min(coming, key=lambda w: w.start, default=None)
    return current, upcoming


def _ratio(delivered: int, counted: int) -> float | None:
    return delivered / counted if counted else None


def to_recent(result: Result) -> Recent:
    """The part of a stored result the state and the API show."""
    return Recent(
        probe_id=result.probe_id,
        destination=result.destination,
        slot=result.slot,
        outcome=result.outcome,
        latency=result.latency,
        reason=result.reason,
        maintenance=result.maintenance,
        resolved_at=result.resolved_at,
    )


async def _recent(conn: AsyncConnection, key: Key) -> tuple[list[Recent], Recent | None]:
    """The newest measured results outside maintenance (for the state), and the newest of
    all, by slot (`probe.store.queries.newest_results`)."""
    counted, newest = await queries.newest_results(conn, key, counted=RECENT)
    return [to_recent(r) for r in counted], (to_recent(newest) if newest else None)


async def _availability_1h(conn: AsyncConnection, key: Key, now: datetime) -> float | None:
    since = now - timedelta(hours=1)
    return _ratio(*await queries.measured_ratio(conn, key, since=since, until=now))


def _hour(counts: HourCounts | None) -> Hour | None:
    """The bar cell of one rollup hour (None: no rollup that hour)."""
    if counts is None:
        return None
    return Hour(
        start=counts.hour,
        counted=sum(counts.counts.values()),
        delivered=counts.counts[Outcome.DELIVERED.value],
        failed=sum(counts.counts[o.value] for o in FAILED),
        maintenance=counts.maintenance,
    )
